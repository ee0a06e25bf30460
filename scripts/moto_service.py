"""moto's server for `make chaos`, with costs AWS does not have taken out: work that grows with the data held.

A chaos run keeps thousands of messages in the retry queue and thousands of parked events in one table; moto,
built for tests that hold a few, then spends the run's minutes on itself rather than in the relay:

- DynamoDB: ``TransactWriteItems`` deep-copies each table a transaction names, for its rollback, before every
  transaction (with 2,000 events parked, 0.35 s a copy, and parking one more copies the table twice), and a
  rollback puts that copy in the table's place. DynamoDB's own transactions cost the same whatever the table
  holds, and a rollback there undoes the transaction's own writes only; moto's also undoes every write other
  requests made to the table meanwhile (its server answers requests in threads, so a chaos run lost parked events
  that way). Here a transaction keeps deep copies of only the items it names, and a rollback puts back those items,
  in place; writes are serialised, so no other request writes between a transaction's copy and its rollback:
  the rollback undoes exactly what the transaction changed, and nothing another request wrote.
- SQS: every message sent reads the queue's attributes, which count every message held three times, and every
  message received reads the retention period the same way (so a receive costs the square of the queue's
  length). Here the three counts are computed together, in one pass, at most every ``COUNT_SECONDS`` (SQS calls
  them approximate, and they lag in SQS too), and the retention period is read from the queue itself. The
  clock a message asks whether it is visible or delayed (once per message held, per receive) is ``time.time()``,
  not moto's two datetime conversions per question: the same milliseconds, at a tenth of the cost.
- SQS: a delete builds the queue's list of messages anew, from the list as it found it, and assigns it, without the
  lock a send appends under. A send that lands between a delete's walk and its assignment (anywhere in the walk of
  the second of two deletes at once) goes with the old list: SQS answered the send, and the message is never
  received. Chaos runs lost one to three pairs a run that way, with the queue empty at the end. Here a delete holds
  that lock.
- Every service: each request is logged (werkzeug formats a line with the client's address and the date, and
  writes it under a lock) to an output the chaos run throws away, a tenth of a busy server's time; here it is not
  (errors still are). Each request lists moto's package directory twice (``list_of_moto_modules``, a ``stat`` per
  service moto emulates) to ask whether the Host header names a service, and lists the handler class's methods
  with ``inspect``; both are the same for the server's whole life, and are listed once here.

Run as ``python -m scripts.moto_service -H 127.0.0.1 -p PORT`` (the arguments of ``moto_server``).
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_in_transaction = threading.local()
# The backend's writes of one item (BatchWriteItem calls them too); a transaction calls them under the same lock.
_SINGLE_WRITES = ("put_item", "update_item", "delete_item")
COUNT_SECONDS = 0.25
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)


def _counts(queue: Any) -> dict[str, int]:
    """The queue's three approximate counts in one pass, as moto's three properties count them one pass each."""
    now = time.time() * 1000.0
    visible = delayed = not_visible = 0
    for message in queue._messages:
        is_delayed = now < message.delayed_until
        is_visible = now > message.visible_at
        delayed += is_delayed
        not_visible += not is_visible
        visible += is_visible and not is_delayed
    return {
        "approximate_number_of_messages": visible,
        "approximate_number_of_messages_delayed": delayed,
        "approximate_number_of_messages_not_visible": not_visible,
    }


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


def snapshot(table: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """The items of ``table`` a transaction names, as they are now: (hash, range, deep copy or None if absent)."""
    saved = []
    for hash_value, range_value in _keys(table, transact_items):
        if table.has_range_key:
            current = table.items.get(hash_value, {}).get(range_value)
        else:
            current = table.items.get(hash_value)
        saved.append((hash_value, range_value, copy.deepcopy(current) if current is not None else None))
    return saved


def restore(table: Any, saved: list[tuple[Any, Any, Any]]) -> None:
    """Put back the items :func:`snapshot` saved, in place (the last saved first, for an item named twice)."""
    for hash_value, range_value, item in reversed(saved):
        if table.has_range_key:
            if item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        elif item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item


# One write at a time: no other request's write can land on an item between a transaction's snapshot and its
# rollback (DynamoDB would refuse such a write as a conflict), so putting the named items back undoes exactly what
# the transaction wrote. moto answers in threads under one GIL: serialising its writes costs little.
_WRITING = threading.RLock()


def _transacting(original: Any) -> Any:
    """moto's TransactWriteItems under the write lock, rolled back by putting the items it names back in place."""

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        names = {next(iter(item.values())).get("TableName") for item in transact_items}
        with _WRITING:
            tables = [self.tables[name] for name in names if name in self.tables]
            before = [(table, snapshot(table, transact_items)) for table in tables]
            _in_transaction.active = True
            try:
                original(self, transact_items)
            except Exception:
                for table, items in before:
                    restore(table, items)
                raise
            finally:
                _in_transaction.active = False

    return transact_write_items


def _under(lock: Callable[[Any], Any], method: Any) -> Any:
    """``method`` called under the lock ``lock(self)`` gives."""

    @functools.wraps(method)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock(self):
            return method(self, *args, **kwargs)

    return locked


def _unlogged(*_: Any, **__: Any) -> None:
    """werkzeug's access log line, not written."""


@contextmanager
def patched() -> Iterator[None]:
    """moto's DynamoDB and SQS backends patched in this process, and restored on the way out."""
    from moto import backends
    from moto.core import responses
    from moto.core.utils import method_names_from_class, unix_time_millis
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.sqs import models as sqs_models
    from moto.sqs.models import Message, Queue, SQSBackend
    from werkzeug.serving import WSGIRequestHandler

    # Module attributes moto reads at call time; each is replaced by one that gives the same answer cheaper.
    cheaper = (
        (sqs_models, "unix_time_millis"),
        (backends, "list_of_moto_modules"),
        (responses, "method_names_from_class"),
    )
    retention = "is_message_valid_based_on_retention_period"
    saved: list[tuple[Any, str, Any]] = [
        (models, "copy", models.copy),  # type: ignore[attr-defined]
        (DynamoDBBackend, "transact_write_items", DynamoDBBackend.transact_write_items),
        *((DynamoDBBackend, name, getattr(DynamoDBBackend, name)) for name in _SINGLE_WRITES),
        (SQSBackend, retention, getattr(SQSBackend, retention)),
        *((Queue, name, Queue.__dict__[name]) for name in _COUNTS),
        *((module, name, getattr(module, name)) for module, name in cheaper),
        (WSGIRequestHandler, "log_request", WSGIRequestHandler.log_request),
        (Queue, "delete_message", Queue.delete_message),
    ]
    modules = tuple(backends.list_of_moto_modules())
    method_names = functools.cache(method_names_from_class)
    original = DynamoDBBackend.transact_write_items

    def deepcopy(value: Any, memo: Any = None) -> Any:
        if isinstance(value, Table) and getattr(_in_transaction, "active", False):
            # moto's rollback copy: the table itself, so that its rollback (putting the "copy" back) changes nothing.
            return value
        return copy.deepcopy(value, memo)

    transact_write_items = _transacting(original)

    def millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else float(unix_time_millis(dt))

    def counted(name: str) -> property:
        def recent(queue: Any) -> int:
            known = queue.__dict__.get("_recent_counts")
            if known is None or time.monotonic() - known[0] > COUNT_SECONDS:
                known = queue.__dict__["_recent_counts"] = (time.monotonic(), _counts(queue))
            return int(known[1][name])

        return property(recent)

    def retained(self: Any, queue_name: str, message: Message) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > time.time())  # type: ignore[operator]

    # moto.dynamodb.models reads copy.deepcopy through its module attribute `copy`.
    models.copy = types.SimpleNamespace(deepcopy=deepcopy, copy=copy.copy)  # type: ignore[attr-defined,assignment]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    for name in _SINGLE_WRITES:
        setattr(DynamoDBBackend, name, _under(lambda _: _WRITING, getattr(DynamoDBBackend, name)))
    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]
    for name in _COUNTS:
        setattr(Queue, name, counted(name))
    WSGIRequestHandler.log_request = _unlogged  # type: ignore[method-assign]
    # The lock ``add_message`` appends under.
    Queue.delete_message = _under(lambda queue: queue._messages_lock, Queue.delete_message)  # type: ignore[method-assign]
    for (module, name), value in zip(cheaper, (millis, lambda: modules, method_names), strict=True):
        setattr(module, name, value)
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
