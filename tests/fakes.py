"""In-memory stand-ins shared by the tests; each keeps the contract of the real thing (tests/integration checks the
health store's fake and its DynamoDB table against the same cases)."""

from __future__ import annotations

import itertools
from collections.abc import Collection
from dataclasses import replace

from chalicelib.events import RelayEvent
from chalicelib.health import DestinationHealth, HealthReplayBusyError, HealthStoreError, ParkedEvent
from chalicelib.ledger import DeliveryLedgerError


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeHealthStore:
    """``chalicelib.health.HealthStore`` in memory; ``failing`` makes every call raise HealthStoreError,
    ``failing_calls`` the calls named."""

    def __init__(self) -> None:
        self.states: dict[str, DestinationHealth] = {}
        self.parked_events: dict[str, list[ParkedEvent]] = {}
        self.windows: dict[tuple[str, int], int] = {}
        self.leases: dict[str, tuple[str, float]] = {}
        self.failing = False
        self.failing_calls: frozenset[str] = frozenset()
        self.calls: list[str] = []
        self._sequence = itertools.count()

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.failing or name in self.failing_calls:
            raise HealthStoreError(f"{name} failed (ServiceUnavailable)")

    def read(self, name: str) -> DestinationHealth:
        self._call("read")
        return self.states.get(name, DestinationHealth())

    def add_failure(self, name: str, now: float) -> DestinationHealth:
        self._call("add_failure")
        state = self.states.get(name, DestinationHealth())
        state = replace(
            state,
            failures=state.failures + 1,
            failing_since=state.failing_since if state.failing_since is not None else now,
        )
        self.states[name] = state
        return state

    def reset_failures(self, name: str) -> DestinationHealth:
        self._call("reset_failures")
        before = self.states.get(name, DestinationHealth())
        self.states[name] = replace(before, failures=0, failing_since=None, breaker_open_until=None)
        return before

    def disable(self, name: str, reason: str, now: float) -> bool:
        self._call("disable")
        state = self.states.get(name, DestinationHealth())
        if state.status == "disabled":
            return False
        self.states[name] = replace(state, status="disabled", disabled_reason=reason, breaker_open_until=None)
        return True

    def open_breaker(self, name: str, now: float, until: float) -> bool:
        self._call("open_breaker")
        state = self.states.get(name, DestinationHealth())
        if state.breaker_open_until is not None and state.breaker_open_until > now:
            return False
        self.states[name] = replace(state, breaker_open_until=until)
        return True

    def claim_probe(self, name: str, seen_until: float, until: float) -> bool:
        self._call("claim_probe")
        state = self.states.get(name, DestinationHealth())
        if state.breaker_open_until != seen_until:
            return False
        self.states[name] = replace(state, breaker_open_until=until)
        return True

    def take(self, name: str, second: int, limit: int) -> bool:
        self._call("take")
        counted = self.windows.get((name, second), 0)
        if counted >= limit:
            return False
        self.windows[(name, second)] = counted + 1
        return True

    def park(self, name: str, event: RelayEvent, now: float) -> bool:
        self._call("park")
        state = self.states.get(name)
        if state is None or state.status == "enabled":
            return False
        self.states[name] = replace(state, parked=state.parked + 1)
        key = f"parked#{next(self._sequence):020d}#{event.webhook_id}"
        self.parked_events.setdefault(name, []).append(ParkedEvent(key, event))
        return True

    def parked(self, name: str, limit: int) -> list[ParkedEvent]:
        self._call("parked")
        return self.parked_events.get(name, [])[:limit]

    def unpark(self, name: str, parked: ParkedEvent) -> None:
        self._call("unpark")
        events = self.parked_events.get(name, [])
        if parked in events:
            events.remove(parked)
            state = self.states[name]
            self.states[name] = replace(state, parked=state.parked - 1)

    def begin_replay(self, name: str, owner: str, now: float, until: float) -> DestinationHealth:
        self._call("begin_replay")
        state = self.states.get(name, DestinationHealth())
        if state.status == "enabled":
            return state
        holder = self.leases.get(name)
        if holder is not None and holder[0] != owner and holder[1] >= now:
            raise HealthReplayBusyError(f"destination {name} is being re-enabled by another caller")
        self.leases[name] = (owner, until)
        state = replace(state, status="replaying", failures=0, failing_since=None, breaker_open_until=None)
        self.states[name] = state
        return state

    def finish_replay(self, name: str, owner: str) -> bool:
        self._call("finish_replay")
        state = self.states.get(name, DestinationHealth())
        holder = self.leases.get(name)
        if state.status != "replaying" or holder is None or holder[0] != owner or state.parked != 0:
            return False
        self.states[name] = replace(state, status="enabled", disabled_reason=None)
        del self.leases[name]
        return True

    def release_replay(self, name: str, owner: str) -> None:
        self._call("release_replay")
        holder = self.leases.get(name)
        if holder is not None and holder[0] == owner:
            del self.leases[name]


class FakeLedger:
    """``chalicelib.ledger.DeliveryLedger`` in memory; ``failing`` makes every call raise DeliveryLedgerError."""

    def __init__(self, delivered: set[tuple[str, str]] | None = None) -> None:
        self.pairs: set[tuple[str, str]] = set(delivered or ())
        self.failing = False
        self.reads: list[list[tuple[str, str]]] = []
        self.writes: list[list[tuple[str, str]]] = []

    def delivered(self, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        self.reads.append(sorted(pairs))
        if self.failing:
            raise DeliveryLedgerError("reading the delivery ledger failed (ServiceUnavailable)")
        return self.pairs & set(pairs)

    def record(self, pairs: Collection[tuple[str, str]]) -> None:
        self.writes.append(sorted(pairs))
        if self.failing:
            raise DeliveryLedgerError("writing the delivery ledger failed (ServiceUnavailable)")
        self.pairs |= set(pairs)


class RecordingRelay:
    """The relay's ``publish`` and ``hold``, recorded instead of delivered; ``failures`` names the calls that raise
    and what they raise."""

    def __init__(self, failures: dict[str, Exception] | None = None) -> None:
        self.published: list[RelayEvent] = []
        self.held: list[RelayEvent] = []
        self.timeouts: list[float | None] = []
        self.failures = failures or {}

    def publish(self, event: RelayEvent, *, max_timeout_seconds: float | None = None) -> list[object]:
        if "publish" in self.failures:
            raise self.failures["publish"]
        self.published.append(event)
        self.timeouts.append(max_timeout_seconds)
        return []

    def hold(self, event: RelayEvent) -> None:
        if "hold" in self.failures:
            raise self.failures["hold"]
        self.held.append(event)
