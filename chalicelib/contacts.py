from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar
from urllib.parse import urlsplit

from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import FieldProblem, RequestValidationError, SettingsError
from chalicelib.events import RelayEvent, webhook_id_for
from chalicelib.settings import FLOW_NAME, Settings
from chalicelib.streaming import STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE
from chalicelib.validation import Rule, read

MAX_DISPLAY_NAME: Final = 256
MAX_ATTRIBUTES_BYTES: Final = 32_768
MAX_REFERENCES_BYTES: Final = 4_096
MAX_DESCRIPTION: Final = 4_096
MAX_IDEMPOTENCY_KEY: Final = 500
MAX_INITIAL_MESSAGE: Final = 1_024
MIN_CHAT_MINUTES: Final = 60
MAX_CHAT_MINUTES: Final = 10_080
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
PLAIN_TEXT: Final = "text/plain"
# The relay's own attribute on every chat it starts: reserved, and it shares Connect's byte limit.
CHAT_RELAY_ATTRIBUTES: Final = {STREAMING_AT_START_ATTRIBUTE: STREAMING_AT_START}
CAPABILITY_PARTICIPANTS: Final = {"customer": "Customer", "agent": "Agent"}
CAPABILITIES: Final = {"video": "Video", "screen_share": "ScreenShare"}

_NUMBER: Final = re.compile(r"^-?\d+(\.\d+)?\Z")
_EPOCH: Final = re.compile(r"^\d{1,16}\Z")
_EMAIL: Final = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+\Z")
_CONTACT_ID: Final = Rule(min_length=1, max_length=MAX_CONTACT_ID, non_blank=True)

Body = TypeVar("Body", "WebRTCContactRequest", "ChatContactRequest")
AttributeKey = Annotated[str, Rule(pattern="^[A-Za-z0-9_-]+$", problem="keys may hold only letters, digits, - and _")]
Capabilities = dict[
    Annotated[Literal["video", "screen_share"], Rule(problem="unknown capability (expected video or screen_share)")],
    Literal["SEND"],
]
AllowedCapabilities = dict[
    Annotated[Literal["customer", "agent"], Rule(problem="unknown participant (expected customer or agent)")],
    Capabilities,
]


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


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A reference shown to the agent."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "description": "Shown to the agent. URL: http(s) URL; NUMBER: a number; DATE: an epoch timestamp; EMAIL: an "
        "address. ATTACHMENT cannot be set when a contact starts."
    }
    value: Annotated[str, Rule(max_length=MAX_REFERENCES_BYTES)]
    type: Annotated[
        Literal["URL", "NUMBER", "STRING", "DATE", "EMAIL"],
        Rule(
            problem="must be one of URL, NUMBER, STRING, DATE, EMAIL (ATTACHMENT cannot be set when a contact starts)"
        ),
    ]

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """The value must be of its type."""
        if "type" not in valid or "value" not in valid:
            return []
        is_valid, expected = _REFERENCE_VALUE_CHECKS[valid["type"]]
        return [] if is_valid(valid["value"]) else [FieldProblem("value", expected)]


@dataclass(frozen=True, kw_only=True)
class InitialMessage:
    """The chat's first message, from the customer."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "description": "Its content_type must be among supported_content_types when those are given."
    }
    content_type: Literal["text/plain", "text/markdown"]
    content: Annotated[str, Rule(min_length=1, max_length=MAX_INITIAL_MESSAGE, non_blank=True)]


@dataclass(frozen=True, kw_only=True)
class PersistentChat:
    """Continue a past chat."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "description": "Continue a past chat; cannot be combined with related_contact_id."
    }
    source_contact_id: Annotated[str, _CONTACT_ID]
    rehydration_type: Literal["ENTIRE_PAST_SESSION", "FROM_SEGMENT"]


@dataclass(frozen=True, kw_only=True)
class _ContactRequest:
    """What both starts share: the participant's name and attributes, a related contact, the flow's name."""

    display_name: Annotated[str, Rule(min_length=1, max_length=MAX_DISPLAY_NAME, non_blank=True)]
    attributes: Annotated[
        dict[AttributeKey, str] | None,
        Rule(
            description="Contact attributes the flow can read: at most 32,768 UTF-8 bytes across all keys and values "
            "(for a chat, less the relay's own attribute `connect_chat_relay_streaming`, reserved: 32,730)."
        ),
    ] = None
    related_contact_id: Annotated[str | None, _CONTACT_ID] = None
    flow: Annotated[
        str | None,
        Rule(
            pattern=FLOW_NAME.pattern.replace("\\Z", "$"),
            description="A contact flow name the stage configures (CONTACT_FLOWS); DEFAULT_CONTACT_FLOW when absent. "
            "The instance and the flow id always come from the stage, never from the client.",
        ),
    ] = None


@dataclass(frozen=True, kw_only=True)
class WebRTCContactRequest(_ContactRequest):
    """The body of ``POST /webrtc-contacts``."""

    allowed_capabilities: Annotated[
        AllowedCapabilities | None,
        Rule(description="Sent to Connect as AllowedCapabilities {Customer, Agent} of {Video, ScreenShare}."),
    ] = None
    references: Annotated[
        dict[Annotated[str, Rule(min_length=1, problem="names must not be empty")], Reference] | None,
        Rule(description="At most 4,096 UTF-8 bytes across all names and values."),
    ] = None
    description: Annotated[str | None, Rule(max_length=MAX_DESCRIPTION)] = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Connect counts the attributes' and the references' UTF-8 bytes."""
        problems = _attribute_problems(valid.get("attributes"), {})
        size = sum(
            _utf8_bytes(name) + _utf8_bytes(entry["value"]) for name, entry in (valid.get("references") or {}).items()
        )
        if size > MAX_REFERENCES_BYTES:
            problems.append(
                FieldProblem(
                    "references", f"must be at most {MAX_REFERENCES_BYTES} UTF-8 bytes across names and values"
                )
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class ChatContactRequest(_ContactRequest):
    """The body of ``POST /chat-contacts``."""

    initial_message: InitialMessage | None = None
    supported_content_types: Annotated[
        tuple[
            Literal[
                "text/plain",
                "text/markdown",
                "application/json",
                "application/vnd.amazonaws.connect.message.interactive",
                "application/vnd.amazonaws.connect.message.interactive.response",
            ],
            ...,
        ]
        | None,
        Rule(unique=True, contains=PLAIN_TEXT),
    ] = None
    chat_duration_minutes: Annotated[
        int | None,
        Rule(
            minimum=MIN_CHAT_MINUTES,
            maximum=MAX_CHAT_MINUTES,
            problem=f"must be a whole number from {MIN_CHAT_MINUTES} to {MAX_CHAT_MINUTES}",
        ),
    ] = None
    persistent_chat: PersistentChat | None = None
    participant_connection: Annotated[
        bool,
        Rule(
            description="A two-way chat: the relay opens the customer's participant connection "
            "(CreateParticipantConnection, ConnectParticipant true), keeps its tokens encrypted until the chat ends, "
            "and the /chats/{contact_id} routes write the customer's side. Needs PARTICIPANT_TOKEN_KEY_ID."
        ),
    ] = False

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """The relay's attribute is reserved; the greeting's type must be supported; persistent or related."""
        problems = _attribute_problems(valid.get("attributes"), CHAT_RELAY_ATTRIBUTES)
        message, supported = valid.get("initial_message"), valid.get("supported_content_types")
        if message is not None and supported is not None and message["content_type"] not in supported:
            problems.append(FieldProblem("initial_message.content_type", "must be among supported_content_types"))
        if valid.get("persistent_chat") is not None and valid.get("related_contact_id") is not None:
            problems.append(
                FieldProblem(
                    "related_contact_id", "cannot be combined with persistent_chat (Connect takes one or the other)"
                )
            )
        return problems


@dataclass(frozen=True, kw_only=True)
class _IdempotencyKey:
    key: Annotated[
        str | None, Rule(name=IDEMPOTENCY_HEADER, min_length=1, max_length=MAX_IDEMPOTENCY_KEY, non_blank=True)
    ] = None


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
    start, flow, request = _begin(WebRTCContactRequest, body, idempotency_key, settings, {})
    if start.allowed_capabilities is not None:
        request["AllowedCapabilities"] = {
            CAPABILITY_PARTICIPANTS[participant]: {CAPABILITIES[name]: setting for name, setting in granted.items()}
            for participant, granted in start.allowed_capabilities.items()
        }
    if start.references is not None:
        request["References"] = {
            name: {"Value": reference.value, "Type": reference.type} for name, reference in start.references.items()
        }
    _optional(request, "Description", start.description)
    _optional(request, "RelatedContactId", start.related_contact_id)
    return ContactStart(flow=flow, request=request)


def chat_start(body: Mapping[str, Any], idempotency_key: str | None, settings: Settings) -> ContactStart:
    """The StartChatContact request for a client's body, streaming to the relay's topic from its first item."""
    start, flow, request = _begin(ChatContactRequest, body, idempotency_key, settings, CHAT_RELAY_ATTRIBUTES)
    if start.participant_connection and settings.participant_token_key_id is None:
        # Refused before Connect starts a chat the relay could not hold.
        raise SettingsError("PARTICIPANT_TOKEN_KEY_ID must be set for the relay to hold participant connections")
    if start.supported_content_types is not None:
        request["SupportedMessagingContentTypes"] = list(start.supported_content_types)
    if start.initial_message is not None:
        message = start.initial_message
        request["InitialMessage"] = {"ContentType": message.content_type, "Content": message.content}
    _optional(request, "ChatDurationInMinutes", start.chat_duration_minutes)
    if start.persistent_chat is not None:
        persistent = start.persistent_chat
        request["PersistentChat"] = {
            "SourceContactId": persistent.source_contact_id,
            "RehydrationType": persistent.rehydration_type,
        }
    _optional(request, "RelatedContactId", start.related_contact_id)
    request["ChatStreamingConfiguration"] = {"StreamingEndpointArn": settings.streaming_topic_arn}
    return ContactStart(flow=flow, request=request, hold_connection=start.participant_connection)


def _begin(
    cls: type[Body],
    body: Mapping[str, Any],
    idempotency_key: str | None,
    settings: Settings,
    relay_attributes: Mapping[str, str],
) -> tuple[Body, str, dict[str, Any]]:
    """The body read as a ``cls``, its flow's name, and the request's shared part; or every problem raised at once."""
    if settings.connect_instance_id is None or not settings.contact_flows:
        raise SettingsError("CONNECT_INSTANCE_ID and CONTACT_FLOWS must be set for the relay to start contacts")
    flows = settings.contact_flows
    start, problems = read(cls, body)
    # The flow's own problem names the stage's flows; JSON null is no flow, as before the typed body.
    flow = body.get("flow", settings.default_flow or next(iter(flows)))
    problems = [problem for problem in problems if problem.field != "flow"]
    if not isinstance(flow, str) or flow not in flows:
        problems.append(FieldProblem("flow", "must be one of " + ", ".join(sorted(flows))))
    problems += read(_IdempotencyKey, {} if idempotency_key is None else {IDEMPOTENCY_HEADER: idempotency_key})[1]
    if start is None or problems:
        raise RequestValidationError(problems)
    request: dict[str, Any] = {
        "InstanceId": settings.connect_instance_id,
        "ParticipantDetails": {"DisplayName": start.display_name},
    }
    _optional(request, "Attributes", {**(start.attributes or {}), **relay_attributes} or None)
    _optional(request, "ClientToken", idempotency_key)
    request["ContactFlowId"] = flows[flow]
    return start, flow, request


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


def _optional(request: dict[str, Any], key: str, value: object) -> None:
    if value is not None:
        request[key] = value


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))  # the typed body refused lone surrogates, which have no UTF-8 form


def _attribute_problems(
    attributes: Mapping[str, str] | None, relay_attributes: Mapping[str, str]
) -> list[FieldProblem]:
    """The relay's own attributes (``relay_attributes``) are reserved, and share Connect's byte limit."""
    if attributes is None:
        return []
    reserved = [
        FieldProblem(f"attributes.{key}", "is reserved for the relay") for key in attributes if key in relay_attributes
    ]
    if reserved:
        return reserved
    limit = MAX_ATTRIBUTES_BYTES - sum(_utf8_bytes(key) + _utf8_bytes(item) for key, item in relay_attributes.items())
    if sum(_utf8_bytes(key) + _utf8_bytes(item) for key, item in attributes.items()) > limit:
        return [FieldProblem("attributes", f"must be at most {limit} UTF-8 bytes across keys and values")]
    return []
