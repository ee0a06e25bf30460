"""Two-way chats: the relay writes the customer's side of a chat into Connect, through the participant connection
it opened when it started the chat.

The request builders are pure: each checks a client's body against Connect's documented limits (botocore checks
none of the byte counts) and lists every invalid field at once. :class:`TwoWayChats` decides: it finds the chat's
connection (only for the principal that started the chat), renews an expired one with the kept participant token,
and makes the Participant Service call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal, TypeVar

from chalicelib.errors import (
    ChatConnectionExpiredError,
    ChatEndedError,
    ChatNotFoundError,
    ChatUnavailableError,
    FieldProblem,
    RequestValidationError,
)
from chalicelib.strict_json import STRICT_JSON
from chalicelib.validation import Rule, parse, read

if TYPE_CHECKING:
    from chalicelib.adapters.attachment_files import AttachmentFiles
    from chalicelib.adapters.chat_connections import ChatConnections, HeldConnection
    from chalicelib.adapters.participant import AttachmentDownload, ParticipantGateway

T = TypeVar("T")

# SendMessage: "Maximum of 16,384 bytes for all content types".
MESSAGE_CONTENT_TYPES: Final = ("text/plain", "text/markdown", "application/json")
MAX_MESSAGE_BYTES: Final = 16_384
MAX_ITEM_ID: Final = 256
_EVENT_PREFIX: Final = "application/vnd.amazonaws.connect.event."
EVENT_CONTENT_TYPES: Final = {
    "typing": _EVENT_PREFIX + "typing",
    "read": _EVENT_PREFIX + "message.read",
    "delivered": _EVENT_PREFIX + "message.delivered",
}
# Connect's chat attachments (Administrator Guide, feature specifications): 20 MB, these file types.
MAX_ATTACHMENT_BYTES: Final = 20 * 1024 * 1024
MAX_ATTACHMENT_NAME: Final = 256
ATTACHMENT_TYPES: Final = {
    ".csv": ("text/csv",),
    ".doc": ("application/msword",),
    ".docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document",),
    ".heic": ("image/heic",),
    ".jpg": ("image/jpeg",),
    ".jpeg": ("image/jpeg",),
    ".mov": ("video/quicktime",),
    ".mp4": ("video/mp4",),
    ".pdf": ("application/pdf",),
    ".png": ("image/png",),
    ".ppt": ("application/vnd.ms-powerpoint",),
    ".pptx": ("application/vnd.openxmlformats-officedocument.presentationml.presentation",),
    ".rtf": ("application/rtf", "text/rtf"),
    ".txt": ("text/plain",),
    ".wav": ("audio/wav", "audio/x-wav", "audio/wave"),
    ".xls": ("application/vnd.ms-excel",),
    ".xlsx": ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",),
}
# The one-step form carries the bytes in the JSON body: Lambda takes at most 6 MB per request, base64 adds a third.
MAX_ONE_STEP_BYTES: Final = 4 * 1024 * 1024
# A connection token this close to its expiry is renewed before it is used.
RENEW_MARGIN_SECONDS: Final = 60
# Connect's default chat duration when the start named none (25 hours).
DEFAULT_CHAT_MINUTES: Final = 1_500


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    """A SendMessage: the body of ``POST /chats/{contact_id}/messages``, validated."""

    content_type: Literal["text/plain", "text/markdown", "application/json"] = "text/plain"
    content: Annotated[
        str,
        Rule(
            min_length=1,
            description="At most 16,384 UTF-8 bytes (Connect's limit); a JSON text for application/json.",
            problem="required: a non-blank string",
        ),
    ]

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Connect counts bytes, not characters; a JSON message must be JSON."""
        content = valid.get("content")
        if content is None:
            return []
        if not content.strip():
            return [FieldProblem("content", "required: a non-blank string")]
        if _utf8_bytes(content) > MAX_MESSAGE_BYTES:
            return [FieldProblem("content", f"must be at most {MAX_MESSAGE_BYTES} UTF-8 bytes")]
        if valid.get("content_type") == "application/json" and not _is_json(content):
            return [FieldProblem("content", "must be a JSON text for application/json")]
        return []


@dataclass(frozen=True, kw_only=True)
class ChatEventRequest:
    """The body of ``POST /chats/{contact_id}/events``."""

    type: Annotated[
        Literal["typing", "read", "delivered"],
        Rule(description="typing, or a read or delivered receipt.", problem="must be one of typing, read, delivered"),
    ]
    message_id: Annotated[
        str | None,
        Rule(
            min_length=1,
            max_length=MAX_ITEM_ID,
            description="The item id of the message a receipt is for (required for read and delivered).",
            problem=f"required for receipts: 1 to {MAX_ITEM_ID} characters",
        ),
    ] = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Only a receipt names a message, and it must."""
        if valid.get("type") == "typing" and valid.get("message_id") is not None:
            return [FieldProblem("message_id", "only read and delivered receipts name a message")]
        if valid.get("type") in {"read", "delivered"} and "message_id" in valid and valid["message_id"] is None:
            return [FieldProblem("message_id", f"required for receipts: 1 to {MAX_ITEM_ID} characters")]
        return []


@dataclass(frozen=True)
class OutgoingEvent:
    """A validated SendEvent: the kind the client named, Connect's content type, and its content."""

    kind: str
    content_type: str
    content: str | None


_TOO_LARGE: Final = (
    f"must be base64 of at most {MAX_ONE_STEP_BYTES} bytes (larger files: the two-step form, size_bytes)"
)


@dataclass(frozen=True, kw_only=True)
class AttachmentBody:
    """The body of ``POST /chats/{contact_id}/attachments``: the bytes (one step) or their size (two steps)."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "description": "One step: content_base64 (at most 4 MiB of bytes). Two steps: size_bytes (at most 20 MiB, "
        "Connect's limit); the answer says where to PUT the bytes, then POST the complete_path. The name's extension "
        f"must be one Connect accepts ({' '.join(sorted(ATTACHMENT_TYPES))}) and content_type its MIME type.",
        "oneOf": [{"required": ["content_base64"]}, {"required": ["size_bytes"]}],
    }
    name: Annotated[
        str,
        Rule(
            min_length=1,
            max_length=MAX_ATTACHMENT_NAME,
            non_blank=True,
            problem=f"required: 1 to {MAX_ATTACHMENT_NAME} characters, with the extension",
        ),
    ]
    content_type: Annotated[str, Rule(min_length=1, max_length=255, problem="must be the file's MIME type")]
    # Measured before decoding, so an oversized body costs no decoding; an empty one decodes to nothing.
    content_base64: Annotated[str | None, Rule(max_length=(MAX_ONE_STEP_BYTES + 2) // 3 * 4, problem=_TOO_LARGE)] = None
    size_bytes: Annotated[
        int | None,
        Rule(
            minimum=1,
            maximum=MAX_ATTACHMENT_BYTES,
            problem=f"must be the file's size in bytes: Connect accepts 1 to {MAX_ATTACHMENT_BYTES}",
        ),
    ] = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Connect's extensions and their MIME types; the bytes or their size, not both."""
        problems = []
        if "name" in valid:
            allowed = ATTACHMENT_TYPES.get(PurePosixPath(valid["name"]).suffix.lower(), ())
            if not allowed:
                problems.append(
                    FieldProblem("name", f"Connect accepts only {' '.join(sorted(ATTACHMENT_TYPES))} files")
                )
            elif "content_type" in valid and valid["content_type"].lower() not in allowed:
                problems.append(FieldProblem("content_type", f"must be {' or '.join(allowed)}"))
        encoded, size = valid.get("content_base64", ""), valid.get("size_bytes", 0)
        if encoded is not None and size is not None:
            problems.append(FieldProblem("size_bytes", "give either content_base64 or size_bytes, not both"))
        elif encoded is None and size is None:
            problems.append(FieldProblem("size_bytes", "required without content_base64: the file's size in bytes"))
        return problems


@dataclass(frozen=True)
class OutgoingAttachment:
    """A validated attachment: its bytes for the one-step form, or None for the two-step one."""

    name: str
    content_type: str
    size_bytes: int
    content: bytes | None


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def message_request(body: Mapping[str, Any]) -> OutgoingMessage:
    """The SendMessage for ``{"content_type", "content"}``; content_type defaults to text/plain."""
    return parse(OutgoingMessage, body)


def event_request(body: Mapping[str, Any]) -> OutgoingEvent:
    """The SendEvent for ``{"type": "typing"}`` or ``{"type": "read" | "delivered", "message_id"}``."""
    event = parse(ChatEventRequest, body)
    content = None if event.type == "typing" else json.dumps({"messageId": event.message_id}, separators=(",", ":"))
    return OutgoingEvent(kind=event.type, content_type=EVENT_CONTENT_TYPES[event.type], content=content)


def attachment_request(body: Mapping[str, Any]) -> OutgoingAttachment:
    """An attachment: ``{"name", "content_type", "content_base64"}`` (one step) or ``{..., "size_bytes"}`` (two)."""
    attachment, problems = read(AttachmentBody, body)
    content = None
    encoded = body.get("content_base64")
    # Decoded once, here, and only when the text is a string of an acceptable length.
    if isinstance(encoded, str) and "content_base64" not in {problem.field for problem in problems}:
        content, problem = _decoded(encoded)
        if problem is not None:
            problems.append(FieldProblem("content_base64", problem))
    if attachment is None or problems:
        raise RequestValidationError(problems)
    size = len(content) if content is not None else attachment.size_bytes or 0
    return OutgoingAttachment(attachment.name, attachment.content_type, size_bytes=size, content=content)


def _decoded(encoded: str) -> tuple[bytes | None, str | None]:
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None, "must be base64"
    if not content:
        return None, "must not be empty"
    if len(content) > MAX_ONE_STEP_BYTES:
        return None, _TOO_LARGE
    return content, None


def _is_json(text: str) -> bool:
    try:
        STRICT_JSON.decode(text)
    except (ValueError, RecursionError):
        return False
    return True


def derived_client_token(purpose: str, idempotency_key: str | None) -> str:
    """A ClientToken for a second call made under one Idempotency-Key (a random one without a key)."""
    if idempotency_key is None:
        return str(uuid.uuid4())
    return hashlib.sha256(f"{purpose}\n{idempotency_key}".encode("utf-8", "surrogatepass")).hexdigest()


class TwoWayChats:
    """The customer's side of the chats the relay started with a participant connection."""

    def __init__(
        self,
        gateway: ParticipantGateway,
        connections: ChatConnections,
        files: AttachmentFiles,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gateway = gateway
        self._connections = connections
        self._files = files
        self._clock = clock

    def open(
        self,
        *,
        contact_id: str,
        participant_id: str | None,
        participant_token: str,
        principal: str,
        chat_minutes: int | None,
    ) -> None:
        """Open the chat's participant connection (the customer marked connected) and keep it until the chat ends.

        A chat whose connection is already held (a replayed start) keeps the one it has.
        """
        if self._connections.get(contact_id) is not None:
            return
        try:
            credentials = self._gateway.connect(participant_token)
        except ChatConnectionExpiredError:
            # A token Connect has just issued, refused: Connect's failure, not the caller's.
            raise ChatUnavailableError("Connect refused the new chat's participant connection") from None
        self._connections.put(
            contact_id=contact_id,
            principal=principal,
            participant_id=participant_id,
            participant_token=participant_token,
            credentials=credentials,
            expires_at=int(self._clock()) + 60 * (chat_minutes or DEFAULT_CHAT_MINUTES),
        )

    def send_message(
        self, contact_id: str, principal: str, message: OutgoingMessage, client_token: str | None
    ) -> dict[str, Any]:
        """SendMessage as the customer; the new item's id and time."""
        return self._with_connection(
            contact_id,
            principal,
            lambda token: self._gateway.send_message(
                token, content_type=message.content_type, content=message.content, client_token=client_token
            ),
        )

    def send_event(
        self, contact_id: str, principal: str, event: OutgoingEvent, client_token: str | None
    ) -> dict[str, Any]:
        """SendEvent as the customer (typing, receipts)."""
        return self._with_connection(
            contact_id,
            principal,
            lambda token: self._gateway.send_event(
                token, content_type=event.content_type, content=event.content, client_token=client_token
            ),
        )

    def attach(
        self, contact_id: str, principal: str, attachment: OutgoingAttachment, idempotency_key: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        """Start an upload; with the bytes at hand, upload and complete it too.

        Returns the attachment id, and for the two-step form where to PUT the bytes (``None`` once uploaded).
        """
        start_token = idempotency_key or str(uuid.uuid4())

        def start(token: str) -> tuple[str, dict[str, Any] | None]:
            ticket = self._gateway.start_attachment_upload(
                token,
                name=attachment.name,
                content_type=attachment.content_type,
                size_bytes=attachment.size_bytes,
                client_token=start_token,
            )
            if attachment.content is None:
                return ticket.attachment_id, {
                    "method": "PUT",
                    "url": ticket.url,
                    "headers": ticket.headers,
                    "expires_at": ticket.expires_at,
                }
            self._files.upload(ticket.url, ticket.headers, attachment.content)
            self._gateway.complete_attachment_upload(
                token,
                attachment_id=ticket.attachment_id,
                client_token=derived_client_token("complete", idempotency_key),
            )
            return ticket.attachment_id, None

        return self._with_connection(contact_id, principal, start)

    def complete_attachment(
        self, contact_id: str, principal: str, attachment_id: str, idempotency_key: str | None
    ) -> None:
        """CompleteAttachmentUpload, once the client has PUT the bytes."""
        client_token = idempotency_key or str(uuid.uuid4())
        self._with_connection(
            contact_id,
            principal,
            lambda token: self._gateway.complete_attachment_upload(
                token, attachment_id=attachment_id, client_token=client_token
            ),
        )

    def transcript(self, contact_id: str, principal: str) -> tuple[str | None, list[dict[str, Any]]]:
        """Every item of the chat so far, oldest first."""
        return self._with_connection(contact_id, principal, self._gateway.transcript)

    def disconnect(self, contact_id: str, principal: str) -> bool:
        """The customer leaves; the kept tokens are deleted. False when the chat had already ended."""
        try:
            self._with_connection(contact_id, principal, self._gateway.disconnect)
        except ChatEndedError:
            self._connections.delete(contact_id)
            return False
        self._connections.delete(contact_id)
        return True

    def holds(self, contact_id: str) -> bool:
        """Whether the relay holds a participant connection for the chat."""
        return self._connections.get(contact_id) is not None

    def attachment_download(self, contact_id: str, attachment_id: str) -> AttachmentDownload:
        """GetAttachment for the chat stream (no caller: the relay itself reads what the chat shared)."""
        return self._with_connection(contact_id, None, lambda token: self._gateway.get_attachment(token, attachment_id))

    def _with_connection(self, contact_id: str, principal: str | None, call: Callable[[str], T]) -> T:
        held = self._connections.get(contact_id)
        if held is None or (principal is not None and held.principal != principal):
            # The same answer for another principal's chat: its existence is not the caller's business.
            raise ChatNotFoundError("the relay holds no participant connection for this chat")
        if self._expiring(held.connection_expiry):
            held = self._renew(held)
        try:
            return call(self._connections.connection_token(held))
        except ChatConnectionExpiredError:
            held = self._renew(held)
        try:
            return call(self._connections.connection_token(held))
        except ChatConnectionExpiredError:
            raise ChatEndedError("the chat has ended or the customer left it") from None

    def _renew(self, held: HeldConnection) -> HeldConnection:
        try:
            credentials = self._gateway.connect(self._connections.participant_token(held))
        except ChatConnectionExpiredError:
            raise ChatEndedError("the chat has ended or the customer left it") from None
        return self._connections.renewed(held, credentials)

    def _expiring(self, expiry: str | None) -> bool:
        if expiry is None:
            return False
        try:
            moment = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return False
        return moment - RENEW_MARGIN_SECONDS <= self._clock()
