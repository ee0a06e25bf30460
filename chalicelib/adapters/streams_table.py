"""The relay's record of the streams it started: one DynamoDB item per chat session, expiring by TTL.

Keyed by the session's initial contact id. StopContactStreaming needs the StreamingId; the EventBridge path reads
the record to recognise a chat whose stream is already on (started by the flow, a route or the relay's own chat
starter) without calling Connect again.

An item is in one of three states:

- ``starting``: a start has claimed the session (a conditional write) and is calling Connect; the claim lapses
  after ``CLAIM_SECONDS`` (longer than any function may run), so a start that crashed never blocks the chat;
- ``streaming``: the stream's StreamingId (items written before states existed have no state and mean this);
- ``stopped``: the stream was stopped; the item keeps its ``generation``, so the next start sends Connect a new
  ClientToken (a replayed token would answer the stopped stream's id) and can tell when it got that id back.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StorageError, StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

# The longest any function holding a claim may run (on_contact_event's Lambda timeout; the API's is 29 s).
CLAIM_SECONDS: Final = 60
STARTING: Final = "starting"
STREAMING: Final = "streaming"
STOPPED: Final = "stopped"
_RETRYABLE = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
    }
)


def storage_error(exc: ClientError | BotoCoreError) -> StorageError:
    """The relay's error for a failed DynamoDB call: retryable (503) or a deployment problem (502)."""
    if not isinstance(exc, ClientError):
        return StorageUnavailableError(type(exc).__name__, str(exc)[:1_000])
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))[:100]
    reason = str(error.get("Message", ""))[:1_000]
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _RETRYABLE or status >= 500:
        return StorageUnavailableError(code, reason)
    return StorageError(code, reason)


def is_conditional_failure(exc: ClientError) -> bool:
    """Whether a conditional write lost (someone else wrote first)."""
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class StreamRecord:
    """A stream the relay started."""

    initial_contact_id: str
    instance_id: str
    streaming_id: str
    topic_arn: str
    started_by: str
    started_at: int
    expires_at: int
    generation: int = 0


@dataclass(frozen=True)
class Session:
    """What the table holds for a session, read before a start claims it."""

    initial_contact_id: str
    stream: StreamRecord | None = None  # the stream on now, if any
    claimed_until: int | None = None  # a start in progress, until then
    next_generation: int = 0  # the ClientToken generation the next start uses
    stopped_streaming_id: str | None = None  # the stream stopped last
    revision: str | None = None  # the item's revision, for a conditional write over it
    exists: bool = False  # an item is there (even one past its TTL that DynamoDB has not removed yet)


class StreamsTable:
    """Reads and writes the sessions' items; every DynamoDB failure comes out as a StorageError."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, ttl_days: int) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86_400

    def get(self, initial_contact_id: str) -> StreamRecord | None:
        """The stream on now for a session, if any (a strongly consistent read)."""
        return self.session(initial_contact_id).stream

    def session(self, initial_contact_id: str) -> Session:
        """The session's state (a strongly consistent read)."""
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"initial_contact_id": {"S": initial_contact_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc) from exc
        item = answer.get("Item")
        if not item:
            return Session(initial_contact_id)
        now = time.time()
        revision = item.get("revision", {}).get("S")
        generation = int(item.get("generation", {}).get("N", "0"))
        if int(item.get("expires_at", {}).get("N", "0")) < now:
            return Session(initial_contact_id, revision=revision, exists=True)
        state = item.get("state", {}).get("S", STREAMING)
        if state == STOPPED:
            return Session(
                initial_contact_id,
                next_generation=generation + 1,
                stopped_streaming_id=item.get("stopped_streaming_id", {}).get("S"),
                revision=revision,
                exists=True,
            )
        if state == STARTING:
            until = int(item["claimed_until"]["N"])
            return Session(
                initial_contact_id,
                # A start that crashed or failed leaves its claim to lapse; the next one sends the same token, so
                # if that start did reach Connect, Connect answers the stream it began.
                claimed_until=until if until > now else None,
                next_generation=generation,
                stopped_streaming_id=item.get("stopped_streaming_id", {}).get("S"),
                revision=revision,
                exists=True,
            )
        stream = StreamRecord(
            initial_contact_id=item["initial_contact_id"]["S"],
            instance_id=item["instance_id"]["S"],
            streaming_id=item["streaming_id"]["S"],
            topic_arn=item["topic_arn"]["S"],
            started_by=item["started_by"]["S"],
            started_at=int(item["started_at"]["N"]),
            expires_at=int(item["expires_at"]["N"]),
            generation=generation,
        )
        return Session(initial_contact_id, stream=stream, next_generation=generation, revision=revision, exists=True)

    def claim(self, session: Session, *, started_by: str) -> str | None:
        """Claim a session for a start, if nobody wrote it since ``session`` was read; returns the claim's revision,
        or None when another start got there first."""
        now = int(time.time())
        revision = uuid.uuid4().hex
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": session.initial_contact_id},
            "state": {"S": STARTING},
            "generation": {"N": str(session.next_generation)},
            "claimed_until": {"N": str(now + CLAIM_SECONDS)},
            "started_by": {"S": started_by},
            "revision": {"S": revision},
            "expires_at": {"N": str(now + self._ttl_seconds)},
        }
        if session.stopped_streaming_id:
            item["stopped_streaming_id"] = {"S": session.stopped_streaming_id}
        if not self._put_over(session, item):
            return None
        return revision

    def release(self, session: Session, claim: str) -> None:
        """Give a claim up at once (the start failed), keeping the session's generation."""
        now = int(time.time())
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": session.initial_contact_id},
            "state": {"S": STARTING},
            "generation": {"N": str(session.next_generation)},
            "claimed_until": {"N": str(now)},
            "started_by": {"S": "released"},
            "revision": {"S": uuid.uuid4().hex},
            "expires_at": {"N": str(now + self._ttl_seconds)},
        }
        if session.stopped_streaming_id:
            item["stopped_streaming_id"] = {"S": session.stopped_streaming_id}
        self._put_over(Session(session.initial_contact_id, revision=claim, exists=True), item)

    def put(
        self,
        *,
        initial_contact_id: str,
        instance_id: str,
        streaming_id: str,
        topic_arn: str,
        started_by: str,
        generation: int = 0,
    ) -> StreamRecord:
        """Keep a stream (overwriting its claim: a claim outlives the function that holds it)."""
        now = int(time.time())
        record = StreamRecord(
            initial_contact_id=initial_contact_id,
            instance_id=instance_id,
            streaming_id=streaming_id,
            topic_arn=topic_arn,
            started_by=started_by,
            started_at=now,
            expires_at=now + self._ttl_seconds,
            generation=generation,
        )
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": record.initial_contact_id},
            "state": {"S": STREAMING},
            "instance_id": {"S": record.instance_id},
            "streaming_id": {"S": record.streaming_id},
            "topic_arn": {"S": record.topic_arn},
            "started_by": {"S": record.started_by},
            "started_at": {"N": str(record.started_at)},
            "expires_at": {"N": str(record.expires_at)},
            "generation": {"N": str(record.generation)},
            "revision": {"S": uuid.uuid4().hex},
        }
        self._write(item)
        return record

    def mark_stopped(self, record: StreamRecord) -> None:
        """Keep that a session's stream was stopped, with its generation (the next start needs a new token)."""
        now = int(time.time())
        self._write(
            {
                "initial_contact_id": {"S": record.initial_contact_id},
                "state": {"S": STOPPED},
                "generation": {"N": str(record.generation)},
                "stopped_streaming_id": {"S": record.streaming_id},
                "stopped_at": {"N": str(now)},
                "revision": {"S": uuid.uuid4().hex},
                "expires_at": {"N": str(now + self._ttl_seconds)},
            }
        )

    def _write(self, item: dict[str, AttributeValueTypeDef]) -> None:
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc) from exc

    def _put_over(self, session: Session, item: dict[str, AttributeValueTypeDef]) -> bool:
        """Write ``item`` only if the table still holds what ``session`` was read from."""
        if not session.exists:
            condition, values = "attribute_not_exists(initial_contact_id)", None
        elif session.revision is None:
            condition, values = "attribute_not_exists(revision)", None
        else:
            condition, values = "revision = :seen", {":seen": {"S": session.revision}}
        try:
            if values is None:
                self._client.put_item(TableName=self._table, Item=item, ConditionExpression=condition)
            else:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=condition,
                    ExpressionAttributeValues=values,
                )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise storage_error(exc) from exc
        except BotoCoreError as exc:
            raise storage_error(exc) from exc
        return True
