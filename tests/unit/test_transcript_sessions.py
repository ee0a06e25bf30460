"""The transcript service's session bookkeeping on the hot path, with in-memory stand-ins: how often an open
session is recorded, when a late item queues a re-assembly, and what a failure does."""

from __future__ import annotations

from typing import Any, cast

import pytest
from botocore.exceptions import EndpointConnectionError

from chalicelib.transcript_service import TOUCH_SECONDS, TranscriptService, TranscriptTiming

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"


class Sessions:
    """The sessions table's decisions, kept in a dict: open until ended or assembled; one claim per assembly."""

    def __init__(self) -> None:
        self.touches = 0
        self.closed = False
        self.assembled = False
        self.claimed = False
        self.fail_touch = False

    def touch(self, initial_contact_id: str, now_ms: int) -> bool:
        if self.fail_touch:
            raise EndpointConnectionError(endpoint_url="http://dynamodb")
        self.touches += 1
        return not self.closed

    def end(self, initial_contact_id: str, now_ms: int) -> None:
        self.closed = True

    def claim_reassembly(self, initial_contact_id: str, now_ms: int, *, lapse_ms: int) -> bool:
        if not self.assembled or self.claimed:
            return False
        self.claimed = True
        return True

    def release_reassembly(self, initial_contact_id: str, claimed_ms: int) -> None:
        self.claimed = False


class Queue:
    def __init__(self) -> None:
        self.scheduled: list[tuple[str, str, int]] = []
        self.fail = False

    def schedule(self, initial_contact_id: str, reason: str, *, delay_seconds: int) -> None:
        if self.fail:
            raise EndpointConnectionError(endpoint_url="http://sqs")
        self.scheduled.append((initial_contact_id, reason, delay_seconds))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def transcript_service(queue: Queue, clock: Clock, sessions: Sessions | None) -> TranscriptService:
    """The service on these stand-ins; ``sessions`` None: no sessions table configured."""
    return TranscriptService(
        cast(Any, None),
        lambda: None,
        cast(Any, queue),
        cast(Any, None),
        TranscriptTiming(grace_seconds=60, idle_seconds=3600),
        sessions=cast(Any, sessions),
        clock=clock,
    )


@pytest.fixture
def world() -> tuple[TranscriptService, Sessions, Queue, Clock]:
    sessions, queue, clock = Sessions(), Queue(), Clock()
    return transcript_service(queue, clock, sessions), sessions, queue, clock


def test_an_open_session_is_recorded_at_most_once_per_window_per_container(world: Any) -> None:
    service, sessions, _, clock = world
    # Given a busy chat: 20 items a second apart
    for _ in range(20):
        service.item_relayed(SESSION, ended=False)
        clock.now += 1
    # Then the session is recorded once per TOUCH_SECONDS, not once per item
    assert sessions.touches == 1
    clock.now += TOUCH_SECONDS
    service.item_relayed(SESSION, ended=False)
    assert sessions.touches == 2


def test_late_items_queue_one_re_assembly_after_the_grace_period(world: Any) -> None:
    service, sessions, queue, clock = world
    service.item_relayed(SESSION, ended=True)
    assert queue.scheduled == [(SESSION, "ended", 60)]
    sessions.assembled = True
    # When several items arrive after the transcript was made, even within the recording window
    for _ in range(5):
        clock.now += 1
        service.item_relayed(SESSION, ended=False)
    # Then each is checked (an ended session is never skipped), and one re-assembly is queued
    assert sessions.touches == 5
    assert queue.scheduled[1:] == [(SESSION, "late", 60)]


def test_a_re_assembly_that_cannot_be_queued_gives_its_claim_back_and_fails(world: Any) -> None:
    service, sessions, queue, _ = world
    sessions.closed = sessions.assembled = True
    queue.fail = True
    with pytest.raises(EndpointConnectionError):
        service.item_relayed(SESSION, ended=False)
    # Then the next late item (or Lambda's retry of this one) claims again
    assert not sessions.claimed
    queue.fail = False
    service.item_relayed(SESSION, ended=False)
    assert queue.scheduled == [(SESSION, "late", 60)]


def test_a_session_record_that_cannot_be_written_does_not_fail_the_item(world: Any) -> None:
    service, sessions, queue, _ = world
    sessions.fail_touch = True
    service.item_relayed(SESSION, ended=False)
    assert queue.scheduled == []


def test_the_recording_window_never_exceeds_the_grace_period() -> None:
    sessions, clock = Sessions(), Clock()
    service = TranscriptService(
        cast(Any, None),
        lambda: None,
        cast(Any, Queue()),
        cast(Any, None),
        TranscriptTiming(grace_seconds=5, idle_seconds=3600),
        sessions=cast(Any, sessions),
        clock=clock,
    )
    service.item_relayed(SESSION, ended=False)
    clock.now += 5
    service.item_relayed(SESSION, ended=False)
    assert sessions.touches == 2


def test_recovered_items_of_an_assembled_session_queue_one_re_assembly_as_late_items_do(world: Any) -> None:
    service, sessions, queue, _ = world
    # Given a session that ended and whose transcript is made
    sessions.closed = sessions.assembled = True
    # When reconciliation recovers items twice, and a late item of the stream comes too
    service.reassemble(SESSION)
    service.reassemble(SESSION)
    service.item_relayed(SESSION, ended=False)
    # Then one re-assembly is queued after the grace period: the one claim all three paths share
    assert queue.scheduled == [(SESSION, "late", 60)]


def test_recovered_items_of_a_session_not_yet_assembled_queue_nothing(world: Any) -> None:
    service, sessions, queue, _ = world
    # Given a session that ended and whose assembly is still in its grace period
    sessions.closed = True
    # When reconciliation recovers items, Then nothing more is queued (that assembly reads them)
    service.reassemble(SESSION)
    assert queue.scheduled == []


def test_recovered_items_of_a_session_still_open_end_it_as_its_chat_ended_would(world: Any) -> None:
    service, sessions, queue, _ = world
    # Given a session whose chat.ended never came, When reconciliation recovers items of it (Connect wrote the
    # contact's transcript, so the contact has ended)
    service.reassemble(SESSION)
    # Then the session is ended and its assembly scheduled after the grace period, as chat.ended does
    assert sessions.closed
    assert queue.scheduled == [(SESSION, "ended", 60)]


def test_recovered_items_whose_session_cannot_be_recorded_queue_the_re_assembly_anyway(world: Any) -> None:
    service, sessions, queue, _ = world
    sessions.fail_touch = True
    service.reassemble(SESSION)
    # A rerun of the reconciliation would recover nothing, so this is the one chance: queued without the claim
    assert queue.scheduled == [(SESSION, "late", 60)]


def test_without_a_sessions_table_recovered_items_queue_a_re_assembly_and_stream_items_nothing() -> None:
    queue = Queue()
    service = transcript_service(queue, Clock(), None)
    service.item_relayed(SESSION, ended=False)
    assert queue.scheduled == []
    service.reassemble(SESSION)
    assert queue.scheduled == [(SESSION, "late", 60)]
