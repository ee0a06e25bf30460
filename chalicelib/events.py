"""The events the relay publishes: a versioned envelope in the Standard Webhooks convention.

``{"type": "chat.message", "timestamp": "<the item's AbsoluteTime>", "version": 1, "data": {...}}``

:data:`EVENT_TYPES` is the closed catalogue; each type has a JSON Schema in ``schemas/<type>.schema.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from chalicelib.strict_json import reject_constant

if TYPE_CHECKING:
    from chalicelib.chat_items import ChatItem

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class RelayEvent:
    """One event for consumers; ``webhook_id`` is the same on every redelivery and retry."""

    type: str
    timestamp: str
    data: dict[str, Any]
    webhook_id: str

    def envelope(self) -> dict[str, Any]:
        """The JSON object consumers receive."""
        return {"type": self.type, "timestamp": self.timestamp, "version": ENVELOPE_VERSION, "data": self.data}

    @cached_property
    def body(self) -> bytes:
        """The body, serialised once and sent byte for byte to every destination (signatures cover it).

        Always RFC 8259 JSON in UTF-8: a non-finite number raises ``ValueError`` and an unpaired surrogate
        ``UnicodeEncodeError`` here, never reaching a receiver as ``Infinity`` or invalid UTF-8.
        """
        envelope = json.dumps(self.envelope(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return envelope.encode("utf-8")


EVENT_TYPES: Final = (
    "chat.message",
    "chat.typing",
    "chat.participant.joined",
    "chat.participant.left",
    "chat.participant.idle",
    "chat.participant.returned",
    "chat.participant.invited",
    "chat.participant.auto_disconnected",
    "chat.participant.display_name_updated",
    "chat.transfer.succeeded",
    "chat.transfer.failed",
    "chat.ended",
    "chat.rehydrated",
    "chat.receipt",
    "chat.attachment",
    "chat.event",
    "chat.transcript.completed",
    "call.started",
    "chat.transcript.reconciled",
)
SCHEMA_DIR: Final = Path(__file__).parent / "schemas"

INTERACTIVE_CONTENT_TYPES: Final = frozenset(
    {
        "application/vnd.amazonaws.connect.message.interactive",
        "application/vnd.amazonaws.connect.message.interactive.response",
    }
)
JSON_CONTENT_TYPE: Final = "application/json"
# Deeper JSON content is passed on as text only: re-serialising it could exceed the interpreter's recursion limit.
MAX_CONTENT_JSON_DEPTH: Final = 64
_LARGEST_DOUBLE: Final = sys.float_info.max

_EVENT_CONTENT_TYPE_PREFIX: Final = "application/vnd.amazonaws.connect.event."
_CHAT_EVENT: Final = ("chat.event", None)


# Connect Type -> (event type, receipt type) when the Type alone decides.
_BY_CONNECT_TYPE: Final[Mapping[str, tuple[str, str | None]]] = {
    "MESSAGE": ("chat.message", None),
    "ATTACHMENT": ("chat.attachment", None),
}
# Types whose ContentType decides; the legacy ones also decide by themselves when the ContentType is unknown.
_BY_EVENT_CONNECT_TYPE: Final[Mapping[str, tuple[str, str | None]]] = {
    "EVENT": _CHAT_EVENT,
    "TYPING": ("chat.typing", None),
    "PARTICIPANT_JOINED": ("chat.participant.joined", None),
    "PARTICIPANT_LEFT": ("chat.participant.left", None),
    "CHAT_ENDED": ("chat.ended", None),
    "TRANSFER_SUCCEEDED": ("chat.transfer.succeeded", None),
    "TRANSFER_FAILED": ("chat.transfer.failed", None),
    "MESSAGE_DELIVERED": ("chat.receipt", "delivered"),
    "MESSAGE_READ": ("chat.receipt", "read"),
    "MESSAGEMETADATA": ("chat.receipt", "metadata"),
}
_BY_EVENT_CONTENT_TYPE: Final[Mapping[str, tuple[str, str | None]]] = {
    _EVENT_CONTENT_TYPE_PREFIX + suffix: mapped
    for suffix, mapped in (
        ("typing", ("chat.typing", None)),
        ("participant.joined", ("chat.participant.joined", None)),
        ("participant.left", ("chat.participant.left", None)),
        ("participant.idle", ("chat.participant.idle", None)),
        ("participant.returned", ("chat.participant.returned", None)),
        ("participant.invited", ("chat.participant.invited", None)),
        ("participant.autodisconnection", ("chat.participant.auto_disconnected", None)),
        ("participant.displayname.updated", ("chat.participant.display_name_updated", None)),
        ("transfer.succeeded", ("chat.transfer.succeeded", None)),
        ("transfer.failed", ("chat.transfer.failed", None)),
        ("chat.ended", ("chat.ended", None)),
        ("chat.rehydrated", ("chat.rehydrated", None)),
        ("message.read", ("chat.receipt", "read")),
        ("message.delivered", ("chat.receipt", "delivered")),
        ("message.metadata", ("chat.receipt", "metadata")),
    )
}


def webhook_id_for(item_id: str) -> str:
    """The Standard Webhooks id of an item's event: stable across redeliveries, and never containing ``.``."""
    return "msg_" + hashlib.sha256(item_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def event_from_chat_item(item: ChatItem) -> RelayEvent:
    """The event consumers receive for one chat item; every item maps to exactly one event type."""
    event_type, receipt_type = _classify(item)
    data: dict[str, Any] = {
        "item_id": item.item_id,
        "initial_contact_id": item.initial_contact_id,
        "contact_id": item.contact_id,
        "related_contact_id": item.related_contact_id,
        "instance_id": item.instance_id,
        "participant": {"id": item.participant_id, "role": item.participant_role, "display_name": item.display_name},
        "visibility": item.visibility,
        "connect_type": item.type,
        "content_type": item.content_type,
        "content": item.content,
    }
    if event_type == "chat.message":
        if item.content_type in INTERACTIVE_CONTENT_TYPES:
            parsed = _content_json(item.content)
            data["interactive"] = parsed if isinstance(parsed, dict) else None
        elif item.content_type == JSON_CONTENT_TYPE:
            data["json"] = _content_json(item.content)
    elif event_type == "chat.attachment":
        data["attachments"] = [
            {
                "attachment_id": attachment.attachment_id,
                "name": attachment.name,
                "content_type": attachment.content_type,
                "status": attachment.status,
            }
            for attachment in item.attachments
        ]
    elif event_type == "chat.receipt":
        data["receipt_type"] = receipt_type
        data["receipts"] = _receipts(item.message_metadata)
    return RelayEvent(type=event_type, timestamp=item.absolute_time, data=data, webhook_id=webhook_id_for(item.item_id))


def _classify(item: ChatItem) -> tuple[str, str | None]:
    fixed = _BY_CONNECT_TYPE.get(item.type)
    if fixed is not None:
        return fixed
    legacy = _BY_EVENT_CONNECT_TYPE.get(item.type)
    if legacy is None:
        return _CHAT_EVENT
    if item.content_type is None:
        return legacy
    return _BY_EVENT_CONTENT_TYPE.get(item.content_type, legacy)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("number out of range")
    return number


def _finite_int(text: str) -> int:
    number = int(text)
    if abs(number) > _LARGEST_DOUBLE:
        raise ValueError("number out of range")
    return number


# I-JSON (RFC 7493) as far as interoperability needs: numbers a double holds, so no consumer reads Infinity.
_CONTENT_JSON: Final = json.JSONDecoder(
    parse_constant=reject_constant, parse_float=_finite_float, parse_int=_finite_int
)


def _content_json(content: str | None) -> Any:
    """Content parsed as JSON, or None when it is absent, not JSON, or not JSON every consumer can read.

    Not readable everywhere (I-JSON, RFC 7493): a number beyond a double's range (``1e400``, which would be
    sent as ``Infinity``) or an escaped unpaired surrogate (``"\\ud800"``, which has no UTF-8 form). Such content
    still reaches consumers verbatim, as text, in ``content``. Also None when nested too deep to pass on safely.
    """
    if content is None:
        return None
    try:
        parsed = _CONTENT_JSON.decode(content)
    except (ValueError, RecursionError):
        return None
    if content.count("{") + content.count("[") > MAX_CONTENT_JSON_DEPTH and _depth(parsed) > MAX_CONTENT_JSON_DEPTH:
        return None
    # Content is valid UTF-8 (the item was checked), so only a \uDXXX escape can put a surrogate in ``parsed``.
    if ("\\ud" in content or "\\uD" in content) and not _encodes_as_utf8(parsed):
        return None
    return parsed


def _encodes_as_utf8(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > MAX_CONTENT_JSON_DEPTH:
                return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _receipts(metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if metadata is None:
        return []
    message_id = metadata.get("MessageId")
    receipts = metadata.get("Receipts") or ()
    if not receipts and message_id is not None:
        # A receipt without per-recipient detail still says which message it is about.
        return [{"message_id": message_id, "recipient_participant_id": None, "delivered_at": None, "read_at": None}]
    return [
        {
            "message_id": message_id,
            "recipient_participant_id": receipt.get("RecipientParticipantId"),
            "delivered_at": receipt.get("DeliveredTimestamp"),
            "read_at": receipt.get("ReadTimestamp"),
        }
        for receipt in receipts
    ]
