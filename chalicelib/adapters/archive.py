"""The S3 archive: every event as its own object, under a key that names its session and item.

The body is the envelope byte for byte as webhooks get it, so a redelivered item rewrites its object with the same
bytes (idempotent); the ids, type and sender role go in the object's metadata; SSE-KMS encrypts it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batches import WriteFailure, aws_error_code, session_key
from chalicelib.errors import RelayError
from chalicelib.events import RelayEvent, webhook_id_for
from chalicelib.retries import event_from_envelope
from chalicelib.transcripts import ArchivedEvent

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef

    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.transcripts import Transcript

# Ids come from outside: percent-encoding keeps keys and metadata readable, ASCII and free of collisions.
_KEY_SAFE = "-_.:"
# Transcripts are kept beside the archive, one pair of objects per version.
TRANSCRIPTS_PREFIX = "transcripts/"
_VERSION_KEY = re.compile(r"^v(?P<version>\d{4,})\.json\Z")


class ArchiveLayoutError(RelayError):
    """The archive's key template puts something before the session id (the date layout): it cannot be read by
    session."""


def session_prefix(target: ArchiveTarget, initial_contact_id: str) -> str:
    """The key prefix under which every event of a session is kept."""
    head, _, tail = target.key_template.partition("{initial_contact_id}")
    if "{" in head:
        raise ArchiveLayoutError(f"the key template {target.key_template!r} does not start with the session")
    return head + quote(initial_contact_id, safe=_KEY_SAFE) + tail.split("{", 1)[0]


def transcript_prefix(initial_contact_id: str) -> str:
    """Where a session's transcript versions are kept."""
    return f"{TRANSCRIPTS_PREFIX}{quote(initial_contact_id, safe=_KEY_SAFE)}/"


def key_fields(event: RelayEvent) -> dict[str, str]:
    """The values a key template can name, each percent-encoded so no id can add a path segment."""
    data = event.data
    day = event.timestamp[:10]
    fields = {
        "initial_contact_id": session_key(event),
        "contact_id": str(data.get("contact_id") or ""),
        "item_id": str(data.get("item_id") or event.webhook_id),
        "webhook_id": event.webhook_id,
        "type": event.type,
        "absolute_time": event.timestamp,
        "date": day,
        "year": day[:4],
        "month": day[5:7],
        "day": day[8:10],
    }
    return {name: quote(value, safe=_KEY_SAFE) for name, value in fields.items()}


def archive_key(target: ArchiveTarget, event: RelayEvent) -> str:
    """Where ``event`` is kept: the same key every time the same item arrives."""
    return target.key_template.format_map(key_fields(event))


def object_metadata(event: RelayEvent) -> dict[str, str]:
    """What S3 keeps beside the body: the contact ids, the type, the sender's role and the webhook id."""
    data = event.data
    participant = data.get("participant") or {}
    values = {
        "initial-contact-id": session_key(event),
        "contact-id": data.get("contact_id"),
        "event-type": event.type,
        "participant-role": participant.get("role"),
        "webhook-id": event.webhook_id,
        "absolute-time": event.timestamp,
    }
    return {name: quote(str(value), safe=_KEY_SAFE) for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class ArchivedKey:
    """One archived object as a listing shows it: its key and when it arrived (S3's LastModified, ISO 8601)."""

    key: str
    arrived: str


class Archive:
    """Writes events to S3 archives."""

    def __init__(self, client: S3Client) -> None:
        self._client = client
        # Reading a session is one GET per item: a few at once, so a long chat reads in a fraction of the time.
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="archive-read")

    def write(self, target: ArchiveTarget, event: RelayEvent) -> WriteFailure | None:
        """Keep ``event`` under its key; None once S3 has it."""
        try:
            self._put(target, archive_key(target, event), event.body, "application/json", object_metadata(event))
        except (BotoCoreError, ClientError) as exc:
            return WriteFailure(aws_error_code(exc), retryable=True)
        return None

    def session_events(self, target: ArchiveTarget, initial_contact_id: str) -> list[ArchivedEvent]:
        """Every event archived for a session (any contact id, any day), with its arrival order for ties.

        Raises :class:`ArchiveLayoutError` when the key template puts something before the session id (the date
        layout): such an archive cannot be read by session.
        """
        prefix = session_prefix(target, initial_contact_id)
        keys: list[tuple[str, str]] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
            keys += [(obj["LastModified"].isoformat(), obj["Key"]) for obj in page.get("Contents", [])]
        envelopes = list(self._pool.map(lambda key: self._read(target.bucket, key[1]), keys))
        events = [ArchivedEvent(envelope, arrival) for envelope, arrival in zip(envelopes, keys, strict=True)]
        # A template that does not end the session id with a literal could also list a longer id's items.
        return [event for event in events if event.data.get("initial_contact_id") in (initial_contact_id, None)]

    def keys(self, target: ArchiveTarget, prefix: str) -> Iterator[ArchivedKey]:
        """Every archived object under ``prefix``, in S3's key order (listed 1,000 a request)."""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield ArchivedKey(obj["Key"], obj["LastModified"].isoformat())

    def read_event(self, target: ArchiveTarget, key: str) -> RelayEvent | None:
        """The archived event at ``key``, with the ``webhook-id`` it was first delivered with (the object's
        metadata; derived from the item id, as the stream derives it, when the metadata lacks it).

        None when the object is gone (expired by a lifecycle rule, say); ``ValueError`` when it is not an event.
        """
        try:
            answer = self._client.get_object(Bucket=target.bucket, Key=key)
        except ClientError as exc:
            if aws_error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        envelope = json.loads(answer["Body"].read())
        data = envelope.get("data") if isinstance(envelope, dict) else None
        webhook_id = unquote(answer.get("Metadata", {}).get("webhook-id", ""))
        if not webhook_id and isinstance(data, dict) and isinstance(data.get("item_id"), str):
            webhook_id = webhook_id_for(data["item_id"])
        if not webhook_id:
            raise ValueError(f"the archived object {key} names no webhook id")
        return event_from_envelope(envelope, webhook_id)

    def _read(self, bucket: str, key: str) -> dict[str, Any]:
        body = self._client.get_object(Bucket=bucket, Key=key)["Body"].read()
        envelope = json.loads(body)
        return envelope if isinstance(envelope, dict) else {}

    def latest_transcript(self, target: ArchiveTarget, initial_contact_id: str) -> tuple[int, str | None, str | None]:
        """The newest kept version of a session's transcript, the fingerprint of its items and what closed the
        session (``chat_ended`` or ``sweep``); (0, None, None) if none."""
        prefix = transcript_prefix(initial_contact_id)
        versions: list[int] = []
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                match = _VERSION_KEY.match(obj["Key"].removeprefix(prefix))
                if match:
                    versions.append(int(match["version"]))
        if not versions:
            return 0, None, None
        latest = max(versions)
        metadata = self._client.head_object(Bucket=target.bucket, Key=f"{prefix}v{latest:04d}.json")["Metadata"]
        return latest, metadata.get("items-fingerprint"), metadata.get("closed-by")

    def keep_transcript(
        self, target: ArchiveTarget, transcript: Transcript, fingerprint: str, *, closed_by: str
    ) -> tuple[str, str]:
        """Keep a transcript version as JSON and Markdown beside the archive; returns their keys."""
        base = f"{transcript_prefix(transcript.initial_contact_id)}v{transcript.version:04d}"
        metadata = {
            "initial-contact-id": quote(transcript.initial_contact_id, safe=_KEY_SAFE),
            "transcript-version": str(transcript.version),
            "items-fingerprint": fingerprint,
            "closed-by": closed_by,
        }
        document = json.dumps(transcript.document, ensure_ascii=False, indent=1).encode("utf-8")
        # The Markdown first: the JSON, whose fingerprint marks the version as made, is written last.
        self._put(target, f"{base}.md", transcript.markdown.encode("utf-8"), "text/markdown; charset=utf-8", metadata)
        self._put(target, f"{base}.json", document, "application/json", metadata)
        return f"{base}.json", f"{base}.md"

    def link(self, target: ArchiveTarget, key: str, expires_in: int) -> str:
        """A pre-signed GET of ``key``, valid ``expires_in`` seconds (or until the signing credentials expire)."""
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": target.bucket, "Key": key}, ExpiresIn=expires_in
        )

    def _put(self, target: ArchiveTarget, key: str, body: bytes, content_type: str, metadata: dict[str, str]) -> None:
        request: PutObjectRequestTypeDef = {
            "Bucket": target.bucket,
            "Key": key,
            "Body": body,
            "ContentType": content_type,
            "Metadata": metadata,
            "ServerSideEncryption": "aws:kms",
            # One data key per bucket rather than per object: far fewer KMS calls for many small objects.
            "BucketKeyEnabled": True,
        }
        if target.kms_key is not None:
            request["SSEKMSKeyId"] = target.kms_key.value
        self._client.put_object(**request)
