"""Destination health in DynamoDB: one table of the stage (``HEALTH_TABLE_NAME``), key ``pk`` + ``sk``.

- ``destination#<name>`` / ``health``: status, consecutive failures and since when, the breaker's open-until time,
  the number of parked events, the replay lease.
- ``destination#<name>`` / ``parked#<ns>#<webhook-id>``: one parked event (its exact body), in the order parked.
- ``rate#<name>#<second>`` / ``window``: deliveries counted in that second; expires a minute later (TTL).

Parking is one transaction (count up if the destination is not enabled, and keep the event), so an event is never
parked for a destination that a re-enable has already finished with; replaying one is one transaction too (forget
the event, count down), and enabling is conditional on the count being zero.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.streams_table import is_conditional_failure
from chalicelib.events import RelayEvent
from chalicelib.health import DestinationHealth, HealthReplayBusyError, HealthStoreError, ParkedEvent, Status

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

HEALTH = "health"
PARKED = "parked#"
RATE_WINDOW_TTL_SECONDS = 60
_STATUSES: dict[str, Status] = {"enabled": "enabled", "disabled": "disabled", "replaying": "replaying"}


def _key(name: str, sort: str = HEALTH) -> dict[str, AttributeValueTypeDef]:
    return {"pk": {"S": f"destination#{name}"}, "sk": {"S": sort}}


def _n(value: float) -> AttributeValueTypeDef:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _number(item: dict[str, Any], name: str) -> float | None:
    value = item.get(name)
    return float(value["N"]) if value else None


def _state(item: dict[str, Any] | None) -> DestinationHealth:
    if not item:
        return DestinationHealth()
    reason = item.get("disabled_reason")
    return DestinationHealth(
        status=_STATUSES.get(item.get("status", {}).get("S", "enabled"), "enabled"),
        failures=int(_number(item, "failures") or 0),
        failing_since=_number(item, "failing_since"),
        breaker_open_until=_number(item, "breaker_open_until"),
        disabled_reason=reason["S"] if reason else None,
        parked=int(_number(item, "parked") or 0),
    )


def _condition_failed(exc: BaseException | None, index: int) -> bool:
    """Whether ``exc`` is a transaction cancelled because its write at ``index`` failed its condition."""
    if not isinstance(exc, ClientError) or exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"


@contextmanager
def _store_errors(action: str) -> Iterator[None]:
    """AWS failures become HealthStoreError with the error code only (no message text reaches the logs)."""
    try:
        yield
    except ClientError as exc:
        raise HealthStoreError(f"{action} failed ({exc.response.get('Error', {}).get('Code', 'unknown')})") from exc
    except BotoCoreError as exc:
        raise HealthStoreError(f"{action} failed ({type(exc).__name__})") from exc


class HealthTable:
    """The :class:`chalicelib.health.HealthStore` on DynamoDB."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def read(self, name: str) -> DestinationHealth:
        """The destination's state; an eventually consistent read (the decisions that matter are conditional)."""
        with _store_errors("reading destination health"):
            answer = self._client.get_item(TableName=self._table, Key=_key(name))
        return _state(answer.get("Item"))

    def add_failure(self, name: str, now: float) -> DestinationHealth:
        """One more consecutive failure; the state after it."""
        with _store_errors("recording a failure"):
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(name),
                UpdateExpression="ADD failures :one SET failing_since = if_not_exists(failing_since, :now), "
                "last_failure_at = :now, #s = if_not_exists(#s, :enabled)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":one": _n(1), ":now": _n(now), ":enabled": {"S": "enabled"}},
                ReturnValues="ALL_NEW",
            )
        return _state(answer.get("Attributes"))

    def reset_failures(self, name: str) -> DestinationHealth:
        """End the failure streak and close the breaker; the state before."""
        with _store_errors("recording a success"):
            answer = self._client.update_item(
                TableName=self._table,
                Key=_key(name),
                UpdateExpression="SET failures = :zero, #s = if_not_exists(#s, :enabled) "
                "REMOVE failing_since, breaker_open_until",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":zero": _n(0), ":enabled": {"S": "enabled"}},
                ReturnValues="ALL_OLD",
            )
        return _state(answer.get("Attributes"))

    def disable(self, name: str, reason: str, now: float) -> bool:
        """Disable unless disabled already; True when this call did."""
        return self._conditional(
            "disabling a destination",
            Key=_key(name),
            UpdateExpression="SET #s = :disabled, disabled_reason = :reason, disabled_at = :now "
            "REMOVE breaker_open_until",
            ConditionExpression="attribute_not_exists(#s) OR #s <> :disabled",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":disabled": {"S": "disabled"}, ":reason": {"S": reason}, ":now": _n(now)},
        )

    def open_breaker(self, name: str, now: float, until: float) -> bool:
        """Open the breaker until ``until`` unless it is open; True when this call opened it."""
        return self._conditional(
            "opening a circuit",
            Key=_key(name),
            UpdateExpression="SET breaker_open_until = :until",
            ConditionExpression="attribute_not_exists(breaker_open_until) OR breaker_open_until <= :now",
            ExpressionAttributeValues={":until": _n(until), ":now": _n(now)},
        )

    def claim_probe(self, name: str, seen_until: float, until: float) -> bool:
        """Take the half-open probe: only one caller moves the open-until time it saw."""
        return self._conditional(
            "claiming a probe",
            Key=_key(name),
            UpdateExpression="SET breaker_open_until = :until",
            ConditionExpression="breaker_open_until = :seen",
            ExpressionAttributeValues={":until": _n(until), ":seen": _n(seen_until)},
        )

    def take(self, name: str, second: int, limit: int) -> bool:
        """Count a delivery in this second's window unless ``limit`` are counted; True if counted."""
        return self._conditional(
            "counting a delivery against the rate",
            Key={"pk": {"S": f"rate#{name}#{second}"}, "sk": {"S": "window"}},
            UpdateExpression="ADD deliveries :one SET expires_at = :expires",
            ConditionExpression="attribute_not_exists(deliveries) OR deliveries < :limit",
            ExpressionAttributeValues={
                ":one": _n(1),
                ":limit": _n(limit),
                ":expires": _n(second + RATE_WINDOW_TTL_SECONDS),
            },
        )

    def park(self, name: str, event: RelayEvent, now: float) -> bool:
        """Keep the event unless the destination is enabled (False then, and nothing kept)."""
        sort = f"{PARKED}{time.time_ns():020d}#{event.webhook_id}"
        try:
            with _store_errors("parking an event"):
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": _key(name),
                                "UpdateExpression": "ADD parked :one",
                                "ConditionExpression": "attribute_exists(#s) AND #s <> :enabled",
                                "ExpressionAttributeNames": {"#s": "status"},
                                "ExpressionAttributeValues": {":one": _n(1), ":enabled": {"S": "enabled"}},
                            }
                        },
                        {
                            "Put": {
                                "TableName": self._table,
                                "Item": {
                                    **_key(name, sort),
                                    "webhook_id": {"S": event.webhook_id},
                                    "type": {"S": event.type},
                                    "timestamp": {"S": event.timestamp},
                                    "body": {"B": event.body},
                                    "parked_at": _n(now),
                                },
                                "ConditionExpression": "attribute_not_exists(sk)",
                            }
                        },
                    ]
                )
        except HealthStoreError as exc:
            if _condition_failed(exc.__cause__, 0):
                return False
            if _condition_failed(exc.__cause__, 1):
                # This call's own entry (its key is unique to the call) is there already: an attempt whose answer
                # was lost parked it, and botocore sent the transaction again.
                return True
            raise
        return True

    def parked(self, name: str, limit: int) -> list[ParkedEvent]:
        """The oldest parked events, oldest first."""
        with _store_errors("reading parked events"):
            answer = self._client.query(
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :parked)",
                ExpressionAttributeValues={":pk": {"S": f"destination#{name}"}, ":parked": {"S": PARKED}},
                ConsistentRead=True,
                Limit=limit,
            )
        return [
            ParkedEvent(
                key=item["sk"]["S"],
                event=RelayEvent(
                    type=item["type"]["S"],
                    timestamp=item["timestamp"]["S"],
                    data=json.loads(item["body"]["B"])["data"],
                    webhook_id=item["webhook_id"]["S"],
                ),
            )
            for item in answer.get("Items", [])
        ]

    def unpark(self, name: str, parked: ParkedEvent) -> None:
        """Forget a replayed event and count it out; a second call for the same event changes nothing."""
        try:
            with _store_errors("forgetting a replayed event"):
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Delete": {
                                "TableName": self._table,
                                "Key": _key(name, parked.key),
                                "ConditionExpression": "attribute_exists(sk)",
                            }
                        },
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": _key(name),
                                "UpdateExpression": "ADD parked :minus",
                                "ExpressionAttributeValues": {":minus": _n(-1)},
                            }
                        },
                    ]
                )
        except HealthStoreError as exc:
            if not _condition_failed(exc.__cause__, 0):
                raise

    def begin_replay(self, name: str, owner: str, now: float, until: float) -> DestinationHealth:
        """Mark a disabled destination ``replaying`` under ``owner``'s lease; an enabled one is left as it is."""
        with _store_errors("reading destination health"):
            current = _state(
                self._client.get_item(TableName=self._table, Key=_key(name), ConsistentRead=True).get("Item")
            )
        if current.status == "enabled":
            return current
        try:
            with _store_errors("starting a replay"):
                answer = self._client.update_item(
                    TableName=self._table,
                    Key=_key(name),
                    UpdateExpression="SET #s = :replaying, failures = :zero, replay_owner = :owner, "
                    "replay_lease_until = :until REMOVE failing_since, breaker_open_until",
                    ConditionExpression="#s <> :enabled AND (attribute_not_exists(replay_lease_until) "
                    "OR replay_lease_until < :now OR replay_owner = :owner)",
                    ExpressionAttributeNames={"#s": "status"},
                    ExpressionAttributeValues={
                        ":replaying": {"S": "replaying"},
                        ":enabled": {"S": "enabled"},
                        ":zero": _n(0),
                        ":owner": {"S": owner},
                        ":until": _n(until),
                        ":now": _n(now),
                    },
                    ReturnValues="ALL_NEW",
                )
        except HealthStoreError as exc:
            if isinstance(exc.__cause__, ClientError) and is_conditional_failure(exc.__cause__):
                raise HealthReplayBusyError(f"destination {name} is being re-enabled by another caller") from None
            raise
        return _state(answer.get("Attributes"))

    def finish_replay(self, name: str, owner: str) -> bool:
        """Enable the destination if nothing is parked and ``owner`` holds the lease."""
        return self._conditional(
            "enabling a destination",
            Key=_key(name),
            UpdateExpression="SET #s = :enabled "
            "REMOVE replay_owner, replay_lease_until, disabled_reason, disabled_at, parked",
            ConditionExpression="#s = :replaying AND replay_owner = :owner "
            "AND (attribute_not_exists(parked) OR parked = :zero)",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={
                ":enabled": {"S": "enabled"},
                ":replaying": {"S": "replaying"},
                ":owner": {"S": owner},
                ":zero": _n(0),
            },
        )

    def release_replay(self, name: str, owner: str) -> None:
        """Give up the lease if ``owner`` still holds it."""
        self._conditional(
            "releasing a replay",
            Key=_key(name),
            UpdateExpression="REMOVE replay_owner, replay_lease_until",
            ConditionExpression="replay_owner = :owner",
            ExpressionAttributeValues={":owner": {"S": owner}},
        )

    def _conditional(self, action: str, **update: Any) -> bool:
        try:
            with _store_errors(action):
                self._client.update_item(TableName=self._table, **update)
        except HealthStoreError as exc:
            if isinstance(exc.__cause__, ClientError) and is_conditional_failure(exc.__cause__):
                return False
            raise
        return True
