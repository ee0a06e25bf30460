"""Routes of two-way chats: the customer's side of a chat the relay started with ``participant_connection``.

Same authorisation as the contact routes; a chat answers only the principal that started it (any other gets 404,
as for a chat the relay does not hold). Each route parses, calls one function of
:class:`~chalicelib.two_way_chats.TwoWayChats` and maps its result; Connect's own messages never reach the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from chalice.app import Blueprint, Request, Response

from chalicelib import dependencies
from chalicelib.contacts import IDEMPOTENCY_HEADER, MAX_IDEMPOTENCY_KEY
from chalicelib.errors import FieldProblem, RelayError, RequestValidationError
from chalicelib.handlers.http import error_response, json_body, json_response, principal_of, route_auth
from chalicelib.observability import contact_keys, count, logger
from chalicelib.streaming import CONTACT_ID, CONTACT_ID_PROBLEM
from chalicelib.two_way_chats import MAX_ITEM_ID, attachment_request, event_request, message_request

chats_api = Blueprint(__name__)

CHAT_PATH: Final = "/chats/{contact_id}"


def _answer(contact_id: str, respond: Callable[[Request, str], Response]) -> Response:
    """Check the path's contact id, then answer; every relay failure maps to its documented status."""
    request = chats_api.current_request
    with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
        try:
            if not CONTACT_ID.fullmatch(contact_id):
                raise RequestValidationError([FieldProblem("contact_id", CONTACT_ID_PROBLEM)])
            return respond(request, principal_of(request))
        except RelayError as exc:
            return error_response(exc)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise RequestValidationError(
            [FieldProblem(IDEMPOTENCY_HEADER, f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters")]
        )
    return key


def _sent(contact_id: str, sent: dict[str, Any]) -> dict[str, Any]:
    return {"contact_id": contact_id, "item_id": sent["Id"], "absolute_time": sent["AbsoluteTime"]}


@chats_api.route(CHAT_PATH + "/messages", methods=["POST"], **route_auth())
def send_chat_message(contact_id: str) -> Response:
    """SendMessage as the customer: text/plain, text/markdown or application/json."""

    def respond(request: Request, principal: str) -> Response:
        message = message_request(json_body(request.raw_body, required=True))
        sent = dependencies.two_way_chats().send_message(contact_id, principal, message, _idempotency_key(request))
        count("ChatMessageSent")
        logger.info("customer message sent", extra={"item_id": sent["Id"], "content_type": message.content_type})
        return json_response(
            201, {"contact_id": contact_id, "item_id": sent["Id"], "absolute_time": sent["AbsoluteTime"]}
        )

    return _answer(contact_id, respond)


@chats_api.route(CHAT_PATH + "/events", methods=["POST"], **route_auth())
def send_chat_event(contact_id: str) -> Response:
    """SendEvent as the customer: typing, or a read or delivered receipt for a message id."""

    def respond(request: Request, principal: str) -> Response:
        event = event_request(json_body(request.raw_body, required=True))
        sent = dependencies.two_way_chats().send_event(contact_id, principal, event, _idempotency_key(request))
        count("ChatEventSent", kind=event.kind)
        return json_response(
            201,
            {
                "contact_id": contact_id,
                "type": event.kind,
                "item_id": sent["Id"],
                "absolute_time": sent["AbsoluteTime"],
            },
        )

    return _answer(contact_id, respond)


@chats_api.route(CHAT_PATH + "/attachments", methods=["POST"], **route_auth())
def send_chat_attachment(contact_id: str) -> Response:
    """Share a file as the customer: in one step (``content_base64``) or two (``size_bytes``, then PUT, then
    ``POST .../attachments/{attachment_id}/complete``)."""

    def respond(request: Request, principal: str) -> Response:
        attachment = attachment_request(json_body(request.raw_body, required=True))
        attachment_id, upload = dependencies.two_way_chats().attach(
            contact_id, principal, attachment, _idempotency_key(request)
        )
        count("ChatAttachmentStarted" if upload else "ChatAttachmentSent")
        logger.info("customer attachment", extra={"attachment_id": attachment_id, "uploaded": upload is None})
        body = {"contact_id": contact_id, "attachment_id": attachment_id}
        if upload is None:
            return json_response(201, {**body, "status": "uploaded"})
        return json_response(
            201,
            {
                **body,
                "status": "awaiting_upload",
                "upload": upload,
                "complete_path": f"/chats/{contact_id}/attachments/{attachment_id}/complete",
            },
        )

    return _answer(contact_id, respond)


@chats_api.route(CHAT_PATH + "/attachments/{attachment_id}/complete", methods=["POST"], **route_auth())
def complete_chat_attachment(contact_id: str, attachment_id: str) -> Response:
    """The second step of a large attachment: the bytes are at the upload URL, Connect may share them."""

    def respond(request: Request, principal: str) -> Response:
        if not 1 <= len(attachment_id) <= MAX_ITEM_ID:
            raise RequestValidationError([FieldProblem("attachment_id", f"must be 1 to {MAX_ITEM_ID} characters")])
        dependencies.two_way_chats().complete_attachment(
            contact_id, principal, attachment_id, _idempotency_key(request)
        )
        count("ChatAttachmentSent")
        return json_response(200, {"contact_id": contact_id, "attachment_id": attachment_id, "status": "uploaded"})

    return _answer(contact_id, respond)


@chats_api.route(CHAT_PATH + "/transcript", methods=["GET"], **route_auth())
def get_chat_transcript(contact_id: str) -> Response:
    """Every item of the chat so far, in order (GetTranscript, all pages)."""

    def respond(request: Request, principal: str) -> Response:
        initial_contact_id, items = dependencies.two_way_chats().transcript(contact_id, principal)
        return json_response(
            200, {"contact_id": contact_id, "initial_contact_id": initial_contact_id or contact_id, "items": items}
        )

    return _answer(contact_id, respond)


@chats_api.route(CHAT_PATH, methods=["DELETE"], **route_auth())
def disconnect_chat(contact_id: str) -> Response:
    """The customer leaves the chat (DisconnectParticipant); the relay deletes the tokens it kept."""

    def respond(request: Request, principal: str) -> Response:
        disconnected = dependencies.two_way_chats().disconnect(contact_id, principal)
        count("ChatDisconnected")
        logger.info("customer disconnected", extra={"already_ended": not disconnected})
        return json_response(
            200, {"contact_id": contact_id, "status": "disconnected" if disconnected else "already_ended"}
        )

    return _answer(contact_id, respond)
