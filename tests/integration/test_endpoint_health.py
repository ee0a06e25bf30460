"""Endpoint health for real: the DynamoDB table (moto) against the fake's contract, and the chat-stream Lambda
handler, called as Lambda calls it (event dict and a context), delivering to receivers on 127.0.0.1.

Each destination here sets its own thresholds through the stage's settings (``BREAKER_*``) or its own fields
(``max_per_second``, ``disable_after_hours``), so nothing waits for a day.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from standardwebhooks import Webhook

from app import app
from chalicelib import clients, dependencies
from chalicelib.adapters.health_table import HealthTable
from chalicelib.events import RelayEvent
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.handlers.retries import retry_deliveries
from chalicelib.health import DestinationHealth, HealthReplayBusyError, HealthStore
from scripts.receivers import Answer, Receiver
from tests.conftest import HEALTH_TABLE, PROJECT, QUARANTINE_BUCKET, emitted_metrics, load_event, sqs_event
from tests.fakes import FakeHealthStore
from tests.functional.test_openapi import CheckedHTTP

pytestmark = pytest.mark.integration
NOW = 1_800_000_000.0


def parked_event(number: int) -> RelayEvent:
    return RelayEvent(
        type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"n": number}, webhook_id=f"msg_{number}"
    )


class StoreContract:
    """What every HealthStore does; run against the fake and against the DynamoDB table."""

    def test_a_new_destination_is_enabled_and_healthy(self, store: HealthStore) -> None:
        assert store.read("crm") == DestinationHealth()

    def test_failures_count_from_the_first_of_the_streak(self, store: HealthStore) -> None:
        store.add_failure("crm", NOW)
        state = store.add_failure("crm", NOW + 10)
        assert (state.failures, state.failing_since, state.status) == (2, NOW, "enabled")
        before = store.reset_failures("crm")
        assert before.failures == 2
        assert store.read("crm").failures == 0
        assert store.read("crm").failing_since is None

    def test_disable_happens_once(self, store: HealthStore) -> None:
        assert store.disable("crm", "gone", NOW) is True
        assert store.disable("crm", "gone", NOW) is False
        assert (store.read("crm").status, store.read("crm").disabled_reason) == ("disabled", "gone")

    def test_the_breaker_opens_once_and_one_probe_claims_it(self, store: HealthStore) -> None:
        assert store.open_breaker("crm", NOW, NOW + 30) is True
        assert store.open_breaker("crm", NOW + 1, NOW + 31) is False
        assert store.claim_probe("crm", NOW + 30, NOW + 60) is True
        assert store.claim_probe("crm", NOW + 30, NOW + 60) is False
        assert store.read("crm").breaker_open_until == NOW + 60
        store.reset_failures("crm")
        assert store.read("crm").breaker_open_until is None

    def test_the_rate_window_counts_to_its_limit_per_second(self, store: HealthStore) -> None:
        assert [store.take("crm", 100, 2) for _ in range(3)] == [True, True, False]
        assert store.take("crm", 101, 2) is True

    def test_parking_needs_a_destination_that_is_not_enabled(self, store: HealthStore) -> None:
        assert store.park("crm", parked_event(1), NOW) is False
        store.add_failure("crm", NOW)
        assert store.park("crm", parked_event(1), NOW) is False
        store.disable("crm", "gone", NOW)
        for number in (1, 2, 3):
            assert store.park("crm", parked_event(number), NOW) is True
        assert store.read("crm").parked == 3
        oldest = store.parked("crm", 2)
        assert [p.event for p in oldest] == [parked_event(1), parked_event(2)]

    def test_a_replay_holds_a_lease_and_enables_only_when_nothing_is_parked(self, store: HealthStore) -> None:
        store.disable("crm", "gone", NOW)
        store.park("crm", parked_event(1), NOW)
        state = store.begin_replay("crm", "me", NOW, NOW + 300)
        assert (state.status, state.parked) == ("replaying", 1)
        with pytest.raises(HealthReplayBusyError):
            store.begin_replay("crm", "someone else", NOW + 1, NOW + 301)
        assert store.park("crm", parked_event(2), NOW) is True  # still parking while replaying
        assert store.finish_replay("crm", "me") is False
        for parked in store.parked("crm", 10):
            store.unpark("crm", parked)
            store.unpark("crm", parked)  # twice: counted out once
        assert store.read("crm").parked == 0
        assert store.finish_replay("crm", "someone else") is False
        assert store.finish_replay("crm", "me") is True
        assert store.read("crm").status == "enabled"
        assert store.park("crm", parked_event(3), NOW) is False

    def test_an_expired_lease_can_be_taken_over_and_a_released_one_at_once(self, store: HealthStore) -> None:
        store.disable("crm", "gone", NOW)
        store.begin_replay("crm", "crashed", NOW, NOW + 300)
        assert store.begin_replay("crm", "next", NOW + 301, NOW + 600).status == "replaying"
        store.release_replay("crm", "next")
        assert store.begin_replay("crm", "third", NOW + 302, NOW + 600).status == "replaying"

    def test_enabling_an_enabled_destination_changes_nothing(self, store: HealthStore) -> None:
        assert store.begin_replay("crm", "me", NOW, NOW + 300).status == "enabled"
        assert store.read("crm").status == "enabled"


class TestFakeStore(StoreContract):
    @pytest.fixture
    def store(self) -> HealthStore:
        return FakeHealthStore()


class TestDynamoDBStore(StoreContract):
    @pytest.fixture
    def store(self, aws: None) -> HealthStore:
        return HealthTable(clients.dynamodb(), HEALTH_TABLE)

    def test_a_park_sent_again_after_its_answer_was_lost_counts_as_parked_once(
        self, store: HealthStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a park that was written, whose answer was lost: botocore sends the same transaction again (the
        # same entry key; here the clock that names entries stands still)
        store.disable("crm", "gone", NOW)
        monkeypatch.setattr("chalicelib.adapters.health_table.time.time_ns", lambda: 1_700_000_000_000_000_000)
        assert store.park("crm", parked_event(1), NOW) is True
        # When it comes again, its entry already there
        # Then it is parked, once
        assert store.park("crm", parked_event(1), NOW) is True
        assert store.read("crm").parked == 1
        assert [p.event for p in store.parked("crm", 10)] == [parked_event(1)]


# The chat-stream function, end to end.


class LambdaContext:
    """What Lambda passes as the handler's second argument."""

    aws_request_id = "req-health-0001"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def chat_item(number: int) -> dict[str, Any]:
    """The recorded customer message, as a new item of the same chat."""
    record = load_event("chat/sns-record-customer-message.json")
    sns = record["Records"][0]["Sns"]
    item = json.loads(sns["Message"])
    item.update(Id=f"item-{number:04d}", Content=f"message {number}")
    sns["Message"] = json.dumps(item)
    sns["MessageId"] = f"sns-{number:04d}"
    return record  # type: ignore[no-any-return]


@pytest.fixture
def configure(tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, aws: None) -> Callable[..., str]:
    """Write a destinations file with one destination ``hook`` on the receiver; returns its secret."""

    def write(**fields: Any) -> str:
        secret = new_secret()
        destination = {
            "name": "hook",
            "url": receiver.url("/hook"),
            "secrets": [secret],
            "allow_http": True,
            "allow_private_network": True,
            "timeout_seconds": 2,
            **fields,
        }
        path = tmp_path / "destinations.json"
        path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": [destination]}))
        monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
        dependencies.reset()
        return secret

    return write


def invoke(number: int) -> None:
    on_chat_message(chat_item(number), LambdaContext())


def contents(receiver: Receiver) -> list[str]:
    return [json.loads(request.body)["data"]["content"] for request in receiver.requests]


def kept(kind: str) -> list[dict[str, Any]]:
    """The quarantine's kept deliveries of ``kind`` (``undelivered``, ``dead-letters``)."""
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=f"quarantine/{kind}/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read()) for o in listing]


def health_of(name: str = "hook") -> DestinationHealth:
    return HealthTable(clients.dynamodb(), HEALTH_TABLE).read(name)


def test_a_410_disables_at_once_parks_then_enable_replays_in_order(
    configure: Callable[..., str], receiver: Receiver, relay_output: Callable[[], str]
) -> None:
    secret = configure()
    receiver.answer("/hook", Answer(status=410))
    invoke(1)
    assert health_of().status == "disabled"
    assert "DestinationDisabled" in emitted_metrics(relay_output())
    # While disabled, nothing reaches the receiver and nothing is lost: every event is parked, none undelivered.
    for number in (2, 3, 4):
        invoke(number)
    assert len(receiver.requests) == 1
    assert health_of().parked == 4
    assert kept("undelivered") == []

    receiver.answer("/hook", Answer(status=204))
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as client:
        answer = CheckedHTTP(client.http).post("/destinations/hook/enable")
    assert answer.status_code == 200
    assert json.loads(answer.body) == {"destination": "hook", "status": "enabled", "replayed": 4, "remaining": 0}
    replayed = receiver.requests[1:]
    assert [json.loads(r.body)["data"]["content"] for r in replayed] == [f"message {n}" for n in (1, 2, 3, 4)]
    for request in replayed:
        Webhook(secret).verify(request.body, request.headers)
    assert receiver.requests[0].headers["webhook-id"] == replayed[0].headers["webhook-id"]

    invoke(5)
    assert contents(receiver)[-1] == "message 5"
    assert health_of().status == "enabled"


def test_failing_past_the_threshold_disables_and_parks_from_then_on(
    configure: Callable[..., str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch, queued: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("BREAKER_FAILURES", "100")
    configure(disable_after_hours=0.0002)  # 0.72 s
    receiver.answer("/hook", Answer(status=500))
    invoke(1)
    assert health_of().status == "enabled"
    time.sleep(0.8)
    invoke(2)
    assert health_of().status == "disabled"
    invoke(3)
    assert len(receiver.requests) == 2
    # The first failure went to the retry queue; the one that crossed the threshold and the next are parked.
    assert [ticket["body"]["webhook_id"] for ticket in queued] == [receiver.requests[0].headers["webhook-id"]]
    assert health_of().parked == 2


def test_an_open_breaker_defers_without_waiting_and_a_probe_closes_it(
    configure: Callable[..., str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    relay_output: Callable[[], str],
    queued: list[dict[str, Any]],
) -> None:
    monkeypatch.setenv("BREAKER_FAILURES", "2")
    monkeypatch.setenv("BREAKER_COOLDOWN_SECONDS", "1")
    configure()
    receiver.answer("/hook", Answer(status=503))
    invoke(1)
    invoke(2)
    assert "CircuitOpened" in emitted_metrics(relay_output())
    invoke(3)
    assert len(receiver.requests) == 2  # the third never reached the receiver
    tickets = {ticket["body"]["event"]["data"]["content"]: ticket for ticket in queued}
    # Deferred, not attempted: the same first attempt waits in the retry queue until the breaker may close.
    assert tickets["message 3"]["body"]["attempts"] == []
    assert tickets["message 3"]["delay"] <= 1

    receiver.answer("/hook", Answer(status=204))
    time.sleep(1.05)
    invoke(4)  # the probe
    invoke(5)
    assert contents(receiver)[-2:] == ["message 4", "message 5"]
    assert "CircuitClosed" in emitted_metrics(relay_output())
    assert health_of().breaker_open_until is None


def test_a_destination_that_stays_down_has_its_tickets_dead_lettered_after_the_schedule_instead_of_bouncing(
    configure: Callable[..., str],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    relay_output: Callable[[], str],
    queued: list[dict[str, Any]],
) -> None:
    # Given a receiver that never answers 2xx, a breaker that opens after 2 failures for 1 s, and a schedule
    # compressed to 3.5 s (its horizon, jitter included: 4.2 s)
    monkeypatch.setenv("BREAKER_FAILURES", "2")
    monkeypatch.setenv("BREAKER_COOLDOWN_SECONDS", "1")
    configure(retry_schedule=[0, 0.5, 1, 2])
    receiver.answer("/hook", Answer(status=503))
    for number in range(1, 7):
        invoke(number)
    assert "CircuitOpened" in emitted_metrics(relay_output())
    # When retry_deliveries takes every ticket as it falls due, as the queue would hand them over
    sent = len(queued)
    waiting: list[dict[str, Any]] = []
    while queued or waiting:
        # Each of the 6 tickets: its first send, at most 6 deferrals (one a cooldown of 1 s within 4.2 s) and 3
        # retries; with a deferral per cooldown and no end, this would go on forever.
        assert sent <= 6 * (1 + 6 + 3), "tickets still bouncing"
        waiting += queued
        queued.clear()
        time.sleep(max(0.0, min(ticket["body"]["not_before"] for ticket in waiting) - time.time()))
        due = [ticket for ticket in waiting if ticket["body"]["not_before"] <= time.time()]
        waiting = [ticket for ticket in waiting if ticket not in due]
        for batch in (due[index : index + 10] for index in range(0, len(due), 10)):
            answer = retry_deliveries(sqs_event(*(json.dumps(ticket["body"]) for ticket in batch)), LambdaContext())
            assert answer == {"batchItemFailures": []}
        sent += len(queued)
    # Then every event ends dead-lettered, none still on the queue: those the breaker kept putting off past the
    # schedule's horizon say so, with their deferrals and attempt log
    dead = {letter["event"]["data"]["content"]: letter for letter in kept("dead-letters")}
    assert sorted(dead) == [f"message {n}" for n in range(1, 7)]
    assert {letter["reason"] for letter in dead.values()} <= {"deferred", "exhausted"}
    deferred = [letter for letter in dead.values() if letter["reason"] == "deferred"]
    assert deferred
    assert all(letter["deferrals"] >= 1 for letter in deferred)
    assert all(len(letter["attempts"]) < 4 for letter in deferred)
    # And each ticket bounced a handful of times (about once a cooldown for 4.2 s), not once a cooldown forever
    assert all(letter.get("deferrals", 0) <= 6 for letter in dead.values())
    assert len(receiver.requests) <= 6 * 4
    assert emitted_metrics(relay_output())["DeliveryExhausted"] == 6


def test_a_burst_above_the_rate_waits_in_the_retry_path(
    configure: Callable[..., str], receiver: Receiver, queued: list[dict[str, Any]]
) -> None:
    configure(max_per_second=2)
    for number in range(8):
        invoke(number)
    delivered = len(receiver.requests)
    deferred = [ticket for ticket in queued if ticket["body"]["attempts"] == []]
    assert delivered + len(deferred) == 8
    assert deferred
    assert all(ticket["delay"] == 1 for ticket in deferred)
    windows = clients.dynamodb().scan(TableName=HEALTH_TABLE)["Items"]
    counts = [int(item["deliveries"]["N"]) for item in windows if item["pk"]["S"].startswith("rate#hook#")]
    assert counts
    assert all(count <= 2 for count in counts)
    assert sum(counts) == delivered


def test_the_enable_route_answers_404_409_and_202(
    configure: Callable[..., str], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure()
    table = HealthTable(clients.dynamodb(), HEALTH_TABLE)
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        client = CheckedHTTP(test_client.http)
        assert client.post("/destinations/nobody/enable").status_code == 404
        assert json.loads(client.post("/destinations/hook/enable").body)["status"] == "enabled"

        table.disable("hook", "gone", time.time())
        for number in range(3):
            table.park("hook", parked_event(number), time.time())
        table.begin_replay("hook", "another operator", time.time(), time.time() + 300)
        busy = client.post("/destinations/hook/enable")
        assert (busy.status_code, json.loads(busy.body)["error"]) == (409, "ReplayInProgress")
        table.release_replay("hook", "another operator")

        # No time left for a delivery: nothing replayed, the caller is told to come back.
        monkeypatch.setattr("chalicelib.handlers.destinations_api.ANSWER_MARGIN_SECONDS", 60.0)
        partial = client.post("/destinations/hook/enable")
        assert partial.status_code == 202
        assert json.loads(partial.body) == {"destination": "hook", "status": "replaying", "replayed": 0, "remaining": 3}
        monkeypatch.setattr("chalicelib.handlers.destinations_api.ANSWER_MARGIN_SECONDS", 2.0)
        assert client.post("/destinations/hook/enable").status_code == 200
    assert len(receiver.requests) == 3


def test_the_enable_route_is_iam_authorised_whatever_api_auth_says() -> None:
    entry = app.routes["/destinations/{name}/enable"]["POST"]
    assert type(entry.authorizer).__name__ == "IAMAuthorizer"


def test_the_enable_route_answers_503_when_the_health_table_fails(configure: Callable[..., str]) -> None:
    configure()
    clients.dynamodb().delete_table(TableName=HEALTH_TABLE)
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        answer = CheckedHTTP(test_client.http).post("/destinations/hook/enable")
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")
    assert "ResourceNotFound" not in answer.body.decode()


def test_the_command_line_replays_with_a_progress_bar_and_enables(
    configure: Callable[..., str], receiver: Receiver
) -> None:
    from chalicelib.cli import main

    configure()
    table = HealthTable(clients.dynamodb(), HEALTH_TABLE)
    table.disable("hook", "gone", time.time())
    for number in range(5):
        table.park("hook", parked_event(number), time.time())
    out = io.StringIO()
    assert main(["--stage", "dev", "enable", "hook"], out=out) == 0
    assert [json.loads(r.body)["data"]["n"] for r in receiver.requests] == [0, 1, 2, 3, 4]
    assert "5/5 replayed" in out.getvalue()
    assert "hook: enabled; 5 parked events replayed in order" in out.getvalue()
    assert health_of().status == "enabled"

    assert main(["enable", "nobody"], out=out) == 2
    assert "no destination is called 'nobody'" in out.getvalue()
