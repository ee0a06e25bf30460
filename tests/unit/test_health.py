"""Endpoint health as a state machine: disable (410, threshold), park and replay, the circuit breaker, the rate.

The store is the in-memory fake (``tests/fakes.py``; the integration tests hold it to the DynamoDB table's
contract), the clock is moved by hand, and two ``EndpointHealth`` objects on one store play two containers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chalicelib.delivery import DeliveryResult, Held
from chalicelib.events import RelayEvent
from chalicelib.health import EndpointHealth, HealthPolicy, HealthReplayBusyError, ReplayProgress
from tests.fakes import Clock, FakeHealthStore

POLICY = HealthPolicy(disable_after_seconds=86_400, breaker_failures=5, breaker_cooldown_seconds=30, cache_seconds=5)


@dataclass(frozen=True)
class Hook:
    name: str = "crm"
    max_per_second: int | None = None
    disable_after_seconds: float | None = None


def event(number: int = 1) -> RelayEvent:
    return RelayEvent(
        type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"n": number}, webhook_id=f"msg_{number}"
    )


def answered(status: int, number: int = 1, name: str = "crm", held: Held | None = None) -> DeliveryResult:
    ok = 200 <= status < 300
    return DeliveryResult(
        destination=name,
        webhook_id=f"msg_{number}",
        event_type="chat.message",
        ok=ok,
        status=status,
        error=None if ok else f"HTTP {status}",
        latency_ms=1.0,
        retryable=status >= 500,
        retry_after_seconds=None,
        disable_endpoint=status == 410,
        held=held,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> FakeHealthStore:
    return FakeHealthStore()


@pytest.fixture
def health(store: FakeHealthStore, clock: Clock) -> EndpointHealth:
    return EndpointHealth(store, POLICY, clock=clock)


def fail(health: EndpointHealth, times: int, status: int = 503, hook: Hook = Hook()) -> None:
    for _ in range(times):
        health.record(hook, event(), answered(status))


class TestHealthy:
    def test_a_healthy_destination_is_delivered_to_and_its_successes_write_nothing(
        self, health: EndpointHealth, store: FakeHealthStore, clock: Clock
    ) -> None:
        for number in range(10):
            assert health.gate(Hook(), event(number)).decision == "deliver"
            assert health.record(Hook(), event(number), answered(204, number)) is False
            clock.advance(1)
        # One read per cache period, no write at all.
        assert set(store.calls) == {"read"}
        assert store.calls.count("read") == 2

    def test_a_success_ends_the_failure_streak(
        self, health: EndpointHealth, store: FakeHealthStore, clock: Clock
    ) -> None:
        fail(health, 2)
        health.record(Hook(), event(), answered(200))
        clock.advance(25 * 3600)
        fail(health, 1)
        assert store.states["crm"].status == "enabled"
        assert store.states["crm"].failures == 1


class TestDisable:
    def test_a_410_disables_at_once_and_parks_that_event(
        self, health: EndpointHealth, store: FakeHealthStore, relay_output: object
    ) -> None:
        assert health.record(Hook(), event(1), answered(410, 1)) is True
        state = store.states["crm"]
        assert state.status == "disabled"
        assert "410" in (state.disabled_reason or "")
        assert [p.event.webhook_id for p in store.parked_events["crm"]] == ["msg_1"]

    def test_a_disabled_destinations_new_events_are_parked_in_order(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        gates = [health.gate(Hook(), event(number)) for number in (2, 3, 4)]
        assert {gate.decision for gate in gates} == {"parked"}
        assert [p.event.webhook_id for p in store.parked_events["crm"]] == ["msg_1", "msg_2", "msg_3", "msg_4"]
        assert store.states["crm"].parked == 4

    def test_failing_without_a_success_for_the_threshold_disables(self, store: FakeHealthStore, clock: Clock) -> None:
        # A breaker that never opens, so every attempt reaches the receiver and counts.
        health = EndpointHealth(store, HealthPolicy(breaker_failures=1000), clock=clock)
        fail(health, 1)
        clock.advance(23 * 3600)
        fail(health, 1)
        assert store.read("crm").status == "enabled"
        clock.advance(3600)
        fail(health, 1)
        assert store.read("crm").status == "disabled"
        assert "24 h" in (store.read("crm").disabled_reason or "")

    def test_a_destination_may_set_its_own_threshold(self, store: FakeHealthStore, clock: Clock) -> None:
        health = EndpointHealth(store, HealthPolicy(breaker_failures=1000), clock=clock)
        quick = Hook(disable_after_seconds=600)
        fail(health, 1, hook=quick)
        clock.advance(601)
        fail(health, 1, hook=quick)
        assert store.states["crm"].status == "disabled"

    def test_another_containers_disable_is_seen_within_the_cache_period(
        self, store: FakeHealthStore, clock: Clock
    ) -> None:
        first, second = EndpointHealth(store, POLICY, clock=clock), EndpointHealth(store, POLICY, clock=clock)
        assert first.gate(Hook(), event(1)).decision == "deliver"
        fail(second, 1, status=410)
        assert first.gate(Hook(), event(2)).decision == "deliver"  # stale, at most cache_seconds
        clock.advance(POLICY.cache_seconds)
        assert first.gate(Hook(), event(3)).decision == "parked"

    def test_a_container_that_missed_the_enable_delivers_instead_of_parking(
        self, store: FakeHealthStore, clock: Clock
    ) -> None:
        stale, operator = EndpointHealth(store, POLICY, clock=clock), EndpointHealth(store, POLICY, clock=clock)
        fail(stale, 1, status=410)
        operator.enable("crm", lambda e: answered(204), time_left=lambda: 10)
        # The stale container still believes it disabled; parking is refused by the store, so it delivers.
        assert stale.gate(Hook(), event(5)).decision == "deliver"
        assert store.parked_events["crm"] == []


class TestReplay:
    def test_enable_replays_the_parked_events_in_order_then_enables(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        for number in (2, 3):
            health.gate(Hook(), event(number))
        sent: list[str] = []

        def deliver(replayed: RelayEvent) -> DeliveryResult:
            sent.append(replayed.webhook_id)
            return answered(204)

        progress = health.enable("crm", deliver, time_left=lambda: 10)
        assert sent == ["msg_1", "msg_2", "msg_3"]
        assert progress == ReplayProgress("crm", "enabled", 3, 0)
        assert progress.done
        assert store.states["crm"].status == "enabled"
        assert health.gate(Hook(), event(4)).decision == "deliver"

    def test_enabling_an_enabled_destination_replays_nothing(self, health: EndpointHealth) -> None:
        progress = health.enable("crm", lambda e: pytest.fail("nothing to replay"), time_left=lambda: 10)
        assert progress.done

    def test_a_replay_out_of_time_resumes_where_it_stopped(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        for number in range(2, 6):
            health.gate(Hook(), event(number))
        sent: list[str] = []
        budget = iter([1, 1, 1, 0])  # a page, two deliveries, then out of time

        def deliver(replayed: RelayEvent) -> DeliveryResult:
            sent.append(replayed.webhook_id)
            return answered(204)

        first = health.enable("crm", deliver, time_left=lambda: next(budget, 0))
        assert (first.status, first.replayed, first.remaining, first.done) == ("replaying", 2, 3, False)
        # New events keep being parked behind the rest while the replay is unfinished.
        assert health.gate(Hook(), event(6)).decision == "parked"
        second = health.enable("crm", deliver, time_left=lambda: 10)
        assert second.done
        assert sent == [f"msg_{n}" for n in range(1, 7)]

    def test_a_replay_stops_when_the_destination_is_disabled_again(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        health.gate(Hook(), event(2))
        progress = health.enable("crm", lambda e: answered(204, held="parked"), time_left=lambda: 10)
        assert progress.status == "replaying"
        assert progress.replayed == 0
        assert [p.event.webhook_id for p in store.parked_events["crm"]] == ["msg_1", "msg_2"]

    def test_a_replayed_event_that_fails_leaves_the_parked_list_for_the_retry_path(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        progress = health.enable("crm", lambda e: answered(503), time_left=lambda: 10)
        assert progress.done
        assert store.parked_events["crm"] == []

    def test_a_failure_while_replaying_that_disables_keeps_the_event_parked(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        store.begin_replay("crm", "me", 0, 1)
        assert health.record(Hook(), event(1), answered(410), replay=True) is True
        assert len(store.parked_events["crm"]) == 1  # not parked a second time

    def test_two_replays_at_once_are_refused(
        self, health: EndpointHealth, store: FakeHealthStore, clock: Clock
    ) -> None:
        fail(health, 1, status=410)
        store.begin_replay("crm", "someone else", clock.now, clock.now + 60)
        with pytest.raises(HealthReplayBusyError):
            health.enable("crm", lambda e: answered(204), time_left=lambda: 10)


class TestBreaker:
    def test_consecutive_failures_open_the_breaker_and_events_are_deferred_without_waiting(
        self, health: EndpointHealth, store: FakeHealthStore, clock: Clock
    ) -> None:
        fail(health, 4)
        assert health.gate(Hook(), event()).decision == "deliver"
        fail(health, 1)
        store.calls.clear()
        gate = health.gate(Hook(), event())
        assert (gate.decision, gate.reason, gate.retry_after_seconds) == ("defer", "circuit open", 30)
        assert store.calls == []  # open: decided from the cache, no store call, no receiver call
        clock.advance(20)
        assert health.gate(Hook(), event()).retry_after_seconds == 10

    def test_after_the_cooldown_one_probe_goes_and_a_2xx_closes_the_breaker(
        self, store: FakeHealthStore, clock: Clock
    ) -> None:
        first, second = EndpointHealth(store, POLICY, clock=clock), EndpointHealth(store, POLICY, clock=clock)
        fail(first, 5)
        clock.advance(30)
        assert first.gate(Hook(), event(1)).decision == "deliver"  # the probe
        assert second.gate(Hook(), event(2)).decision == "defer"  # only one probe at a time
        assert first.gate(Hook(), event(3)).decision == "defer"
        first.record(Hook(), event(1), answered(204))
        assert store.states["crm"].breaker_open_until is None
        assert first.gate(Hook(), event(4)).decision == "deliver"
        clock.advance(POLICY.cache_seconds)
        assert second.gate(Hook(), event(5)).decision == "deliver"

    def test_a_failed_probe_keeps_the_breaker_open_for_another_cooldown(
        self, health: EndpointHealth, store: FakeHealthStore, clock: Clock
    ) -> None:
        fail(health, 5)
        clock.advance(30)
        assert health.gate(Hook(), event()).decision == "deliver"
        fail(health, 1)
        assert health.gate(Hook(), event()).decision == "defer"
        clock.advance(30)
        assert health.gate(Hook(), event()).decision == "deliver"

    def test_a_probe_whose_answer_never_came_is_replaced_after_a_cooldown(
        self, health: EndpointHealth, clock: Clock
    ) -> None:
        fail(health, 5)
        clock.advance(30)
        assert health.gate(Hook(), event()).decision == "deliver"
        clock.advance(30)
        assert health.gate(Hook(), event()).decision == "deliver"


class TestRate:
    def test_a_burst_above_the_rate_is_deferred_and_the_next_second_goes(
        self, store: FakeHealthStore, clock: Clock
    ) -> None:
        first, second = EndpointHealth(store, POLICY, clock=clock), EndpointHealth(store, POLICY, clock=clock)
        limited = Hook(max_per_second=3)
        decisions = [health.gate(limited, event()).decision for health in (first, second, first, second)]
        assert decisions == ["deliver", "deliver", "deliver", "defer"]
        deferred = second.gate(limited, event())
        assert (deferred.reason, deferred.retry_after_seconds) == ("rate limit reached", 1)
        clock.advance(1)
        assert second.gate(limited, event()).decision == "deliver"

    def test_a_full_window_costs_no_more_store_calls_in_that_second(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        limited = Hook(max_per_second=1)
        health.gate(limited, event())
        health.gate(limited, event())
        store.calls.clear()
        assert health.gate(limited, event()).decision == "defer"
        assert store.calls == []

    def test_no_rate_means_no_counting(self, health: EndpointHealth, store: FakeHealthStore) -> None:
        for _ in range(5):
            health.gate(Hook(), event())
        assert "take" not in store.calls


class TestStoreFailures:
    def test_an_unreadable_store_lets_deliveries_through(self, health: EndpointHealth, store: FakeHealthStore) -> None:
        store.failing = True
        assert health.gate(Hook(max_per_second=1), event()).decision == "deliver"
        assert health.record(Hook(), event(), answered(503)) is False

    def test_a_disabled_destination_whose_event_cannot_be_parked_defers_it(
        self, health: EndpointHealth, store: FakeHealthStore
    ) -> None:
        fail(health, 1, status=410)
        store.failing = True
        gate = health.gate(Hook(), event(2))
        assert gate.decision == "defer"


def test_an_unreadable_store_is_asked_once_per_cache_period_not_once_per_event(
    health: EndpointHealth, store: FakeHealthStore, clock: Clock
) -> None:
    store.failing = True
    for _ in range(5):
        assert health.gate(Hook(), event()).decision == "deliver"
    assert store.calls.count("read") == 1
    clock.advance(POLICY.cache_seconds)
    health.gate(Hook(), event())
    assert store.calls.count("read") == 2


def test_a_failure_that_disables_but_cannot_be_parked_goes_to_the_failure_path(
    health: EndpointHealth, store: FakeHealthStore
) -> None:
    # Given a store that counts the failure but cannot park (an event too large for an item, DynamoDB failing)
    store.failing_calls = frozenset({"park"})
    # Then the 410 still disables, and the event is not reported parked: the relay keeps it on its failure path
    assert health.record(Hook(), event(), answered(410)) is False
    assert store.states["crm"].status == "disabled"
