"""Delivering events to destinations of the AWS kinds: the S3 archive, SQS, EventBridge and Kinesis.

Each event gets a :class:`~chalicelib.delivery.DeliveryResult` per destination, like a webhook delivery, so a failed
write takes the same durable path as a failed POST. Writers are made on first use: a relay with webhooks only never
creates an SQS, EventBridge or Kinesis client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.adapters.archive import Archive
from chalicelib.adapters.eventbridge import BusWriter
from chalicelib.adapters.kinesis import StreamWriter
from chalicelib.adapters.sqs import QueueWriter
from chalicelib.delivery import DeliveryResult
from chalicelib.destination_kinds import ArchiveTarget, BusTarget, QueueTarget, StreamTarget
from chalicelib.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from chalicelib.batches import WriteFailure
    from chalicelib.destinations import Destination
    from chalicelib.events import RelayEvent


class AwsDelivery:
    """Writes events to the AWS resources destinations name, in batches where the service takes them."""

    def __init__(
        self,
        *,
        s3: Callable[[], S3Client],
        sqs: Callable[[], SQSClient],
        events: Callable[[], EventBridgeClient],
        kinesis: Callable[[], KinesisClient],
    ) -> None:
        self._s3 = s3
        self._sqs = sqs
        self._events = events
        self._kinesis = kinesis

    @cached_property
    def archive(self) -> Archive:
        """The S3 archive writer (transcripts and replays read the archive through it too)."""
        return Archive(self._s3())

    @cached_property
    def _queues(self) -> QueueWriter:
        return QueueWriter(self._sqs())

    @cached_property
    def _buses(self) -> BusWriter:
        return BusWriter(self._events())

    @cached_property
    def _streams(self) -> StreamWriter:
        return StreamWriter(self._kinesis())

    def deliver(self, destination: Destination, events: Sequence[RelayEvent]) -> list[DeliveryResult]:
        """Write ``events`` to the destination's resource; one result per event, in order."""
        target = destination.target
        started = time.perf_counter()
        outcomes: Sequence[WriteFailure | None]
        if isinstance(target, ArchiveTarget):
            outcomes = [self.archive.write(target, event) for event in events]
        elif isinstance(target, QueueTarget):
            outcomes = self._queues.send(target, events)
        elif isinstance(target, BusTarget):
            outcomes = self._buses.put(target, events)
        elif isinstance(target, StreamTarget):
            outcomes = self._streams.put(target, events)
        else:
            raise TypeError(f"{destination.name} is a webhook, delivered by the fan-out")
        latency_ms = (time.perf_counter() - started) * 1000
        results = []
        for event, failure in zip(events, outcomes, strict=True):
            if failure is None:
                results.append(DeliveryResult.written(event, destination.name, latency_ms=latency_ms))
                continue
            error = f"{destination.kind} write failed: {failure.error}"
            results.append(
                DeliveryResult.unsent(
                    event, destination.name, error, retryable=failure.retryable, latency_ms=latency_ms
                )
            )
            logger.warning(
                "destination write failed",
                extra={
                    "destination": destination.name,
                    "kind": destination.kind,
                    "webhook_id": event.webhook_id,
                    "event_type": event.type,
                    "error": error,
                    "retryable": failure.retryable,
                },
            )
        return results
