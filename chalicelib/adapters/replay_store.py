"""Where replays keep their state: a record in the destinations table, the key list in S3, tickets on the retry queue.

- ``replay#<id>`` / ``replay`` in the destinations table (``HEALTH_TABLE_NAME``): what is replayed, how far it got
  (``cursor``), the counts by outcome, and when; it expires 30 days after its last change (``expires_at``, TTL).
- ``<QUARANTINE_PREFIX>replays/<id>.json`` in the relay's bucket: the archive keys to send, in order, written once
  when the replay is planned (the bucket's lifecycle expires it with the quarantine).
- Replay tickets go to the retry queue, which ``retry_deliveries`` consumes.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from chalicelib.archive_replay import RECORD_SECONDS, ReplayState, ReplayTicket, Tally

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

SORT_KEY: Final = "replay"
_COUNTS: Final = ("delivered", "retrying", "parked", "failed", "skipped")


def _key(replay_id: str) -> dict[str, AttributeValueTypeDef]:
    return {"pk": {"S": f"replay#{replay_id}"}, "sk": {"S": SORT_KEY}}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _names(expression: str) -> dict[str, str]:
    """Every attribute an expression names as ``#name`` (several are DynamoDB reserved words: status, cursor)."""
    return {f"#{name}": name for name in re.findall(r"#(\w+)", expression)}


def _optional_time(item: dict[str, Any], name: str) -> datetime | None:
    value = item.get(name, {}).get("S")
    return None if value is None else datetime.fromisoformat(value).astimezone(UTC)


def _optional_number(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name, {}).get("N")
    return None if value is None else float(value)


class ReplayStore:
    """Reads and writes replay records (DynamoDB) and their key lists (S3)."""

    def __init__(self, dynamodb: DynamoDBClient, table: str, s3: S3Client, bucket: str, prefix: str) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = bucket
        self._prefix = (prefix.rstrip("/") + "/" if prefix else "") + "replays/"

    def create(self, state: ReplayState, *, expires_at: float) -> None:
        """Record a new replay (``queued``)."""
        item: dict[str, AttributeValueTypeDef] = {
            **_key(state.replay_id),
            "status": {"S": state.status},
            "destination": {"S": state.destination},
            "archive": {"S": state.archive},
            "created_at": _n(state.created_at),
            "updated_at": _n(state.created_at),
            "cursor": _n(0),
            "expires_at": _n(int(expires_at)),
            **{name: _n(0) for name in _COUNTS},
        }
        if state.initial_contact_id is not None:
            item["initial_contact_id"] = {"S": state.initial_contact_id}
        if state.start is not None and state.end is not None:
            item["from"] = {"S": state.start.isoformat()}
            item["to"] = {"S": state.end.isoformat()}
        self._dynamodb.put_item(TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(pk)")

    def read(self, replay_id: str) -> ReplayState | None:
        """The replay's record, strongly consistent; None when there is none."""
        item = self._dynamodb.get_item(TableName=self._table, Key=_key(replay_id), ConsistentRead=True).get("Item")
        if item is None:
            return None
        found = _optional_number(item, "found")
        return ReplayState(
            replay_id=replay_id,
            destination=item["destination"]["S"],
            archive=item["archive"]["S"],
            created_at=float(item["created_at"]["N"]),
            status=item["status"]["S"],  # type: ignore[arg-type]
            initial_contact_id=item.get("initial_contact_id", {}).get("S"),
            start=_optional_time(item, "from"),
            end=_optional_time(item, "to"),
            found=None if found is None else int(found),
            cursor=int(item["cursor"]["N"]),
            tally=Tally(**{name: int(item[name]["N"]) for name in _COUNTS}),
            updated_at=_optional_number(item, "updated_at"),
            finished_at=_optional_number(item, "finished_at"),
            outcome=item.get("outcome", {}).get("S"),
        )

    def planned(self, replay_id: str, *, found: int, finished_at: float | None, outcome: str | None) -> bool:
        """``queued`` → ``running`` with ``found`` items (``completed`` at once when nothing matched)."""
        now = finished_at or datetime.now(UTC).timestamp()
        values: dict[str, AttributeValueTypeDef] = {
            ":queued": {"S": "queued"},
            ":status": {"S": "running" if finished_at is None else "completed"},
            ":found": _n(found),
            ":now": _n(now),
            ":expires": _n(int(now + RECORD_SECONDS)),
        }
        update = "SET #status = :status, #found = :found, #updated_at = :now, #expires_at = :expires"
        if finished_at is not None and outcome is not None:
            update += ", #finished_at = :now, #outcome = :outcome"
            values[":outcome"] = {"S": outcome}
        return self._conditional(replay_id, update, "#status = :queued", values)

    def advance(
        self, replay_id: str, cursor: int, position: int, tally: Tally, *, finished: tuple[float, str] | None
    ) -> bool:
        """Move the cursor from ``cursor`` to ``position`` and add ``tally``; False if another ticket moved it."""
        now = finished[0] if finished else datetime.now(UTC).timestamp()
        values: dict[str, AttributeValueTypeDef] = {
            ":cursor": _n(cursor),
            ":position": _n(position),
            ":now": _n(now),
            ":expires": _n(int(now + RECORD_SECONDS)),
            ":running": {"S": "running"},
            **{f":{name}": _n(getattr(tally, name)) for name in _COUNTS},
        }
        update = "SET #cursor = :position, #updated_at = :now, #expires_at = :expires"
        if finished is not None:
            update += ", #status = :completed, #finished_at = :now, #outcome = :outcome"
            values[":completed"] = {"S": "completed"}
            values[":outcome"] = {"S": finished[1]}
        update += " ADD " + ", ".join(f"#{name} :{name}" for name in _COUNTS)
        return self._conditional(replay_id, update, "#cursor = :cursor AND #status = :running", values)

    def fail(self, replay_id: str, *, finished_at: float, outcome: str) -> None:
        """Mark the replay ``failed``, saying why."""
        update = "SET #status = :failed, #finished_at = :now, #updated_at = :now, #outcome = :outcome"
        self._dynamodb.update_item(
            TableName=self._table,
            Key=_key(replay_id),
            UpdateExpression=update,
            ExpressionAttributeNames=_names(update),
            ExpressionAttributeValues={":failed": {"S": "failed"}, ":now": _n(finished_at), ":outcome": {"S": outcome}},
        )

    def keep_keys(self, replay_id: str, keys: list[str]) -> None:
        """Keep the ordered archive keys of a replay."""
        self._s3.put_object(
            Bucket=self._bucket,
            Key=f"{self._prefix}{replay_id}.json",
            Body=json.dumps(keys).encode("utf-8"),
            ContentType="application/json",
            ServerSideEncryption="AES256",
        )

    def keys(self, replay_id: str) -> list[str]:
        """The ordered archive keys of a replay."""
        body = self._s3.get_object(Bucket=self._bucket, Key=f"{self._prefix}{replay_id}.json")["Body"].read()
        keys = json.loads(body)
        if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
            raise ValueError("a replay's key list must be a list of keys")
        return keys

    def _conditional(
        self, replay_id: str, update: str, condition: str, values: dict[str, AttributeValueTypeDef]
    ) -> bool:
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(replay_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=_names(f"{update} {condition}"),
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


class ReplayQueue:
    """Puts replay tickets on the retry queue (``retry_deliveries`` takes them)."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, ticket: ReplayTicket) -> None:
        """Queue ``ticket``; raises when SQS refuses it (the caller's invocation or request then fails)."""
        self._client.send_message(QueueUrl=self._queue_url, MessageBody=ticket.to_json())
