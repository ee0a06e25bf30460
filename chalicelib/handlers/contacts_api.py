"""Routes that start contacts for front ends: web, in-app and video calls, and chats that stream from their first item.

Browsers call these, so they answer CORS for the stage's listed origins themselves (Chalice's CORSConfig allows one
origin only): ``Access-Control-Allow-Origin`` echoes a listed ``Origin`` and every answer says ``Vary: Origin``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from chalice.app import Blueprint, Request, Response

from chalicelib import dependencies
from chalicelib.contacts import IDEMPOTENCY_HEADER
from chalicelib.errors import RelayError, SettingsError
from chalicelib.handlers.http import error_response, json_body, json_response, principal_of, route_auth
from chalicelib.observability import contact_keys
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from chalicelib.contact_starts import Route

contacts_api = Blueprint(__name__)

WEBRTC_PATH: Final = "/webrtc-contacts"
CHAT_PATH: Final = "/chat-contacts"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
# What a browser may send and read; SigV4 and API Gateway's API key travel in headers too.
ALLOWED_REQUEST_HEADERS: Final = (
    "Content-Type, Authorization, X-Api-Key, X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256, Idempotency-Key"
)
EXPOSED_HEADERS: Final = f"{REPLAYED_HEADER}, Retry-After"
PREFLIGHT_MAX_AGE_SECONDS: Final = 600


@contacts_api.route(WEBRTC_PATH, methods=["POST"], **route_auth())
def start_webrtc_contact() -> Response:
    """Start a web, in-app or video call; answer Connect's ConnectionData for amazon-chime-sdk-js."""
    request = contacts_api.current_request
    return _with_cors(request, _start(request, "webrtc"))


@contacts_api.route(CHAT_PATH, methods=["POST"], **route_auth())
def start_chat_contact() -> Response:
    """Start a chat that streams to the relay's topic from its first item, greeting included."""
    request = contacts_api.current_request
    return _with_cors(request, _start(request, "chat"))


@contacts_api.route(WEBRTC_PATH, methods=["OPTIONS"])
def preflight_webrtc_contact() -> Response:
    """CORS preflight (no authorisation: browsers send none with it)."""
    return _preflight(contacts_api.current_request)


@contacts_api.route(CHAT_PATH, methods=["OPTIONS"])
def preflight_chat_contact() -> Response:
    """CORS preflight (no authorisation: browsers send none with it)."""
    return _preflight(contacts_api.current_request)


def _start(request: Request, route: Route) -> Response:
    """Read the request, start its contact, and answer what came of it."""
    try:
        body = json_body(request.raw_body, required=True)
        starts = dependencies.contact_starts()
        start = starts.start_webrtc if route == "webrtc" else starts.start_chat
        started = start(body, idempotency_key=request.headers.get(IDEMPOTENCY_HEADER), principal=principal_of(request))
    except RelayError as exc:
        return error_response(exc)
    if started.connection_error is not None:
        with contact_keys(initial_contact_id=started.contact_id, contact_id=started.contact_id):
            return error_response(started.connection_error)
    if not started.announced:
        return json_response(
            503,
            {
                "error": "EventNotKept",
                "message": "the call is placed but its call.started event could not be kept; "
                "retry with the same Idempotency-Key to announce it",
            },
            {"Retry-After": "1"},
        )
    return json_response(201, started.answer, {REPLAYED_HEADER: "true"} if started.replayed else None)


def _allowed_origin(request: Request) -> str | None:
    origin = request.headers.get("origin")
    if not origin:
        return None
    try:
        allowed = get_settings().cors_allowed_origins
    except SettingsError:
        return None
    return origin if origin.lower() in allowed else None


def _with_cors(request: Request, response: Response) -> Response:
    response.headers["Vary"] = "Origin"
    origin = _allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response


def _preflight(request: Request) -> Response:
    if not request.headers.get("origin"):
        # Not a browser's preflight: say which methods the path takes.
        return Response(body="", status_code=204, headers={"Allow": "POST, OPTIONS", "Vary": "Origin"})
    origin = _allowed_origin(request)
    if origin is None:
        return json_response(
            403,
            {"error": "OriginNotAllowed", "message": "this origin may not call the relay from a browser"},
            {"Vary": "Origin"},
        )
    return Response(
        body="",
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": ALLOWED_REQUEST_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
            "Vary": "Origin",
        },
    )
