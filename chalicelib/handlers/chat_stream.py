"""The chat stream: every item Connect publishes on the relay's topic becomes an event for the destinations."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, SNSEvent

from chalicelib.chat_items import ChatItemInvalidError, parse_sns_record
from chalicelib.deadlines import deadline_of
from chalicelib.dependencies import attachment_links, relay, transcript_service
from chalicelib.events import event_from_chat_item
from chalicelib.handlers.unreadable import keep_unreadable
from chalicelib.observability import contact_keys, logger, observed
from chalicelib.settings import deploy_time
from chalicelib.transcripts import LEFT_OUT

chat_stream = Blueprint(__name__)


@chat_stream.on_sns_message(
    topic=deploy_time("STREAMING_TOPIC_ARN", "connect-chat-relay-stream"), name="on_chat_message"
)
@observed
def on_chat_message(event: SNSEvent) -> None:
    """Relay every record of the event; keep what cannot be read and return, so SNS does not redeliver it.

    One record's failure never stops the others: a record whose event cannot be built is kept; any other failure
    (an AWS call) is raised once every record has had its turn, so Lambda retries the whole event (at least once).
    """
    records = event.to_dict()["Records"]
    failures: list[Exception] = []
    deadline = deadline_of(event.context)
    for record in records:
        try:
            _relay_record(record, deadline)
        except Exception as exc:
            logger.exception("chat record failed; the invocation fails after the other records")
            failures.append(exc)
    if failures:
        raise failures[0]


def _sns_of(record: object) -> dict[str, Any] | None:
    sns = record.get("Sns") if isinstance(record, dict) else None
    return sns if isinstance(sns, dict) else None


def _relay_record(record: object, deadline: float | None) -> None:
    sns = _sns_of(record)
    if sns is None:
        _keep_invalid(record, None, "the record has no Sns object")
        return
    try:
        item = parse_sns_record(sns)
        relay_event = event_from_chat_item(item)
        relay_event.body  # noqa: B018 - serialised here, where a failure keeps the item, not in the fan-out
    except ChatItemInvalidError as exc:
        _keep_invalid(sns, sns.get("MessageId"), exc.reason)
        return
    except Exception as exc:
        # A bug, or an input nobody foresaw: the item is kept with what went wrong, and the other records go on.
        logger.exception("chat item event could not be built")
        _keep_invalid(sns, sns.get("MessageId"), f"its event could not be built ({type(exc).__name__})")
        return
    with contact_keys(initial_contact_id=item.initial_contact_id, contact_id=item.contact_id):
        links = attachment_links() if item.attachments else None
        if links is not None:
            relay_event = links.add_links(item, relay_event)
        # Bounded by Lambda's clock: what a timeout would cut short is handed to the retry queue instead.
        results = relay().publish(relay_event, deadline=deadline)
        transcripts = transcript_service()
        if transcripts is not None and relay_event.type not in LEFT_OUT:
            # After publishing, so the item is archived before the session record says it came.
            transcripts.item_relayed(item.initial_contact_id, ended=relay_event.type == "chat.ended")
        logger.debug(
            "chat item relayed",
            extra={
                "item_id": item.item_id,
                "type": relay_event.type,
                "delivered": sum(r.ok for r in results),
                "failed": sum(not r.ok for r in results),
            },
        )


def _keep_invalid(record: object, message_id: object, reason: str) -> None:
    """Keep what came, as it came, with the reason (under its SNS MessageId when it has a usable one)."""
    record_id = message_id if isinstance(message_id, str) else None
    keep_unreadable("chat-stream", record_id=record_id, reason=reason, record=record, metric="InvalidChatItem")
