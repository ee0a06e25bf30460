"""The chat stream: every item Connect publishes on the relay's topic becomes an event for the destinations."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, SNSEvent

from chalicelib.chat_items import ChatItemInvalidError, parse_sns_record
from chalicelib.dependencies import quarantine, relay
from chalicelib.events import event_from_chat_item
from chalicelib.observability import contact_keys, count, logger, observed
from chalicelib.settings import deploy_time

chat_stream = Blueprint(__name__)


class StreamRecordEvent(SNSEvent):
    """Chalice's SNSEvent without its KeyError on a record that lacks ``Subject`` or ``MessageAttributes``.

    Such a record must reach the handler, to be read with fallbacks or quarantined, not crash the invocation.
    """

    def _extract_attributes(self, event_dict: dict[str, Any]) -> None:
        sns = _sns_record(event_dict)
        self.message = sns.get("Message")  # type: ignore[assignment]
        self.subject = sns.get("Subject")  # type: ignore[assignment]
        self.message_attributes = sns.get("MessageAttributes") or {}


def _sns_record(event_dict: dict[str, Any]) -> dict[str, Any]:
    records = event_dict.get("Records")
    first = records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}
    sns = first.get("Sns")
    return sns if isinstance(sns, dict) else {}


@chat_stream.on_sns_message(
    topic=deploy_time("STREAMING_TOPIC_ARN", "connect-chat-relay-stream"), name="on_chat_message"
)
@observed
def on_chat_message(event: SNSEvent) -> None:
    """Parse the item, publish its event; keep what cannot be read and return, so SNS does not redeliver it."""
    record = _sns_record(event.to_dict())
    try:
        item = parse_sns_record(record)
    except ChatItemInvalidError as exc:
        sns_message_id = str(record.get("MessageId", "unknown"))
        # If this write fails the invocation fails too, and Lambda's retries and on-failure destination keep it.
        key = quarantine().keep_invalid(
            source="chat-stream", record_id=sns_message_id, reason=exc.reason, record=record
        )
        logger.warning(
            "invalid chat item quarantined", extra={"sns_message_id": sns_message_id, "reason": exc.reason, "key": key}
        )
        count("InvalidChatItem")
        return
    with contact_keys(initial_contact_id=item.initial_contact_id, contact_id=item.contact_id):
        relay_event = event_from_chat_item(item)
        results = relay().publish(relay_event)
        logger.debug(
            "chat item relayed",
            extra={
                "item_id": item.item_id,
                "type": relay_event.type,
                "delivered": sum(r.ok for r in results),
                "failed": sum(not r.ok for r in results),
            },
        )


# The handler Lambda calls builds its event with this class; set here, so it holds when Lambda loads this module.
on_chat_message.event_class = StreamRecordEvent
