"""Kinesis destinations: ``PutRecords``, up to 500 records a call, failures reported per record."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batches import (
    KINESIS_LIMITS,
    WriteFailure,
    aws_error_code,
    batches,
    session_key,
    tagged_record,
    too_large,
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
        outcomes: list[WriteFailure | None] = [too_large(KINESIS_LIMITS)] * len(events)
        sized = []
        for event in events:
            data = tagged_record(event)
            key = session_key(event)[:MAX_PARTITION_KEY]
            sized.append(((key, data), len(data) + len(key.encode("utf-8"))))
        for batch in batches(sized, KINESIS_LIMITS):
            entries: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": data, "PartitionKey": key} for _, (key, data) in batch
            ]
            try:
                answer = self._client.put_records(StreamARN=target.stream.value, Records=entries)
            except (BotoCoreError, ClientError) as exc:
                for position, _ in batch:
                    outcomes[position] = WriteFailure(aws_error_code(exc), retryable=True)
                continue
            for (position, _), result in zip(batch, answer["Records"], strict=True):
                code = result.get("ErrorCode")
                outcomes[position] = None if code is None else WriteFailure(code, code in RETRYABLE_RECORD_CODES)
        return outcomes
