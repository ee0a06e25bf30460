"""The Idempotency-Keys the contact routes have used, so a replay can say it is one.

Connect answers a replayed ClientToken with the contact it already started, and nothing in that answer tells a
replay from a first start. The relay keeps one small item per key in its streams table, under a partition key that
no contact id can take (``client-token#<route>#<sha256 of the key>``: the key itself is never stored), expiring
with Connect's 7-day token validity.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TOKEN_VALIDITY_SECONDS: Final = 7 * 86_400
_KEY_PREFIX: Final = "client-token#"


def ledger_key(route: str, client_token: str) -> str:
    """The item's partition key: the route and a digest of the token."""
    digest = hashlib.sha256(client_token.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_KEY_PREFIX}{route}#{digest}"


class ClientTokenLedger:
    """Remembers which contact each Idempotency-Key started."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def first_use(self, *, route: str, client_token: str, contact_id: str) -> bool | None:
        """True when this key starts its contact for the first time, False on a replay, None when unknown.

        A conditional write decides, so two concurrent requests with one key cannot both be "first".
        """
        key = ledger_key(route, client_token)
        try:
            if self._put(key, contact_id, only_if_unused=True):
                return True
            kept = self._kept_contact(key)
            if kept is None or kept == contact_id:
                return None if kept is None else False
            # Connect started another contact for this key (its token had expired): keep the new one.
            self._put(key, contact_id, only_if_unused=False)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("idempotency key not recorded", extra={"reason": str(exc)})
            return None
        return True

    def _put(self, key: str, contact_id: str, *, only_if_unused: bool) -> bool:
        now = int(time.time())
        item: dict[str, AttributeValueTypeDef] = {
            "initial_contact_id": {"S": key},
            "contact_id": {"S": contact_id},
            "started_at": {"N": str(now)},
            "expires_at": {"N": str(now + TOKEN_VALIDITY_SECONDS)},
        }
        if not only_if_unused:
            self._client.put_item(TableName=self._table, Item=item)
            return True
        try:
            self._client.put_item(
                TableName=self._table,
                Item=item,
                # DynamoDB deletes expired items lazily: a key past Connect's validity counts as unused.
                ConditionExpression="attribute_not_exists(initial_contact_id) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _kept_contact(self, key: str) -> str | None:
        answer = self._client.get_item(
            TableName=self._table, Key={"initial_contact_id": {"S": key}}, ConsistentRead=True
        )
        item = answer.get("Item") or {}
        kept = item.get("contact_id", {}).get("S")
        return kept if isinstance(kept, str) else None
