"""Writing events to AWS in batches: the services' limits, and what one entry of a batch came to.

PutEvents takes 10 entries, SendMessageBatch 10 and PutRecords 500, each within a total size; every one reports
failures per entry, so a batch can half succeed and each event gets its own outcome.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from chalicelib.events import RelayEvent

T = TypeVar("T")


@dataclass(frozen=True)
class BatchLimits:
    """How many entries one call takes, and how many bytes in all and per entry."""

    entries: int
    total_bytes: int
    entry_bytes: int


SQS_LIMITS: Final = BatchLimits(entries=10, total_bytes=256 * 1024, entry_bytes=256 * 1024)
EVENTBRIDGE_LIMITS: Final = BatchLimits(entries=10, total_bytes=256 * 1024, entry_bytes=256 * 1024)
KINESIS_LIMITS: Final = BatchLimits(entries=500, total_bytes=5 * 1024 * 1024, entry_bytes=1024 * 1024)


@dataclass(frozen=True)
class WriteFailure:
    """Why one event was not written; ``error`` is the service's error code, never its message."""

    error: str
    retryable: bool


def batches(entries: Sequence[tuple[T, int]], limits: BatchLimits) -> Iterator[list[tuple[int, T]]]:
    """Consecutive batches of (position, entry) within ``limits``; entries are (entry, size in bytes).

    An entry larger than ``limits.entry_bytes`` is never batched: the caller reports it as too large.
    """
    batch: list[tuple[int, T]] = []
    size = 0
    for position, (entry, entry_size) in enumerate(entries):
        if entry_size > limits.entry_bytes:
            continue
        if batch and (len(batch) == limits.entries or size + entry_size > limits.total_bytes):
            yield batch
            batch, size = [], 0
        batch.append((position, entry))
        size += entry_size
    if batch:
        yield batch


def write_in_batches(
    entries: Sequence[tuple[T, int]], limits: BatchLimits, write: Callable[[list[T]], Sequence[WriteFailure | None]]
) -> list[WriteFailure | None]:
    """Write (entry, size) pairs in batches within ``limits``; ``write`` answers each entry's outcome, in order. A
    failed call fails its batch as retryable; an entry too large for any call fails for good. None where written."""
    outcomes: list[WriteFailure | None] = [too_large(limits)] * len(entries)
    for batch in batches(entries, limits):
        try:
            results = write([entry for _, entry in batch])
        except (BotoCoreError, ClientError) as exc:
            results = [WriteFailure(aws_error_code(exc), retryable=True)] * len(batch)
        for (position, _), result in zip(batch, results, strict=True):
            outcomes[position] = result
    return outcomes


def entry_failures(results: Sequence[Mapping[str, Any]], retryable_codes: frozenset[str]) -> list[WriteFailure | None]:
    """PutEvents' and PutRecords' answer: one result per entry, in order, with an ``ErrorCode`` where it failed."""
    return [
        None if (code := result.get("ErrorCode")) is None else WriteFailure(code, code in retryable_codes)
        for result in results
    ]


def too_large(limits: BatchLimits) -> WriteFailure:
    """The outcome of an entry no call would take: retrying cannot help."""
    return WriteFailure(f"larger than the {limits.entry_bytes // 1024} KiB a single entry may be", retryable=False)


def session_key(event: RelayEvent) -> str:
    """The conversation an event belongs to: FIFO group and partition key, so a session keeps its order.

    Chat events carry their initial contact id; ``call.started`` its contact id.
    """
    data = event.data
    return str(data.get("initial_contact_id") or data.get("contact_id") or event.webhook_id)


def tagged_record(event: RelayEvent) -> bytes:
    """The envelope with its ``webhook_id`` beside ``type``: for EventBridge and Kinesis, which carry no
    attributes besides the payload (SQS and S3 keep the envelope byte for byte and the id beside it)."""
    return json.dumps(
        {"webhook_id": event.webhook_id, **event.envelope()}, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def aws_error_code(exc: BotoCoreError | ClientError) -> str:
    """The service's error code, or the kind of transport failure; never the message (it can quote input)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
