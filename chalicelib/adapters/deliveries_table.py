"""The delivery ledger (``chalicelib.ledger``) on DynamoDB: one item per (destination, ``webhook-id``) answered 2xx.

Items: ``pk`` = ``<destination>#<webhook-id>`` (a destination's name holds no ``#``), ``delivered_at``, and
``expires_at``, after which DynamoDB's TTL deletes the item (free of charge). One hash key per pair spreads the
writes over every partition, however busy one destination is.

Reads are one ``BatchGetItem`` per event or retry batch (up to 100 pairs a call), strongly consistent: an SNS
redelivery or a retry can follow the first delivery within a second. Writes are one ``BatchWriteItem`` (up to 25
a call) of plain puts: writing a pair twice leaves the same item, so no condition is needed. Keys DynamoDB leaves
unprocessed (throttling) are asked again twice, briefly; a pair still unanswered is treated as not delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.ledger import DeliveryLedgerError, Pair
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

READ_BATCH = 100
WRITE_BATCH = 25
# Unprocessed keys are asked again after these pauses (seconds); what is still left is unknown.
AGAIN_AFTER = (0.02, 0.1)


def _pk(pair: Pair) -> str:
    return f"{pair[0]}#{pair[1]}"


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@contextmanager
def _ledger_errors(action: str) -> Iterator[None]:
    """AWS failures become DeliveryLedgerError with the error code only (no message text reaches the logs)."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "unknown")
        raise DeliveryLedgerError(f"{action} failed ({code})") from exc
    except BotoCoreError as exc:
        raise DeliveryLedgerError(f"{action} failed ({type(exc).__name__})") from exc


class DeliveriesTable:
    """The :class:`chalicelib.ledger.DeliveryLedger` on DynamoDB."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.time,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._table = table_name
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._pause = pause

    def delivered(self, pairs: Collection[Pair]) -> set[Pair]:
        """The pairs that have an item; DeliveryLedgerError when DynamoDB refuses the call."""
        by_pk = {_pk(pair): pair for pair in pairs}
        found: set[Pair] = set()
        unanswered = 0
        for chunk in _chunks(list(by_pk), READ_BATCH):
            keys: list[Any] = [{"pk": {"S": pk}} for pk in chunk]
            for pause in (*AGAIN_AFTER, None):
                with _ledger_errors("reading the delivery ledger"):
                    answer = self._client.batch_get_item(
                        RequestItems={self._table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "pk"}}
                    )
                found |= {by_pk[item["pk"]["S"]] for item in answer.get("Responses", {}).get(self._table, [])}
                unprocessed = answer.get("UnprocessedKeys", {}).get(self._table)
                keys = list(unprocessed["Keys"]) if unprocessed else []
                if not keys or pause is None:
                    break
                self._pause(pause)
            unanswered += len(keys)
        if unanswered:
            logger.warning("delivery ledger left pairs unread; they are delivered", extra={"pairs": unanswered})
            count("DeliveryLedgerUnavailable")
        return found

    def record(self, pairs: Collection[Pair]) -> None:
        """Put one item per pair; DeliveryLedgerError when DynamoDB refuses, or leaves some unwritten."""
        now = self._clock()
        expires = str(int(now + self._ttl_seconds))
        delivered_at = str(int(now))
        unwritten = 0
        for chunk in _chunks(sorted({_pk(pair) for pair in pairs}), WRITE_BATCH):
            requests: list[Any] = [
                {
                    "PutRequest": {
                        "Item": {"pk": {"S": pk}, "delivered_at": {"N": delivered_at}, "expires_at": {"N": expires}}
                    }
                }
                for pk in chunk
            ]
            for pause in (*AGAIN_AFTER, None):
                with _ledger_errors("writing the delivery ledger"):
                    answer = self._client.batch_write_item(RequestItems={self._table: requests})
                requests = list(answer.get("UnprocessedItems", {}).get(self._table, []))
                if not requests or pause is None:
                    break
                self._pause(pause)
            unwritten += len(requests)
        if unwritten:
            raise DeliveryLedgerError(f"writing the delivery ledger left {unwritten} pairs unwritten")
