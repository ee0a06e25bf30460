"""Starting contacts for front ends: the request bodies of ``POST /webrtc-contacts`` and ``POST /chat-contacts``.

Pure: each builder checks a client's body against Connect's limits (botocore checks none of the maximums, and
none of the byte counts), lists every invalid field at once, and builds the Connect request. The instance and the
contact flow always come from the stage's settings; the client only picks a flow by its configured name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final
from urllib.parse import urlsplit

from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import FieldProblem, RequestValidationError, SettingsError
from chalicelib.events import RelayEvent, webhook_id_for
from chalicelib.settings import Settings
from chalicelib.streaming import STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE

MAX_DISPLAY_NAME: Final = 256
MAX_ATTRIBUTES_BYTES: Final = 32_768
MAX_REFERENCES_BYTES: Final = 4_096
MAX_DESCRIPTION: Final = 4_096
MAX_IDEMPOTENCY_KEY: Final = 500
MAX_INITIAL_MESSAGE: Final = 1_024
MIN_CHAT_MINUTES: Final = 60
MAX_CHAT_MINUTES: Final = 10_080
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"

ATTRIBUTE_KEY: Final = re.compile(r"^[A-Za-z0-9_-]+\Z")
CAPABILITY_PARTICIPANTS: Final = {"customer": "Customer", "agent": "Agent"}
CAPABILITIES: Final = {"video": "Video", "screen_share": "ScreenShare"}
REFERENCE_TYPES: Final = ("URL", "NUMBER", "STRING", "DATE", "EMAIL")
INITIAL_MESSAGE_TYPES: Final = ("text/plain", "text/markdown")
PLAIN_TEXT: Final = "text/plain"
SUPPORTED_CONTENT_TYPES: Final = (
    PLAIN_TEXT,
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive",
    "application/vnd.amazonaws.connect.message.interactive.response",
)
REHYDRATION_TYPES: Final = ("ENTIRE_PAST_SESSION", "FROM_SEGMENT")

WEBRTC_FIELDS: Final = frozenset(
    {"display_name", "attributes", "allowed_capabilities", "references", "description", "related_contact_id", "flow"}
)
CHAT_FIELDS: Final = frozenset(
    {
        "display_name",
        "attributes",
        "initial_message",
        "supported_content_types",
        "chat_duration_minutes",
        "persistent_chat",
        "related_contact_id",
        "flow",
        "participant_connection",
    }
)

_NUMBER: Final = re.compile(r"^-?\d+(\.\d+)?\Z")
_EPOCH: Final = re.compile(r"^\d{1,16}\Z")
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+\Z")


@dataclass(frozen=True)
class ContactStart:
    """A validated start: the configured flow's name and the keyword arguments of Connect's call.

    ``hold_connection``: the relay opens the chat's participant connection and keeps it (a two-way chat).
    """

    flow: str
    request: dict[str, Any]
    hold_connection: bool = False


def webrtc_start(body: Mapping[str, Any], idempotency_key: str | None, settings: Settings) -> ContactStart:
    """The StartWebRTCContact request for a client's body; raises RequestValidationError listing every problem."""
    draft = _Draft.begin(body, WEBRTC_FIELDS, settings, {})
    check, request = draft.check, draft.request
    _optional(request, "AllowedCapabilities", _capabilities(body.get("allowed_capabilities"), check))
    _optional(request, "References", _references(body.get("references"), check))
    _optional(request, "Description", check.text("description", body.get("description"), low=0, high=MAX_DESCRIPTION))
    _optional(request, "RelatedContactId", _contact_id("related_contact_id", body.get("related_contact_id"), check))
    return draft.finish(idempotency_key)


def chat_start(body: Mapping[str, Any], idempotency_key: str | None, settings: Settings) -> ContactStart:
    """The StartChatContact request for a client's body, streaming to the relay's topic from its first item."""
    draft = _Draft.begin(body, CHAT_FIELDS, settings, {STREAMING_AT_START_ATTRIBUTE: STREAMING_AT_START})
    check, request = draft.check, draft.request
    supported = _supported_content_types(body.get("supported_content_types"), check)
    _optional(request, "SupportedMessagingContentTypes", supported)
    _optional(request, "InitialMessage", _initial_message(body.get("initial_message"), supported, check))
    _optional(request, "ChatDurationInMinutes", _chat_duration(body.get("chat_duration_minutes"), check))
    persistent = _persistent_chat(body.get("persistent_chat"), check)
    _optional(request, "PersistentChat", persistent)
    related = _contact_id("related_contact_id", body.get("related_contact_id"), check)
    if related is not None and persistent is not None:
        check.problem("related_contact_id", "cannot be combined with persistent_chat (Connect takes one or the other)")
    _optional(request, "RelatedContactId", related)
    hold = body.get("participant_connection", False)
    if not isinstance(hold, bool):
        check.problem("participant_connection", "must be true or false")
    elif hold and settings.participant_token_key_id is None:
        # Refused before Connect starts a chat the relay could not hold.
        raise SettingsError("PARTICIPANT_TOKEN_KEY_ID must be set for the relay to hold participant connections")
    request["ChatStreamingConfiguration"] = {"StreamingEndpointArn": settings.streaming_topic_arn}
    return replace(draft.finish(idempotency_key), hold_connection=hold is True)


@dataclass
class _Draft:
    """What both starts share: the instance, the flow, the participant's name and attributes, the client token."""

    check: _Checker
    request: dict[str, Any]
    flow: str
    flows: Mapping[str, str]

    @classmethod
    def begin(
        cls, body: Mapping[str, Any], known: frozenset[str], settings: Settings, relay_attributes: Mapping[str, str]
    ) -> _Draft:
        instance_id, flows = _contact_settings(settings)
        check = _Checker(_unknown_fields(body, known))
        request: dict[str, Any] = {"InstanceId": instance_id}
        flow = _flow(body, settings, flows, check)
        name = check.text("display_name", body.get("display_name"), low=1, high=MAX_DISPLAY_NAME, required=True)
        if name is not None:
            request["ParticipantDetails"] = {"DisplayName": name}
        attributes = _attributes(body.get("attributes"), check, relay_attributes)
        _optional(request, "Attributes", {**(attributes or {}), **relay_attributes} or None)
        return cls(check, request, flow, flows)

    def finish(self, idempotency_key: str | None) -> ContactStart:
        _optional(self.request, "ClientToken", _idempotency_key(idempotency_key, self.check))
        if self.check.problems:
            raise RequestValidationError(self.check.problems)
        self.request["ContactFlowId"] = self.flows[self.flow]
        return ContactStart(flow=self.flow, request=self.request)


def call_started_event(start: ContactStart, answer: Mapping[str, Any], *, timestamp: str) -> RelayEvent:
    """The ``call.started`` event of a WebRTC contact: who called and with what, never a token.

    Its webhook id derives from the contact id, so a retried publish is the same delivery to consumers.
    """
    contact_id = str(answer["ContactId"])
    return RelayEvent(
        type="call.started",
        timestamp=timestamp,
        data={
            "contact_id": contact_id,
            "participant_id": answer.get("ParticipantId"),
            "display_name": start.request["ParticipantDetails"]["DisplayName"],
            "instance_id": start.request["InstanceId"],
            "allowed_capabilities": start.request.get("AllowedCapabilities"),
            "flow": start.flow,
        },
        webhook_id=webhook_id_for(f"call.started/{contact_id}"),
    )


class _Checker:
    """Collects problems; each check returns the valid value or None."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems

    def problem(self, field: str, problem: str) -> None:
        self.problems.append(FieldProblem(field, problem))

    def text(self, field: str, value: object, *, low: int, high: int, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.problem(field, "required")
            return None
        if not isinstance(value, str):
            self.problem(field, "must be a string")
            return None
        if not low <= len(value) <= high:
            self.problem(field, f"must be {low} to {high} characters")
            return None
        if low and not value.strip():
            self.problem(field, "must not be blank")
            return None
        if not _is_unicode_text(value):
            self.problem(field, "must be valid Unicode text (a lone surrogate such as \\ud800 has no UTF-8 form)")
            return None
        return value

    def mapping(self, field: str, value: object) -> Mapping[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(field, "must be a JSON object")
            return None
        return value

    def one_of(self, field: str, value: object, allowed: tuple[str, ...]) -> str | None:
        if not isinstance(value, str) or value not in allowed:
            self.problem(field, "must be one of " + ", ".join(allowed))
            return None
        return value


def _is_unicode_text(value: str) -> bool:
    """False when ``value`` holds a lone surrogate (valid JSON escapes, but no event body could carry it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _contact_settings(settings: Settings) -> tuple[str, Mapping[str, str]]:
    if settings.connect_instance_id is None or not settings.contact_flows:
        raise SettingsError("CONNECT_INSTANCE_ID and CONTACT_FLOWS must be set for the relay to start contacts")
    return settings.connect_instance_id, settings.contact_flows


def _unknown_fields(body: Mapping[str, Any], known: frozenset[str]) -> list[FieldProblem]:
    return [FieldProblem(name, "unknown field") for name in sorted(set(body) - known)]


def _optional(request: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        request[key] = value


def _flow(body: Mapping[str, Any], settings: Settings, flows: Mapping[str, str], check: _Checker) -> str:
    default = settings.default_flow or next(iter(flows))
    chosen = body.get("flow", default)
    if not isinstance(chosen, str) or chosen not in flows:
        check.problem("flow", "must be one of " + ", ".join(sorted(flows)))
        return default
    return chosen


def _utf8_bytes(text: str) -> int:
    # JSON may carry lone surrogates ("\\ud800"), which have no UTF-8 form: count their three bytes, never fail.
    return len(text.encode("utf-8", "surrogatepass"))


def _attributes(value: object, check: _Checker, relay_attributes: Mapping[str, str]) -> dict[str, str] | None:
    """The client's attributes; the relay's own (``relay_attributes``) are reserved and share Connect's byte limit."""
    if value is None:
        return None
    attributes = check.mapping("attributes", value)
    if attributes is None:
        return None
    valid = True
    for key, item in attributes.items():
        if key in relay_attributes:
            check.problem(f"attributes.{key}", "is reserved for the relay")
            valid = False
        elif not ATTRIBUTE_KEY.match(key):
            check.problem(f"attributes.{key}", "keys may hold only letters, digits, - and _")
            valid = False
        if not isinstance(item, str):
            check.problem(f"attributes.{key}", "must be a string")
            valid = False
    if not valid:
        return None
    limit = MAX_ATTRIBUTES_BYTES - sum(_utf8_bytes(key) + _utf8_bytes(item) for key, item in relay_attributes.items())
    size = sum(_utf8_bytes(key) + _utf8_bytes(item) for key, item in attributes.items())
    if size > limit:
        check.problem("attributes", f"must be at most {limit} UTF-8 bytes across keys and values")
        return None
    return dict(attributes)


def _capabilities(value: object, check: _Checker) -> dict[str, dict[str, str]] | None:
    if value is None:
        return None
    by_participant = check.mapping("allowed_capabilities", value)
    if by_participant is None:
        return None
    mapped: dict[str, dict[str, str]] = {}
    for participant, capabilities in by_participant.items():
        where = f"allowed_capabilities.{participant}"
        if participant not in CAPABILITY_PARTICIPANTS:
            check.problem(where, "unknown participant (expected customer or agent)")
            continue
        granted = check.mapping(where, capabilities)
        if granted is None:
            continue
        mapped[CAPABILITY_PARTICIPANTS[participant]] = {}
        for capability, setting in granted.items():
            if capability not in CAPABILITIES:
                check.problem(f"{where}.{capability}", "unknown capability (expected video or screen_share)")
            elif setting != "SEND":
                check.problem(f"{where}.{capability}", "must be SEND")
            else:
                mapped[CAPABILITY_PARTICIPANTS[participant]][CAPABILITIES[capability]] = "SEND"
    return mapped


def _is_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in {"http", "https"} and bool(parts.netloc)


_REFERENCE_VALUE_CHECKS: Final[Mapping[str, tuple[Callable[[str], bool], str]]] = {
    "URL": (_is_url, "must be an http or https URL"),
    "NUMBER": (lambda v: bool(_NUMBER.match(v)), "must be a number"),
    "STRING": (lambda _v: True, ""),
    "DATE": (lambda v: bool(_EPOCH.match(v)), "must be an epoch timestamp (digits)"),
    "EMAIL": (lambda v: bool(_EMAIL.match(v)), "must be an email address"),
}


def _references(value: object, check: _Checker) -> dict[str, dict[str, str]] | None:
    if value is None:
        return None
    references = check.mapping("references", value)
    if references is None:
        return None
    mapped: dict[str, dict[str, str]] = {}
    size = 0
    for name, reference in references.items():
        where = f"references.{name}"
        if not name:
            check.problem("references", "names must not be empty")
            continue
        entry = check.mapping(where, reference)
        if entry is None:
            continue
        unknown = sorted(set(entry) - {"value", "type"})
        if unknown:
            check.problem(where, "unknown keys " + ", ".join(unknown) + " (expected value and type)")
            continue
        kind = entry.get("type")
        if kind == "ATTACHMENT":
            check.problem(f"{where}.type", "ATTACHMENT cannot be set when a contact starts")
            continue
        kind = check.one_of(f"{where}.type", kind, REFERENCE_TYPES)
        text = check.text(f"{where}.value", entry.get("value"), low=0, high=MAX_REFERENCES_BYTES, required=True)
        if kind is None or text is None:
            continue
        valid, expected = _REFERENCE_VALUE_CHECKS[kind]
        if not valid(text):
            check.problem(f"{where}.value", expected)
            continue
        size += _utf8_bytes(name) + _utf8_bytes(text)
        mapped[name] = {"Value": text, "Type": kind}
    if size > MAX_REFERENCES_BYTES:
        check.problem("references", f"must be at most {MAX_REFERENCES_BYTES} UTF-8 bytes across names and values")
        return None
    return mapped


def _contact_id(field: str, value: object, check: _Checker) -> str | None:
    return check.text(field, value, low=1, high=MAX_CONTACT_ID)


def _idempotency_key(value: str | None, check: _Checker) -> str | None:
    return check.text(IDEMPOTENCY_HEADER, value, low=1, high=MAX_IDEMPOTENCY_KEY)


def _supported_content_types(value: object, check: _Checker) -> list[str] | None:
    if value is None:
        return None
    field = "supported_content_types"
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        check.problem(field, "must be a list of content types")
        return None
    unknown = [item for item in value if item not in SUPPORTED_CONTENT_TYPES]
    if unknown:
        check.problem(
            field, "unsupported " + ", ".join(unknown) + " (expected among " + ", ".join(SUPPORTED_CONTENT_TYPES) + ")"
        )
        return None
    if len(set(value)) != len(value):
        check.problem(field, "must list each content type once")
        return None
    if PLAIN_TEXT not in value:
        check.problem(field, f"must include {PLAIN_TEXT}")
        return None
    return list(value)


def _initial_message(value: object, supported: list[str] | None, check: _Checker) -> dict[str, str] | None:
    if value is None:
        return None
    message = check.mapping("initial_message", value)
    if message is None:
        return None
    unknown = sorted(set(message) - {"content_type", "content"})
    if unknown:
        check.problem("initial_message", "unknown keys " + ", ".join(unknown) + " (expected content_type and content)")
        return None
    content_type = check.one_of("initial_message.content_type", message.get("content_type"), INITIAL_MESSAGE_TYPES)
    content = check.text(
        "initial_message.content", message.get("content"), low=1, high=MAX_INITIAL_MESSAGE, required=True
    )
    if content_type is None or content is None:
        return None
    if supported is not None and content_type not in supported:
        check.problem("initial_message.content_type", "must be among supported_content_types")
        return None
    return {"ContentType": content_type, "Content": content}


def _chat_duration(value: object, check: _Checker) -> int | None:
    if value is None:
        return None
    # JSON's true is a Python int; a duration of "true minutes" is a client bug, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_CHAT_MINUTES <= value <= MAX_CHAT_MINUTES:
        check.problem("chat_duration_minutes", f"must be a whole number from {MIN_CHAT_MINUTES} to {MAX_CHAT_MINUTES}")
        return None
    return value


def _persistent_chat(value: object, check: _Checker) -> dict[str, str] | None:
    if value is None:
        return None
    persistent = check.mapping("persistent_chat", value)
    if persistent is None:
        return None
    unknown = sorted(set(persistent) - {"source_contact_id", "rehydration_type"})
    if unknown:
        check.problem(
            "persistent_chat", "unknown keys " + ", ".join(unknown) + " (expected source_contact_id, rehydration_type)"
        )
        return None
    source = check.text(
        "persistent_chat.source_contact_id",
        persistent.get("source_contact_id"),
        low=1,
        high=MAX_CONTACT_ID,
        required=True,
    )
    rehydration = check.one_of(
        "persistent_chat.rehydration_type", persistent.get("rehydration_type"), REHYDRATION_TYPES
    )
    if source is None or rehydration is None:
        return None
    return {"SourceContactId": source, "RehydrationType": rehydration}
