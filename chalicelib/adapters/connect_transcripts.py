"""Connect's chat transcript objects (read only), the delay queue reconciliation waits on, and the relay's archive
as reconciliation reads and completes it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.reconciliation_service import ArchiveUnavailableError
from chalicelib.settings import MAX_DELAY_SECONDS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

    from chalicelib.adapters.archive import Archive
    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.events import RelayEvent
    from chalicelib.reconciliation_service import Pass


class ConnectTranscriptObjects:
    """Reads the transcripts Connect writes to the instance's bucket; the relay never writes there."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes."""
        return self._client.get_object(Bucket=bucket, Key=key)["Body"].read()


class ReconciliationQueue:
    """Asks for a transcript to be compared later (an SQS message with ``DelaySeconds``)."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def schedule(self, bucket: str, key: str, phase: Pass, *, delay_seconds: int) -> None:
        """Have the comparison of ``bucket``/``key`` run ``phase`` in ``delay_seconds`` (at most 15 minutes)."""
        self._client.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps({"bucket": bucket, "key": key, "phase": phase}),
            DelaySeconds=min(max(delay_seconds, 0), MAX_DELAY_SECONDS),
        )


class ArchiveSessions:
    """The relay's S3 archive as reconciliation reads and completes it: one session's envelopes, and a recovered
    event kept under its own key."""

    def __init__(self, archive: Archive, target: ArchiveTarget) -> None:
        self._archive = archive
        self._target = target

    def envelopes(self, initial_contact_id: str) -> list[Mapping[str, Any]]:
        """Every envelope archived for the session, any contact id, any day."""
        return [event.envelope for event in self._archive.session_events(self._target, initial_contact_id)]

    def keep(self, event: RelayEvent) -> None:
        """Archive ``event``; raises :class:`ArchiveUnavailableError` (the run is retried) when S3 refuses."""
        failure = self._archive.write(self._target, event)
        if failure is not None:
            raise ArchiveUnavailableError(f"the archive did not keep a recovered event ({failure.error})")
