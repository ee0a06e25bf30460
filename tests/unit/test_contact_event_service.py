"""ContactEventService with in-memory collaborators: which events start a stream, which are skipped and counted,
what is kept, and which of Connect's answers Lambda retries."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import observability
from chalicelib.contact_event_service import ContactEventService
from chalicelib.errors import (
    ConnectContactNotFoundError,
    ConnectError,
    ConnectRequestRejectedError,
    ConnectStreamingLimitError,
    ConnectThrottledError,
    ConnectUnavailableError,
    RelayError,
    StreamingStartInProgressError,
    StreamingStoppedError,
)
from chalicelib.streaming import StreamingStart
from tests.conftest import INSTANCE_ID, TOPIC_ARN, emitted_metrics, load_event

FIRST = "a1b2c3d4-0000-4000-8000-000000000001"
EVENT = load_event("contact/chat-initiated.json")


class Streams:
    """The streaming starter: answers ``already_streaming``, or raises ``failure``."""

    def __init__(self, *, already_streaming: bool = False, failure: RelayError | None = None) -> None:
        self.already_streaming = already_streaming
        self.failure = failure
        self.starts: list[dict[str, str]] = []

    def start(self, *, instance_id: str, initial_contact_id: str, started_by: str) -> StreamingStart:
        self.starts.append({"instance_id": instance_id, "initial_contact_id": initial_contact_id, "by": started_by})
        if self.failure is not None:
            raise self.failure
        return StreamingStart(initial_contact_id, instance_id, "stream-1", TOPIC_ARN, self.already_streaming)


class Quarantine:
    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []

    def keep_invalid(self, *, source: str, record_id: str | None, reason: str, record: Any) -> str:
        self.kept.append({"source": source, "record_id": record_id, "reason": reason, "record": record})
        return f"quarantine/{len(self.kept)}"


class World:
    """A ContactEventService over fakes; ``made`` lists the collaborators an event had built."""

    def __init__(self, streams: Streams | None = None) -> None:
        self.streams = streams or Streams()
        self.quarantine = Quarantine()
        self.made: set[str] = set()
        self.service = ContactEventService(frozenset({INSTANCE_ID}), streams=self._streams, quarantine=self._quarantine)

    def _streams(self) -> Streams:
        self.made.add("streams")
        return self.streams

    def _quarantine(self) -> Quarantine:
        self.made.add("quarantine")
        return self.quarantine

    def handle(self, event: dict[str, Any]) -> None:
        self.service.handle(event, event_id=str(event.get("id")))


def metrics(relay_output: Any) -> dict[str, float]:
    observability.flush()
    return emitted_metrics(relay_output())


def test_given_a_new_chat_then_its_session_starts_streaming(relay_output: Any) -> None:
    world = World()

    world.handle(EVENT)

    assert world.streams.starts == [{"instance_id": INSTANCE_ID, "initial_contact_id": FIRST, "by": "event"}]
    assert world.made == {"streams"}
    assert metrics(relay_output) == {"StreamingStarted": 1}


def test_given_a_chat_already_streaming_then_it_is_counted_as_skipped(relay_output: Any) -> None:
    World(Streams(already_streaming=True)).handle(EVENT)

    assert metrics(relay_output) == {"StreamingSkipped/AlreadyStreaming": 1}


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("contact/chat-transfer.json", "FollowOnSegment"),
        ("contact/voice-initiated.json", "NotChat"),
        ("contact/chat-contact-data-updated.json", "NotInitiated"),
        ("contact/chat-initiated-other-instance.json", "InstanceNotAllowed"),
    ],
)
def test_given_another_event_then_it_is_skipped_and_counted(fixture: str, reason: str, relay_output: Any) -> None:
    world = World()

    world.handle(load_event(fixture))

    assert world.made == set()
    assert metrics(relay_output) == {f"StreamingSkipped/{reason}": 1}


def test_given_a_malformed_event_then_it_is_kept_as_it_came_with_its_reason(relay_output: Any) -> None:
    event = {**EVENT, "detail": ["not", "an", "object"]}
    world = World()

    world.handle(event)

    [kept] = world.quarantine.kept
    assert kept["source"] == "contact-events"
    assert kept["record_id"] == EVENT["id"]
    assert kept["record"] == event
    assert kept["reason"]
    assert world.made == {"quarantine"}
    assert metrics(relay_output) == {"StreamingSkipped/Malformed": 1}


def test_given_a_stopped_stream_then_the_event_does_not_restart_it(relay_output: Any) -> None:
    World(Streams(failure=StreamingStoppedError("stopped"))).handle(EVENT)

    assert metrics(relay_output) == {"StreamingSkipped/Stopped": 1}


@pytest.mark.parametrize(
    "failure",
    [
        ConnectContactNotFoundError("ResourceNotFoundException", "chat ended"),
        ConnectRequestRejectedError("InvalidRequestException", "chat ended"),
        ConnectStreamingLimitError("LimitExceededException", "two streams already"),
    ],
)
def test_given_connect_refuses_the_chat_then_it_is_counted_not_retried(
    failure: ConnectError, relay_output: Any
) -> None:
    World(Streams(failure=failure)).handle(EVENT)

    out = relay_output()
    assert FIRST in out
    assert emitted_metrics(out) == {f"StreamingStartFailed/{failure.code}": 1}


@pytest.mark.parametrize(
    ("failure", "metric"),
    [
        (ConnectThrottledError("ThrottlingException", "Rate exceeded"), "StreamingStartFailed/ThrottlingException"),
        (ConnectUnavailableError("InternalServiceException", "oops"), "StreamingStartFailed/InternalServiceException"),
        (StreamingStartInProgressError("another start"), "StreamingStartDeferred/StartInProgress"),
    ],
)
def test_given_a_failure_worth_retrying_then_lambda_gets_it(
    failure: RelayError, metric: str, relay_output: Any
) -> None:
    with pytest.raises(type(failure)):
        World(Streams(failure=failure)).handle(EVENT)

    assert metrics(relay_output) == {metric: 1}
