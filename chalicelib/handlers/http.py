"""What every HTTP route of the relay shares: authorisation, JSON bodies and answers, and error mapping."""

from __future__ import annotations

import json
from typing import Any

from chalice.app import CognitoUserPoolAuthorizer, IAMAuthorizer, Request, Response

from chalicelib.errors import (
    ChatError,
    ConnectError,
    ConnectThrottledError,
    FieldProblem,
    RequestValidationError,
    SettingsError,
    StreamingNotFoundError,
)
from chalicelib.observability import logger
from chalicelib.settings import deploy_time


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


def principal_of(request: Request) -> str:
    """Who called, as API Gateway's authorisation established it.

    ``"apikey:<id>"``, ``"cognito:<sub>"`` or ``"iam:<arn>"``; ``"anonymous"`` when the request carries none
    (a route without authorisation, or a local run).
    """
    context = request.context if isinstance(request.context, dict) else {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if isinstance(sub, str) and sub:
        return f"cognito:{sub}"
    identity = context.get("identity") or {}
    api_key_id = identity.get("apiKeyId")
    if isinstance(api_key_id, str) and api_key_id:
        return f"apikey:{api_key_id}"
    user_arn = identity.get("userArn")
    if isinstance(user_arn, str) and user_arn:
        return f"iam:{user_arn}"
    return "anonymous"


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    """A JSON answer."""
    return Response(
        body=json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def problems_response(problems: list[FieldProblem]) -> Response:
    """400 listing every invalid field."""
    return json_response(
        400,
        {"error": "ValidationError", "message": "the request is invalid", "fields": [p.as_dict() for p in problems]},
    )


def error_response(exc: Exception) -> Response:
    """The answer for a failure; a bare 500 only for what nobody foresaw."""
    if isinstance(exc, RequestValidationError):
        return problems_response(exc.problems)
    if isinstance(exc, ChatError):
        # The relay's own words: Connect's message stays in the logs, with its code.
        logger.info("chat call refused", extra={"error": exc.code, "connect_code": exc.connect_code})
        retry = {"Retry-After": str(exc.retry_after or 1)} if exc.http_status == 429 else None
        return json_response(exc.http_status, {"error": exc.code, "message": exc.message}, retry)
    if isinstance(exc, ConnectThrottledError):
        return json_response(
            429,
            {"error": exc.code, "message": exc.reason},
            {"Retry-After": str(exc.retry_after or 1)},
        )
    if isinstance(exc, ConnectError):
        return json_response(exc.http_status, {"error": exc.code, "message": exc.reason})
    if isinstance(exc, StreamingNotFoundError):
        return json_response(404, {"error": "StreamingNotFound", "message": str(exc)})
    if isinstance(exc, SettingsError):
        logger.error("relay settings are invalid", extra={"reason": str(exc)})
        return json_response(500, {"error": "RelayMisconfigured", "message": "the relay's settings are invalid"})
    logger.exception("unexpected failure")
    return json_response(500, {"error": "InternalError", "message": "unexpected failure"})


def json_body(raw: str | bytes | None, *, required: bool) -> dict[str, Any]:
    """The request's JSON object; an absent body is ``{}`` unless required."""
    if not raw:
        if required:
            raise RequestValidationError([FieldProblem("body", "a JSON object is required")])
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RequestValidationError([FieldProblem("body", f"not valid JSON ({exc.__class__.__name__})")]) from exc
    if not isinstance(body, dict):
        raise RequestValidationError([FieldProblem("body", "must be a JSON object")])
    return body
