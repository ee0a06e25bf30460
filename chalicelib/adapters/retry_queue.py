"""The retry queue (SQS): failed deliveries wait here, each delayed until its next attempt (15 minutes at most a hop).

Tickets go in batches of ten (SendMessageBatch), and no batch carries more than SQS takes at once. A ticket whose
event is too large for a message has its body kept in S3 and names it. ``send`` never raises: it returns the
tickets SQS did not take, for the caller's fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.observability import logger
from chalicelib.retries import SQS_MAX_DELAY_SECONDS, RetryTicket, now

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

    from chalicelib.adapters.quarantine import Quarantine

BATCH_ENTRIES = 10
# SQS takes 256 KiB per message and per batch; the rest is room for the request's own encoding.
MAX_BATCH_BYTES = 250_000
MAX_MESSAGE_BYTES = 240_000


class RetryQueue:
    """Sends retry tickets to the SQS retry queue."""

    def __init__(self, client: SQSClient, queue_url: str, bodies: Quarantine) -> None:
        self._client = client
        self._queue_url = queue_url
        self._bodies = bodies

    def send(self, tickets: Sequence[RetryTicket]) -> list[RetryTicket]:
        """Queue every ticket, delayed until its ``not_before``; returns the tickets SQS did not take."""
        refused: list[RetryTicket] = []
        batch: list[tuple[RetryTicket, str]] = []
        size = 0
        for ticket in tickets:
            message = self._message(ticket)
            if message is None:
                refused.append(ticket)
                continue
            if len(batch) == BATCH_ENTRIES or size + len(message) > MAX_BATCH_BYTES:
                refused += self._send_batch(batch)
                batch, size = [], 0
            batch.append((ticket, message))
            size += len(message)
        if batch:
            refused += self._send_batch(batch)
        return refused

    def _message(self, ticket: RetryTicket) -> str | None:
        message = ticket.to_json()
        if len(message) <= MAX_MESSAGE_BYTES or ticket.event is None:
            return message
        try:
            return ticket.to_json(by_reference=self._bodies.keep_retry_body(ticket.event))
        except (BotoCoreError, ClientError) as exc:
            logger.warning("large retry body not kept", extra={"webhook_id": ticket.webhook_id, "error": str(exc)})
            return None

    def _send_batch(self, batch: list[tuple[RetryTicket, str]]) -> list[RetryTicket]:
        moment = now()
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {
                "Id": str(index),
                "MessageBody": message,
                "DelaySeconds": min(SQS_MAX_DELAY_SECONDS, max(0, math.ceil(ticket.not_before - moment))),
            }
            for index, (ticket, message) in enumerate(batch)
        ]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("retry queue refused a batch", extra={"tickets": len(batch), "error": str(exc)[:300]})
            return [ticket for ticket, _ in batch]
        failed = answer.get("Failed", [])
        if failed:
            logger.warning("retry queue refused tickets", extra={"codes": sorted({f.get("Code", "") for f in failed})})
        return [batch[int(f["Id"])][0] for f in failed]
