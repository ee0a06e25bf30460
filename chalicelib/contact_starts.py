"""Starting contacts for front ends: a web, in-app or video call, or a chat that streams from its first item.

The routes (``chalicelib.handlers.contacts_api``) read the request and map what :class:`ContactStarts` returns to
an answer; the decisions are made here: hold the caller's Idempotency-Key, call Connect, keep the chat's
StreamingId, announce the call, open the chat's participant connection. Collaborators come as zero-argument
factories (the getters of ``chalicelib.dependencies``), so a request builds only what it uses: a call without a key
never makes the key ledger, a chat never makes the relay, a one-way chat never needs the participant key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from chalicelib.adapters.client_tokens import fingerprint, scoped_client_token
from chalicelib.contacts import ContactStart, call_started_event, chat_start, webrtc_start
from chalicelib.errors import ConnectUnavailableError, RelayError
from chalicelib.observability import contact_keys, count, logger

if TYPE_CHECKING:
    from chalicelib.adapters.client_tokens import KeyUse
    from chalicelib.events import RelayEvent
    from chalicelib.settings import Settings

Route = Literal["webrtc", "chat"]
# The caller waits for the announcement, and API Gateway gives up after 29 s: each destination gets this long.
ROUTE_DELIVERY_TIMEOUT_SECONDS: Final = 5.0
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


class ContactGateway(Protocol):
    """Amazon Connect's contact starts."""

    def start_webrtc(self, request: dict[str, Any]) -> dict[str, Any]:
        """StartWebRTCContact; Connect's answer."""
        ...

    def start_chat(self, request: dict[str, Any]) -> dict[str, Any]:
        """StartChatContact; Connect's answer."""
        ...


class KeyLedger(Protocol):
    """Which Idempotency-Keys the routes have used, and with which body."""

    def begin(self, *, route: str, principal: str, key: str, request_fingerprint: str) -> KeyUse:
        """Lock the key for this request, or say it replays a completed one; raises when it may not go ahead."""
        ...

    def complete(self, use: KeyUse, *, contact_id: str) -> None:
        """The request got its contact."""
        ...

    def release(self, use: KeyUse) -> None:
        """The request failed: a retry with the same body may go ahead."""
        ...


class StreamRecorder(Protocol):
    """Where the relay keeps the streams it started."""

    def record(self, *, instance_id: str, initial_contact_id: str, streaming_id: str, started_by: str) -> None:
        """Keep a stream Connect started with the contact."""
        ...


class Announcer(Protocol):
    """The relay's fan-out."""

    def publish(self, event: RelayEvent, *, max_timeout_seconds: float | None = None) -> object:
        """Deliver ``event`` to every destination that wants it, each within ``max_timeout_seconds``."""
        ...

    def hold(self, event: RelayEvent) -> None:
        """Keep ``event`` to be published again later; raises when nothing keeps it."""
        ...


class ParticipantConnections(Protocol):
    """The customer's side of the chats the relay holds a participant connection for."""

    def open(
        self,
        *,
        contact_id: str,
        participant_id: str | None,
        participant_token: str,
        principal: str,
        chat_minutes: int | None,
    ) -> None:
        """Open the chat's participant connection and keep it."""
        ...


@dataclass(frozen=True)
class ContactStarted:
    """A started contact, or the replay of one: what its caller gets, and what did not follow the start.

    ``announced`` is False when a call's ``call.started`` could not be kept; ``connection_error`` is why a two-way
    chat's participant connection was not opened. The contact exists either way: a retry with the same
    Idempotency-Key finds it and finishes the job.
    """

    contact_id: str
    answer: dict[str, Any]
    replayed: bool
    announced: bool = True
    connection_error: RelayError | None = None


class ContactStarts:
    """Starts the contacts front ends ask for."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect: Callable[[], ContactGateway],
        keys: Callable[[], KeyLedger],
        streams: Callable[[], StreamRecorder],
        announcer: Callable[[], Announcer],
        connections: Callable[[], ParticipantConnections],
    ) -> None:
        self._settings = settings
        self._connect = connect
        self._keys = keys
        self._streams = streams
        self._announcer = announcer
        self._connections = connections

    def start_webrtc(self, body: Mapping[str, Any], *, idempotency_key: str | None, principal: str) -> ContactStarted:
        """Start a call and announce it (``call.started``); raises a RelayError when no call is started."""
        start, answer, contact_id, replayed = self._call_connect(
            "webrtc",
            webrtc_start,
            lambda request: self._connect().start_webrtc(request),
            body,
            key=idempotency_key,
            principal=principal,
        )
        with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
            count("WebRTCContactStarted")
            logger.info("web call started", extra={"flow": start.flow, "replayed": replayed})
            # A replay announces again, with the same webhook id: the first answer may have been a 503 from here.
            announced = self._announce(call_started_event(start, answer, timestamp=_now()))
        return ContactStarted(contact_id, answer, replayed, announced=announced)

    def start_chat(self, body: Mapping[str, Any], *, idempotency_key: str | None, principal: str) -> ContactStarted:
        """Start a chat streaming to the relay's topic, and hold its connection when the body asks; raises a
        RelayError when no chat is started."""
        start, answer, contact_id, replayed = self._call_connect(
            "chat",
            chat_start,
            lambda request: self._connect().start_chat(request),
            body,
            key=idempotency_key,
            principal=principal,
        )
        with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
            if not replayed:
                # A replay's stream was kept with the first answer (and may have been stopped since).
                self._record_stream(start, answer, contact_id)
            count("ChatContactStarted")
            logger.info("chat started", extra={"flow": start.flow, "replayed": replayed})
            kept = {key: answer[key] for key in _CHAT_ANSWER_KEYS if answer.get(key) is not None}
            if start.hold_connection:
                try:
                    self._hold_connection(start, answer, contact_id, principal)
                except RelayError as exc:
                    # The chat exists: a retry with the same Idempotency-Key finds it and opens its connection.
                    logger.warning("participant connection not opened", extra={"reason": type(exc).__name__})
                    count("ParticipantConnectionFailed")
                    return ContactStarted(contact_id, kept, replayed, connection_error=exc)
                kept["ConnectionHeldByRelay"] = True
        return ContactStarted(contact_id, kept, replayed)

    def _call_connect(
        self,
        route: Route,
        build: Callable[[Mapping[str, Any], str | None, Settings], ContactStart],
        call: Callable[[dict[str, Any]], dict[str, Any]],
        body: Mapping[str, Any],
        *,
        key: str | None,
        principal: str,
    ) -> tuple[ContactStart, dict[str, Any], str, bool]:
        """Validate the body, hold its Idempotency-Key, start the contact: the start, Connect's answer, the contact
        id and whether it replays an earlier request. Every failure is a RelayError."""
        start = build(body, key, self._settings)
        if key is None:
            answer = call(start.request)
            return start, answer, _contact_id(answer), False
        # The key is the caller's: Connect's token is derived from it and the principal, so another caller reusing a
        # key starts a contact of its own, and never receives this one's tokens.
        start = dataclasses.replace(
            start, request={**start.request, "ClientToken": scoped_client_token(route, principal, key)}
        )
        use = self._keys().begin(route=route, principal=principal, key=key, request_fingerprint=fingerprint(body))
        try:
            answer = call(start.request)
            contact_id = _contact_id(answer)
        except Exception:
            if not use.replay:
                self._release(use)
            raise
        if not use.replay:
            self._complete(use, contact_id)
        return start, answer, contact_id, use.replay

    def _release(self, use: KeyUse) -> None:
        try:
            self._keys().release(use)
        except RelayError as exc:
            # The key's lock lapses by itself; the call's own failure is what the caller needs to see.
            logger.warning("idempotency key not released", extra={"reason": type(exc).__name__})

    def _complete(self, use: KeyUse, contact_id: str) -> None:
        try:
            self._keys().complete(use, contact_id=contact_id)
        except RelayError as exc:
            # The contact is started: failing its answer would only make the client retry. A retry after the lock
            # lapses sends the same ClientToken, and Connect answers this contact.
            logger.warning("idempotency key not completed", extra={"reason": type(exc).__name__})
            count("IdempotencyKeyNotRecorded")

    def _hold_connection(self, start: ContactStart, answer: dict[str, Any], contact_id: str, principal: str) -> None:
        """Open the chat's participant connection and keep it: the relay then writes the customer's side."""
        participant_token = answer.get("ParticipantToken")
        if not isinstance(participant_token, str) or not participant_token:
            raise ConnectUnavailableError("InvalidAnswer", "Connect's answer has no ParticipantToken")
        participant_id = answer.get("ParticipantId")
        self._connections().open(
            contact_id=contact_id,
            participant_id=participant_id if isinstance(participant_id, str) else None,
            participant_token=participant_token,
            principal=principal,
            chat_minutes=start.request.get("ChatDurationInMinutes"),
        )
        count("ParticipantConnectionHeld")

    def _record_stream(self, start: ContactStart, answer: dict[str, Any], contact_id: str) -> None:
        """Keep the StreamingId, so the chat's contact event finds it streaming and Connect is not called again."""
        streaming_id = answer.get("StreamingId")
        if not isinstance(streaming_id, str) or not streaming_id:
            logger.warning("Connect started the chat without a StreamingId; its contact event will start streaming")
            count("StreamingRecordFailed", reason="NoStreamingId")
            return
        try:
            self._streams().record(
                instance_id=start.request["InstanceId"],
                initial_contact_id=contact_id,
                streaming_id=streaming_id,
                started_by="chat_start",
            )
        except Exception:
            # The chat is started and streaming: failing its answer now would only make a client start another one.
            logger.exception("streaming id not recorded; the contact event may start a second stream")
            count("StreamingRecordFailed", reason="TableError")

    def _announce(self, event: RelayEvent) -> bool:
        """Publish an event on the durable path chat events take; False only when it could not be kept at all.

        Each destination gets at most a few seconds here; what it does not take goes to the retry queue like any
        failed delivery (or S3, if SQS fails). An event that cannot be published at all (an invalid destinations
        file, or SQS and S3 both failing) is held in the retry queue for every destination, to be published again.
        """
        try:
            announcer = self._announcer()
            try:
                announcer.publish(event, max_timeout_seconds=ROUTE_DELIVERY_TIMEOUT_SECONDS)
            except Exception:
                logger.exception(
                    "event not published; held for a later publish",
                    extra={"event_type": event.type, "webhook_id": event.webhook_id},
                )
                announcer.hold(event)
        except Exception:
            logger.exception("event not kept", extra={"event_type": event.type, "webhook_id": event.webhook_id})
            count("EventPublishFailed", event_type=event.type)
            return False
        return True


def _contact_id(answer: dict[str, Any]) -> str:
    contact_id = answer.get("ContactId")
    if not isinstance(contact_id, str) or not contact_id:
        raise ConnectUnavailableError("InvalidAnswer", "Connect's answer has no ContactId")
    return contact_id


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
