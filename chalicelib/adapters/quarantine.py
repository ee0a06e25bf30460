"""Where the relay keeps what it could not process, so nothing is lost: S3 objects under the stage's prefix.

``invalid/<source>/``: stream items and contact events that could not be read, as they came, with the reason.
``undelivered/<destination>/``: deliveries that failed and could not be handed to the retry queue (SQS failing
too), with the event and the attempts so far; redrive puts them back on the queue.
``dead-letters/<destination>/``: deliveries that will not be retried (the last attempt failed, 410 Gone, a
permanent 4xx, an open breaker past the schedule), with the event and every attempt's status, time and reason;
redrive puts them back on the queue.
``retrying/``: bodies of events too large for a queue message, which the retry ticket names.
``undecided/``: events a destination's filters could not decide on (no instance id, unknown visibility), with
the reason, instead of a delivery that might reach the wrong audience.
``replays/``: the ordered archive keys of each replay (written by ``chalicelib.adapters.replay_store``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from chalicelib.events import RelayEvent
    from chalicelib.retries import RetryTicket


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

    def keep_undelivered(self, ticket: RetryTicket, event: RelayEvent | None) -> str:
        """Keep a delivery the retry queue did not take, with its attempts, for redrive; returns its key."""
        return self._keep_delivery("undelivered", ticket, event, {"not_before": round(ticket.not_before, 3)})

    def keep_dead_letter(self, ticket: RetryTicket, event: RelayEvent, *, reason: str, disable_endpoint: bool) -> str:
        """Keep a delivery that will not be retried, with everything needed to redo it; returns its key."""
        return self._keep_delivery(
            "dead-letters", ticket, event, {"reason": reason, "disable_endpoint": disable_endpoint}
        )

    def keep_retry_body(self, event: RelayEvent) -> str:
        """Keep an event too large for a queue message; the ticket carries this key instead."""
        key = f"{self._prefix}retrying/{_safe(event.webhook_id)}.json"
        self._put(key, json.dumps(event.envelope()).encode("utf-8"))
        return key

    def read(self, key: str) -> Any:
        """A kept JSON object (a retry body, a dead letter, an undelivered copy)."""
        return json.loads(self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def keys(self, kind: str, destination: str) -> Iterator[str]:
        """The keys of one destination's kept deliveries of ``kind`` (``dead-letters``, ``undelivered``), oldest day
        first."""
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{self._prefix}{kind}/{_safe(destination)}/"):
            for item in page.get("Contents", []):
                yield item["Key"]

    def delete(self, key: str) -> None:
        """Forget a kept delivery once it is back on the retry queue."""
        self._client.delete_object(Bucket=self._bucket, Key=key)

    def _keep_delivery(self, kind: str, ticket: RetryTicket, event: RelayEvent | None, fields: dict[str, Any]) -> str:
        day = time.strftime("%Y/%m/%d", time.gmtime())
        key = f"{self._prefix}{kind}/{_safe(ticket.destination)}/{day}/{_safe(ticket.webhook_id)}.json"
        last = ticket.attempts[-1] if ticket.attempts else None
        body = {
            "destination": ticket.destination,
            "webhook_id": ticket.webhook_id,
            "status": last.status if last else None,
            "error": last.error if last else None,
            "attempts": [attempt.as_dict() for attempt in ticket.attempts],
            "redriven": ticket.redriven,
            **({"resend": True} if ticket.resend else {}),
            **({"deferrals": ticket.deferrals} if ticket.deferrals else {}),
            **fields,
            "kept_at": int(time.time()),
        }
        if event is not None:
            body["event"] = event.envelope()
        else:
            body["event_ref"] = ticket.event_ref  # a body too large for a queue message, already in S3
        self._put(key, json.dumps(body).encode("utf-8"))
        return key

    def _put(self, key: str, body: bytes) -> None:
        self._client.put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType="application/json", ServerSideEncryption="AES256"
        )
