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


def connect_error(exc: ClientError | BotoCoreError) -> ConnectError:
    """The relay's error for a failed Connect call."""
    if not isinstance(exc, ClientError):
        return ConnectUnavailableError(type(exc).__name__, str(exc))
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    reason = str(error.get("Message", "")) or code
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
    return ConnectRequestRejectedError(code, reason)


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
            raise connect_error(exc) from exc
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
            raise connect_error(exc) from exc
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}

    def start_webrtc(self, request: dict[str, Any]) -> dict[str, Any]:
        """StartWebRTCContact with a request built and validated by the caller; returns Connect's answer."""
        try:
            answer = self._client.start_web_rtc_contact(**request)
        except (ClientError, BotoCoreError) as exc:
            raise connect_error(exc) from exc
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}
