"""The Idempotency-Keys of the contact routes, per the IETF Idempotency-Key draft, scoped to the caller.

A key belongs to the authenticated principal that sent it: Connect's ClientToken is derived from the route, the
principal and the key, so another caller reusing a key starts a contact of its own and never gets the first
caller's answer (it holds the participant's tokens). The relay keeps one small item per (route, principal, key) in
its streams table, under a partition key no contact id can take (``client-token#<route>#<sha256>``: neither the key
nor the principal is stored), with a SHA-256 fingerprint of the request body, expiring with Connect's 7-day token
validity. The answer itself is never stored: Connect answers a replayed ClientToken with the contact it started.

- first use: the item is written in flight, with a lock, and the request goes to Connect;
- the same key with another body: :class:`IdempotencyKeyReusedError` (422);
- the same key while the first request is in flight: :class:`IdempotencyKeyInFlightError` (409);
- the same key and body after the first completed: a replay (Connect answers the same contact);
- a request that failed or crashed gives its lock up (or the lock lapses), keeping the fingerprint: a retry with the
  same body goes ahead with the same ClientToken, so if Connect did start the contact, it answers that one.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.streams_table import is_conditional_failure, storage_error
from chalicelib.errors import IdempotencyKeyInFlightError, IdempotencyKeyReusedError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

TOKEN_VALIDITY_SECONDS: Final = 7 * 86_400
# Longer than the API's Lambda may run (29 s): a lock outlives the request that holds it.
LOCK_SECONDS: Final = 30
_KEY_PREFIX: Final = "client-token#"
_IN_FLIGHT: Final = "in_flight"
_DONE: Final = "done"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def ledger_key(route: str, principal: str, key: str) -> str:
    """The item's partition key: the route and a digest of the principal and the key."""
    return f"{_KEY_PREFIX}{route}#{_digest(principal, key)}"


def scoped_client_token(route: str, principal: str, key: str) -> str:
    """Connect's ClientToken for a caller's Idempotency-Key (64 characters; Connect allows 500)."""
    return _digest("connect-chat-relay", route, principal, key)


def fingerprint(body: Any) -> str:
    """The request body's fingerprint: the same JSON, however it is spaced or ordered, has the same one."""
    return _digest(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True))


@dataclass(frozen=True)
class KeyUse:
    """A request that may go ahead with its key: a first use (``replay`` False) or a replay of a completed one."""

    item_key: str
    request_fingerprint: str
    revision: str
    replay: bool
    expires_at: int


class ClientTokenLedger:
    """Decides, with conditional writes, what a request with an Idempotency-Key may do."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def begin(self, *, route: str, principal: str, key: str, request_fingerprint: str) -> KeyUse:
        """Lock the key for this request, or say it is a replay; raises IdempotencyKeyReusedError (another body)
        or IdempotencyKeyInFlightError (the first request is still at Connect), or a StorageError."""
        item_key = ledger_key(route, principal, key)
        now = int(time.time())
        first = self._lock(item_key, request_fingerprint, expires_at=now + TOKEN_VALIDITY_SECONDS, over=None)
        if first is not None:
            return first
        kept = self._read(item_key)
        if kept is None or int(kept["expires_at"]["N"]) < now:
            # Gone or expired between the write and the read: another request is taking it right now.
            raise IdempotencyKeyInFlightError("a request with this Idempotency-Key is in progress")
        if kept["fingerprint"]["S"] != request_fingerprint:
            raise IdempotencyKeyReusedError("this Idempotency-Key was used with another request body")
        expires_at = int(kept["expires_at"]["N"])
        if kept["state"]["S"] == _DONE:
            return KeyUse(item_key, request_fingerprint, kept["revision"]["S"], replay=True, expires_at=expires_at)
        if int(kept["locked_until"]["N"]) > now:
            raise IdempotencyKeyInFlightError("a request with this Idempotency-Key is in progress")
        taken = self._lock(item_key, request_fingerprint, expires_at=expires_at, over=kept["revision"]["S"])
        if taken is None:
            raise IdempotencyKeyInFlightError("a request with this Idempotency-Key is in progress")
        return taken

    def complete(self, use: KeyUse, *, contact_id: str) -> None:
        """The request got its contact: later requests with the key and body are replays."""
        self._write(use, state=_DONE, locked_until=0, contact_id=contact_id)

    def release(self, use: KeyUse) -> None:
        """The request failed: a retry with the same body may go ahead at once (another body stays refused)."""
        self._write(use, state=_IN_FLIGHT, locked_until=0)

    def _lock(self, item_key: str, request_fingerprint: str, *, expires_at: int, over: str | None) -> KeyUse | None:
        now = int(time.time())
        revision = uuid.uuid4().hex
        use = KeyUse(item_key, request_fingerprint, revision, replay=False, expires_at=expires_at)
        item = self._item(use, state=_IN_FLIGHT, locked_until=now + LOCK_SECONDS, revision=revision)
        if over is None:
            # DynamoDB deletes expired items lazily: a key past Connect's validity counts as unused.
            condition = "attribute_not_exists(initial_contact_id) OR expires_at < :now"
            values: dict[str, AttributeValueTypeDef] = {":now": {"N": str(now)}}
        else:
            condition, values = "revision = :seen", {":seen": {"S": over}}
        try:
            self._client.put_item(
                TableName=self._table, Item=item, ConditionExpression=condition, ExpressionAttributeValues=values
            )
        except ClientError as exc:
            if is_conditional_failure(exc):
                return None
            raise storage_error(exc) from exc
        except BotoCoreError as exc:
            raise storage_error(exc) from exc
        return use

    def _write(self, use: KeyUse, *, state: str, locked_until: int, contact_id: str | None = None) -> None:
        item = self._item(use, state=state, locked_until=locked_until, revision=uuid.uuid4().hex)
        if contact_id is not None:
            item["contact_id"] = {"S": contact_id}
        try:
            self._client.put_item(TableName=self._table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc) from exc

    @staticmethod
    def _item(use: KeyUse, *, state: str, locked_until: int, revision: str) -> dict[str, AttributeValueTypeDef]:
        return {
            "initial_contact_id": {"S": use.item_key},
            "state": {"S": state},
            "fingerprint": {"S": use.request_fingerprint},
            "locked_until": {"N": str(locked_until)},
            "revision": {"S": revision},
            "expires_at": {"N": str(use.expires_at)},
        }

    def _read(self, item_key: str) -> dict[str, Any] | None:
        try:
            answer = self._client.get_item(
                TableName=self._table, Key={"initial_contact_id": {"S": item_key}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise storage_error(exc) from exc
        item = answer.get("Item")
        return dict(item) if item else None
