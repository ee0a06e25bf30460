"""Connect's chat transcript objects (read only), the delay queue reconciliation waits on, the relay's archive
as reconciliation reads and completes it, and the scheduled scan's watermarks."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from chalicelib.reconciliation_service import ArchiveUnavailableError
from chalicelib.settings import MAX_DELAY_SECONDS

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

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

    def written_since(self, bucket: str, prefix: str, since: datetime) -> Iterator[str]:
        """The keys under ``prefix`` last modified at or after ``since``, every page of the listing."""
        for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for entry in page.get("Contents", []):
                if entry["LastModified"] >= since:
                    yield entry["Key"]


class ScanWatermarks:
    """The scan's watermarks: one SSM String parameter holding a JSON object, location -> instant."""

    def __init__(self, client: SSMClient, name: str) -> None:
        self._client = client
        self._name = name

    def load(self) -> dict[str, str]:
        """The watermarks, or none before a first scan (or if the parameter holds anything else)."""
        try:
            value = self._client.get_parameter(Name=self._name)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return {}
            raise
        try:
            marks = json.loads(value)
        except ValueError:
            return {}
        if not isinstance(marks, dict):
            return {}
        return {k: v for k, v in marks.items() if isinstance(k, str) and isinstance(v, str)}

    def save(self, marks: Mapping[str, str]) -> None:
        """Keep the watermarks for the next scan."""
        self._client.put_parameter(
            Name=self._name, Value=json.dumps(dict(marks), sort_keys=True), Type="String", Overwrite=True
        )


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
