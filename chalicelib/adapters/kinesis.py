"""Kinesis destinations: ``PutRecords``, up to 500 records a call, failures reported per record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chalicelib.batches import (
    KINESIS_LIMITS,
    WriteFailure,
    entry_failures,
    session_key,
    tagged_record,
    write_in_batches,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

    from chalicelib.destination_kinds import StreamTarget
    from chalicelib.events import RelayEvent

RETRYABLE_RECORD_CODES = frozenset(
    {"InternalFailure", "ProvisionedThroughputExceededException", "KMSThrottlingException"}
)
MAX_PARTITION_KEY = 256


class StreamWriter:
    """Puts events on Kinesis data streams; the partition key is the session, so a conversation keeps its order."""

    def __init__(self, client: KinesisClient) -> None:
        self._client = client

    def put(self, target: StreamTarget, events: Sequence[RelayEvent]) -> list[WriteFailure | None]:
        """Put each event (its tagged envelope); None where Kinesis accepted it."""
        sized: list[tuple[PutRecordsRequestEntryTypeDef, int]] = []
        for event in events:
            data = tagged_record(event)
            key = session_key(event)[:MAX_PARTITION_KEY]
            sized.append(({"Data": data, "PartitionKey": key}, len(data) + len(key.encode("utf-8"))))

        def write(entries: list[PutRecordsRequestEntryTypeDef]) -> list[WriteFailure | None]:
            answer = self._client.put_records(StreamARN=target.stream.value, Records=entries)
            return entry_failures(answer["Records"], RETRYABLE_RECORD_CODES)

        return write_in_batches(sized, KINESIS_LIMITS, write)
