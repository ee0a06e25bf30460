"""The relay's errors: one base class, a few precise subclasses named ``<Area><Problem>Error``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class RelayError(Exception):
    """Base class of every error the relay raises on purpose."""


class SettingsError(RelayError):
    """The environment is missing a setting or holds an invalid one; the message names each variable."""


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field of a request: where it is and what is expected."""

    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        """The JSON shape an HTTP answer lists."""
        return {"field": self.field, "problem": self.problem}


class RequestValidationError(RelayError):
    """A request has invalid fields; every one of them is listed, not just the first."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.problems = problems


class ConnectError(RelayError):
    """Amazon Connect refused or failed a call.

    ``code`` is Connect's error code (``ResourceNotFoundException`` ...) and ``reason`` its message: both are for
    the relay's logs. Callers get only ``public_code`` and ``public_message``, because Connect's messages carry role
    ARNs, account and instance ids.
    """

    http_status: ClassVar[int] = 502
    public_message: ClassVar[str] = "Amazon Connect failed the call"
    # Connect's own codes that the OpenAPI document names; any other code reaches callers as the class's generic one.
    documented_codes: ClassVar[frozenset[str]] = frozenset()
    generic_code: ClassVar[str] = "ConnectUnavailable"

    def __init__(self, code: str, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.retry_after = retry_after

    @property
    def public_code(self) -> str:
        """The code a caller may see."""
        return self.code if self.code in self.documented_codes else self.generic_code


class ConnectContactNotFoundError(ConnectError):
    """The contact (or instance) does not exist, or the chat has already ended."""

    http_status = 404
    public_message = "Amazon Connect knows no such contact, or the chat has ended"
    documented_codes = frozenset({"ResourceNotFoundException"})
    generic_code = "ResourceNotFoundException"


class ConnectRequestRejectedError(ConnectError):
    """Connect judged the request invalid (InvalidRequest / InvalidParameter)."""

    http_status = 400
    public_message = "Amazon Connect refused the request as invalid"
    documented_codes = frozenset({"InvalidRequestException", "InvalidParameterException"})
    generic_code = "InvalidRequestException"


class ConnectStreamingLimitError(ConnectError):
    """The contact already has the maximum number of streaming endpoints."""

    http_status = 409
    public_message = "the contact already has Amazon Connect's maximum of streaming endpoints"
    documented_codes = frozenset({"LimitExceededException"})
    generic_code = "LimitExceededException"


class ConnectThrottledError(ConnectError):
    """Connect throttled the call; ``retry_after`` says when to try again."""

    http_status = 429
    public_message = "Amazon Connect is throttling calls or a quota is reached; retry after Retry-After seconds"
    documented_codes = frozenset({"ThrottlingException", "TooManyRequestsException", "LimitExceededException"})
    generic_code = "ThrottlingException"


class ConnectAccessDeniedError(ConnectError):
    """Connect refused the relay itself: AccessDenied, or a 4xx code the relay does not know (UnrecognizedClient,
    ExpiredToken, InvalidSignature...). A deployment problem, not the caller's."""

    http_status = 502
    public_message = "Amazon Connect refused the relay's call; the relay's logs hold the cause under request_id"
    generic_code = "ConnectRefused"


class ConnectUnavailableError(ConnectError):
    """Connect failed internally (5xx) after the client's own retries, or could not be reached."""

    http_status = 502
    public_message = "Amazon Connect failed or could not be reached; the relay's logs hold the cause under request_id"
    documented_codes = frozenset({"InternalServiceException", "ServiceUnavailableException"})


class StorageError(RelayError):
    """The relay's DynamoDB table refused a call (missing table, access denied, invalid request): a deployment
    problem. ``code`` is DynamoDB's error code, for the logs."""

    http_status: ClassVar[int] = 502
    public_code: ClassVar[str] = "StorageFailed"
    public_message: ClassVar[str] = "the relay's storage failed; the relay's logs hold the cause under request_id"

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class StorageUnavailableError(StorageError):
    """The relay's DynamoDB table is throttled, failing (5xx) or unreachable: worth retrying shortly."""

    http_status = 503
    public_code = "StorageUnavailable"
    public_message = "the relay's storage is unavailable; retry after Retry-After seconds"


class StreamingNotFoundError(RelayError):
    """The relay holds no streaming id for the contact, so it cannot stop a stream it did not start."""


class ChatError(RelayError):
    """A two-way chat call failed. ``code`` and the message are the relay's own words, never Connect's text.

    ``connect_code`` keeps Connect's error code for logs and metrics; callers never see it.
    """

    http_status = 502
    code = "ConnectUnavailable"

    def __init__(self, message: str, *, connect_code: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.connect_code = connect_code
        self.retry_after = retry_after


class ChatNotFoundError(ChatError):
    """The relay holds no participant connection for this chat, or not for this caller."""

    http_status = 404
    code = "ChatNotFound"


class ChatEndedError(ChatError):
    """Connect no longer accepts the participant: the chat ended or the customer left it."""

    http_status = 410
    code = "ChatEnded"


class ChatConnectionExpiredError(ChatError):
    """Connect refused the connection token (AccessDeniedException): it expired or was replaced; renew it."""

    http_status = 410
    code = "ChatEnded"


class ChatRejectedError(ChatError):
    """Connect judged the request invalid (ValidationException)."""

    http_status = 400
    code = "ConnectRejected"


class ChatConflictError(ChatError):
    """Connect refused the call as conflicting (ConflictException) or over a quota (ServiceQuotaExceededException)."""

    http_status = 409
    code = "ConnectConflict"


class ChatThrottledError(ChatError):
    """Connect throttled the call; ``retry_after`` says when to try again."""

    http_status = 429
    code = "Throttled"


class ChatUnavailableError(ChatError):
    """Connect failed internally, or could not be reached, after the client's own retries."""

    http_status = 502
    code = "ConnectUnavailable"


class StreamingStartInProgressError(RelayError):
    """Another start holds the session's claim and is calling Connect: this one must not call it too."""


class StreamingClientTokenReusedError(RelayError):
    """A start's ClientToken is the one of a stream that was stopped, so Connect answered that stopped stream."""


class StreamingStoppedError(RelayError):
    """The chat's stream was stopped on purpose: only an explicit start (the route) starts it again, not a late or
    repeated contact event, nor the flow."""


class IdempotencyKeyReusedError(RelayError):
    """An Idempotency-Key came back with another request body (the IETF draft's 422)."""


class IdempotencyKeyInFlightError(RelayError):
    """A request with the same Idempotency-Key is still being processed (the IETF draft's 409)."""
