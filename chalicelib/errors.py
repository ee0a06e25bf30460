"""The relay's errors: one base class, a few precise subclasses named ``<Area><Problem>Error``."""

from __future__ import annotations

from dataclasses import dataclass


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

    ``code`` is Connect's error code (``ResourceNotFoundException`` ...), ``reason`` its message.
    """

    http_status = 502

    def __init__(self, code: str, reason: str, *, retry_after: int | None = None) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class ConnectContactNotFoundError(ConnectError):
    """The contact (or instance) does not exist, or the chat has already ended."""

    http_status = 404


class ConnectRequestRejectedError(ConnectError):
    """Connect judged the request invalid (InvalidRequest / InvalidParameter)."""

    http_status = 400


class ConnectStreamingLimitError(ConnectError):
    """The contact already has the maximum number of streaming endpoints."""

    http_status = 409


class ConnectThrottledError(ConnectError):
    """Connect throttled the call; ``retry_after`` says when to try again."""

    http_status = 429


class ConnectAccessDeniedError(ConnectError):
    """The relay's role may not make this call (a deployment problem, not the caller's)."""

    http_status = 502


class ConnectUnavailableError(ConnectError):
    """Connect failed internally (5xx) after the client's own retries."""

    http_status = 502


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
