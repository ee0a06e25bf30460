"""The retry queue's consumer: each ticket is a delivery waiting for its next attempt, or a replay's next step.

Partial batch responses (ReportBatchItemFailures, set in the packaged template): only the tickets whose outcome
could not be kept return to the queue, and tickets the invocation had no time left for return untouched. The
delivery ledger is read once for the whole batch: a ticket whose pair was answered 2xx already is dropped as done;
and written once, after the batch, with the pairs its tickets got 2xx for.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint, SQSEvent

from chalicelib.deadlines import deadline_of
from chalicelib.dependencies import archive_replays, relay
from chalicelib.handlers.unreadable import keep_unreadable
from chalicelib.observability import logger, observed
from chalicelib.retries import RetryTicket, RetryTicketInvalidError
from chalicelib.settings import retry_queue_name

if TYPE_CHECKING:
    from chalicelib.archive_replay import ReplayTicket
    from chalicelib.ledger import Pair

retries = Blueprint(__name__)

# A ticket needs at least this much of the invocation's time to be worth starting; otherwise it goes back.
MIN_ATTEMPT_SECONDS = 0.5


@retries.on_sqs_message(queue=retry_queue_name(), batch_size=10, name="retry_deliveries")
@observed
def retry_deliveries(event: SQSEvent) -> dict[str, list[dict[str, str]]]:
    """Attempt each ticket's delivery again; answer the message ids to leave on the queue."""
    # Imported on first use, with the relay: the module loads only what Lambda needs to find the handler.
    from chalicelib.archive_replay import ReplayTicket  # noqa: PLC0415

    records: list[dict[str, Any]] = list(event.to_dict().get("Records") or [])
    work: list[tuple[str, RetryTicket | ReplayTicket]] = []
    for record in records:
        message_id = str(record.get("messageId", ""))
        body = str(record.get("body", ""))
        replay = ReplayTicket.of(body)
        if replay is not None:
            work.append((message_id, replay))
            continue
        try:
            work.append((message_id, RetryTicket.from_json(body)))
        except RetryTicketInvalidError as exc:
            keep_unreadable(
                "retry-queue",
                record_id=message_id,
                reason=str(exc),
                record=record.get("body"),
                metric="InvalidRetryTicket",
            )
    delivered = relay().delivered_among([ticket for _, ticket in work if isinstance(ticket, RetryTicket)])
    answered: list[Pair] = []
    try:
        failures = _work_through(event, work, delivered, answered)
    finally:
        # One ledger write for the batch's 2xx answers (an invocation killed before it only lets them through
        # again if the batch is redelivered, with the same webhook-ids).
        relay().record_delivered(answered)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def _work_through(
    event: SQSEvent,
    work: list[tuple[str, RetryTicket | ReplayTicket]],
    delivered: frozenset[Pair],
    answered: list[Pair],
) -> list[str]:
    """Each ticket in turn while the invocation's time allows; the message ids to leave on the queue."""
    failures: list[str] = []
    for index, (message_id, ticket) in enumerate(work):
        deadline = deadline_of(event.context)
        if deadline is not None and deadline - time.monotonic() < MIN_ATTEMPT_SECONDS:
            left = [message_id for message_id, _ in work[index:]]
            logger.info("retry batch cut short by the invocation's time", extra={"returned": len(left)})
            failures += left
            break
        if not isinstance(ticket, RetryTicket):
            try:
                archive_replays().work(ticket, deadline=deadline)
            except Exception:
                logger.exception("replay step not done; it stays on the queue", extra={"replay_id": ticket.replay_id})
                failures.append(message_id)
            continue
        try:
            relay().retry(ticket, deadline=deadline, delivered=delivered, answered=answered)
        except Exception:
            logger.exception(
                "retry ticket not settled; it stays on the queue",
                extra={"destination": ticket.destination, "webhook_id": ticket.webhook_id},
            )
            failures.append(message_id)
    return failures
