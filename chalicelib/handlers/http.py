"""What every HTTP route of the relay shares: authorisation, JSON bodies and answers, and error mapping."""

from __future__ import annotations

import json
import uuid
from typing import Any, Final

from chalice.app import CognitoUserPoolAuthorizer, IAMAuthorizer, Request, Response

from chalicelib.errors import (
    ChatError,
    ConnectError,
    ConnectThrottledError,
    FieldProblem,
    IdempotencyKeyInFlightError,
    IdempotencyKeyReusedError,
    RequestValidationError,
    SettingsError,
    StorageError,
    StorageUnavailableError,
    StreamingClientTokenReusedError,
    StreamingNotFoundError,
    StreamingStartInProgressError,
)
from chalicelib.observability import logger
from chalicelib.settings import deploy_time

# A 400 lists at most this many problems, each field and text cut to MAX_PROBLEM_TEXT characters, and says how
# many it left out: a body of invalid keys must not become an answer past Lambda's 6 MB.
MAX_PROBLEMS: Final = 50
MAX_PROBLEM_TEXT: Final = 200
STORAGE_RETRY_AFTER_SECONDS: Final = 1
# A start in progress elsewhere usually ends within a second.
IN_PROGRESS_RETRY_AFTER_SECONDS: Final = 1
ANONYMOUS: Final = "anonymous"


def route_auth() -> dict[str, Any]:
    """The authorisation keyword arguments for every route, chosen per stage by ``API_AUTH``.

    ``iam`` (default): SigV4-signed callers with ``execute-api:Invoke``. ``api_key``: an API key (with the usage
    plan's throttling). ``cognito``: a Cognito user pool named by ``COGNITO_USER_POOL_ARN``.
    """
    mode = deploy_time("API_AUTH", "iam").lower()
    if mode == "api_key":
        return {"api_key_required": True}
    if mode == "cognito":
        pool_arn = deploy_time("COGNITO_USER_POOL_ARN", "")
        if not pool_arn.startswith("arn:"):
            # A deployment-shaping value: failing here stops `chalice deploy` before an API nobody can call exists.
            raise SettingsError("API_AUTH=cognito needs COGNITO_USER_POOL_ARN (the user pool's ARN)")
        return {"authorizer": CognitoUserPoolAuthorizer("RelayUsers", provider_arns=[pool_arn])}
    if mode != "iam":
        raise SettingsError(f"API_AUTH={mode!r} is invalid (expected iam, api_key or cognito)")
    return {"authorizer": IAMAuthorizer()}


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(
        body=json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def principal_of(request: Request) -> str:
    """Who is calling, as API Gateway authenticated them: ``cognito:<sub>``, ``iam:<arn>``, ``apikey:<id>``, or
    ``anonymous`` when the request carries no identity (a local run, a route without authorisation).

    The most specific identity wins: a Cognito subject or an IAM caller is one principal, whereas an API key may be
    shared by a whole front end.
    """
    context = request.context if isinstance(request.context, dict) else {}
    authorizer = context.get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(subject, str) and subject:
        return f"cognito:{subject}"
    identity = context.get("identity")
    identity = identity if isinstance(identity, dict) else {}
    arn = identity.get("userArn")
    if isinstance(arn, str) and arn:
        return f"iam:{arn}"
    key_id = identity.get("apiKeyId")
    if isinstance(key_id, str) and key_id:
        return f"apikey:{key_id}"
    return ANONYMOUS


def problems_response(problems: list[FieldProblem]) -> Response:
    """400 listing the invalid fields: at most MAX_PROBLEMS, each cut short, with the count of those left out."""
    shown = [{"field": _bounded(p.field), "problem": _bounded(p.problem)} for p in problems[:MAX_PROBLEMS]]
    body: dict[str, Any] = {"error": "ValidationError", "message": "the request is invalid", "fields": shown}
    if len(problems) > len(shown):
        body["omitted"] = len(problems) - len(shown)
    return json_response(400, body)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_TEXT else text[: MAX_PROBLEM_TEXT - 1] + "…"


def error_response(exc: Exception) -> Response:
    """The answer for a failure; a bare 500 only for what nobody foresaw.

    Upstream failures (Connect, DynamoDB) answer the relay's own words and a request id; what Connect or DynamoDB
    said is logged under that id, never returned.
    """
    if isinstance(exc, RequestValidationError):
        return problems_response(exc.problems)
    if isinstance(exc, ChatError):
        # The relay's own words: Connect's message stays in the logs, with its code.
        logger.info("chat call refused", extra={"error": exc.code, "connect_code": exc.connect_code})
        retry = {"Retry-After": str(exc.retry_after or 1)} if exc.http_status == 429 else None
        return json_response(exc.http_status, {"error": exc.code, "message": exc.message}, retry)
    if isinstance(exc, ConnectError):
        request_id = _request_id()
        log = logger.error if exc.http_status >= 500 else logger.warning
        log("Connect refused or failed the call", extra={"code": exc.code, "reason": exc.reason})
        body = {"error": exc.public_code, "message": exc.public_message, "request_id": request_id}
        if isinstance(exc, ConnectThrottledError):
            return json_response(429, body, {"Retry-After": str(exc.retry_after or 1)})
        return json_response(exc.http_status, body)
    if isinstance(exc, StorageError):
        request_id = _request_id()
        logger.error("the streams table failed", extra={"code": exc.code, "reason": exc.reason})
        body = {"error": exc.public_code, "message": exc.public_message, "request_id": request_id}
        retry = {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)} if isinstance(exc, StorageUnavailableError) else None
        return json_response(exc.http_status, body, retry)
    if isinstance(exc, StreamingNotFoundError):
        return json_response(404, {"error": "StreamingNotFound", "message": str(exc)})
    if isinstance(exc, StreamingStartInProgressError):
        return json_response(
            409,
            {"error": "StreamingStartInProgress", "message": "another start of this chat is in progress; retry"},
            {"Retry-After": str(IN_PROGRESS_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, IdempotencyKeyReusedError):
        return json_response(
            422,
            {"error": "IdempotencyKeyReused", "message": "this Idempotency-Key was used with another request body"},
        )
    if isinstance(exc, IdempotencyKeyInFlightError):
        return json_response(
            409,
            {"error": "IdempotencyKeyInFlight", "message": "a request with this Idempotency-Key is in progress; retry"},
            {"Retry-After": str(IN_PROGRESS_RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, StreamingClientTokenReusedError):
        return json_response(
            409,
            {
                "error": "ClientTokenReused",
                "message": "this client_token started the chat's stream that was stopped; a restart needs a new one",
            },
        )
    if isinstance(exc, SettingsError):
        logger.error("relay settings are invalid", extra={"reason": str(exc)})
        return json_response(500, {"error": "RelayMisconfigured", "message": "the relay's settings are invalid"})
    logger.exception("unexpected failure")
    return json_response(500, {"error": "InternalError", "message": "unexpected failure", "request_id": _request_id()})


def _request_id() -> str:
    """The invocation's request id, as every log line of it carries (one is made up when Lambda gave none)."""
    request_id = logger.get_current_keys().get("request_id")
    if isinstance(request_id, str) and request_id:
        return request_id
    request_id = str(uuid.uuid4())
    logger.append_keys(request_id=request_id)
    return request_id


def json_body(raw: str | bytes | None, *, required: bool) -> dict[str, Any]:
    """The request's JSON object; an absent body is ``{}`` unless required."""
    if not raw:
        if required:
            raise RequestValidationError([FieldProblem("body", "a JSON object is required")])
        return {}
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise RequestValidationError([FieldProblem("body", "not valid JSON (nested too deeply)")]) from exc
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError, and a number past Python's 4,300-digit limit for int(str).
        raise RequestValidationError([FieldProblem("body", f"not valid JSON ({_json_problem(exc)})")]) from exc
    if not isinstance(body, dict):
        raise RequestValidationError([FieldProblem("body", "must be a JSON object")])
    return body


def _json_problem(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return exc.__class__.__name__
    return "a number has too many digits"
