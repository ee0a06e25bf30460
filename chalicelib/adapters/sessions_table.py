"""The sessions table: one DynamoDB item per chat session, so open sessions and late items are known cheaply.

Keyed by the initial contact id. An open session carries ``open`` (the partition key of the sparse index
``open-sessions``, sorted by ``last_item_at``), so the sweep finds the sessions idle for longer than it allows with
one Query, never a Scan. ``chat.ended`` and the first assembly remove ``open``; from then on the hot path's
conditional write fails, which is how it notices a late item. Times are epoch milliseconds; items expire by TTL
(``expires_at``, epoch seconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from chalicelib.adapters.streams_table import is_conditional_failure

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

OPEN_INDEX: Final = "open-sessions"
OPEN: Final = "open"
TTL_SECONDS: Final = 14 * 24 * 3600


class SessionsTable:
    """Open sessions, their last item, and whether their transcript is made or due again."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def touch(self, initial_contact_id: str, now_ms: int) -> bool:
        """Record an item of an open session; False when the session has ended, been swept or assembled."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(initial_contact_id),
                UpdateExpression="SET last_item_at = :now, #open = :open, expires_at = :ttl",
                ConditionExpression=(
                    "attribute_not_exists(ended_at) AND attribute_not_exists(assembled_at)"
                    " AND attribute_not_exists(swept_at)"
                ),
                ExpressionAttributeNames={"#open": "open"},
                ExpressionAttributeValues={":now": _n(now_ms), ":open": {"S": OPEN}, ":ttl": _n(_ttl(now_ms))},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def end(self, initial_contact_id: str, now_ms: int) -> None:
        """The chat ended: the session is no longer open (its assembly is scheduled)."""
        self._close(initial_contact_id, now_ms, "ended_at = if_not_exists(ended_at, :now)")

    def assembling(self, initial_contact_id: str, now_ms: int) -> None:
        """An assembly starts reading the archive: an item recorded after this is one it may have missed."""
        self._close(initial_contact_id, now_ms, "assembled_at = :now")

    def _close(self, initial_contact_id: str, now_ms: int, mark: str) -> None:
        """Take the session out of the open index, set ``mark`` (a SET clause of ``:now``) and its time to live."""
        self._client.update_item(
            TableName=self._table,
            Key=_key(initial_contact_id),
            UpdateExpression=f"SET {mark}, expires_at = :ttl REMOVE #open",
            ExpressionAttributeNames={"#open": "open"},
            ExpressionAttributeValues={":now": _n(now_ms), ":ttl": _n(_ttl(now_ms))},
        )

    def claim_reassembly(self, initial_contact_id: str, now_ms: int, *, lapse_ms: int) -> bool:
        """Whether this late item is the one to queue a re-assembly: the first since the last assembly started
        (or since a claim older than ``lapse_ms``, whose request was lost). Many late items, one re-assembly."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(initial_contact_id),
                UpdateExpression="SET reassembly_claimed_at = :now",
                ConditionExpression=(
                    "attribute_exists(assembled_at) AND (attribute_not_exists(reassembly_claimed_at)"
                    " OR reassembly_claimed_at < assembled_at OR reassembly_claimed_at < :lapsed)"
                ),
                ExpressionAttributeValues={":now": _n(now_ms), ":lapsed": _n(now_ms - lapse_ms)},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True

    def release_reassembly(self, initial_contact_id: str, claimed_ms: int) -> None:
        """Give a claim back (its request could not be queued), so the next late item claims again."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(initial_contact_id),
                UpdateExpression="REMOVE reassembly_claimed_at",
                ConditionExpression="reassembly_claimed_at = :claimed",
                ExpressionAttributeValues={":claimed": _n(claimed_ms)},
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise

    def idle(self, before_ms: int) -> list[str]:
        """The open sessions whose last item is older than ``before_ms``, oldest first."""
        found: list[str] = []
        paginator = self._client.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            IndexName=OPEN_INDEX,
            KeyConditionExpression="#open = :open AND last_item_at < :before",
            ExpressionAttributeNames={"#open": "open"},
            ExpressionAttributeValues={":open": {"S": OPEN}, ":before": _n(before_ms)},
        ):
            found += [item["initial_contact_id"]["S"] for item in page.get("Items", [])]
        return found

    def close_idle(self, initial_contact_id: str, before_ms: int, now_ms: int) -> bool:
        """Close a session the sweep found idle, unless an item came meanwhile (or another sweep closed it)."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key=_key(initial_contact_id),
                UpdateExpression="SET swept_at = :now REMOVE #open",
                ConditionExpression="attribute_exists(#open) AND last_item_at < :before",
                ExpressionAttributeNames={"#open": "open"},
                ExpressionAttributeValues={":now": _n(now_ms), ":before": _n(before_ms)},
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise
        return True


def _key(initial_contact_id: str) -> dict[str, dict[str, str]]:
    return {"initial_contact_id": {"S": initial_contact_id}}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _ttl(now_ms: int) -> int:
    return now_ms // 1000 + TTL_SECONDS


def table_definition(table_name: str) -> dict[str, Any]:
    """``CreateTable`` arguments of the sessions table, as ``infra/`` creates it (for local stand-ins and tests)."""
    return {
        "TableName": table_name,
        "KeySchema": [{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
        "AttributeDefinitions": [
            {"AttributeName": "initial_contact_id", "AttributeType": "S"},
            {"AttributeName": "open", "AttributeType": "S"},
            {"AttributeName": "last_item_at", "AttributeType": "N"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": "open", "KeyType": "HASH"},
                    {"AttributeName": "last_item_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
        "BillingMode": "PAY_PER_REQUEST",
    }
