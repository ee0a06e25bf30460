"""The scheduled transcript scan with in-memory collaborators: what it lists, what it queues, where it leaves its
watermark, and that switching it on never replays old chats."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from chalicelib.settings import TranscriptLocation
from chalicelib.transcript_scan import OVERLAP, TranscriptScan, days

BUCKET = "amazon-connect-dev-111122223333"
PREFIX = "connect/relay-dev/ChatTranscripts/"
LOCATION = f"s3://{BUCKET}/{PREFIX}"
NOW = datetime(2024, 3, 20, 9, 40, tzinfo=UTC)


class Bucket:
    def __init__(self, objects: dict[str, datetime]) -> None:
        self.objects = objects
        self.listed: list[str] = []

    def written_since(self, bucket: str, prefix: str, since: datetime) -> Iterable[str]:
        assert bucket == BUCKET
        self.listed.append(prefix)
        return [key for key, at in sorted(self.objects.items()) if key.startswith(prefix) and at >= since]


class Marks:
    def __init__(self, marks: dict[str, str] | None = None) -> None:
        self.marks = dict(marks or {})

    def load(self) -> dict[str, str]:
        return dict(self.marks)

    def save(self, marks: Mapping[str, str]) -> None:
        self.marks = dict(marks)


class Notices:
    def __init__(self) -> None:
        self.queued: list[str] = []

    def transcript_written(self, bucket: str, key: str) -> bool:
        self.queued.append(key)
        return True


def key(day: str, contact: str) -> str:
    return f"{PREFIX}{day}/{contact}_20240320T09:38_UTC.json"


def scan(bucket: Bucket, marks: Marks, notices: Notices) -> TranscriptScan:
    return TranscriptScan(
        listing=bucket, watermarks=marks, notices=notices, locations=(TranscriptLocation(BUCKET, PREFIX),)
    )


def test_given_no_watermark_then_the_first_scan_starts_now_and_replays_no_old_chat() -> None:
    bucket = Bucket({key("2024/03/19", "old"): NOW - timedelta(hours=20), key("2024/03/20", "new"): NOW})
    marks, notices = Marks(), Notices()

    queued = scan(bucket, marks, notices).run(now=NOW)

    assert (queued, notices.queued) == (1, [key("2024/03/20", "new")])
    assert marks.marks == {LOCATION: "2024-03-20T09:35:00Z"}


def test_given_a_watermark_then_only_what_was_written_since_is_queued() -> None:
    bucket = Bucket(
        {
            key("2024/03/20", "before"): NOW - timedelta(minutes=30),
            key("2024/03/20", "after"): NOW - timedelta(minutes=10),
        }
    )
    marks, notices = Marks({LOCATION: "2024-03-20T09:20:00Z"}), Notices()

    scan(bucket, marks, notices).run(now=NOW)

    assert notices.queued == [key("2024/03/20", "after")]
    assert marks.marks[LOCATION] == "2024-03-20T09:35:00Z"


def test_the_days_listed_run_from_the_day_before_the_watermark_to_today() -> None:
    # A chat that ended at 23:59 on the 17th may be written after midnight under the 17th's date.
    bucket = Bucket({key("2024/03/17", "midnight"): datetime(2024, 3, 18, 0, 0, 30, tzinfo=UTC)})
    marks, notices = Marks({LOCATION: "2024-03-18T00:00:00Z"}), Notices()

    scan(bucket, marks, notices).run(now=NOW)

    assert bucket.listed == [f"{PREFIX}2024/03/{day}/" for day in ("17", "18", "19", "20")]
    assert notices.queued == [key("2024/03/17", "midnight")]


def test_an_object_in_the_overlap_is_queued_again_by_the_next_scan() -> None:
    # Harmless: a rerun of the comparison recovers nothing twice (tests/integration/test_reconciliation.py).
    bucket = Bucket({key("2024/03/20", "edge"): NOW - timedelta(minutes=1)})
    marks, notices = Marks(), Notices()
    scan(bucket, marks, notices).run(now=NOW)

    scan(bucket, marks, notices).run(now=NOW + timedelta(minutes=2))

    assert notices.queued == [key("2024/03/20", "edge")] * 2


def test_an_unreadable_watermark_scans_from_now() -> None:
    bucket = Bucket({key("2024/03/19", "old"): NOW - timedelta(hours=20)})
    marks, notices = Marks({LOCATION: "yesterday"}), Notices()

    scan(bucket, marks, notices).run(now=NOW)

    assert notices.queued == []
    assert marks.marks[LOCATION] == "2024-03-20T09:35:00Z"


def test_days_are_utc_calendar_days() -> None:
    assert list(days(NOW - OVERLAP, NOW)) == ["2024/03/20/"]
    assert list(days(datetime(2024, 2, 28, 23, tzinfo=UTC), datetime(2024, 3, 1, 1, tzinfo=UTC))) == [
        "2024/02/28/",
        "2024/02/29/",
        "2024/03/01/",
    ]
