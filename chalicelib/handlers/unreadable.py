"""What a handler cannot read is kept in the quarantine as it came, logged and counted; never retried blindly."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from chalicelib.dependencies import quarantine
from chalicelib.observability import count, logger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from chalice.app import SQSEvent

T = TypeVar("T")


def keep_unreadable(source: str, *, record_id: str | None, reason: str, record: object, metric: str) -> str:
    """Keep ``record`` under ``invalid/<source>/`` with the reason, log its key, count ``metric``; returns the key.

    If the write fails, the exception reaches Lambda, whose retries and on-failure destination keep the input.
    """
    key = quarantine().keep_invalid(source=source, record_id=record_id, reason=reason, record=record)
    logger.warning("unreadable input kept", extra={"source": source, "id": record_id, "reason": reason, "key": key})
    count(metric)
    return key


def readable_requests(
    event: SQSEvent, read: Callable[[dict[str, Any]], T | None], *, source: str, reason: str, metric: str
) -> Iterator[T]:
    """Each SQS message's request as ``read`` makes it from the body's JSON object; a message that is not one, or
    that ``read`` cannot read (None), is kept and skipped."""
    for record in event:
        fields = _json_object(record.body)
        request = read(fields) if fields is not None else None
        if request is None:
            keep_unreadable(
                source, record_id=record.receipt_handle[:64], reason=reason, record=record.body, metric=metric
            )
            continue
        yield request


def _json_object(body: str) -> dict[str, Any] | None:
    try:
        fields = json.loads(body)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None
