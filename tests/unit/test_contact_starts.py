"""ContactStarts with in-memory collaborators: what reaches Connect, how an Idempotency-Key is held and let go, what
a chat keeps, what a call announces, and what the caller gets when something after the start fails."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from chalicelib import observability
from chalicelib.adapters.client_tokens import KeyUse, fingerprint, scoped_client_token
from chalicelib.contact_starts import ROUTE_DELIVERY_TIMEOUT_SECONDS, ContactStarted, ContactStarts
from chalicelib.errors import (
    ConnectThrottledError,
    ConnectUnavailableError,
    RelayError,
    RequestValidationError,
    StorageUnavailableError,
)
from chalicelib.settings import load_settings
from chalicelib.streaming import STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE
from tests.conftest import INSTANCE_ID, REGION, TOPIC_ARN, dev_stage_environment, emitted_metrics, load_event
from tests.fakes import RecordingRelay

SETTINGS = load_settings({**dev_stage_environment(), "AWS_REGION": REGION})
WEBRTC_ANSWER: dict[str, Any] = load_event("connect/start-webrtc-contact.json")
CHAT_ANSWER: dict[str, Any] = load_event("connect/start-chat-contact.json")
CONTACT_ID = CHAT_ANSWER["ContactId"]
PRINCIPAL = "iam:arn:aws:iam::111122223333:user/ana"


class Connect:
    """Connect's contact starts: each answers ``answer`` (or raises ``failure``) and keeps the requests."""

    def __init__(self, answer: dict[str, Any], failure: RelayError | None = None) -> None:
        self.answer = answer
        self.failure = failure
        self.requests: list[dict[str, Any]] = []

    def _start(self, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        if self.failure is not None:
            raise self.failure
        return self.answer

    def start_webrtc(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._start(request)

    def start_chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._start(request)


class Keys:
    """The key ledger: ``replay`` says every key replays a completed request; ``failing`` names calls that fail."""

    def __init__(self, *, replay: bool = False, failing: frozenset[str] = frozenset()) -> None:
        self.replay = replay
        self.failing = failing
        self.begun: list[dict[str, str]] = []
        self.completed: list[str] = []
        self.released: list[KeyUse] = []

    def begin(self, *, route: str, principal: str, key: str, request_fingerprint: str) -> KeyUse:
        self.begun.append({"route": route, "principal": principal, "key": key, "fingerprint": request_fingerprint})
        return KeyUse(f"item-{key}", request_fingerprint, "r-1", replay=self.replay, expires_at=0)

    def complete(self, use: KeyUse, *, contact_id: str) -> None:
        if "complete" in self.failing:
            raise StorageUnavailableError("ProvisionedThroughputExceededException", "table busy")
        self.completed.append(contact_id)

    def release(self, use: KeyUse) -> None:
        if "release" in self.failing:
            raise StorageUnavailableError("ProvisionedThroughputExceededException", "table busy")
        self.released.append(use)


class Streams:
    def __init__(self, *, failing: bool = False) -> None:
        self.failing = failing
        self.recorded: list[dict[str, str]] = []

    def record(self, *, instance_id: str, initial_contact_id: str, streaming_id: str, started_by: str) -> None:
        if self.failing:
            raise RuntimeError("table down")
        self.recorded.append(
            {
                "instance_id": instance_id,
                "initial_contact_id": initial_contact_id,
                "streaming_id": streaming_id,
                "started_by": started_by,
            }
        )


class Connections:
    def __init__(self, failure: RelayError | None = None) -> None:
        self.failure = failure
        self.opened: list[dict[str, Any]] = []

    def open(
        self,
        *,
        contact_id: str,
        participant_id: str | None,
        participant_token: str,
        principal: str,
        chat_minutes: int | None,
    ) -> None:
        if self.failure is not None:
            raise self.failure
        self.opened.append(
            {
                "contact_id": contact_id,
                "participant_id": participant_id,
                "participant_token": participant_token,
                "principal": principal,
                "chat_minutes": chat_minutes,
            }
        )


class World:
    """A ContactStarts over fakes; ``made`` lists the collaborators a request had built."""

    def __init__(
        self,
        answer: dict[str, Any],
        *,
        connect_failure: RelayError | None = None,
        keys: Keys | None = None,
        streams: Streams | None = None,
        relay: RecordingRelay | None = None,
        announcer: Callable[[], RecordingRelay] | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.connect = Connect(answer, connect_failure)
        self.keys = keys or Keys()
        self.streams = streams or Streams()
        self.relay = relay or RecordingRelay()
        self.connections = connections or Connections()
        self.made: set[str] = set()
        self.service = ContactStarts(
            dataclasses.replace(SETTINGS, participant_token_key_id="alias/participant-tokens"),
            connect=lambda: self._made("connect", self.connect),
            keys=lambda: self._made("keys", self.keys),
            streams=lambda: self._made("streams", self.streams),
            announcer=announcer or (lambda: self._made("announcer", self.relay)),
            connections=lambda: self._made("connections", self.connections),
        )

    def _made(self, name: str, collaborator: Any) -> Any:
        self.made.add(name)
        return collaborator

    def webrtc(self, body: dict[str, Any] | None = None, key: str | None = None) -> ContactStarted:
        return self.service.start_webrtc(body or {"display_name": "Ana"}, idempotency_key=key, principal=PRINCIPAL)

    def chat(self, body: dict[str, Any] | None = None, key: str | None = None) -> ContactStarted:
        return self.service.start_chat(body or {"display_name": "Ana"}, idempotency_key=key, principal=PRINCIPAL)


def metrics(relay_output: Any) -> dict[str, float]:
    observability.flush()
    return emitted_metrics(relay_output())


class TestCalls:
    def test_given_no_key_then_connect_gets_the_built_request_and_the_caller_its_answer(self) -> None:
        world = World(WEBRTC_ANSWER)

        started = world.webrtc()

        [request] = world.connect.requests
        assert request["InstanceId"] == INSTANCE_ID
        assert "ClientToken" not in request
        assert started == ContactStarted(WEBRTC_ANSWER["ContactId"], WEBRTC_ANSWER, replayed=False)
        assert world.made == {"connect", "announcer"}

    def test_then_call_started_is_announced_with_the_route_s_short_timeout(self, relay_output: Any) -> None:
        world = World(WEBRTC_ANSWER)

        world.webrtc()

        [event] = world.relay.published
        assert event.type == "call.started"
        assert event.data["contact_id"] == WEBRTC_ANSWER["ContactId"]
        assert world.relay.timeouts == [ROUTE_DELIVERY_TIMEOUT_SECONDS]
        assert metrics(relay_output) == {"WebRTCContactStarted": 1}

    def test_given_a_publish_that_fails_then_the_event_is_held_and_the_call_announced(self) -> None:
        world = World(WEBRTC_ANSWER, relay=RecordingRelay({"publish": RuntimeError("destinations file invalid")}))

        started = world.webrtc()

        assert started.announced
        assert [event.type for event in world.relay.held] == ["call.started"]

    def test_given_nothing_keeps_the_event_then_the_call_is_started_but_not_announced(self, relay_output: Any) -> None:
        relay = RecordingRelay(
            {"publish": RuntimeError("destinations file invalid"), "hold": RuntimeError("retry queue and S3 down")}
        )
        world = World(WEBRTC_ANSWER, relay=relay)

        started = world.webrtc()

        assert started.contact_id == WEBRTC_ANSWER["ContactId"]
        assert not started.announced
        out = relay_output()
        assert "event not kept" in out
        assert "retry queue and S3 down" in out
        assert emitted_metrics(out) == {"EventPublishFailed": 1}

    def test_given_the_relay_cannot_be_made_then_the_call_is_started_but_not_announced(self) -> None:
        def no_relay() -> RecordingRelay:
            raise RuntimeError("destinations file unreadable")

        world = World(WEBRTC_ANSWER, announcer=no_relay)

        started = world.webrtc()

        assert not started.announced

    def test_given_an_invalid_body_then_connect_is_never_called(self) -> None:
        world = World(WEBRTC_ANSWER)

        with pytest.raises(RequestValidationError):
            world.webrtc({"display_name": ""}, key="k-1")

        assert world.connect.requests == []
        assert world.made == set()

    def test_given_an_answer_without_a_contact_id_then_nothing_is_announced(self) -> None:
        world = World({"ParticipantId": "p"})

        with pytest.raises(ConnectUnavailableError):
            world.webrtc()

        assert world.relay.published == []


class TestIdempotencyKeys:
    def test_given_a_key_then_connect_s_token_is_the_caller_s_and_the_key_completes(self) -> None:
        world = World(WEBRTC_ANSWER)

        started = world.webrtc(key="call-1")

        assert world.connect.requests[0]["ClientToken"] == scoped_client_token("webrtc", PRINCIPAL, "call-1")
        assert world.keys.begun == [
            {
                "route": "webrtc",
                "principal": PRINCIPAL,
                "key": "call-1",
                "fingerprint": fingerprint({"display_name": "Ana"}),
            }
        ]
        assert world.keys.completed == [WEBRTC_ANSWER["ContactId"]]
        assert not started.replayed

    def test_given_a_replayed_key_then_it_says_so_and_announces_again(self) -> None:
        world = World(WEBRTC_ANSWER, keys=Keys(replay=True))

        started = world.webrtc(key="call-1")

        assert started.replayed
        assert world.keys.completed == []
        assert [event.type for event in world.relay.published] == ["call.started"]

    def test_given_connect_fails_then_the_key_is_released_for_a_retry(self) -> None:
        throttled = ConnectThrottledError("ThrottlingException", "Rate exceeded")
        world = World(WEBRTC_ANSWER, connect_failure=throttled)

        with pytest.raises(ConnectThrottledError):
            world.webrtc(key="call-1")

        assert len(world.keys.released) == 1
        assert world.keys.completed == []

    def test_given_a_replay_fails_then_the_completed_key_is_kept(self) -> None:
        world = World({"ParticipantId": "p"}, keys=Keys(replay=True))

        with pytest.raises(ConnectUnavailableError):
            world.webrtc(key="call-1")

        assert world.keys.released == []

    def test_given_the_release_fails_then_connect_s_failure_is_what_the_caller_sees(self, relay_output: Any) -> None:
        throttled = ConnectThrottledError("ThrottlingException", "Rate exceeded")
        world = World(WEBRTC_ANSWER, connect_failure=throttled, keys=Keys(failing=frozenset({"release"})))

        with pytest.raises(ConnectThrottledError):
            world.webrtc(key="call-1")

        assert "idempotency key not released" in relay_output()

    def test_given_the_completion_fails_then_the_started_call_is_still_answered(self, relay_output: Any) -> None:
        world = World(WEBRTC_ANSWER, keys=Keys(failing=frozenset({"complete"})))

        started = world.webrtc(key="call-1")

        assert started.announced
        assert metrics(relay_output)["IdempotencyKeyNotRecorded"] == 1


class TestChats:
    def test_then_the_chat_streams_from_its_first_item_and_its_stream_is_kept(self, relay_output: Any) -> None:
        world = World(CHAT_ANSWER)

        started = world.chat()

        [request] = world.connect.requests
        assert request["ChatStreamingConfiguration"] == {"StreamingEndpointArn": TOPIC_ARN}
        assert request["Attributes"] == {STREAMING_AT_START_ATTRIBUTE: STREAMING_AT_START}
        assert world.streams.recorded == [
            {
                "instance_id": INSTANCE_ID,
                "initial_contact_id": CONTACT_ID,
                "streaming_id": CHAT_ANSWER["StreamingId"],
                "started_by": "chat_start",
            }
        ]
        assert "StreamingId" not in started.answer
        assert started.answer["ParticipantToken"] == CHAT_ANSWER["ParticipantToken"]
        assert world.made == {"connect", "streams"}
        assert metrics(relay_output) == {"ChatContactStarted": 1}

    def test_given_a_replay_then_the_stream_is_not_kept_again(self) -> None:
        world = World(CHAT_ANSWER, keys=Keys(replay=True))

        started = world.chat(key="chat-1")

        assert started.replayed
        assert world.streams.recorded == []

    @pytest.mark.parametrize(
        ("answer", "streams", "reason"),
        [
            ({k: v for k, v in CHAT_ANSWER.items() if k != "StreamingId"}, Streams(), "NoStreamingId"),
            (CHAT_ANSWER, Streams(failing=True), "TableError"),
        ],
    )
    def test_given_the_stream_cannot_be_kept_then_the_chat_still_starts(
        self, answer: dict[str, Any], streams: Streams, reason: str, relay_output: Any
    ) -> None:
        world = World(answer, streams=streams)

        started = world.chat()

        assert started.contact_id == CONTACT_ID
        assert started.connection_error is None
        assert metrics(relay_output)[f"StreamingRecordFailed/{reason}"] == 1

    def test_given_a_two_way_chat_then_the_relay_holds_its_participant_connection(self) -> None:
        world = World(CHAT_ANSWER)

        started = world.chat({"display_name": "Ana", "participant_connection": True, "chat_duration_minutes": 90})

        assert world.connections.opened == [
            {
                "contact_id": CONTACT_ID,
                "participant_id": CHAT_ANSWER["ParticipantId"],
                "participant_token": CHAT_ANSWER["ParticipantToken"],
                "principal": PRINCIPAL,
                "chat_minutes": 90,
            }
        ]
        assert started.answer["ConnectionHeldByRelay"] is True

    @pytest.mark.parametrize(
        ("answer", "connections"),
        [
            (CHAT_ANSWER, Connections(ConnectUnavailableError("InternalServerException", "participant service down"))),
            ({k: v for k, v in CHAT_ANSWER.items() if k != "ParticipantToken"}, Connections()),
        ],
    )
    def test_given_the_connection_cannot_be_opened_then_the_started_chat_carries_why(
        self, answer: dict[str, Any], connections: Connections, relay_output: Any
    ) -> None:
        world = World(answer, connections=connections)

        started = world.chat({"display_name": "Ana", "participant_connection": True})

        assert isinstance(started.connection_error, ConnectUnavailableError)
        assert "ConnectionHeldByRelay" not in started.answer
        assert world.streams.recorded != []
        assert metrics(relay_output)["ParticipantConnectionFailed"] == 1
