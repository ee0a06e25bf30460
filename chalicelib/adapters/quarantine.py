"""Where the relay keeps what it could not process, so nothing is lost: S3 objects under the stage's prefix.

``invalid/<source>/``: stream items and contact events that could not be read, as they came, with the reason.
``undelivered/``: deliveries that failed, with the event's body, so they can be replayed.
``undecided/``: events a destination's filters could not decide on (no instance id, unknown visibility), with
the reason, instead of a delivery that might reach the wrong audience.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from chalicelib.delivery import DeliveryResult
    from chalicelib.events import RelayEvent


# A record id used in a key as it is; any other id (absent, too long, odd characters) could map to another's key.
_USABLE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")


def _safe(part: str) -> str:
    """A key segment made of safe characters only (ids come from outside)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)[:200] or "unknown"


def _record_name(record_id: str | None, record: str) -> str:
    """A record's own key name: its id and a digest of what it holds, or a fresh id for a record without one.

    Deterministic for a usable id, so a redelivered record overwrites its own copy and nothing else; two records
    sharing an id but not their content keep two copies.
    """
    if record_id is None or not _USABLE_ID.match(record_id):
        return f"no-id-{uuid.uuid4().hex}"
    return f"{record_id}-{hashlib.sha256(record.encode('utf-8')).hexdigest()[:16]}"


class Quarantine:
    """Keeps unprocessable items and undelivered events in S3."""

    def __init__(self, client: S3Client, bucket: str, prefix: str) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.rstrip("/") + "/" if prefix else ""

    def keep_invalid(self, *, source: str, record_id: str | None, reason: str, record: Any) -> str:
        """Keep what the relay could not read (``source``: ``chat-stream``, ``contact-events``); returns its key.

        Every record gets a key of its own: see :func:`_record_name`.
        """
        day = time.strftime("%Y/%m/%d", time.gmtime())
        name = _record_name(record_id, json.dumps(record, default=str, sort_keys=True))
        key = f"{self._prefix}invalid/{source}/{day}/{name}.json"
        body = {"reason": reason, "source": source, "id": record_id, "kept_at": int(time.time()), "record": record}
        self._put(key, json.dumps(body, default=str).encode("utf-8"))
        return key

    def keep_undecided(self, event: RelayEvent, destination: str, reason: str) -> str:
        """Keep an event that ``destination``'s filters could not decide on, with the reason; returns its key."""
        day = time.strftime("%Y/%m/%d", time.gmtime())
        key = f"{self._prefix}undecided/{_safe(destination)}/{day}/{_safe(event.webhook_id)}.json"
        body = {
            "destination": destination,
            "webhook_id": event.webhook_id,
            "reason": reason,
            "kept_at": int(time.time()),
            "event": event.envelope(),
        }
        self._put(key, json.dumps(body).encode("utf-8"))
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
