"""ReconciliationService with in-memory collaborators: when it compares, what it recovers and where it sends it,
what it keeps, and what it reports."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from chalicelib.events import RelayEvent, event_from_chat_item
from chalicelib.reconciliation import parse_connect_transcript
from chalicelib.reconciliation_service import (
    ArchiveUnavailableError,
    Pass,
    ReconciliationPolicy,
    ReconciliationService,
)
from chalicelib.settings import TranscriptLocation

FIXTURES = Path(__file__).parents[1] / "events" / "transcripts"
BUCKET = "amazon-connect-transcripts-111122223333"
PREFIX = "connect/example/ChatTranscripts/"
KEY = PREFIX + "2024/03/20/5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e_20240320T09:38_UTC.json"
GREETING = "7f1d2c3b-0002-4a5b-8c6d-000000000002"


class Objects:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def read(self, bucket: str, key: str) -> bytes:
        assert (bucket, key) == (BUCKET, KEY)
        return self.body


class Queue:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, str, Pass, int]] = []

    def schedule(self, bucket: str, key: str, phase: Pass, *, delay_seconds: int) -> None:
        self.scheduled.append((bucket, key, phase, delay_seconds))


class Archive:
    def __init__(self, envelopes: list[dict[str, Any]]) -> None:
        self.held = envelopes

    def envelopes(self, initial_contact_id: str) -> Sequence[Mapping[str, Any]]:
        return list(self.held)

    def keep(self, event: RelayEvent) -> None:
        self.held.append(event.envelope())


class Publisher:
    def __init__(self, archive: Archive) -> None:
        self.published: list[RelayEvent] = []
        self.archive = archive

    def publish(self, event: RelayEvent) -> object:
        self.published.append(event)
        if "item_id" in event.data:
            self.archive.keep(event)
        return []


class Quarantine:
    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    def keep_invalid(self, *, source: str, record_id: str | None, reason: str, record: Any) -> str:
        self.kept.append({"source": source, "reason": reason, "record": record})
        return f"quarantine/{len(self.kept)}"


class Transcripts:
    def __init__(self) -> None:
        self.reassembled: list[str] = []

    def reassemble(self, initial_contact_id: str) -> None:
        self.reassembled.append(initial_contact_id)


def stream_of(body: bytes, *, leave_out: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    transcript = parse_connect_transcript(body)
    return [event_from_chat_item(i).envelope() for i in transcript.items if i.item_id not in leave_out]


class World:
    def __init__(self, *, leave_out: frozenset[str] = frozenset(), body: bytes | None = None, deliver: bool = True):
        transcript = (FIXTURES / "chat-transcript.json").read_bytes()
        self.objects = Objects(transcript if body is None else body)
        self.queue = Queue()
        self.archive = Archive(stream_of(transcript, leave_out=leave_out))
        self.relay = Publisher(self.archive)
        self.quarantine = Quarantine()
        self.configured: Archive | None = self.archive
        self.transcripts = Transcripts()
        self.service = ReconciliationService(
            objects=self.objects,
            archive=lambda: self.configured,
            queue=self.queue,
            relay=self.relay,
            quarantine=self.quarantine,
            policy=ReconciliationPolicy((TranscriptLocation(BUCKET, PREFIX),), delay_seconds=120, deliver=deliver),
            transcripts=self.transcripts,
        )

    def types(self) -> list[str]:
        return [event.type for event in self.relay.published]


def test_given_a_watched_object_then_its_comparison_waits_the_delay() -> None:
    world = World()

    assert world.service.transcript_written(BUCKET, KEY)

    assert world.queue.scheduled == [(BUCKET, KEY, "check", 120)]


def test_given_no_delay_then_the_first_comparison_is_the_confirmation() -> None:
    world = World()
    world.service = ReconciliationService(
        objects=world.objects,
        archive=lambda: world.archive,
        queue=world.queue,
        relay=world.relay,
        quarantine=world.quarantine,
        policy=ReconciliationPolicy((TranscriptLocation(BUCKET, PREFIX),), delay_seconds=0),
    )

    world.service.transcript_written(BUCKET, KEY)

    assert world.queue.scheduled == [(BUCKET, KEY, "confirm", 0)]


@pytest.mark.parametrize(("bucket", "key"), [("other-bucket", KEY), (BUCKET, "connect/example/CallRecordings/x")])
def test_given_an_object_outside_the_watched_locations_then_it_is_ignored(bucket: str, key: str) -> None:
    world = World()

    assert not world.service.transcript_written(bucket, key)

    assert world.queue.scheduled == []


def test_given_no_gap_then_only_the_report_is_published() -> None:
    world = World()

    result = world.service.compare(BUCKET, KEY, "check")

    assert result is not None
    assert result.recovered == ()
    assert world.types() == ["chat.transcript.reconciled"]
    assert world.relay.published[0].data["counts"]["recovered"] == 0
    assert world.queue.scheduled == []
    assert world.transcripts.reassembled == []


def test_given_a_gap_at_the_check_then_nothing_is_sent_and_it_compares_again() -> None:
    world = World(leave_out=frozenset({GREETING}))

    assert world.service.compare(BUCKET, KEY, "check") is None

    assert world.relay.published == []
    assert world.queue.scheduled == [(BUCKET, KEY, "confirm", 120)]


def test_given_a_gap_still_there_at_the_confirmation_then_it_is_recovered_then_reported() -> None:
    world = World(leave_out=frozenset({GREETING}))

    world.service.compare(BUCKET, KEY, "confirm")

    assert world.types() == ["chat.message", "chat.transcript.reconciled"]
    recovered, report = world.relay.published
    assert recovered.data["recovered"] is True
    assert recovered.data["item_id"] == GREETING
    assert report.data["recovered_item_ids"] == [GREETING]
    # The transcript is assembled again, with the greeting
    assert world.transcripts.reassembled == ["5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"]


def test_given_the_late_item_arrived_before_the_confirmation_then_nothing_is_recovered() -> None:
    world = World(leave_out=frozenset({GREETING}))
    world.service.compare(BUCKET, KEY, "check")
    world.archive.held = stream_of((FIXTURES / "chat-transcript.json").read_bytes())

    world.service.compare(BUCKET, KEY, "confirm")

    assert world.types() == ["chat.transcript.reconciled"]
    assert world.transcripts.reassembled == []


def test_given_a_second_run_then_nothing_is_recovered_twice() -> None:
    world = World(leave_out=frozenset({GREETING}))
    world.service.compare(BUCKET, KEY, "confirm")

    world.service.compare(BUCKET, KEY, "confirm")

    assert world.types() == ["chat.message", "chat.transcript.reconciled", "chat.transcript.reconciled"]
    assert world.relay.published[1].webhook_id == world.relay.published[2].webhook_id


def test_given_archive_only_then_recovered_items_are_archived_not_published() -> None:
    world = World(leave_out=frozenset({GREETING}), deliver=False)

    world.service.compare(BUCKET, KEY, "confirm")

    assert world.types() == ["chat.transcript.reconciled"]
    assert world.archive.held[-1]["data"]["item_id"] == GREETING
    assert world.archive.held[-1]["data"]["recovered"] is True
    assert world.transcripts.reassembled == ["5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"]


def test_given_an_object_that_is_not_json_then_it_is_kept_and_nothing_else_happens() -> None:
    world = World(body=(FIXTURES / "not-json.txt").read_bytes())

    assert world.service.compare(BUCKET, KEY, "check") is None

    [kept] = world.quarantine.kept
    assert kept["source"] == "connect-transcripts"
    assert kept["reason"] == "object is not JSON in UTF-8"
    assert kept["record"]["key"] == KEY
    assert "AccessDenied" in kept["record"]["body"]
    assert world.relay.published == []
    assert world.queue.scheduled == []


def test_given_unusable_entries_then_they_are_kept_and_counted() -> None:
    document = json.loads((FIXTURES / "chat-transcript.json").read_bytes())
    document["Transcript"].append({"Id": "broken"})
    world = World(body=json.dumps(document).encode())

    world.service.compare(BUCKET, KEY, "check")

    [kept] = world.quarantine.kept
    assert kept["record"]["entries"] == [{"index": 8, "item_id": "broken", "reason": "AbsoluteTime is missing"}]
    assert world.relay.published[-1].data["counts"]["unreadable"] == 1


def test_given_no_archive_configured_then_the_run_fails_to_be_retried() -> None:
    world = World()
    world.configured = None

    with pytest.raises(ArchiveUnavailableError):
        world.service.compare(BUCKET, KEY, "check")
