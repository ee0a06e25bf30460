"""moto's server for `make chaos`, with costs AWS does not have taken out: work that grows with the data held.

A chaos run keeps thousands of messages in the retry queue and thousands of parked events in one table; moto,
built for tests that hold a few, then spends the run's minutes on itself rather than in the relay:

- DynamoDB: ``TransactWriteItems`` deep-copies each table a transaction names, for its rollback, before every
  transaction (with 2,000 events parked, 0.35 s a copy, and parking one more copies the table twice). DynamoDB's
  own transactions cost the same whatever the table holds. Here the rollback snapshot copies the table's index of
  items (references) and deep-copies only the items the transaction names: a rollback restores exactly what
  moto's own would, since a transaction changes no other item.
- SQS: every message sent reads the queue's attributes, which count every message held three times, and every
  message received reads the retention period the same way (so a receive costs the square of the queue's
  length). Here the three counts are computed at most every ``COUNT_SECONDS`` (SQS calls them approximate, and
  they lag in SQS too), and the retention period is read from the queue itself.

Run as ``python -m scripts.moto_service -H 127.0.0.1 -p PORT`` (the arguments of ``moto_server``).
"""

from __future__ import annotations

import copy
import sys
import threading
import time
import types
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_named = threading.local()
COUNT_SECONDS = 0.25
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


def _keys(table: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """The (hash, range) keys, as moto's DynamoType values, of the items a transaction names in ``table``."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    keys = []
    for item in transact_items:
        _, op = next(iter(item.items()))
        if op.get("TableName") != table.name:
            continue
        attributes = op.get("Key") or op.get("Item") or {}
        hash_value = attributes.get(table.hash_key_attr)
        range_value = attributes.get(table.range_key_attr) if table.range_key_attr else None
        if hash_value is not None:
            keys.append((DynamoType(hash_value), DynamoType(range_value) if range_value is not None else None))
    return keys


def snapshot(table: Any, transact_items: list[dict[str, Any]]) -> Any:
    """A copy of ``table`` that a rollback can put back: its own item index, deep copies of the named items."""
    clone = copy.copy(table)
    if table.has_range_key:
        clone.items = defaultdict(dict, {key: dict(by_range) for key, by_range in table.items.items()})
        for hash_value, range_value in _keys(table, transact_items):
            current = table.items.get(hash_value, {}).get(range_value)
            if current is not None:
                clone.items[hash_value][range_value] = copy.deepcopy(current)
    else:
        clone.items = defaultdict(dict, table.items)
        for hash_value, _ in _keys(table, transact_items):
            current = table.items.get(hash_value)
            if current is not None:
                clone.items[hash_value] = copy.deepcopy(current)
    return clone


@contextmanager
def patched() -> Iterator[None]:
    """moto's DynamoDB and SQS backends patched in this process, and restored on the way out."""
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.sqs.models import Message, Queue, SQSBackend

    retention = "is_message_valid_based_on_retention_period"
    saved: list[tuple[Any, str, Any]] = [
        (models, "copy", models.copy),  # type: ignore[attr-defined]
        (DynamoDBBackend, "transact_write_items", DynamoDBBackend.transact_write_items),
        (SQSBackend, retention, getattr(SQSBackend, retention)),
        *((Queue, name, Queue.__dict__[name]) for name in _COUNTS),
    ]
    original = DynamoDBBackend.transact_write_items

    def deepcopy(value: Any, memo: Any = None) -> Any:
        named = getattr(_named, "items", None)
        if isinstance(value, Table) and named is not None:
            return snapshot(value, named)
        return copy.deepcopy(value, memo)

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        _named.items = transact_items
        try:
            original(self, transact_items)
        finally:
            _named.items = None

    def counted(name: str) -> property:
        count = Queue.__dict__[name].fget

        def recent(queue: Any) -> int:
            cache = queue.__dict__.setdefault("_recent_counts", {})
            now = time.monotonic()
            known = cache.get(name)
            if known is None or now - known[0] > COUNT_SECONDS:
                known = cache[name] = (now, count(queue))
            return int(known[1])

        return property(recent)

    def retained(self: Any, queue_name: str, message: Message) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())  # type: ignore[operator]

    # moto.dynamodb.models reads copy.deepcopy through its module attribute `copy`.
    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]
    for name in _COUNTS:
        setattr(Queue, name, counted(name))
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def main(argv: list[str] | None = None) -> None:
    """moto_server, patched."""
    from moto.server import main as moto_main

    with patched():
        moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
