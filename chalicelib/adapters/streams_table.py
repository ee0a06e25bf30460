"""The relay's record of the streams it started: one DynamoDB item per chat session, expiring by TTL.

Keyed by the session's initial contact id. StopContactStreaming needs the StreamingId; the EventBridge path reads
the record to recognise a chat whose stream is already on (started by the flow, a route or the relay's own chat
starter) without calling Connect again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef


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


class StreamsTable:
    """Reads and writes :class:`StreamRecord` items."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, ttl_days: int) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_days * 86_400

    def get(self, initial_contact_id: str) -> StreamRecord | None:
        """The stream kept for a session, if any (a strongly consistent read)."""
        answer = self._client.get_item(
            TableName=self._table, Key={"initial_contact_id": {"S": initial_contact_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        # The table also holds the contact routes' client-token records, which are not streams.
        if not item or "streaming_id" not in item or int(item["expires_at"]["N"]) < time.time():
            return None
        return StreamRecord(
            initial_contact_id=item["initial_contact_id"]["S"],
            instance_id=item["instance_id"]["S"],
            streaming_id=item["streaming_id"]["S"],
            topic_arn=item["topic_arn"]["S"],
            started_by=item["started_by"]["S"],
            started_at=int(item["started_at"]["N"]),
            expires_at=int(item["expires_at"]["N"]),
        )

    def put(
        self, *, initial_contact_id: str, instance_id: str, streaming_id: str, topic_arn: str, started_by: str
    ) -> StreamRecord:
        """Keep a stream (overwriting: Connect's idempotent ClientToken returns the same StreamingId)."""
        now = int(time.time())
        record = StreamRecord(
            initial_contact_id=initial_contact_id,
            instance_id=instance_id,
            streaming_id=streaming_id,
            topic_arn=topic_arn,
            started_by=started_by,
            started_at=now,
            expires_at=now + self._ttl_seconds,
        )
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": record.initial_contact_id},
            "instance_id": {"S": record.instance_id},
            "streaming_id": {"S": record.streaming_id},
            "topic_arn": {"S": record.topic_arn},
            "started_by": {"S": record.started_by},
            "started_at": {"N": str(record.started_at)},
            "expires_at": {"N": str(record.expires_at)},
        }
        self._client.put_item(TableName=self._table, Item=item)
        return record

    def delete(self, initial_contact_id: str) -> None:
        """Forget a stream (after it was stopped)."""
        self._client.delete_item(TableName=self._table, Key={"initial_contact_id": {"S": initial_contact_id}})
