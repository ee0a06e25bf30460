"""The scheduled scan: reconciliation where Connect's bucket cannot send its S3 events to EventBridge.

Every ``RECONCILE_SCAN_MINUTES`` (``RECONCILE_SCAN=on``), ``scan_transcripts`` lists each watched location for the
objects written since the location's watermark and hands each to
:meth:`~chalicelib.reconciliation_service.ReconciliationService.transcript_written`, exactly as the EventBridge
rule's function does. Connect dates its keys (``<prefix>yyyy/mm/dd/<ContactId>_…``), so a scan lists only the days
since the watermark, from the day before it (a chat that ended just before midnight).

The next watermark is the scan's start less :data:`OVERLAP`: an object being written while the scan lists can show
a ``LastModified`` before that start. An object in the overlap is queued twice, which reconciliation makes harmless
(a rerun recovers nothing twice, and its report keeps its webhook-id). A first scan starts from its own start:
switching the scan on never replays the chats that ended before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from chalicelib.observability import count, logger
from chalicelib.settings import TranscriptLocation

OVERLAP: Final = timedelta(minutes=5)


class TranscriptListing(Protocol):
    """Lists Connect's transcript objects."""

    def written_since(self, bucket: str, prefix: str, since: datetime) -> Iterable[str]:
        """The keys under ``prefix`` last modified at or after ``since``."""
        ...


class Watermarks(Protocol):
    """Where each location's watermark is kept between scans."""

    def load(self) -> dict[str, str]:
        """Each location's watermark (an RFC 3339 instant), by ``s3://bucket/prefix``; empty before a first scan."""
        ...

    def save(self, marks: Mapping[str, str]) -> None:
        """Keep ``marks`` for the next scan."""
        ...


class TranscriptNotices(Protocol):
    """What the EventBridge path calls for each object Connect writes."""

    def transcript_written(self, bucket: str, key: str) -> bool:
        """Queue the comparison of ``bucket``/``key``; False when it is not in a watched location."""
        ...


class TranscriptScan:
    """Finds the transcripts written since the last scan and queues them as the EventBridge path does."""

    def __init__(
        self,
        *,
        listing: TranscriptListing,
        watermarks: Watermarks,
        notices: TranscriptNotices,
        locations: tuple[TranscriptLocation, ...],
    ) -> None:
        self._listing = listing
        self._watermarks = watermarks
        self._notices = notices
        self._locations = locations

    def run(self, *, now: datetime | None = None) -> int:
        """Scan every watched location once; returns how many objects were queued."""
        started = now or datetime.now(UTC)
        marks = self._watermarks.load()
        queued = 0
        for location in self._locations:
            name = f"s3://{location.bucket}/{location.prefix}"
            since = _instant(marks.get(name)) or started - OVERLAP
            for day in days(since - timedelta(days=1), started):
                for key in self._listing.written_since(location.bucket, location.prefix + day, since):
                    queued += self._notices.transcript_written(location.bucket, key)
            # Kept after each location: a scan that fails later rescans only what it had not finished.
            marks[name] = _rfc3339(started - OVERLAP)
            self._watermarks.save(marks)
        count("TranscriptsScanned", queued)
        logger.info("transcript locations scanned", extra={"queued": queued, "locations": len(self._locations)})
        return queued


def days(first: datetime, last: datetime) -> Iterator[str]:
    """The ``yyyy/mm/dd/`` key parts of every UTC day from ``first`` to ``last``, both included."""
    day, end = first.astimezone(UTC).date(), last.astimezone(UTC).date()
    while day <= end:
        yield day.strftime("%Y/%m/%d/")
        day += timedelta(days=1)


def _instant(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        logger.warning("unreadable scan watermark: scanning from now")
        return None
    return moment if moment.tzinfo is not None else None


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
