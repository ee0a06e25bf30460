"""Starting and stopping a chat's stream to the relay's topic, once per chat session.

Every path (contact event, contact flow, HTTP route, the relay's own chat starter) goes through
:class:`StreamingStarter`, so they agree on one ClientToken per session and topic: a duplicated event, a retry and
a manual start are the same call to Connect, which answers them all with the same StreamingId.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chalicelib.contact_events import MAX_CONTACT_ID
from chalicelib.errors import ConnectContactNotFoundError, FieldProblem, StreamingNotFoundError
from chalicelib.settings import INSTANCE_ID, SNS_TOPIC_ARN

if TYPE_CHECKING:
    from chalicelib.adapters.connect import ConnectGateway
    from chalicelib.adapters.streams_table import StreamRecord, StreamsTable

# Connect's contact ids are UUIDs; anything else (a "#", a newline) is refused before it reaches a table key.
CONTACT_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_CONTACT_ID}}}")
CONTACT_ID_PROBLEM = f"must be 1 to {MAX_CONTACT_ID} letters, digits, hyphens or underscores"
# A fixed namespace: tokens must be the same in every container and every release.
_TOKEN_NAMESPACE = uuid.UUID("5b0f3c1e-6d2a-4e0b-9a43-2c8f7d1e9b55")


def client_token_for(initial_contact_id: str, topic_arn: str) -> str:
    """The deterministic ClientToken of a session's stream to a topic (36 characters; Connect allows 500)."""
    return str(uuid.uuid5(_TOKEN_NAMESPACE, f"{initial_contact_id}\n{topic_arn}"))


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
        self, *, instance_id: str, initial_contact_id: str, started_by: str, client_token: str | None = None
    ) -> StreamingStart:
        """Start streaming a session to the topic, unless the relay already did."""
        kept = self._table.get(initial_contact_id)
        if kept is not None and kept.topic_arn == self._topic_arn:
            return self._outcome(kept, already_streaming=True)
        streaming_id = self._gateway.start_streaming(
            instance_id=instance_id,
            contact_id=initial_contact_id,
            topic_arn=self._topic_arn,
            client_token=client_token or client_token_for(initial_contact_id, self._topic_arn),
        )
        record = self._table.put(
            initial_contact_id=initial_contact_id,
            instance_id=instance_id,
            streaming_id=streaming_id,
            topic_arn=self._topic_arn,
            started_by=started_by,
        )
        return self._outcome(record, already_streaming=False)

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
            self._table.delete(initial_contact_id)
            raise
        self._table.delete(initial_contact_id)
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


def start_request_problems(
    *, instance_id: str, contact_id: str, topic_arn: str, region: str, client_token: object
) -> list[FieldProblem]:
    """Every invalid field of a manual start, with Connect's limits (botocore checks none of the maximums)."""
    problems: list[FieldProblem] = []
    if not 1 <= len(instance_id) <= 100 or not INSTANCE_ID.match(instance_id):
        problems.append(FieldProblem("instance_id", "must be 1 to 100 letters, digits or hyphens"))
    if not CONTACT_ID.fullmatch(contact_id):
        problems.append(FieldProblem("contact_id", CONTACT_ID_PROBLEM))
    match = SNS_TOPIC_ARN.match(topic_arn)
    if len(topic_arn) > 350 or match is None:
        problems.append(FieldProblem("topic_arn", "must be an SNS topic ARN of at most 350 characters"))
    elif match.group("region") != region:
        problems.append(FieldProblem("topic_arn", f"must be in the instance's region {region}"))
    if client_token is not None and (not isinstance(client_token, str) or not 1 <= len(client_token) <= 500):
        problems.append(FieldProblem("client_token", "must be a string of 1 to 500 characters"))
    return problems
