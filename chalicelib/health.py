"""Endpoint health: which destinations may be sent to now, and what happens to events that may not.

The ``Relay`` asks :meth:`EndpointHealth.gate` before it sends an event to a destination and tells
:meth:`EndpointHealth.record` what each attempt came to. The state lives in a :class:`HealthStore` (DynamoDB in
production, ``chalicelib/adapters/health_table.py``), read through a per-container cache.

A destination is ``enabled``, ``disabled`` (at once on HTTP 410, or after failing without a success for
``disable_after_seconds``) or ``replaying`` (re-enabled, its parked events going out in order). While it is not
enabled, its new events are parked in the store; :meth:`EndpointHealth.enable` replays them through the normal
delivery path, resumably, and only then enables it.

An enabled destination also has a circuit breaker: after ``breaker_failures`` consecutive failures it opens for
``breaker_cooldown_seconds``, and its events are deferred to the retry path without waiting on it; then one
delivery (the probe) is let through, and a 2xx closes the breaker. An optional rate (deliveries per second) defers
what goes above it, counted per one-second window in the store so that every container shares one budget.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal, Protocol

from chalicelib.errors import RelayError
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from chalicelib.delivery import DeliveryResult
    from chalicelib.events import RelayEvent

Status = Literal["enabled", "disabled", "replaying"]
Decision = Literal["deliver", "parked", "defer"]
# Each replay page is this many parked events; the lease outlives one page by a wide margin.
REPLAY_PAGE = 25
REPLAY_LEASE_SECONDS = 300.0


class HealthStoreError(RelayError):
    """The health store could not be read or written (an AWS failure); the message names no secret."""


class HealthReplayBusyError(RelayError):
    """Another caller is replaying this destination's parked events right now."""


@dataclass(frozen=True)
class DestinationHealth:
    """What the store knows about one destination."""

    status: Status = "enabled"
    failures: int = 0
    failing_since: float | None = None
    breaker_open_until: float | None = None
    disabled_reason: str | None = None
    parked: int = 0


@dataclass(frozen=True)
class ParkedEvent:
    """An event kept for a disabled destination; ``key`` orders it among the others (the time it was parked)."""

    key: str
    event: RelayEvent


@dataclass(frozen=True)
class Gate:
    """Whether to send now (``deliver``), or what was done instead (``parked``, ``defer`` to the retry path).

    ``paced``: deferred because the destination's rate is spent this second, not because it is unwell (an open
    breaker): the retry path then waits the second out without counting it as a deferral.
    """

    decision: Decision
    reason: str
    retry_after_seconds: int | None = None
    paced: bool = False


@dataclass(frozen=True)
class HealthPolicy:
    """The thresholds; a destination may set its own ``disable_after_seconds`` and rate."""

    disable_after_seconds: float = 86_400.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 30.0
    cache_seconds: float = 5.0


@dataclass(frozen=True)
class ReplayProgress:
    """Where a re-enable stands after one call: done when the destination is enabled and nothing is parked."""

    destination: str
    status: Status
    replayed: int
    remaining: int

    @property
    def done(self) -> bool:
        """The destination is enabled again and every parked event has been replayed."""
        return self.status == "enabled" and self.remaining == 0


class HealthTarget(Protocol):
    """What health needs of a destination (``chalicelib.destinations.Destination`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def max_per_second(self) -> int | None: ...
    @property
    def disable_after_seconds(self) -> float | None: ...


class HealthStore(Protocol):
    """Durable state shared by every container; each call is one atomic step (conditional where it says so)."""

    def read(self, name: str) -> DestinationHealth:
        """The destination's state (a new destination is enabled and healthy)."""
        ...

    def add_failure(self, name: str, now: float) -> DestinationHealth:
        """Count one more consecutive failure (starting the streak at ``now`` if none); the state after it."""
        ...

    def reset_failures(self, name: str) -> DestinationHealth:
        """End the streak and close the breaker; the state before it."""
        ...

    def disable(self, name: str, reason: str, now: float) -> bool:
        """Disable the destination unless it already is; True when this call disabled it."""
        ...

    def open_breaker(self, name: str, now: float, until: float) -> bool:
        """Open the breaker until ``until`` unless it is open already; True when this call opened it."""
        ...

    def claim_probe(self, name: str, seen_until: float, until: float) -> bool:
        """Take the single half-open probe: move ``breaker_open_until`` from ``seen_until`` to ``until``."""
        ...

    def take(self, name: str, second: int, limit: int) -> bool:
        """Count one delivery in the window of ``second`` unless ``limit`` have been counted; True if counted."""
        ...

    def park(self, name: str, event: RelayEvent, now: float) -> bool:
        """Keep ``event`` for the destination unless it is enabled; False (nothing kept) when it is enabled."""
        ...

    def parked(self, name: str, limit: int) -> list[ParkedEvent]:
        """The oldest parked events, oldest first."""
        ...

    def unpark(self, name: str, parked: ParkedEvent) -> None:
        """Forget a parked event that has been replayed."""
        ...

    def begin_replay(self, name: str, owner: str, now: float, until: float) -> DestinationHealth:
        """Mark a disabled destination ``replaying`` (healthy again, parked events kept) under a lease held by
        ``owner`` until ``until``; :class:`HealthReplayBusyError` if another owner holds an unexpired lease."""
        ...

    def finish_replay(self, name: str, owner: str) -> bool:
        """Enable the destination if nothing is parked and ``owner`` holds the lease; False otherwise."""
        ...

    def release_replay(self, name: str, owner: str) -> None:
        """Give the lease up (the destination stays ``replaying`` until a later call finishes)."""
        ...


class EndpointHealth:
    """The health seam of the relay: ``gate`` before sending, ``record`` after, ``enable`` to re-enable."""

    def __init__(self, store: HealthStore, policy: HealthPolicy, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._cache: dict[str, tuple[float, DestinationHealth]] = {}
        # The second in which a destination's rate window was seen full: no store call until the next second.
        self._full_second: dict[str, int] = {}

    def gate(self, destination: HealthTarget, event: RelayEvent, *, replay: bool = False) -> Gate:
        """Whether to send ``event`` now; a disabled destination's event is parked here and then.

        ``replay``: the event is being replayed from the parked ones, so it is not parked again. A store that
        cannot be read lets the delivery through (health must never stop delivery); one that cannot park defers.
        """
        name = destination.name
        now = self._clock()
        try:
            state = self._state(name, now)
            if state.status != "enabled" and not replay:
                if self._store.park(name, event, now):
                    self._remember(name, replace(state, parked=state.parked + 1), now)
                    count("DeliveryParked")
                    return Gate("parked", f"destination {state.status}")
                # Another container enabled it since this one last looked.
                state = self._refresh(name, now)
            if state.breaker_open_until is not None:
                gate = self._breaker_gate(name, state, state.breaker_open_until, now)
                if gate is not None:
                    # Batched per invocation (no dimension): an open breaker can defer every event of a burst.
                    count("DeliveryDeferred")
                    return gate
            if destination.max_per_second is not None and not self._take(name, destination.max_per_second, now):
                count("DeliveryDeferred")
                count("RateLimited")
                return Gate("defer", "rate limit reached", retry_after_seconds=1, paced=True)
        except HealthStoreError as exc:
            logger.warning("destination health unavailable", extra={"destination": name, "reason": str(exc)})
            cached = self._cache.get(name)
            if not replay and cached is not None and cached[1].status != "enabled":
                # Known to be disabled but cannot be parked: the retry path keeps it instead.
                return Gate("defer", "destination disabled, parking unavailable")
        return Gate("deliver", "healthy")

    def record(
        self, destination: HealthTarget, event: RelayEvent, result: DeliveryResult, *, replay: bool = False
    ) -> bool:
        """Count what one attempt came to; True when the event is parked because its destination is now disabled.

        ``replay``: the event is one being replayed, already parked; True then means it stays parked.
        """
        name = destination.name
        now = self._clock()
        try:
            if result.ok:
                self._succeeded(name, now)
                return False
            state = self._failed(destination, result, now)
            if replay:
                return state.status == "disabled"
            if state.status != "enabled" and self._store.park(name, event, now):
                count("DeliveryParked")
                return True
        except HealthStoreError as exc:
            logger.warning("destination health not recorded", extra={"destination": name, "reason": str(exc)})
        return False

    def enable(
        self,
        name: str,
        deliver: Callable[[RelayEvent], DeliveryResult],
        *,
        time_left: Callable[[], float],
        on_replayed: Callable[[ReplayProgress], None] | None = None,
    ) -> ReplayProgress:
        """Re-enable ``name``: replay its parked events in order through ``deliver``, then enable it.

        Works while ``time_left()`` (seconds) allows another page; call again to resume. A replayed event that
        fails goes to the retry path like any other delivery; if the destination is disabled again (410, or the
        threshold), the replay stops and the rest stays parked.
        """
        owner = uuid.uuid4().hex
        now = self._clock()
        state = self._store.begin_replay(name, owner, now, now + REPLAY_LEASE_SECONDS)
        self._forget(name)
        if state.status == "enabled":
            return ReplayProgress(name, "enabled", 0, state.parked)
        logger.info("destination re-enabling", extra={"destination": name, "parked": state.parked})
        replayed = 0
        try:
            while time_left() > 0:
                page = self._store.parked(name, REPLAY_PAGE)
                if not page and self._store.finish_replay(name, owner):
                    count("DestinationEnabled")
                    logger.info("destination enabled", extra={"destination": name, "replayed": replayed})
                    return ReplayProgress(name, "enabled", replayed, 0)
                for parked in page:
                    if time_left() <= 0 or not self._replay_one(name, parked, deliver):
                        return self._progress(name, replayed)
                    replayed += 1
                    if on_replayed is not None:
                        on_replayed(ReplayProgress(name, "replaying", replayed, max(state.parked - replayed, 0)))
                now = self._clock()
                self._store.begin_replay(name, owner, now, now + REPLAY_LEASE_SECONDS)
            return self._progress(name, replayed)
        finally:
            self._store.release_replay(name, owner)
            self._forget(name)
            if replayed:
                count("ParkedReplayed", replayed)

    def _replay_one(self, name: str, parked: ParkedEvent, deliver: Callable[[RelayEvent], DeliveryResult]) -> bool:
        """Send one parked event; False (the event stays parked) when the replay must stop here."""
        result = deliver(parked.event)
        if result.held is not None:
            # Disabled again (it stays parked), or the breaker opened or the rate is spent: the rest waits for
            # the next call rather than going to the retry path.
            logger.info("replay paused", extra={"destination": name, "reason": result.error})
            return False
        # Delivered, or failed and handed to the retry path like any delivery: either way no longer parked.
        self._store.unpark(name, parked)
        return True

    def _progress(self, name: str, replayed: int) -> ReplayProgress:
        state = self._store.read(name)
        return ReplayProgress(name, state.status, replayed, state.parked)

    def _breaker_gate(self, name: str, state: DestinationHealth, open_until: float, now: float) -> Gate | None:
        """None lets the delivery through (as the half-open probe, or because the breaker closed meanwhile)."""
        if now < open_until:
            return Gate("defer", "circuit open", retry_after_seconds=max(1, math.ceil(open_until - now)))
        until = now + self._policy.breaker_cooldown_seconds
        if self._store.claim_probe(name, open_until, until):
            # This delivery is the probe; every other waits until it answers or its lease runs out.
            self._remember(name, replace(state, breaker_open_until=until), now)
            logger.info("circuit half-open: probing", extra={"destination": name})
            return None
        state = self._refresh(name, now)
        if state.breaker_open_until is None:
            return None
        return Gate("defer", "circuit open", retry_after_seconds=max(1, math.ceil(state.breaker_open_until - now)))

    def _take(self, name: str, limit: int, now: float) -> bool:
        second = int(now)
        if self._full_second.get(name) == second:
            return False
        if self._store.take(name, second, limit):
            return True
        self._full_second[name] = second
        return False

    def _succeeded(self, name: str, now: float) -> None:
        cached = self._cache.get(name)
        if cached is not None and cached[1].failures == 0 and cached[1].breaker_open_until is None:
            return  # nothing to reset: a healthy destination's successes cost no write
        before = self._store.reset_failures(name)
        self._remember(name, replace(before, failures=0, failing_since=None, breaker_open_until=None), now)
        if before.breaker_open_until is not None:
            count("CircuitClosed")
            logger.info("circuit closed", extra={"destination": name})

    def _failed(self, destination: HealthTarget, result: DeliveryResult, now: float) -> DestinationHealth:
        name = destination.name
        state = self._store.add_failure(name, now)
        disable_after = destination.disable_after_seconds or self._policy.disable_after_seconds
        reason = None
        if result.disable_endpoint:
            reason = "the receiver answered 410 Gone"
        elif state.failing_since is not None and now - state.failing_since >= disable_after:
            reason = f"failing without a success for {disable_after / 3600:g} h"
        if reason is not None and state.status != "disabled":
            if self._store.disable(name, reason, now):
                count("DestinationDisabled")
                logger.warning("destination disabled", extra={"destination": name, "reason": reason})
            state = replace(state, status="disabled", disabled_reason=reason)
        elif state.failures >= self._policy.breaker_failures and (
            state.breaker_open_until is None or state.breaker_open_until <= now
        ):
            until = now + self._policy.breaker_cooldown_seconds
            if self._store.open_breaker(name, now, until):
                count("CircuitOpened")
                logger.warning("circuit opened", extra={"destination": name, "failures": state.failures})
            state = replace(state, breaker_open_until=until)
        self._remember(name, state, now)
        return state

    def _state(self, name: str, now: float) -> DestinationHealth:
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self._policy.cache_seconds:
            return cached[1]
        return self._refresh(name, now)

    def _refresh(self, name: str, now: float) -> DestinationHealth:
        try:
            state = self._store.read(name)
        except HealthStoreError:
            # Keep what was known (or healthy) for another period: one failing read per period, not per event.
            cached = self._cache.get(name)
            self._remember(name, cached[1] if cached is not None else DestinationHealth(), now)
            raise
        self._remember(name, state, now)
        return state

    def _remember(self, name: str, state: DestinationHealth, now: float) -> None:
        self._cache[name] = (now, state)

    def _forget(self, name: str) -> None:
        self._cache.pop(name, None)
