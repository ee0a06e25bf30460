"""Publishing an event: the destinations that want it, their health, their secrets, the concurrent delivery, and
what becomes of every delivery that did not get through: a retry ticket on the SQS retry queue at once (or a copy
in S3 if SQS fails too), parked for a disabled destination, or a dead letter when it will not be retried. An
invocation fails only when neither SQS nor S3 keeps a failure.

Before delivering, the relay asks its delivery ledger which destinations already answered 2xx for the event's
``webhook-id`` (a redelivery, a retry after a crash) and skips them; after, it records the new 2xx answers. An
explicit re-send (``resend``: a replay) is delivered whatever the ledger says."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Collection, Container, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

from chalicelib.adapters.secrets import SecretUnavailableError
from chalicelib.budget import attempts_until
from chalicelib.delivery import DeliveryResult
from chalicelib.errors import RelayError
from chalicelib.ledger import DeliveryLedgerError, Pair
from chalicelib.observability import count, logger
from chalicelib.retries import (
    Attempt,
    RetryTicket,
    Verdict,
    deferral_wait,
    event_from_envelope,
    first_ticket,
    now,
    verdict,
    wait_before,
)

if TYPE_CHECKING:
    from chalicelib.adapters.quarantine import Quarantine
    from chalicelib.adapters.retry_queue import RetryQueue
    from chalicelib.adapters.secrets import SecretResolver
    from chalicelib.aws_delivery import AwsDelivery
    from chalicelib.delivery import Fanout, WebhookTarget
    from chalicelib.destinations import Destination, RelayConfig
    from chalicelib.events import RelayEvent
    from chalicelib.health import EndpointHealth, Gate, ReplayProgress
    from chalicelib.ledger import DeliveryLedger

# A ticket this close to its time is delivered now rather than sent round the queue once more.
EARLY_TOLERANCE_SECONDS = 1.0
# A ticket for this "destination" publishes its event afresh: it could not be published when it first came.
EVERY_DESTINATION = "*"
# How long such an event waits before it is published again.
UNROUTED_WAIT_SECONDS = 60.0


class DestinationUnknownError(RelayError):
    """No destination of that name is configured."""


class Relay:
    """Delivers each event to every destination whose filters accept it and whose health lets it through
    (webhooks and the AWS kinds alike), and retries what did not get through."""

    def __init__(
        self,
        config: Callable[[], RelayConfig],
        secrets: SecretResolver,
        fanout: Fanout,
        quarantine: Quarantine,
        health: EndpointHealth,
        *,
        aws: AwsDelivery,
        retry_queue: RetryQueue,
        ledger: DeliveryLedger | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = now,
    ) -> None:
        self._config = config
        self._secrets = secrets
        self._fanout = fanout
        self._quarantine = quarantine
        self._health = health
        self._aws = aws
        # AWS writes run beside the webhook fan-out rather than after it.
        self._writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="destination-write")
        self._retry_queue = retry_queue
        # None: no bookkeeping of 2xx answers (DELIVERIES_TABLE_NAME unset); every redelivery delivers again.
        self._ledger = ledger
        self._rng = rng or random.Random()  # noqa: S311 - jitter spreads retries; nothing secret depends on it
        self._clock = clock  # wall-clock seconds, for tickets' not-before times and attempts

    def publish(
        self, event: RelayEvent, *, deadline: float | None = None, max_timeout_seconds: float | None = None
    ) -> list[DeliveryResult]:
        """Deliver ``event`` once to each destination that wants it; each failure is made durable as it is known.

        ``deadline`` (``time.monotonic()``) bounds the fan-out; ``max_timeout_seconds`` shortens the destinations'
        own timeouts when a caller is waiting. A disabled destination's event is parked (``held="parked"``).
        Raises when a failure could be kept neither in the retry queue nor in S3, or the destinations file is
        invalid, so that the invocation fails and Lambda retries it.
        """
        wanted = []
        for destination in self._config().destinations:
            if destination.accepts(event):
                wanted.append(destination)
            else:
                self._keep_undecided(destination, event)
        return self._deliver(event, wanted, max_timeout_seconds=max_timeout_seconds, deadline=deadline, replay=False)

    def hold(self, event: RelayEvent) -> None:
        """Keep ``event`` for every destination, to be published again in a minute (an invalid destinations file
        must not lose an announcement); raises when neither the retry queue nor S3 keeps it."""
        count("EventHeld")
        handoff = _Handoff(self)
        due = self._clock() + UNROUTED_WAIT_SECONDS
        handoff.requeue(RetryTicket(EVERY_DESTINATION, event.webhook_id, event, due), event)
        handoff.flush()

    def redeliver(
        self,
        destination: Destination,
        event: RelayEvent,
        *,
        deadline: float | None,
        ticket: RetryTicket | None = None,
        resend: bool = False,
        delivered: Container[Pair] | None = None,
        answered: list[Pair] | None = None,
    ) -> DeliveryResult:
        """Deliver ``event`` to ``destination`` once more and settle the attempt: every retry goes through here.

        ``ticket``: the retry ticket the attempt follows (its attempts so far), None for a fresh start (redrive).
        Unless ``resend`` (an explicit re-send, such as a replay: delivered again even if it was delivered before,
        and so are its retries), a pair the delivery ledger knows as delivered is not sent again: the result is
        ``already_delivered``. ``delivered``: the pairs known delivered, read beforehand (a whole retry batch in
        one read); None reads the ledger for this pair. ``answered``: a 2xx answer's pair is appended to it, for
        the caller to record with :meth:`record_delivered` (a whole retry batch in one write); None records it here.
        """
        resend = resend or (ticket is not None and ticket.resend)
        return self._deliver(
            event,
            [destination],
            deadline=deadline,
            replay=False,
            ticket=ticket,
            resend=resend,
            delivered=delivered,
            answered=answered,
        )[0]

    def delivered_among(self, tickets: Sequence[RetryTicket]) -> frozenset[Pair]:
        """The (destination, webhook-id) pairs of ``tickets`` already answered 2xx: one ledger read for a batch.

        Tickets not due yet, explicit re-sends and tickets for every destination are not asked about.
        """
        moment = self._clock()
        pairs = [
            (ticket.destination, ticket.webhook_id)
            for ticket in tickets
            if ticket.destination != EVERY_DESTINATION
            and not ticket.resend
            and ticket.not_before - moment <= EARLY_TOLERANCE_SECONDS
        ]
        return self._known_delivered(pairs)

    def retry(
        self,
        ticket: RetryTicket,
        *,
        deadline: float | None,
        delivered: Container[Pair] | None = None,
        answered: list[Pair] | None = None,
    ) -> None:
        """One ticket from the retry queue: sent round again if early, dropped as done if the ledger knows the
        pair delivered, else delivered and settled. ``delivered`` and ``answered``: see :meth:`redeliver`.

        Raises when the outcome could be kept neither in the queue nor in S3: the message then stays on the queue.
        """
        if ticket.not_before - self._clock() > EARLY_TOLERANCE_SECONDS:
            # SQS delays at most 15 minutes: a longer wait is several hops.
            handoff = _Handoff(self)
            handoff.requeue(ticket, None)
            handoff.flush()
            return
        event = ticket.event or event_from_envelope(self._quarantine.read(ticket.event_ref or ""), ticket.webhook_id)
        if ticket.destination == EVERY_DESTINATION:
            self.publish(event, deadline=deadline)
            return
        try:
            destination = self.destination(ticket.destination)
        except DestinationUnknownError:
            key = self._quarantine.keep_dead_letter(ticket, event, reason="unknown destination", disable_endpoint=False)
            count("DeliveryExhausted")
            logger.error("retry ticket for a destination no longer configured", extra={"key": key})
            return
        self.redeliver(destination, event, deadline=deadline, ticket=ticket, delivered=delivered, answered=answered)

    def record_delivered(self, pairs: Collection[Pair]) -> None:
        """Tell the delivery ledger these pairs were answered 2xx (those gathered in ``answered``); a ledger that
        cannot be written only lets a redelivery of them through again, with the same ``webhook-id``."""
        self._record(pairs)

    def enable(
        self,
        name: str,
        *,
        time_left: Callable[[], float],
        on_replayed: Callable[[ReplayProgress], None] | None = None,
    ) -> ReplayProgress:
        """Re-enable a destination: its parked events go out in order through this relay's delivery path."""
        destination = self.destination(name)
        return self._health.enable(
            name,
            lambda event: self._deliver(event, [destination], replay=True)[0],
            time_left=time_left,
            on_replayed=on_replayed,
        )

    def destination(self, name: str) -> Destination:
        """The configured destination called ``name``."""
        for destination in self._config().destinations:
            if destination.name == name:
                return destination
        raise DestinationUnknownError(f"no destination is called {name!r}")

    def _deliver(
        self,
        event: RelayEvent,
        destinations: Sequence[Destination],
        *,
        max_timeout_seconds: float | None = None,
        deadline: float | None = None,
        replay: bool,
        ticket: RetryTicket | None = None,
        resend: bool = False,
        delivered: Container[Pair] | None = None,
        answered: list[Pair] | None = None,
    ) -> list[DeliveryResult]:
        handoff = _Handoff(self, resend=resend)
        targets: list[tuple[WebhookTarget, Sequence[str]]] = []
        held: list[DeliveryResult] = []
        writes: list[tuple[Destination, Future[list[DeliveryResult]]]] = []
        done: list[DeliveryResult] = []
        if not resend:
            if delivered is None:
                delivered = self._known_delivered([(d.name, event.webhook_id) for d in destinations if _recorded(d)])
            done = [
                DeliveryResult.already(event, d.name) for d in destinations if (d.name, event.webhook_id) in delivered
            ]
            if done:
                count("DeliverySkipped", len(done))
                skipped = {result.destination for result in done}
                destinations = [d for d in destinations if d.name not in skipped]
        for destination in destinations:
            gate = self._health.gate(destination, event, replay=replay)
            if gate.decision != "deliver":
                held.append(_held(event, destination.name, gate))
                continue
            if destination.target is not None:
                writes.append((destination, self._writers.submit(self._write, destination, event, deadline)))
                continue
            try:
                secrets = [self._secrets.resolve(ref) for ref in destination.secrets]
            except SecretUnavailableError as exc:
                logger.error("webhook secret unavailable", extra={"destination": destination.name, "reason": str(exc)})
                count("DeliveryFailed")
                held.append(DeliveryResult.unsent(event, destination.name, f"not sent: {exc}", retryable=True))
                continue
            target = destination
            if max_timeout_seconds is not None and destination.timeout_seconds > max_timeout_seconds:
                target = replace(destination, timeout_seconds=max_timeout_seconds)
            targets.append((target, secrets))
        by_name = {destination.name: destination for destination in destinations}
        results: list[DeliveryResult] = []
        new_answers: list[Pair] = []

        def settle(result: DeliveryResult) -> None:
            # Called as each result is known: a failure is on its way to the retry queue before the next is read.
            destination = by_name[result.destination]
            if self._health.record(destination, event, result, replay=replay):
                result = replace(result, held="parked")
            if result.ok and _recorded(destination):
                new_answers.append((destination.name, event.webhook_id))
            handoff.settle(destination, event, ticket, result, replay=replay)
            results.append(result)

        self._fanout.deliver(event, targets, deadline=deadline, on_result=settle)
        written = [
            result for destination, write in writes for result in _by_deadline(write, destination, event, deadline)
        ]
        _count(written)
        for result in written:
            settle(result)
        # Recorded here, or by the caller gathering ``answered`` (a retry batch: one ledger write for all of it).
        (self._record if answered is None else answered.extend)(new_answers)
        for result in held:
            handoff.settle(by_name[result.destination], event, ticket, result, replay=replay)
        handoff.flush()
        return done + results + held

    def _known_delivered(self, pairs: Collection[Pair]) -> frozenset[Pair]:
        """The pairs the ledger knows as delivered; none when there is no ledger or it cannot be read."""
        if self._ledger is None or not pairs:
            return frozenset()
        try:
            return frozenset(self._ledger.delivered(pairs))
        except DeliveryLedgerError as exc:
            # At least once beats at most once: delivered again, with the same webhook-id.
            logger.warning("delivery ledger unavailable; delivering", extra={"reason": str(exc)})
            count("DeliveryLedgerUnavailable")
            return frozenset()

    def _record(self, pairs: Collection[Pair]) -> None:
        if self._ledger is None or not pairs:
            return
        try:
            self._ledger.record(pairs)
        except DeliveryLedgerError as exc:
            # Nothing is lost: a redelivery of these pairs would only arrive twice, with the same webhook-id.
            logger.warning("delivery ledger not written", extra={"reason": str(exc), "pairs": len(pairs)})
            count("DeliveryLedgerUnavailable")

    def _write(self, destination: Destination, event: RelayEvent, deadline: float | None) -> list[DeliveryResult]:
        # No attempt (first or retry) starts past the deadline; what is refused fails retryably, like any write.
        with attempts_until(deadline):
            return self._aws.deliver(destination, [event])

    def _keep_undecided(self, destination: Destination, event: RelayEvent) -> None:
        """Fail closed, but keep: an event a filter of ``destination`` cannot decide on is kept, not dropped."""
        reason = destination.undecided(event)
        if reason is None:
            return
        key = self._quarantine.keep_undecided(event, destination.name, reason)
        logger.warning(
            "event kept: a destination filter cannot decide on it",
            extra={"destination": destination.name, "webhook_id": event.webhook_id, "reason": reason, "key": key},
        )
        count("FilterUndecided")


class _Handoff:
    """Settles the attempts of one event (or one ticket) and sends their retry tickets in batches."""

    def __init__(self, relay: Relay, *, resend: bool = False) -> None:
        self._relay = relay
        self._resend = resend
        self._pending: list[tuple[RetryTicket, RelayEvent | None]] = []

    def settle(
        self,
        destination: Destination,
        event: RelayEvent,
        ticket: RetryTicket | None,
        result: DeliveryResult,
        *,
        replay: bool,
    ) -> None:
        if result.ok:
            if ticket is not None:
                count("DeliveryRecovered")
            return
        if result.held == "parked" or (replay and result.held is not None):
            return  # kept in the health store until the destination is enabled again
        if result.held is not None:
            self._defer(destination, event, ticket or self._fresh(destination, event), result)
            return
        number = (ticket.attempted if ticket else 0) + 1
        policy = destination.retry_policy
        outcome = verdict(result, number, policy)
        attempt = Attempt.of(number, result, self._relay._clock())
        if outcome is Verdict.RETRY:
            not_before = self._relay._clock() + wait_before(number + 1, policy, result, self._relay._rng)
            following = (
                ticket.after(attempt, not_before)
                if ticket
                else first_ticket(destination.name, event, attempt, not_before, resend=self._resend)
            )
            self.requeue(following, event)
            count("DeliveryRetried")
            return
        dead = (
            ticket.after(attempt, 0.0)
            if ticket
            else first_ticket(destination.name, event, attempt, 0.0, resend=self._resend)
        )
        self._dead_letter(dead, event, outcome.value, disable_endpoint=outcome is Verdict.GONE)

    def _defer(self, destination: Destination, event: RelayEvent, ticket: RetryTicket, result: DeliveryResult) -> None:
        """Not attempted: the same attempt later, when the destination may take it. A spent rate waits out its
        second, uncounted; an unwell destination (an open breaker, or disabled with its event not parked) puts the
        ticket off one schedule step further each time, and dead-letters it once the schedule's horizon has passed
        (:func:`deferral_wait`)."""
        told = float(result.retry_after_seconds or 1)  # what is left of the rate's second, or of the cooldown
        moment = self._relay._clock()
        if result.held == "paced":
            self.requeue(ticket.later(moment + told), event)
            return
        wait = deferral_wait(ticket, destination.retry_policy, told, moment, self._relay._rng)
        if wait is None:
            self._dead_letter(ticket, event, "deferred", disable_endpoint=False)
            return
        self.requeue(ticket.deferred(moment + wait, moment), event)

    def _fresh(self, destination: Destination, event: RelayEvent) -> RetryTicket:
        """The ticket of a delivery deferred before its first attempt."""
        return RetryTicket(destination.name, event.webhook_id, event, 0.0, resend=self._resend)

    def _dead_letter(self, dead: RetryTicket, event: RelayEvent, reason: str, *, disable_endpoint: bool) -> None:
        key = self._relay._quarantine.keep_dead_letter(dead, event, reason=reason, disable_endpoint=disable_endpoint)
        count("DeliveryExhausted")
        logger.error(
            "delivery dead-lettered",
            extra={
                "destination": dead.destination,
                "webhook_id": event.webhook_id,
                "reason": reason,
                "attempts": dead.attempted,
                "deferrals": dead.deferrals,
                "disable_endpoint": disable_endpoint,
                "key": key,
            },
        )

    def requeue(self, ticket: RetryTicket, event: RelayEvent | None) -> None:
        self._pending.append((ticket, event or ticket.event))
        if len(self._pending) >= 10:
            self.flush()

    def flush(self) -> None:
        """Send what is pending; what SQS refuses is kept in S3, and if S3 fails too this raises."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        refused = {id(ticket) for ticket in self._relay._retry_queue.send([ticket for ticket, _ in pending])}
        for ticket, event in pending:
            if id(ticket) in refused:
                key = self._relay._quarantine.keep_undelivered(ticket, event)
                count("RetryQueueFallback")
                logger.warning("retry ticket kept in S3", extra={"destination": ticket.destination, "key": key})


def _held(event: RelayEvent, destination: str, gate: Gate) -> DeliveryResult:
    if gate.decision == "parked":
        return replace(
            DeliveryResult.unsent(event, destination, f"parked: {gate.reason}", retryable=False), held="parked"
        )
    return replace(
        DeliveryResult.unsent(event, destination, f"deferred: {gate.reason}", retryable=True),
        held="paced" if gate.paced else "deferred",
        retry_after_seconds=gate.retry_after_seconds,
    )


def _recorded(destination: Destination) -> bool:
    """Whether the ledger keeps this destination's 2xx answers: not for an S3 archive, whose rewrite of an event
    is idempotent (the same key, the same bytes), so that a skip would save nothing but cost a read and a write."""
    return destination.kind != "s3"


def _by_deadline(
    write: Future[list[DeliveryResult]], destination: Destination, event: RelayEvent, deadline: float | None
) -> list[DeliveryResult]:
    """The write's results, or once the deadline has passed a retryable failure: the event goes to the retry queue
    while the write, if it still lands, is one the destination's idempotency (or the ``webhook-id``) absorbs."""
    try:
        return write.result(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        error = f"{destination.kind} write not done by the invocation's deadline"
        logger.warning("destination write cut short", extra={"destination": destination.name, "kind": destination.kind})
        return [DeliveryResult.unsent(event, destination.name, error, retryable=True)]


def _count(written: Sequence[DeliveryResult]) -> None:
    """The AWS kinds' outcomes in the delivery metrics (the fan-out records its own)."""
    succeeded = sum(result.ok for result in written)
    if succeeded:
        count("DeliverySucceeded", succeeded)
    if succeeded < len(written):
        count("DeliveryFailed", len(written) - succeeded)
