"""Routes that start contacts for front ends: web, in-app and video calls, and chats that stream from their first item.

Browsers call these, so they answer CORS for the stage's listed origins themselves (Chalice's CORSConfig allows one
origin only): ``Access-Control-Allow-Origin`` echoes a listed ``Origin`` and every answer says ``Vary: Origin``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from chalice.app import Blueprint, Request, Response

from chalicelib import dependencies
from chalicelib.adapters.client_tokens import KeyUse, fingerprint, scoped_client_token
from chalicelib.contacts import IDEMPOTENCY_HEADER, ContactStart, call_started_event, chat_start, webrtc_start
from chalicelib.errors import ConnectUnavailableError, RelayError, SettingsError
from chalicelib.events import RelayEvent
from chalicelib.handlers.http import error_response, json_body, json_response, principal_of, route_auth
from chalicelib.observability import contact_keys, count, logger
from chalicelib.settings import Settings, get_settings

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
# StartChatContact's answer, less StreamingId (the relay's own business): the participant's tokens and, when
# Connect returns them, the connection it opened for the participant.
_CHAT_ANSWER_KEYS: Final = (
    "ContactId",
    "ParticipantId",
    "ParticipantToken",
    "ContinuedFromContactId",
    "ConnectionCredentials",
    "Websocket",
)
ROUTE_DELIVERY_TIMEOUT_SECONDS = 5.0


@contacts_api.route(WEBRTC_PATH, methods=["POST"], **route_auth())
def start_webrtc_contact() -> Response:
    """Start a web, in-app or video call; answer Connect's ConnectionData for amazon-chime-sdk-js."""
    request = contacts_api.current_request
    return _with_cors(request, _start_webrtc(request))


@contacts_api.route(CHAT_PATH, methods=["POST"], **route_auth())
def start_chat_contact() -> Response:
    """Start a chat that streams to the relay's topic from its first item, greeting included."""
    request = contacts_api.current_request
    return _with_cors(request, _start_chat(request))


@contacts_api.route(WEBRTC_PATH, methods=["OPTIONS"])
def preflight_webrtc_contact() -> Response:
    """CORS preflight (no authorisation: browsers send none with it)."""
    return _preflight(contacts_api.current_request)


@contacts_api.route(CHAT_PATH, methods=["OPTIONS"])
def preflight_chat_contact() -> Response:
    """CORS preflight (no authorisation: browsers send none with it)."""
    return _preflight(contacts_api.current_request)


def _call_connect(
    request: Request,
    route: str,
    build: Callable[[Mapping[str, Any], str | None, Settings], ContactStart],
    call: Callable[[dict[str, Any]], dict[str, Any]],
) -> tuple[ContactStart, dict[str, Any], str, bool]:
    """Validate the request, hold its Idempotency-Key, start the contact: the start, Connect's answer, the contact
    id and whether it replays an earlier request. Every failure is a RelayError the route maps to an answer."""
    body = json_body(request.raw_body, required=True)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    start = build(body, key, get_settings())
    if key is None:
        answer = call(start.request)
        return start, answer, _contact_id(answer), False
    # The key is the caller's: Connect's token is derived from it and the principal, so another caller reusing a
    # key starts a contact of its own, and never receives this one's tokens.
    principal = principal_of(request)
    start = dataclasses.replace(
        start, request={**start.request, "ClientToken": scoped_client_token(route, principal, key)}
    )
    ledger = dependencies.client_token_ledger()
    use = ledger.begin(route=route, principal=principal, key=key, request_fingerprint=fingerprint(body))
    try:
        answer = call(start.request)
        contact_id = _contact_id(answer)
    except Exception:
        if not use.replay:
            _release(use)
        raise
    if not use.replay:
        _complete(use, contact_id)
    return start, answer, contact_id, use.replay


def _release(use: KeyUse) -> None:
    try:
        dependencies.client_token_ledger().release(use)
    except RelayError as exc:
        # The key's lock lapses by itself; the call's own failure is what the caller needs to see.
        logger.warning("idempotency key not released", extra={"reason": type(exc).__name__})


def _complete(use: KeyUse, contact_id: str) -> None:
    try:
        dependencies.client_token_ledger().complete(use, contact_id=contact_id)
    except RelayError as exc:
        # The contact is started: failing its answer would only make the client retry. A retry after the lock
        # lapses sends the same ClientToken, and Connect answers this contact.
        logger.warning("idempotency key not completed", extra={"reason": type(exc).__name__})
        count("IdempotencyKeyNotRecorded")


def _start_webrtc(request: Request) -> Response:
    try:
        start, answer, contact_id, replayed = _call_connect(
            request, "webrtc", webrtc_start, lambda r: dependencies.connect_gateway().start_webrtc(r)
        )
    except RelayError as exc:
        return error_response(exc)
    with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
        count("WebRTCContactStarted")
        logger.info("web call started", extra={"flow": start.flow, "replayed": replayed})
        # A replay announces again, with the same webhook id: the first answer may have been a 503 from here.
        if not _announce(call_started_event(start, answer, timestamp=_now())):
            return json_response(
                503,
                {
                    "error": "EventNotKept",
                    "message": "the call is placed but its call.started event could not be kept; "
                    "retry with the same Idempotency-Key to announce it",
                },
                {"Retry-After": "1"},
            )
    return json_response(201, answer, {REPLAYED_HEADER: "true"} if replayed else None)


def _start_chat(request: Request) -> Response:
    try:
        start, answer, contact_id, replayed = _call_connect(
            request, "chat", chat_start, lambda r: dependencies.connect_gateway().start_chat(r)
        )
    except RelayError as exc:
        return error_response(exc)
    with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
        if not replayed:
            # A replay's stream was kept with the first answer (and may have been stopped since).
            _record_stream(start, answer, contact_id)
        count("ChatContactStarted")
        logger.info("chat started", extra={"flow": start.flow, "replayed": replayed})
        body = {key: answer[key] for key in _CHAT_ANSWER_KEYS if answer.get(key) is not None}
        if start.hold_connection:
            try:
                _hold_connection(request, start, answer, contact_id)
            except RelayError as exc:
                # The chat exists: a retry with the same Idempotency-Key finds it and opens its connection.
                logger.warning("participant connection not opened", extra={"reason": type(exc).__name__})
                count("ParticipantConnectionFailed")
                return error_response(exc)
            body["ConnectionHeldByRelay"] = True
    return json_response(201, body, {REPLAYED_HEADER: "true"} if replayed else None)


def _hold_connection(request: Request, start: ContactStart, answer: dict[str, Any], contact_id: str) -> None:
    """Open the chat's participant connection and keep it: the relay then writes the customer's side."""
    participant_token = answer.get("ParticipantToken")
    if not isinstance(participant_token, str) or not participant_token:
        raise ConnectUnavailableError("InvalidAnswer", "Connect's answer has no ParticipantToken")
    participant_id = answer.get("ParticipantId")
    dependencies.two_way_chats().open(
        contact_id=contact_id,
        participant_id=participant_id if isinstance(participant_id, str) else None,
        participant_token=participant_token,
        principal=principal_of(request),
        chat_minutes=start.request.get("ChatDurationInMinutes"),
    )
    count("ParticipantConnectionHeld")


def _contact_id(answer: dict[str, Any]) -> str:
    contact_id = answer.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise ConnectUnavailableError("InvalidAnswer", "Connect's answer has no ContactId")
    return contact_id


def _record_stream(start: ContactStart, answer: dict[str, Any], contact_id: str) -> None:
    """Keep the StreamingId, so the chat's contact event finds it streaming and Connect is not called again."""
    streaming_id = answer.get("StreamingId")
    if not isinstance(streaming_id, str) or not streaming_id:
        logger.warning("Connect started the chat without a StreamingId; its contact event will start streaming")
        count("StreamingRecordFailed", reason="NoStreamingId")
        return
    try:
        dependencies.streaming_starter().record(
            instance_id=start.request["InstanceId"],
            initial_contact_id=contact_id,
            streaming_id=streaming_id,
            started_by="chat_start",
        )
    except Exception:
        # The chat is started and streaming: failing its answer now would only make a client start another one.
        logger.exception("streaming id not recorded; the contact event may start a second stream")
        count("StreamingRecordFailed", reason="TableError")


def _announce(event: RelayEvent) -> bool:
    """Publish an event on the durable path chat events take; False only when it could not be kept at all."""
    try:
        _publish(event)
    except Exception:
        logger.exception("event not kept", extra={"event_type": event.type, "webhook_id": event.webhook_id})
        count("EventPublishFailed", event_type=event.type)
        return False
    return True


def _publish(event: RelayEvent) -> None:
    """Hand an event to the fan-out (tests replace this seam with a recorder).

    The caller waits for it, and API Gateway gives up after 29 s: each destination gets at most a few seconds
    here; what it does not take goes to the retry queue like any failed delivery (or S3, if SQS fails). If the
    event cannot be published at all (an invalid destinations file), it is held in the retry queue and published
    again later; this raises only when neither the retry queue nor S3 keeps it.
    """
    relay = dependencies.relay()
    try:
        relay.publish(event, max_timeout_seconds=ROUTE_DELIVERY_TIMEOUT_SECONDS)
    except Exception:
        # An invalid destinations file, or SQS and S3 both failing: held in the retry queue for every destination.
        logger.exception("call.started not published; held for a later publish", extra={"webhook_id": event.webhook_id})
        relay.hold(event)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
