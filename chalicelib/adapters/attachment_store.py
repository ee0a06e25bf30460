"""Copies of chat attachments in the relay's bucket, and pre-signed links to them.

``<prefix><initial contact id>/<attachment id>/<file name>``: a redelivered item overwrites its own copy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _safe(part: str) -> str:
    """A key segment of safe characters only (names and ids come from outside)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in part)[:200].lstrip(".") or "unknown"


class AttachmentStore:
    """Keeps attachment bytes in S3 and signs time-limited GET links to them."""

    def __init__(self, client: S3Client, bucket: str, prefix: str, *, link_seconds: int) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = prefix.rstrip("/") + "/" if prefix else ""
        self._link_seconds = link_seconds

    def keep(self, *, initial_contact_id: str, attachment_id: str, name: str, content_type: str, body: bytes) -> str:
        """Store a copy; returns its key."""
        key = f"{self._prefix}{_safe(initial_contact_id)}/{_safe(attachment_id)}/{_safe(name)}"
        self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ContentDisposition="attachment",
        )
        return key

    def link(self, key: str) -> tuple[str, str]:
        """A pre-signed GET link to a copy, and when it expires (ISO 8601)."""
        url = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._link_seconds
        )
        expires = datetime.now(UTC) + timedelta(seconds=self._link_seconds)
        return url, expires.isoformat(timespec="seconds").replace("+00:00", "Z")
