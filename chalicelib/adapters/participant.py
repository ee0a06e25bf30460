"""The Amazon Connect Participant Service: the customer's side of a chat, as the relay speaks it for a channel.

Every call but CreateParticipantConnection carries the ConnectionToken (a bearer token, not a signature). The
gateway takes its boto3 client in the constructor and turns the service's error codes into
:class:`~chalicelib.errors.ChatError` subclasses whose messages are the relay's own: Connect's text is never
passed on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import (
    ChatConflictError,
    ChatConnectionExpiredError,
    ChatError,
    ChatNotFoundError,
    ChatRejectedError,
    ChatThrottledError,
    ChatUnavailableError,
)
from chalicelib.retry_after import retry_after_seconds

if TYPE_CHECKING:
    from mypy_boto3_connectparticipant import ConnectParticipantClient

# GetTranscript returns at most 100 items a page; a chat has at most a few thousand items.
TRANSCRIPT_PAGE_SIZE: Final = 100
MAX_TRANSCRIPT_PAGES: Final = 1_000
_THROTTLING: Final = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling"})
_MESSAGES: Final[dict[type[ChatError], str]] = {
    ChatConnectionExpiredError: "the participant connection is no longer valid",
    ChatRejectedError: "Connect refused the request as invalid",
    ChatConflictError: "Connect refused the request: it conflicts with the chat's state or exceeds a quota",
    ChatThrottledError: "Connect throttled the call; retry after Retry-After seconds",
    ChatUnavailableError: "Connect failed or could not be reached",
    ChatNotFoundError: "Connect knows no such chat",
}


@dataclass(frozen=True)
class ConnectionCredentials:
    """A participant connection: its bearer token (never printed) and when it expires (ISO 8601, if given)."""

    token: str = field(repr=False)
    expiry: str | None


@dataclass(frozen=True)
class UploadTicket:
    """Where to upload an attachment's bytes: Connect's pre-signed URL and the headers it signed."""

    attachment_id: str
    url: str = field(repr=False)
    headers: dict[str, str]
    expires_at: str | None


@dataclass(frozen=True)
class AttachmentDownload:
    """A completed attachment's pre-signed download URL and its size."""

    url: str = field(repr=False)
    size_bytes: int


def participant_error(exc: ClientError | BotoCoreError) -> ChatError:
    """The relay's error for a failed Participant Service call."""
    if not isinstance(exc, ClientError):
        return ChatUnavailableError(_MESSAGES[ChatUnavailableError], connect_code=type(exc).__name__)
    code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    kind: type[ChatError]
    if code in _THROTTLING or status == 429:
        retry_after = max(1, retry_after_seconds(meta.get("HTTPHeaders", {}).get("retry-after")) or 1)
        return ChatThrottledError(_MESSAGES[ChatThrottledError], connect_code=code, retry_after=retry_after)
    if code == "AccessDeniedException":
        kind = ChatConnectionExpiredError
    elif code in {"ConflictException", "ServiceQuotaExceededException"}:
        kind = ChatConflictError
    elif code == "ResourceNotFoundException":
        kind = ChatNotFoundError
    elif status >= 500 or code in {"InternalServerException", "ServiceUnavailableException"}:
        kind = ChatUnavailableError
    else:
        kind = ChatRejectedError
    return kind(_MESSAGES[kind], connect_code=code)


class ParticipantGateway:
    """Calls the Participant Service; every failure comes out as a :class:`~chalicelib.errors.ChatError`."""

    def __init__(self, client: ConnectParticipantClient) -> None:
        self._client = client

    def connect(self, participant_token: str) -> ConnectionCredentials:
        """CreateParticipantConnection: connection credentials, the customer marked connected."""
        answer = self._call(
            "create_participant_connection",
            ParticipantToken=participant_token,
            Type=["CONNECTION_CREDENTIALS"],
            ConnectParticipant=True,
        )
        credentials = answer.get("ConnectionCredentials") or {}
        token = credentials.get("ConnectionToken")
        if not isinstance(token, str) or not token:
            raise ChatUnavailableError("Connect opened no connection", connect_code="NoConnectionToken")
        expiry = credentials.get("Expiry")
        return ConnectionCredentials(token=token, expiry=expiry if isinstance(expiry, str) else None)

    def send_message(self, token: str, *, content_type: str, content: str, client_token: str | None) -> dict[str, Any]:
        """SendMessage; returns Connect's ``Id`` and ``AbsoluteTime`` of the new item."""
        extra = {"ClientToken": client_token} if client_token else {}
        answer = self._call("send_message", ConnectionToken=token, ContentType=content_type, Content=content, **extra)
        return {"Id": answer.get("Id"), "AbsoluteTime": answer.get("AbsoluteTime")}

    def send_event(
        self, token: str, *, content_type: str, content: str | None, client_token: str | None
    ) -> dict[str, Any]:
        """SendEvent (typing, read and delivered receipts); returns the new item's ``Id`` and ``AbsoluteTime``."""
        extra: dict[str, str] = {"ClientToken": client_token} if client_token else {}
        if content is not None:
            extra["Content"] = content
        answer = self._call("send_event", ConnectionToken=token, ContentType=content_type, **extra)
        return {"Id": answer.get("Id"), "AbsoluteTime": answer.get("AbsoluteTime")}

    def start_attachment_upload(
        self, token: str, *, name: str, content_type: str, size_bytes: int, client_token: str
    ) -> UploadTicket:
        """StartAttachmentUpload: an attachment id and the pre-signed URL to PUT its bytes to."""
        answer = self._call(
            "start_attachment_upload",
            ConnectionToken=token,
            AttachmentName=name,
            ContentType=content_type,
            AttachmentSizeInBytes=size_bytes,
            ClientToken=client_token,
        )
        upload = answer.get("UploadMetadata") or {}
        attachment_id, url = answer.get("AttachmentId"), upload.get("Url")
        if not isinstance(attachment_id, str) or not isinstance(url, str):
            raise ChatUnavailableError("Connect gave no upload URL", connect_code="NoUploadUrl")
        return UploadTicket(
            attachment_id=attachment_id,
            url=url,
            headers={str(k): str(v) for k, v in (upload.get("HeadersToInclude") or {}).items()},
            expires_at=upload.get("UrlExpiry"),
        )

    def complete_attachment_upload(self, token: str, *, attachment_id: str, client_token: str) -> None:
        """CompleteAttachmentUpload: the uploaded bytes become a chat item (after Connect's scan, if any)."""
        self._call(
            "complete_attachment_upload", ConnectionToken=token, AttachmentIds=[attachment_id], ClientToken=client_token
        )

    def get_attachment(self, token: str, attachment_id: str) -> AttachmentDownload:
        """GetAttachment: a short-lived pre-signed URL of a completed attachment."""
        answer = self._call("get_attachment", ConnectionToken=token, AttachmentId=attachment_id)
        url = answer.get("Url")
        if not isinstance(url, str):
            raise ChatUnavailableError("Connect gave no download URL", connect_code="NoDownloadUrl")
        return AttachmentDownload(url=url, size_bytes=int(answer.get("AttachmentSizeInBytes") or 0))

    def transcript(self, token: str) -> tuple[str | None, list[dict[str, Any]]]:
        """GetTranscript, every page, oldest item first: (the initial contact id, the items)."""
        items: list[dict[str, Any]] = []
        initial_contact_id: str | None = None
        request: dict[str, Any] = {
            "ConnectionToken": token,
            "MaxResults": TRANSCRIPT_PAGE_SIZE,
            "ScanDirection": "FORWARD",
            "SortOrder": "ASCENDING",
        }
        for _page in range(MAX_TRANSCRIPT_PAGES):
            answer = self._call("get_transcript", **request)
            initial_contact_id = initial_contact_id or answer.get("InitialContactId")
            items.extend(answer.get("Transcript") or [])
            next_token = answer.get("NextToken")
            if not next_token or next_token == request.get("NextToken"):
                break
            request["NextToken"] = next_token
        return initial_contact_id, items

    def disconnect(self, token: str) -> None:
        """DisconnectParticipant: the customer leaves the chat."""
        self._call("disconnect_participant", ConnectionToken=token)

    def _call(self, operation: str, **request: Any) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = getattr(self._client, operation)(**request)
        except (ClientError, BotoCoreError) as exc:
            # Not chained: a traceback in the logs would carry Connect's own message.
            raise participant_error(exc) from None
        return answer
