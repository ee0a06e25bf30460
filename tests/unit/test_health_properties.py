"""Endpoint health never loses an event, whatever the receiver answers, however time passes, across two containers.

Hypothesis drives a random history: events published through either container (the receiver answering 2xx, 500 or
410), the clock moving, re-enables. Every event must end delivered, on the failure path (the retry path), or
parked; parked events keep their order; a re-enable whose deliveries succeed leaves nothing parked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.delivery import DeliveryResult
from chalicelib.events import RelayEvent
from chalicelib.health import EndpointHealth, HealthPolicy
from tests.fakes import Clock, FakeHealthStore

POLICY = HealthPolicy(disable_after_seconds=600, breaker_failures=3, breaker_cooldown_seconds=30, cache_seconds=5)


@dataclass(frozen=True)
class Hook:
    name: str = "crm"
    max_per_second: int | None = None
    disable_after_seconds: float | None = None


def answered(event: RelayEvent, status: int) -> DeliveryResult:
    ok = 200 <= status < 300
    return DeliveryResult(
        destination="crm",
        webhook_id=event.webhook_id,
        event_type=event.type,
        ok=ok,
        status=status,
        error=None if ok else f"HTTP {status}",
        latency_ms=1.0,
        retryable=status == 500,
        retry_after_seconds=None,
        disable_endpoint=status == 410,
    )


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)
    store: FakeHealthStore = field(default_factory=FakeHealthStore)
    delivered: list[str] = field(default_factory=list)
    retry_path: list[str] = field(default_factory=list)
    parked_order: list[str] = field(default_factory=list)
    published: int = 0

    def containers(self) -> tuple[EndpointHealth, EndpointHealth]:
        return (
            EndpointHealth(self.store, POLICY, clock=self.clock),
            EndpointHealth(self.store, POLICY, clock=self.clock),
        )


publish = st.tuples(st.just("publish"), st.integers(0, 1), st.sampled_from([204, 204, 500, 500, 410]))
advance = st.tuples(st.just("advance"), st.integers(0, 1), st.sampled_from([1, 5, 30, 700]))
enable = st.tuples(st.just("enable"), st.integers(0, 1), st.just(0))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(publish, advance, enable), max_size=60))
def test_every_event_is_delivered_retried_or_parked_and_parked_ones_keep_their_order(
    steps: list[tuple[str, int, int]],
) -> None:
    world = World()
    containers = world.containers()
    hook = Hook()
    for action, which, value in steps:
        health = containers[which]
        if action == "advance":
            world.clock.advance(value)
        elif action == "publish":
            world.published += 1
            event = RelayEvent(type="chat.message", timestamp="t", data={}, webhook_id=f"msg_{world.published}")
            gate = health.gate(hook, event)
            if gate.decision == "parked":
                world.parked_order.append(event.webhook_id)
            elif gate.decision == "defer":
                world.retry_path.append(event.webhook_id)
            elif value == 204:
                health.record(hook, event, answered(event, value))
                world.delivered.append(event.webhook_id)
            elif health.record(hook, event, answered(event, value)):
                world.parked_order.append(event.webhook_id)
            else:
                world.retry_path.append(event.webhook_id)
        else:
            replayed: list[str] = []

            def deliver(event: RelayEvent, health: EndpointHealth = health, replayed: list[str] = replayed) -> Any:
                health.gate(hook, event, replay=True)
                result = answered(event, 204)
                health.record(hook, event, result, replay=True)
                replayed.append(event.webhook_id)
                return result

            progress = health.enable("crm", deliver, time_left=lambda: 1.0)
            # A re-enable whose deliveries all succeed replays everything parked, oldest first, and enables.
            assert progress.done
            assert replayed == world.parked_order
            world.delivered += replayed
            world.parked_order = []
        kept = [parked.event.webhook_id for parked in world.store.parked_events.get("crm", [])]
        assert kept == world.parked_order
        assert world.store.read("crm").parked == len(kept)
    ended = world.delivered + world.retry_path + world.parked_order
    assert sorted(ended) == sorted(f"msg_{n}" for n in range(1, world.published + 1))
