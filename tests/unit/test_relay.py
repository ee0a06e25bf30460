"""Publishing: which destinations get an event, with which secrets, and what becomes of a failed delivery.

In-memory fakes stand in for the fan-out, the secrets, the retry queue, the quarantine and the health store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from chalicelib.adapters.secrets import SecretUnavailableError
from chalicelib.delivery import DeliveryResult
from chalicelib.destination_kinds import ArchiveTarget
from chalicelib.destinations import TYPING, UNKNOWN_INSTANCE, UNKNOWN_VISIBILITY, Destination, RelayConfig, SecretRef
from chalicelib.events import RelayEvent
from chalicelib.health import EndpointHealth, HealthPolicy
from chalicelib.observability import flush
from chalicelib.relay import DestinationUnknownError, Relay
from chalicelib.retries import Attempt, RetryPolicy, RetryTicket, now
from tests.conftest import emitted_metrics
from tests.fakes import Clock, FakeHealthStore, FakeLedger


class FakeFanout:
    def __init__(self, failing: frozenset[str] = frozenset(), status: int = 503) -> None:
        self.failing = failing
        self.status = status
        self.calls: list[list[tuple[Any, Sequence[str]]]] = []
        self.sent: list[tuple[str, str]] = []

    def deliver(
        self,
        event: RelayEvent,
        targets: Sequence[tuple[Any, Sequence[str]]],
        *,
        deadline: float | None = None,
        on_result: Callable[[DeliveryResult], None] | None = None,
    ) -> list[DeliveryResult]:
        self.calls.append(list(targets))
        self.sent += [(target.name, event.webhook_id) for target, _ in targets]
        results = [
            result(event, target.name, ok=target.name not in self.failing, status=self.status) for target, _ in targets
        ]
        for each in results:
            if on_result is not None:
                on_result(each)
        return results


class FakeSecrets:
    def resolve(self, ref: SecretRef) -> str:
        if ref.name == "missing":
            raise SecretUnavailableError(ref, "is unavailable (ParameterNotFound)")
        return f"whsec_{ref.name}"


class FakeQuarantine:
    def __init__(self) -> None:
        self.kept: list[tuple[str, str]] = []
        self.undecided: list[tuple[str, str, str]] = []
        self.dead: list[tuple[RetryTicket, str]] = []

    def keep_dead_letter(self, ticket: RetryTicket, event: RelayEvent, *, reason: str, disable_endpoint: bool) -> str:
        self.dead.append((ticket, reason))
        return f"dead-letters/{ticket.destination}"

    def keep_undelivered(self, ticket: RetryTicket, event: RelayEvent | None) -> str:
        self.kept.append((ticket.destination, ticket.webhook_id))
        return f"undelivered/{ticket.destination}"

    def keep_undecided(self, event: RelayEvent, destination: str, reason: str) -> str:
        self.undecided.append((destination, event.webhook_id, reason))
        return f"undecided/{destination}"


class FakeAwsDelivery:
    """Stands in for the AWS kinds' writers: records each write, fails the destinations named ``failing``."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.failing = failing
        self.writes: list[tuple[str, list[str]]] = []

    def deliver(self, destination: Destination, events: Sequence[RelayEvent]) -> list[DeliveryResult]:
        self.writes.append((destination.name, [event.webhook_id for event in events]))
        return [result(event, destination.name, ok=destination.name not in self.failing) for event in events]


class FakeRetryQueue:
    def __init__(self, *, refusing: bool = False) -> None:
        self.refusing = refusing
        self.sent: list[tuple[str, str]] = []
        self.tickets: list[RetryTicket] = []

    def send(self, tickets: Sequence[RetryTicket]) -> list[RetryTicket]:
        if self.refusing:
            return list(tickets)
        self.sent += [(ticket.destination, ticket.webhook_id) for ticket in tickets]
        self.tickets += tickets
        return []


def result(event: RelayEvent, name: str, *, ok: bool, status: int = 503) -> DeliveryResult:

    return DeliveryResult(
        destination=name,
        webhook_id=event.webhook_id,
        event_type=event.type,
        ok=ok,
        status=204 if ok else status,
        error=None if ok else f"HTTP {status}",
        latency_ms=1.0,
        retryable=not ok and status != 410,
        retry_after_seconds=None,
        disable_endpoint=not ok and status == 410,
    )


def hook(name: str, *, secret: str = "key", **filters: Any) -> Destination:
    return Destination(
        name=name, url=f"https://{name}.example.com/hook", secrets=(SecretRef("ssm", secret),), **filters
    )


EVENT = RelayEvent(
    type="chat.message",
    timestamp="2026-11-22T10:00:00.000Z",
    data={"participant": {"role": "CUSTOMER"}, "visibility": "ALL", "instance_id": "i-1"},
    webhook_id="msg_1",
)


def archive(name: str, **filters: Any) -> Destination:
    return Destination(name=name, url="", target=ArchiveTarget(bucket="archive-bucket"), **filters)


def relay(
    *destinations: Destination,
    fanout: FakeFanout | None = None,
    store: FakeHealthStore | None = None,
    queue: FakeRetryQueue | None = None,
    aws: FakeAwsDelivery | None = None,
    ledger: FakeLedger | None = None,
    clock: Clock | None = None,
) -> tuple[Relay, FakeFanout, FakeRetryQueue, FakeQuarantine]:
    fake_fanout, fake_queue, quarantine = fanout or FakeFanout(), queue or FakeRetryQueue(), FakeQuarantine()
    config = RelayConfig(destinations=destinations, version=1)
    health = EndpointHealth(store or FakeHealthStore(), HealthPolicy(), clock=clock or Clock())
    fakes: dict[str, Any] = {
        "secrets": FakeSecrets(),
        "fanout": fake_fanout,
        "quarantine": quarantine,
        "retry_queue": fake_queue,
        "aws": aws or FakeAwsDelivery(),
        "ledger": ledger,
    }
    publisher = Relay(lambda: config, health=health, clock=clock or now, **fakes)
    return publisher, fake_fanout, fake_queue, quarantine


def test_only_destinations_whose_filters_accept_the_event_get_it() -> None:
    publisher, fanout, _, _ = relay(hook("all"), hook("ended-only", event_types=frozenset({"chat.ended"})))
    publisher.publish(EVENT)
    assert [target.name for target, _ in fanout.calls[0]] == ["all"]


def test_issue7_item7_an_event_a_filter_cannot_decide_is_kept_not_delivered_and_counted(relay_output: Any) -> None:
    unknown = RelayEvent(
        type="chat.message",
        timestamp="2026-11-22T10:00:00.000Z",
        data={"participant": {"role": "SYSTEM"}, "visibility": None, "instance_id": None},
        webhook_id="msg_2",
    )
    publisher, fanout, _, quarantine = relay(
        hook("everyone"),
        hook("customers", audience="customer"),
        hook("one-instance", instance_ids=frozenset({"i-1"})),
        hook("typing-only", event_types=frozenset({"chat.typing"})),
    )
    publisher.publish(unknown)
    flush()
    assert [target.name for target, _ in fanout.calls[0]] == ["everyone"]
    assert quarantine.undecided == [
        ("customers", "msg_2", UNKNOWN_VISIBILITY),
        ("one-instance", "msg_2", UNKNOWN_INSTANCE),
    ]
    assert emitted_metrics(relay_output()) == {"FilterUndecided": 2}


def test_events_the_filters_decide_on_are_never_kept_as_undecided() -> None:
    publisher, _, _, quarantine = relay(
        hook("customers", audience="customer"), hook("typing", event_types=frozenset({TYPING}))
    )
    publisher.publish(EVENT)
    assert quarantine.undecided == []


def test_each_destination_gets_its_own_resolved_secrets() -> None:
    publisher, fanout, _, _ = relay(hook("a", secret="one"), hook("b", secret="two"))
    publisher.publish(EVENT)
    assert [secrets for _, secrets in fanout.calls[0]] == [["whsec_one"], ["whsec_two"]]


def test_failed_deliveries_go_to_the_retry_queue_and_successes_do_not() -> None:
    publisher, _, queue, quarantine = relay(hook("up"), hook("down"), fanout=FakeFanout(failing=frozenset({"down"})))
    results = publisher.publish(EVENT)
    assert [(r.destination, r.ok) for r in results] == [("up", True), ("down", False)]
    assert queue.sent == [("down", "msg_1")]
    assert quarantine.kept == []


def test_what_the_retry_queue_refuses_is_kept_in_s3() -> None:
    publisher, _, _, quarantine = relay(
        hook("down"), fanout=FakeFanout(failing=frozenset({"down"})), queue=FakeRetryQueue(refusing=True)
    )
    publisher.publish(EVENT)
    assert quarantine.kept == [("down", "msg_1")]


def test_an_unavailable_secret_fails_its_destination_only_and_is_kept() -> None:
    publisher, fanout, queue, _ = relay(hook("ok"), hook("broken", secret="missing"))
    results = publisher.publish(EVENT)
    assert [target.name for target, _ in fanout.calls[0]] == ["ok"]
    broken = next(r for r in results if r.destination == "broken")
    assert not broken.ok
    assert broken.retryable
    assert "ParameterNotFound" in (broken.error or "")
    assert queue.sent == [("broken", "msg_1")]


def test_a_waiting_caller_shortens_long_timeouts_only() -> None:
    publisher, fanout, _, _ = relay(hook("slow", timeout_seconds=30), hook("quick", timeout_seconds=2))
    publisher.publish(EVENT, max_timeout_seconds=5)
    assert [target.timeout_seconds for target, _ in fanout.calls[0]] == [5, 2]


def test_a_410_parks_the_event_instead_of_keeping_it_undelivered() -> None:
    store = FakeHealthStore()
    publisher, _, queue, quarantine = relay(
        hook("gone"), fanout=FakeFanout(frozenset({"gone"}), status=410), store=store
    )
    [gone] = publisher.publish(EVENT)
    assert (gone.ok, gone.status, gone.held) == (False, 410, "parked")
    assert (quarantine.kept, queue.sent) == ([], [])
    assert [p.event.webhook_id for p in store.parked_events["gone"]] == ["msg_1"]


def test_a_disabled_destination_is_not_sent_to_and_its_result_says_parked() -> None:
    store = FakeHealthStore()
    publisher, fanout, queue, quarantine = relay(hook("gone"), hook("up"), store=store)
    store.disable("gone", "the receiver answered 410 Gone", 0)
    results = publisher.publish(EVENT)
    assert [target.name for target, _ in fanout.calls[0]] == ["up"]
    parked = next(r for r in results if r.destination == "gone")
    assert (parked.ok, parked.held, parked.retryable) == (False, "parked", False)
    assert (quarantine.kept, queue.sent) == ([], [])


def test_an_open_breaker_sends_the_event_to_the_failure_path_without_trying() -> None:
    store = FakeHealthStore()
    publisher, fanout, queue, _ = relay(hook("dead"), store=store)
    store.open_breaker("dead", 0, 1_800_000_000.0 + 30)
    [deferred] = publisher.publish(EVENT)
    assert fanout.calls == [[]]
    assert (deferred.held, deferred.retryable, deferred.retry_after_seconds) == ("deferred", True, 30)
    assert queue.sent == [("dead", "msg_1")]  # the same first attempt, in 30 s


def test_enable_replays_through_the_delivery_path_in_order() -> None:
    store = FakeHealthStore()
    publisher, fanout, _, _ = relay(hook("crm"), store=store)
    store.disable("crm", "the receiver answered 410 Gone", 0)
    for number in (1, 2, 3):
        publisher.publish(
            RelayEvent(type=EVENT.type, timestamp=EVENT.timestamp, data=EVENT.data, webhook_id=f"m{number}")
        )
    assert fanout.calls == [[], [], []]
    progress = publisher.enable("crm", time_left=lambda: 10)
    assert progress.done
    assert fanout.sent == [("crm", "m1"), ("crm", "m2"), ("crm", "m3")]


def test_enabling_an_unknown_destination_is_refused() -> None:
    publisher, _, _, _ = relay(hook("crm"))
    with pytest.raises(DestinationUnknownError):
        publisher.enable("nobody", time_left=lambda: 10)


def test_destinations_of_aws_kinds_are_written_not_posted_and_obey_the_same_filters() -> None:
    # Given a webhook, an archive that wants everything and one that wants chat.ended only
    writer = FakeAwsDelivery()
    publisher, fanout, _, _ = relay(
        hook("hook"), archive("archive"), archive("ended", event_types=frozenset({"chat.ended"})), aws=writer
    )
    # When a message is published
    results = publisher.publish(EVENT)
    # Then the webhook is posted, the archive written, the other archive skipped: one result for each delivery
    assert [target.name for target, _ in fanout.calls[0]] == ["hook"]
    assert writer.writes == [("archive", ["msg_1"])]
    assert sorted(r.destination for r in results) == ["archive", "hook"]


def test_a_retry_ticket_for_an_aws_kind_is_written_again_through_the_one_redelivery_path() -> None:
    # Given a ticket for an archive whose write failed, When the retry handler takes it
    writer = FakeAwsDelivery()
    publisher, fanout, queue, _ = relay(hook("hook"), archive("archive"), aws=writer)
    publisher.retry(RetryTicket("archive", EVENT.webhook_id, EVENT, not_before=0.0), deadline=None)
    # Then the event is written to the archive again, and nothing is posted or queued
    assert writer.writes == [("archive", ["msg_1"])]
    assert all(call == [] for call in fanout.calls)
    assert queue.sent == []


def test_a_retried_write_that_fails_again_goes_back_on_the_retry_queue() -> None:
    publisher, _, queue, _ = relay(archive("archive"), aws=FakeAwsDelivery(failing=frozenset({"archive"})))
    publisher.retry(RetryTicket("archive", EVENT.webhook_id, EVENT, not_before=0.0), deadline=None)
    assert queue.sent == [("archive", "msg_1")]


def test_a_failed_write_takes_the_same_durable_path_as_a_failed_post() -> None:
    publisher, _, queue, _ = relay(archive("archive"), aws=FakeAwsDelivery(failing=frozenset({"archive"})))
    results = publisher.publish(EVENT)
    assert [(r.destination, r.ok) for r in results] == [("archive", False)]
    assert queue.sent == [("archive", "msg_1")]


class TestTheDeliveryLedger:
    """A pair answered 2xx before is not delivered again, unless the caller asks for an explicit re-send."""

    def test_publishing_skips_the_destinations_that_already_took_the_event_and_records_new_2xx(
        self, relay_output: Any
    ) -> None:
        ledger = FakeLedger({("done", "msg_1")})
        publisher, fanout, queue, _ = relay(
            hook("done"), hook("new"), hook("down"), fanout=FakeFanout(frozenset({"down"})), ledger=ledger
        )
        results = publisher.publish(EVENT)
        flush()
        assert [target.name for target, _ in fanout.calls[0]] == ["new", "down"]
        assert ledger.reads == [[("done", "msg_1"), ("down", "msg_1"), ("new", "msg_1")]]
        assert ledger.writes == [[("new", "msg_1")]]
        done = next(r for r in results if r.destination == "done")
        assert (done.ok, done.already_delivered, done.held) == (True, True, None)
        assert queue.sent == [("down", "msg_1")]
        assert emitted_metrics(relay_output())["DeliverySkipped"] == 1

    def test_an_archive_is_neither_asked_about_nor_recorded_its_rewrite_is_idempotent(self) -> None:
        ledger = FakeLedger()
        writer = FakeAwsDelivery()
        publisher, _, _, _ = relay(archive("archive"), hook("hook"), aws=writer, ledger=ledger)
        publisher.publish(EVENT)
        publisher.publish(EVENT)
        assert ledger.reads == [[("hook", "msg_1")], [("hook", "msg_1")]]
        assert ledger.writes == [[("hook", "msg_1")]]
        assert writer.writes == [("archive", ["msg_1"]), ("archive", ["msg_1"])]

    def test_a_ledger_that_fails_lets_every_delivery_through_and_is_counted(self, relay_output: Any) -> None:
        ledger = FakeLedger({("a", "msg_1")})
        ledger.failing = True
        publisher, fanout, _, _ = relay(hook("a"), hook("b"), ledger=ledger)
        results = publisher.publish(EVENT)
        flush()
        assert [target.name for target, _ in fanout.calls[0]] == ["a", "b"]
        assert all(r.ok and not r.already_delivered for r in results)
        assert emitted_metrics(relay_output())["DeliveryLedgerUnavailable"] == 2  # the read and the write

    def test_a_retry_ticket_for_a_pair_delivered_since_is_dropped_as_done(self) -> None:
        ledger = FakeLedger({("crm", "msg_1")})
        publisher, fanout, queue, _ = relay(hook("crm"), ledger=ledger)
        ticket = RetryTicket("crm", EVENT.webhook_id, EVENT, not_before=0.0)
        publisher.retry(ticket, deadline=None, delivered=publisher.delivered_among([ticket]))
        assert fanout.sent == []
        assert queue.sent == []
        assert len(ledger.reads) == 1

    def test_a_retry_gathering_its_answers_leaves_the_ledger_write_to_its_caller(self) -> None:
        ledger = FakeLedger()
        publisher, _, queue, _ = relay(hook("crm"), hook("down"), fanout=FakeFanout(frozenset({"down"})), ledger=ledger)
        answered: list[tuple[str, str]] = []
        for name in ("crm", "down"):
            ticket = RetryTicket(name, EVENT.webhook_id, EVENT, not_before=0.0)
            publisher.retry(ticket, deadline=None, answered=answered)
        assert (answered, ledger.writes, queue.sent) == ([("crm", "msg_1")], [], [("down", "msg_1")])
        publisher.record_delivered(answered)
        assert ledger.writes == [[("crm", "msg_1")]]

    def test_a_batch_is_asked_about_in_one_read_leaving_out_early_tickets_resends_and_fanouts(self) -> None:
        ledger = FakeLedger({("crm", "a")})
        publisher, _, _, _ = relay(hook("crm"), ledger=ledger)
        tickets = [
            RetryTicket("crm", "a", EVENT, not_before=0.0),
            RetryTicket("crm", "b", EVENT, not_before=0.0),
            RetryTicket("crm", "later", EVENT, not_before=4_000_000_000.0),
            RetryTicket("crm", "again", EVENT, not_before=0.0, resend=True),
            RetryTicket("*", "every", EVENT, not_before=0.0),
        ]
        assert publisher.delivered_among(tickets) == {("crm", "a")}
        assert ledger.reads == [[("crm", "a"), ("crm", "b")]]

    def test_an_explicit_resend_is_delivered_whatever_the_ledger_says_and_so_are_its_retries(self) -> None:
        ledger = FakeLedger({("crm", "msg_1")})
        publisher, fanout, queue, _ = relay(hook("crm"), fanout=FakeFanout(frozenset({"crm"})), ledger=ledger)
        [first] = [publisher.redeliver(hook("crm"), EVENT, deadline=None, resend=True)]
        assert (first.ok, fanout.sent, ledger.reads) == (False, [("crm", "msg_1")], [])
        assert queue.sent == [("crm", "msg_1")]
        # The failed re-send's ticket carries the flag: its retry is not dropped as done either
        ticket = RetryTicket("crm", "msg_1", EVENT, not_before=0.0, resend=True)
        assert RetryTicket.from_json(ticket.to_json()).resend
        publisher.retry(ticket, deadline=None)
        assert fanout.sent == [("crm", "msg_1"), ("crm", "msg_1")]
        assert ledger.reads == []

    def test_a_parked_event_delivered_meanwhile_is_replayed_as_done_without_sending(self) -> None:
        store = FakeHealthStore()
        ledger = FakeLedger()
        publisher, fanout, _, _ = relay(hook("crm"), store=store, ledger=ledger)
        store.disable("crm", "the receiver answered 410 Gone", 0)
        publisher.publish(EVENT)
        ledger.pairs.add(("crm", "msg_1"))  # delivered by another path before the re-enable
        assert publisher.enable("crm", time_left=lambda: 10).done
        assert fanout.sent == []
        assert store.parked_events["crm"] == []


class TestBreakerDeferrals:
    """Tickets an open breaker puts off: one schedule step further each time, until the schedule's horizon; a spent
    rate is not one of these; and a probe that gets an answer still closes the breaker. The relay's clock and the
    health's are one fake clock."""

    POLICY = RetryPolicy(schedule=(0.0, 60.0, 600.0, 6000.0))  # horizon: 6,660 s ±20 % = 7,992 s

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    def test_a_destination_that_stays_down_defers_each_ticket_further_then_dead_letters_it(
        self, clock: Clock, relay_output: Any
    ) -> None:
        # Given a destination whose breaker is open whenever its tickets come back (30 s cooldowns)
        store = FakeHealthStore()
        publisher, fanout, queue, quarantine = relay(hook("dead", retry_policy=self.POLICY), store=store, clock=clock)
        store.open_breaker("dead", clock.now, clock.now + 30)
        publisher.publish(EVENT)
        waits: list[float] = []
        # When each ticket is retried when due, the breaker open again, until none comes back
        while len(queue.tickets) > len(waits):
            ticket = queue.tickets[-1]
            waits.append(ticket.not_before - clock.now)
            clock.now = ticket.not_before
            store.open_breaker("dead", clock.now, clock.now + 30)
            publisher.retry(ticket, deadline=None)
            assert len(waits) < 10
        # Then it waited the cooldown, then each schedule step (±20 %), and was never sent nor charged an attempt
        assert waits[0] == 30
        assert 48 <= waits[1] <= 72
        assert 480 <= waits[2] <= 720
        assert all(4800 <= wait <= 6000 for wait in waits[3:-1])
        assert fanout.sent == []
        # And once the schedule's horizon had passed it was dead-lettered, saying so, with its deferrals
        [(dead, reason)] = quarantine.dead
        assert (reason, dead.attempts, dead.deferrals) == ("deferred", (), len(waits))
        assert clock.now == pytest.approx(1_800_000_000.0 + self.POLICY.horizon)
        flush()
        assert emitted_metrics(relay_output())["DeliveryExhausted"] == 1

    def test_a_spent_rate_waits_a_second_uncounted_even_for_a_ticket_past_its_horizon(self, clock: Clock) -> None:
        # Given a destination taking one delivery a second, and a ticket whose first attempt was two days ago
        publisher, fanout, queue, quarantine = relay(
            hook("busy", max_per_second=1, retry_policy=self.POLICY), clock=clock
        )
        publisher.publish(EVENT)
        old = RetryTicket("busy", "msg_old", EVENT, 0.0, (Attempt(1, clock.now - 172_800, 503, "HTTP 503", 1.0),))
        # When it comes back in a second whose budget is spent
        publisher.retry(old, deadline=None)
        # Then it is paced: the same attempt a second later, no deferral counted, not dead-lettered
        [paced] = queue.tickets
        assert (paced.webhook_id, paced.not_before - clock.now, paced.deferrals) == ("msg_old", 1, 0)
        assert quarantine.dead == []
        assert fanout.sent == [("busy", "msg_1")]

    def test_a_probe_the_receiver_answers_closes_the_breaker_and_delivers_the_deferred_ticket(
        self, clock: Clock
    ) -> None:
        store = FakeHealthStore()
        publisher, fanout, queue, _ = relay(hook("back", retry_policy=self.POLICY), store=store, clock=clock)
        store.open_breaker("back", clock.now, clock.now + 30)
        publisher.publish(EVENT)
        [deferred] = queue.tickets
        # When the ticket comes back after the cooldown, and the receiver answers
        clock.now = deferred.not_before
        publisher.retry(deferred, deadline=None)
        # Then it was the probe: delivered, the breaker closed, nothing left on the queue
        assert fanout.sent == [("back", "msg_1")]
        assert store.states["back"].breaker_open_until is None
        assert queue.tickets == [deferred]
