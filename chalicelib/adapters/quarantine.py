"""Where the relay keeps what it could not process, so nothing is lost: S3 objects under the stage's prefix.

``invalid/<source>/``: stream items and contact events that could not be read, as they came, with the reason.
``undelivered/``: deliveries that failed, with the event's body, so they can be replayed.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from chalicelib.delivery import DeliveryResult
    from chalicelib.events import RelayEvent


def _safe(part: str) -> str:
    """A key segment made of safe characters only (ids come from outside)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)[:200] or "unknown"


class Quarantine:
    """Keeps unprocessable items and undelivered events in S3."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.rstrip("/") + "/" if prefix else ""

    def keep_invalid(self, *, source: str, record_id: str, reason: str, record: Any) -> str:
        """Keep what the relay could not read (``source``: ``chat-stream``, ``contact-events``); returns its key."""
        day = time.strftime("%Y/%m/%d", time.gmtime())
        # Without an id of its own, a record gets a fresh one: two such records never overwrite each other.
        key = f"{self._prefix}invalid/{source}/{day}/{_safe(record_id or uuid.uuid4().hex)}.json"
        body = {"reason": reason, "source": source, "id": record_id, "kept_at": int(time.time()), "record": record}
        self._put(key, json.dumps(body, default=str).encode("utf-8"))
        return key

    def keep_undelivered(self, event: RelayEvent, result: DeliveryResult) -> str:
        """Keep an event a destination did not accept, with the failure, for a later replay."""
        day = time.strftime("%Y/%m/%d", time.gmtime())
        key = f"{self._prefix}undelivered/{_safe(result.destination)}/{day}/{_safe(event.webhook_id)}.json"
        body = {
            "destination": result.destination,
            "webhook_id": event.webhook_id,
            "status": result.status,
            "error": result.error,
            "retryable": result.retryable,
            "retry_after_seconds": result.retry_after_seconds,
            "kept_at": int(time.time()),
            "event": event.envelope(),
        }
        self._put(key, json.dumps(body).encode("utf-8"))
        return key

    def _put(self, key: str, body: bytes) -> None:
        self._client.put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType="application/json", ServerSideEncryption="AES256"
        )
