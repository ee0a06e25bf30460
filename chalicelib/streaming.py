"""Starting and stopping a chat's stream to the relay's topic, once per chat session.

Every path (contact event, contact flow, HTTP route, the relay's own chat starter) goes through
:class:`StreamingStarter`, so they agree on one ClientToken per session, topic and generation: a duplicated event,
a retry and a manual start are the same call to Connect, which answers them all with the same StreamingId. A stop
moves the session to its next generation, so a restart is a new call, not a replay of the stopped stream's.

Before calling Connect, a start claims the session with a conditional write: of two starts racing for one chat
(a route with its own client_token and a contact event, say), only the claim's holder calls Connect; the other is
told with :class:`~chalicelib.errors.StreamingStartInProgressError`.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import (
    ConnectContactNotFoundError,
    FieldProblem,
    RelayError,
    StreamingClientTokenReusedError,
    StreamingNotFoundError,
    StreamingStartInProgressError,
    StreamingStoppedError,
)
from chalicelib.observability import logger
from chalicelib.settings import SNS_TOPIC_ARN
from chalicelib.validation import Rule

if TYPE_CHECKING:
    from chalicelib.adapters.connect import ConnectGateway
    from chalicelib.adapters.streams_table import Session, StreamRecord, StreamsTable

# Connect's contact ids are UUIDs; anything else (a "#", a newline) is refused before it reaches a table key.
CONTACT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CONTACT_ID}}}")
CONTACT_ID_PROBLEM = f"must be 1 to {MAX_CONTACT_ID} letters, digits, hyphens or underscores"
# The contact attribute the relay sets on the chats it starts with a streaming configuration, so the contact flow's
# function (which sees the contact's attributes) knows the chat streams already and does not call Connect again.
STREAMING_AT_START_ATTRIBUTE = "connect_chat_relay_streaming"
STREAMING_AT_START = "chat_start"
# A fixed namespace: tokens must be the same in every container and every release.
_TOKEN_NAMESPACE = uuid.UUID("5b0f3c1e-6d2a-4e0b-9a43-2c8f7d1e9b55")


def client_token_for(initial_contact_id: str, topic_arn: str, generation: int = 0) -> str:
    """The deterministic ClientToken of a session's stream to a topic (36 characters; Connect allows 500).

    ``generation`` counts the session's stops: each restart after a stop is a new token.
    """
    name = f"{initial_contact_id}\n{topic_arn}" + (f"\n{generation}" if generation else "")
    return str(uuid.uuid5(_TOKEN_NAMESPACE, name))


@dataclass(frozen=True)
class StreamingStart:
    """The outcome of a start: Connect's StreamingId, and whether the relay had already started it."""

    initial_contact_id: str
    instance_id: str
    streaming_id: str
    topic_arn: str
    already_streaming: bool


class StreamingStarter:
    """Starts and stops streaming for chat sessions, keeping each StreamingId."""

    def __init__(self, gateway: ConnectGateway, table: StreamsTable, *, topic_arn: str) -> None:
        self._gateway = gateway
        self._table = table
        self._topic_arn = topic_arn

    def start(
        self,
        *,
        instance_id: str,
        initial_contact_id: str,
        started_by: str,
        client_token: str | None = None,
        restart: bool = False,
    ) -> StreamingStart:
        """Start streaming a session to the topic, unless the relay already did.

        Raises StreamingStartInProgressError when another start holds the session's claim; StreamingStoppedError
        when the session's stream was stopped and this is not a ``restart``; StreamingClientTokenReusedError when
        Connect answers a caller's token with the stream that was stopped.
        """
        session = self._table.session(initial_contact_id)
        if session.stream is not None and session.stream.topic_arn == self._topic_arn:
            return self._outcome(session.stream, already_streaming=True)
        if session.stopped_streaming_id is not None and not restart:
            raise StreamingStoppedError(f"streaming was stopped for contact {initial_contact_id}")
        claim = None if session.claimed_until is not None else self._table.claim(session, started_by=started_by)
        if claim is None:
            latest = self._table.session(initial_contact_id)
            if latest.stream is not None and latest.stream.topic_arn == self._topic_arn:
                return self._outcome(latest.stream, already_streaming=True)
            raise StreamingStartInProgressError(f"another start of contact {initial_contact_id} is in progress")
        try:
            streaming_id = self._gateway.start_streaming(
                instance_id=instance_id,
                contact_id=initial_contact_id,
                topic_arn=self._topic_arn,
                client_token=client_token
                or client_token_for(initial_contact_id, self._topic_arn, session.next_generation),
            )
            if streaming_id == session.stopped_streaming_id:
                raise StreamingClientTokenReusedError(
                    f"Connect answered the stopped stream of contact {initial_contact_id}: the token was used before"
                )
            record = self._table.put(
                initial_contact_id=initial_contact_id,
                instance_id=instance_id,
                streaming_id=streaming_id,
                topic_arn=self._topic_arn,
                started_by=started_by,
                generation=session.next_generation,
            )
        except Exception:
            # Connect may have started the stream; the next start sends the same token and keeps what it answers.
            self._release(session, claim)
            raise
        return self._outcome(record, already_streaming=False)

    def _release(self, session: Session, claim: str) -> None:
        try:
            self._table.release(session, claim)
        except RelayError as exc:
            # The claim lapses by itself after CLAIM_SECONDS; the start's own failure is what the caller needs.
            logger.warning("streaming claim not released", extra={"reason": type(exc).__name__})

    def record(self, *, instance_id: str, initial_contact_id: str, streaming_id: str, started_by: str) -> None:
        """Keep a stream started elsewhere (StartChatContact with a streaming configuration)."""
        self._table.put(
            initial_contact_id=initial_contact_id,
            instance_id=instance_id,
            streaming_id=streaming_id,
            topic_arn=self._topic_arn,
            started_by=started_by,
        )

    def stop(self, initial_contact_id: str) -> StreamRecord:
        """Stop a session's stream; raises StreamingNotFoundError when the relay holds none."""
        kept = self._table.get(initial_contact_id)
        if kept is None:
            raise StreamingNotFoundError(f"no stream kept for contact {initial_contact_id}")
        try:
            self._gateway.stop_streaming(
                instance_id=kept.instance_id, contact_id=initial_contact_id, streaming_id=kept.streaming_id
            )
        except ConnectContactNotFoundError:
            # The chat has ended, and its stream with it: nothing is left to stop.
            self._table.mark_stopped(kept)
            raise
        self._table.mark_stopped(kept)
        return kept

    @staticmethod
    def _outcome(record: StreamRecord, *, already_streaming: bool) -> StreamingStart:
        return StreamingStart(
            initial_contact_id=record.initial_contact_id,
            instance_id=record.instance_id,
            streaming_id=record.streaming_id,
            topic_arn=record.topic_arn,
            already_streaming=already_streaming,
        )


@dataclass(frozen=True, kw_only=True)
class StartStreamingRequest:
    """The body of ``PUT /contacts/{contact_id}/streaming``; both fields are optional."""

    instance_id: Annotated[
        str | None,
        Rule(
            pattern="^[A-Za-z0-9-]{1,100}$",
            description="Required when the relay serves several instances; one of ALLOWED_INSTANCE_IDS.",
            problem="must be 1 to 100 letters, digits or hyphens",
        ),
    ] = None
    client_token: Annotated[
        str | None,
        Rule(
            min_length=1,
            max_length=500,
            description="Connect's ClientToken; by default the relay derives one per chat session and topic.",
            problem="must be a string of 1 to 500 characters",
        ),
    ] = None


def start_request_problems(*, contact_id: str, topic_arn: str, region: str) -> list[FieldProblem]:
    """The problems of a manual start outside its body, with Connect's limits (botocore checks none of the maximums)."""
    problems: list[FieldProblem] = []
    if not CONTACT_ID.fullmatch(contact_id):
        problems.append(FieldProblem("contact_id", CONTACT_ID_PROBLEM))
    match = SNS_TOPIC_ARN.match(topic_arn)
    if len(topic_arn) > 350 or match is None:
        problems.append(FieldProblem("topic_arn", "must be an SNS topic ARN of at most 350 characters"))
    elif match.group("region") != region:
        problems.append(FieldProblem("topic_arn", f"must be in the instance's region {region}"))
    return problems
