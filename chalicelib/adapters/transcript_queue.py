"""The transcript queue: an SQS queue whose messages wait (``DelaySeconds``) before the assembler sees them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# SQS delays a message at most 15 minutes.
MAX_DELAY_SECONDS = 900


class TranscriptQueue:
    """Asks for a session's transcript to be assembled later."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def schedule(self, initial_contact_id: str, reason: str, *, delay_seconds: int) -> None:
        """Have the assembler look at the session in ``delay_seconds`` (at most 15 minutes)."""
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps({"initial_contact_id": initial_contact_id, "reason": reason}),
            DelaySeconds=min(max(delay_seconds, 0), MAX_DELAY_SECONDS),
        )
