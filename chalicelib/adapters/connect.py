"""Amazon Connect, as the relay uses it: start and stop chat streaming, start chats and WebRTC contacts.

The gateway takes its boto3 client in the constructor and turns Connect's error codes into the relay's errors, so
nothing above it sees botocore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import (
    ConnectAccessDeniedError,
    ConnectContactNotFoundError,
    ConnectError,
    ConnectRequestRejectedError,
    ConnectStreamingLimitError,
    ConnectThrottledError,
    ConnectUnavailableError,
)
from chalicelib.retry_after import retry_after_seconds

if TYPE_CHECKING:
    from mypy_boto3_connect import ConnectClient

_THROTTLING = frozenset({"ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"})
_BY_CODE: dict[str, type[ConnectError]] = {
    "ResourceNotFoundException": ConnectContactNotFoundError,
    "InvalidRequestException": ConnectRequestRejectedError,
    "InvalidParameterException": ConnectRequestRejectedError,
    "AccessDeniedException": ConnectAccessDeniedError,
    "InternalServiceException": ConnectUnavailableError,
    "ServiceUnavailableException": ConnectUnavailableError,
}
DEFAULT_RETRY_AFTER = 1
# Connect's message goes to the logs only; a bound keeps a hostile or broken answer from flooding them.
MAX_REASON = 1_000
REDACTED = "[redacted]"


def connect_error(exc: ClientError | BotoCoreError, *, redact: tuple[str, ...] = ()) -> ConnectError:
    """The relay's error for a failed Connect call; each of ``redact`` (the call's tokens) is cut from its reason."""
    if not isinstance(exc, ClientError):
        return ConnectUnavailableError(type(exc).__name__, _scrubbed(str(exc), redact))
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))[:100]
    reason = _scrubbed(str(error.get("Message", "")) or code, redact)
    meta = exc.response.get("ResponseMetadata", {})
    status = int(meta.get("HTTPStatusCode", 0) or 0)
    if code in _THROTTLING:
        return ConnectThrottledError(code, reason, retry_after=_retry_after(meta.get("HTTPHeaders", {})))
    if code == "LimitExceededException":
        # Connect answers LimitExceeded both for a contact that already has its two streaming endpoints and for
        # a service quota; only the first is a conflict the caller can act on.
        if "stream" in reason.lower() or "endpoint" in reason.lower():
            return ConnectStreamingLimitError(code, reason)
        return ConnectThrottledError(code, reason, retry_after=_retry_after(meta.get("HTTPHeaders", {})))
    if code in _BY_CODE:
        return _BY_CODE[code](code, reason)
    if status >= 500:
        return ConnectUnavailableError(code, reason)
    # UnrecognizedClient, ExpiredToken, InvalidSignature...: the relay's credentials, not the caller's request.
    return ConnectAccessDeniedError(code, reason)


def _scrubbed(reason: str, redact: tuple[str, ...]) -> str:
    for secret in redact:
        if secret:
            reason = reason.replace(secret, REDACTED)
    return reason[:MAX_REASON]


def _retry_after(headers: dict[str, Any]) -> int:
    return max(1, retry_after_seconds(headers.get("retry-after")) or DEFAULT_RETRY_AFTER)


class ConnectGateway:
    """Calls Amazon Connect; every failure comes out as a :class:`~chalicelib.errors.ConnectError`."""

    def __init__(self, client: ConnectClient) -> None:
        self._client = client

    def start_streaming(self, *, instance_id: str, contact_id: str, topic_arn: str, client_token: str) -> str:
        """Start streaming a chat's items to an SNS topic; returns Connect's StreamingId."""
        try:
            answer = self._client.start_contact_streaming(
                InstanceId=instance_id,
                ContactId=contact_id,
                ChatStreamingConfiguration={"StreamingEndpointArn": topic_arn},
                ClientToken=client_token,
            )
        except (ClientError, BotoCoreError) as exc:
            raise connect_error(exc, redact=(client_token,)) from exc
        return answer["StreamingId"]

    def stop_streaming(self, *, instance_id: str, contact_id: str, streaming_id: str) -> None:
        """Stop a stream started earlier."""
        try:
            self._client.stop_contact_streaming(InstanceId=instance_id, ContactId=contact_id, StreamingId=streaming_id)
        except (ClientError, BotoCoreError) as exc:
            raise connect_error(exc) from exc

    def start_chat(self, request: dict[str, Any]) -> dict[str, Any]:
        """StartChatContact with a request built and validated by the caller; returns Connect's answer."""
        try:
            answer = self._client.start_chat_contact(**request)
        except (ClientError, BotoCoreError) as exc:
            raise connect_error(exc, redact=_tokens(request)) from exc
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}

    def start_webrtc(self, request: dict[str, Any]) -> dict[str, Any]:
        """StartWebRTCContact with a request built and validated by the caller; returns Connect's answer."""
        try:
            answer = self._client.start_web_rtc_contact(**request)
        except (ClientError, BotoCoreError) as exc:
            raise connect_error(exc, redact=_tokens(request)) from exc
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}


def _tokens(request: dict[str, Any]) -> tuple[str, ...]:
    token = request.get("ClientToken")
    return (token,) if isinstance(token, str) else ()
