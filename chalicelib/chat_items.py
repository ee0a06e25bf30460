"""Connect's chat items, as the streaming SNS topic delivers them, parsed once into a typed :class:`ChatItem`.

The SNS ``Message`` is a JSON string holding Connect's chat ``Item``; the message attributes repeat some of its
fields and add ``InstanceId``, ``AccountId`` and ``MessageVisibility``. The body is authoritative for the fields it
carries; an attribute only fills a field the body leaves out. A visibility or instance id found in neither is
``None`` (unknown), never a default: the destinations' filters fail closed on it. Unknown ``Type`` and
``ContentType`` values are data (Connect adds new ones), so only a malformed item is rejected, with a
:class:`ChatItemInvalidError` naming why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NoReturn

from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import RelayError
from chalicelib.strict_json import STRICT_JSON

MAX_ITEM_ID_LENGTH: Final = 256
MAX_CONTENT_LENGTH: Final = 16_384
MAX_MESSAGE_BYTES: Final = 256 * 1024
VISIBILITIES: Final = frozenset({"AGENT", "CUSTOMER", "ALL"})

# RFC 3339 as JSON Schema's "date-time" reads it; fromisoformat then rejects impossible dates (February 30).
_RFC3339: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
_NO_ATTRIBUTES: Final[Mapping[str, Any]] = {}


class ChatItemInvalidError(RelayError):
    """An SNS record does not hold a usable chat item; ``reason`` says why without echoing its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    """One attachment's metadata; Connect sends no download URL."""

    attachment_id: str
    name: str | None
    content_type: str | None
    status: str | None


@dataclass(frozen=True)
class ChatItem:
    """One chat item (message, event, attachment, receipt) of a contact's chat, validated."""

    item_id: str
    type: str
    content_type: str | None
    content: str | None
    absolute_time: str
    initial_contact_id: str
    contact_id: str
    related_contact_id: str | None
    instance_id: str | None
    participant_id: str | None
    participant_role: str | None
    display_name: str | None
    visibility: str | None
    attachments: tuple[Attachment, ...]
    message_metadata: dict[str, Any] | None


def parse_sns_record(sns: Mapping[str, Any]) -> ChatItem:
    """Parse the ``Sns`` object of one Lambda SNS record into a :class:`ChatItem`.

    Raises :class:`ChatItemInvalidError` for anything malformed and never any other exception, whatever the input.
    """
    message = sns.get("Message")
    if not isinstance(message, str):
        _invalid("Message is missing" if message is None else "Message is not a string")
    body = _load_body(message)
    attributes = sns.get("MessageAttributes")
    if not isinstance(attributes, Mapping):
        attributes = _NO_ATTRIBUTES
    item_id = _required(_body_text(body, "Id"), "Id", MAX_ITEM_ID_LENGTH)
    absolute_time = _required(_body_text(body, "AbsoluteTime"), "AbsoluteTime")
    if not _is_rfc3339(absolute_time):
        _invalid("AbsoluteTime is not an RFC 3339 timestamp")
    initial_contact_id, contact_id = _contact_ids(body, attributes)
    item = ChatItem(
        item_id=item_id,
        type=_required(_text(body, attributes, "Type"), "Type"),
        content_type=_text(body, attributes, "ContentType"),
        content=_limited(_body_text(body, "Content"), "Content", MAX_CONTENT_LENGTH),
        absolute_time=absolute_time,
        initial_contact_id=initial_contact_id,
        contact_id=contact_id,
        related_contact_id=_limited(_body_text(body, "RelatedContactId"), "RelatedContactId", MAX_CONTACT_ID),
        instance_id=_text(body, attributes, "InstanceId"),
        participant_id=_body_text(body, "ParticipantId"),
        participant_role=_text(body, attributes, "ParticipantRole"),
        display_name=_body_text(body, "DisplayName"),
        visibility=_visibility(body, attributes),
        attachments=_attachments(body.get("Attachments")),
        message_metadata=_message_metadata(body.get("MessageMetadata")),
    )
    # A lone surrogate (only a \uDXXX escape can produce one here) would make the event body unencodable as UTF-8.
    if ("\\ud" in message or "\\uD" in message) and not _encodes_as_utf8(body):
        _invalid("Message contains an unpaired surrogate")
    return item


def _invalid(reason: str) -> NoReturn:
    raise ChatItemInvalidError(reason) from None


def _load_body(message: str) -> dict[str, Any]:
    _check_message_size(message)
    try:
        body = STRICT_JSON.decode(message)
    except (ValueError, RecursionError):
        _invalid("Message is not JSON")
    if not isinstance(body, dict):
        _invalid("Message is not a JSON object")
    return body


def _check_message_size(message: str) -> None:
    if len(message) > MAX_MESSAGE_BYTES:
        _invalid(f"Message exceeds {MAX_MESSAGE_BYTES} bytes")
    if message.isascii():
        return
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError:
        _invalid("Message is not valid UTF-8")
    if size > MAX_MESSAGE_BYTES:
        _invalid(f"Message exceeds {MAX_MESSAGE_BYTES} bytes")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encodes_as_utf8(body: dict[str, Any]) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _is_rfc3339(timestamp: str) -> bool:
    if _RFC3339.fullmatch(timestamp) is None:
        return False
    try:
        datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    return True


def _body_text(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    _invalid(f"{key} is not a string")


def _attribute(attributes: Mapping[str, Any], key: str) -> str | None:
    # Attributes are a convenience copy, so a malformed one is ignored rather than fatal.
    entry = attributes.get(key)
    if isinstance(entry, Mapping) and entry.get("Type", "String") == "String":
        value = entry.get("Value")
        if isinstance(value, str) and _is_utf8(value):
            return value
    return None


def _text(body: Mapping[str, Any], attributes: Mapping[str, Any], key: str) -> str | None:
    value = _body_text(body, key)
    return _attribute(attributes, key) if value is None else value


def _required(value: str | None, key: str, max_length: int | None = None) -> str:
    if not value:
        _invalid(f"{key} is missing" if value is None else f"{key} is empty")
    if max_length is not None:
        _limited(value, key, max_length)
    return value


def _limited(value: str | None, key: str, max_length: int) -> str | None:
    if value is not None and len(value) > max_length:
        _invalid(f"{key} exceeds {max_length} characters")
    return value


def _contact_ids(body: Mapping[str, Any], attributes: Mapping[str, Any]) -> tuple[str, str]:
    """(InitialContactId, ContactId): at least one is needed, and stands in for the other."""
    initial_contact_id = _limited(_text(body, attributes, "InitialContactId"), "InitialContactId", MAX_CONTACT_ID)
    contact_id = _limited(_text(body, attributes, "ContactId"), "ContactId", MAX_CONTACT_ID)
    if not initial_contact_id:
        if not contact_id:
            _invalid("InitialContactId and ContactId are missing")
        return contact_id, contact_id
    return initial_contact_id, contact_id or initial_contact_id


def _visibility(body: Mapping[str, Any], attributes: Mapping[str, Any]) -> str | None:
    """The body's MessageVisibility, else the attribute's; None when neither says (never a default of ALL)."""
    visibility = body.get("MessageVisibility")
    if visibility is None:
        if "MessageVisibility" not in attributes:
            return None
        visibility = _attribute(attributes, "MessageVisibility")
    # Present but unreadable or unknown: refuse rather than guess an audience.
    if not isinstance(visibility, str) or visibility not in VISIBILITIES:
        _invalid("MessageVisibility is not AGENT, CUSTOMER or ALL")
    return visibility


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        _invalid("Attachments is not a list")
    attachments = []
    for index, entry in enumerate(raw):
        where = f"Attachments[{index}]"
        if not isinstance(entry, dict):
            _invalid(f"{where} is not an object")
        attachment_id = _nested_text(entry, "AttachmentId", where)
        if not attachment_id:
            _invalid(f"{where}.AttachmentId is missing")
        attachments.append(
            Attachment(
                attachment_id=attachment_id,
                name=_nested_text(entry, "AttachmentName", where),
                content_type=_nested_text(entry, "ContentType", where),
                status=_nested_text(entry, "Status", where),
            )
        )
    return tuple(attachments)


def _message_metadata(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        _invalid("MessageMetadata is not an object")
    _nested_text(raw, "MessageId", "MessageMetadata")
    receipts = raw.get("Receipts")
    if receipts is None:
        return raw
    if not isinstance(receipts, list):
        _invalid("MessageMetadata.Receipts is not a list")
    for index, receipt in enumerate(receipts):
        where = f"MessageMetadata.Receipts[{index}]"
        if not isinstance(receipt, dict):
            _invalid(f"{where} is not an object")
        for key in ("RecipientParticipantId", "DeliveredTimestamp", "ReadTimestamp"):
            _nested_text(receipt, key, where)
    return raw


def _nested_text(entry: Mapping[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is None or isinstance(value, str):
        return value
    _invalid(f"{where}.{key} is not a string")
