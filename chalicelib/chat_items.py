"""Connect's chat items, as the streaming SNS topic delivers them, parsed once into a typed :class:`ChatItem`.

The SNS ``Message`` is a JSON string holding Connect's chat ``Item``; the message attributes repeat some of its
fields and add ``InstanceId``, ``AccountId`` and ``MessageVisibility``. The body is authoritative for the fields it
carries; an attribute only fills a field the body leaves out. A visibility or instance id found in neither is
``None`` (unknown), never a default: the destinations' filters fail closed on it. Unknown ``Type`` and
``ContentType`` values are data (Connect adds new ones), so only a malformed item is rejected, with a
:class:`ChatItemInvalidError` naming why: the first problem :func:`chalicelib.validation.read` lists, in this
module's words, never the value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, NoReturn, get_args

from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import FieldProblem, RelayError
from chalicelib.strict_json import STRICT_JSON
from chalicelib.validation import Rule, is_unicode_text, read

MAX_ITEM_ID_LENGTH: Final = 256
MAX_CONTENT_LENGTH: Final = 16_384
MAX_MESSAGE_BYTES: Final = 256 * 1024
Visibility = Literal["AGENT", "CUSTOMER", "ALL"]
VISIBILITIES: Final = frozenset(get_args(Visibility))

# RFC 3339 as JSON Schema's "date-time" reads it; fromisoformat then rejects impossible dates (February 30).
_RFC3339: Final = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_NOT_RFC3339: Final = "is not an RFC 3339 timestamp"
_NOT_A_VISIBILITY: Final = "is not AGENT, CUSTOMER or ALL"
# The fields an SNS message attribute may fill when the body leaves them out (MessageVisibility aside).
_FROM_ATTRIBUTES: Final = ("Type", "ContentType", "InitialContactId", "ContactId", "InstanceId", "ParticipantRole")
# Present but unreadable: the visibility is refused, never taken for unknown (which a filter may let through).
_UNREADABLE: Final = object()
# chalicelib.validation's texts, as a chat item's reasons have always said them (the dead-letter records keep them).
_REASONS: Final = {
    "required": "is missing",
    "must be a string": "is not a string",
    "must be a list": "is not a list",
    "must be a JSON object": "is not an object",
    "is not in the expected form": _NOT_RFC3339,  # AbsoluteTime's pattern, the only one
}
_LENGTH: Final = re.compile(r"must be (?:at least 1|[0-9]+ to (?P<maximum>[0-9]+)) characters")
_NOT_UNICODE: Final = "must be valid Unicode text"


class ChatItemInvalidError(RelayError):
    """An SNS record does not hold a usable chat item; ``reason`` says why without echoing its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    """One attachment's metadata; Connect sends no download URL."""

    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    attachment_id: Annotated[str, Rule(name="AttachmentId", min_length=1)]
    name: Annotated[str | None, Rule(name="AttachmentName")] = None
    content_type: Annotated[str | None, Rule(name="ContentType")] = None
    status: Annotated[str | None, Rule(name="Status")] = None


@dataclass(frozen=True)
class Receipt:
    """One recipient's delivered and read times of a message, in a chat item's ``MessageMetadata``."""

    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    recipient_participant_id: Annotated[str | None, Rule(name="RecipientParticipantId")] = None
    delivered_timestamp: Annotated[str | None, Rule(name="DeliveredTimestamp")] = None
    read_timestamp: Annotated[str | None, Rule(name="ReadTimestamp")] = None


@dataclass(frozen=True)
class MessageMetadata:
    """The shape a chat item's ``MessageMetadata`` must have; the item keeps Connect's object as it came."""

    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    message_id: Annotated[str | None, Rule(name="MessageId")] = None
    receipts: Annotated[tuple[Receipt, ...] | None, Rule(name="Receipts")] = None


@dataclass(frozen=True, kw_only=True)
class ChatItem:
    """One chat item (message, event, attachment, receipt) of a contact's chat, validated.

    Read by :func:`chalicelib.validation.read` from Connect's ``Item`` (each field's JSON name is its rule's
    ``name``), merged with the SNS message attributes first (see :func:`parse_sns_record`). Keys Connect adds are
    ignored, and a null reads as an absent field.
    """

    ignores_unknown_keys: ClassVar[bool] = True
    null_means_absent: ClassVar[bool] = True

    # In the order the hand-written parser checked them: an item's first problem is the one it named.
    item_id: Annotated[str, Rule(name="Id", min_length=1, max_length=MAX_ITEM_ID_LENGTH)]
    absolute_time: Annotated[str, Rule(name="AbsoluteTime", pattern=_RFC3339, format="date-time")]
    # parse_sns_record lets either contact id stand in for the other, so only both absent reach "missing".
    initial_contact_id: Annotated[
        str, Rule(name="InitialContactId", max_length=MAX_CONTACT_ID, missing="and ContactId are missing")
    ]
    contact_id: Annotated[str, Rule(name="ContactId", max_length=MAX_CONTACT_ID)]
    type: Annotated[str, Rule(name="Type", min_length=1)]
    content_type: Annotated[str | None, Rule(name="ContentType")] = None
    content: Annotated[str | None, Rule(name="Content", max_length=MAX_CONTENT_LENGTH)] = None
    related_contact_id: Annotated[str | None, Rule(name="RelatedContactId", max_length=MAX_CONTACT_ID)] = None
    instance_id: Annotated[str | None, Rule(name="InstanceId")] = None
    participant_id: Annotated[str | None, Rule(name="ParticipantId")] = None
    participant_role: Annotated[str | None, Rule(name="ParticipantRole")] = None
    display_name: Annotated[str | None, Rule(name="DisplayName")] = None
    # None when neither body nor attributes say: the destinations' filters fail closed on it (never a default of ALL).
    visibility: Annotated[Visibility | None, Rule(name="MessageVisibility", problem=_NOT_A_VISIBILITY)] = None
    attachments: Annotated[tuple[Attachment, ...], Rule(name="Attachments")] = ()
    message_metadata: Annotated[dict[str, Any] | None, Rule(name="MessageMetadata")] = None


def parse_sns_record(sns: Mapping[str, Any]) -> ChatItem:
    """Parse the ``Sns`` object of one Lambda SNS record into a :class:`ChatItem`.

    Raises :class:`ChatItemInvalidError` for anything malformed and never any other exception, whatever the input.
    """
    message = sns.get("Message")
    if not isinstance(message, str):
        _invalid("Message is missing" if message is None else "Message is not a string")
    body = _load_body(message)
    attributes = sns.get("MessageAttributes")
    if isinstance(attributes, Mapping) and attributes:
        _merge_attributes(body, attributes)
    _stand_in_contact_ids(body)
    item, problems = read(ChatItem, body)
    if item is None:
        _invalid(_reason(problems[0], body))
    # The pattern holds the form; a date the calendar lacks (February 30) has it too.
    if not _is_calendar_time(item.absolute_time):
        _invalid(f"AbsoluteTime {_NOT_RFC3339}")
    if item.message_metadata is not None:
        _, problems = read(MessageMetadata, item.message_metadata)
        if problems:
            _invalid(_reason(FieldProblem(f"MessageMetadata.{problems[0].field}", problems[0].problem), body))
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


def _merge_attributes(body: dict[str, Any], attributes: Mapping[str, Any]) -> None:
    """Fill the fields the body leaves out from their attributes; a visibility attribute that is present but
    unreadable stays, to be refused rather than read as unknown."""
    for key in _FROM_ATTRIBUTES:
        if body.get(key) is None:
            value = _attribute(attributes, key)
            if value is not None:
                body[key] = value
    if body.get("MessageVisibility") is None and "MessageVisibility" in attributes:
        body["MessageVisibility"] = _attribute(attributes, "MessageVisibility") or _UNREADABLE


def _stand_in_contact_ids(body: dict[str, Any]) -> None:
    """Either contact id stands in for the other when it is absent or empty; both absent or empty are missing."""
    initial_contact_id, contact_id = body.get("InitialContactId"), body.get("ContactId")
    if initial_contact_id is None or initial_contact_id == "":
        if contact_id is None or contact_id == "":
            body.pop("InitialContactId", None)
            body.pop("ContactId", None)
        else:
            body["InitialContactId"] = contact_id
    elif contact_id is None or contact_id == "":
        body["ContactId"] = initial_contact_id


def _reason(problem: FieldProblem, body: Mapping[str, Any]) -> str:
    """The first problem :func:`read` found, in the words of the reasons chat items have always been refused with."""
    text = problem.problem
    if text.startswith(_NOT_UNICODE):
        return "Message contains an unpaired surrogate"
    length = _LENGTH.fullmatch(text)
    if length is not None:
        # Only top-level fields carry a maximum length, so the value to tell "empty" from "too long" is the body's.
        if length["maximum"] is not None and body.get(problem.field) != "":
            return f"{problem.field} exceeds {length['maximum']} characters"
        return f"{problem.field} is empty"
    return f"{problem.field} {_REASONS.get(text, text)}"


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


def _encodes_as_utf8(body: dict[str, Any]) -> bool:
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _is_calendar_time(timestamp: str) -> bool:
    try:
        datetime.fromisoformat(timestamp)
    except ValueError:
        return False
    return True


def _attribute(attributes: Mapping[str, Any], key: str) -> str | None:
    # Attributes are a convenience copy, so a malformed one is ignored rather than fatal.
    entry = attributes.get(key)
    if isinstance(entry, Mapping) and entry.get("Type", "String") == "String":
        value = entry.get("Value")
        if isinstance(value, str) and is_unicode_text(value):
            return value
    return None
