"""Replaying the archive on moto: the stream archives chats through ``on_chat_message``; ``POST /replays`` (through
chalice.test.Client) queues a replay on the retry queue; ``retry_deliveries``, invoked as Lambda invokes it with a
context, lists the archive and re-delivers its events to a receiver on 127.0.0.1 that checks every signature with
the ``standardwebhooks`` package: the original webhook-ids, in AbsoluteTime order, signed afresh."""

from __future__ import annotations

import base64
import copy
import io
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from standardwebhooks import Webhook

from app import app
from chalicelib import cli, clients, dependencies
from chalicelib.archive_replay import CHUNK_EVENTS, ReplayTicket
from chalicelib.events import webhook_id_for
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.handlers.retries import retry_deliveries
from scripts.receivers import Answer, Receiver
from tests.conftest import PROJECT, QUARANTINE_BUCKET, RETRY_QUEUE, LambdaContext, load_event, sqs_event

pytestmark = pytest.mark.integration

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
TRANSFERRED = "7c2b9f40-3d1e-4b8a-a5f6-9e8d7c6b5a41"
OTHER = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
ARCHIVE = {"name": "archive", "kind": "s3", "bucket": QUARANTINE_BUCKET}
LAKE = {"name": "lake", "kind": "s3", "bucket": QUARANTINE_BUCKET, "layout": "date"}


def item(item_id: str, at: str, *, session: str = SESSION, contact_id: str | None = None) -> Any:
    """A recorded customer message, re-stamped with another id, time and session."""
    record = copy.deepcopy(load_event("chat/sns-record-customer-message.json"))
    sns = record["Records"][0]["Sns"]
    body = json.loads(sns["Message"])
    body.update(Id=item_id, AbsoluteTime=at, InitialContactId=session, ContactId=contact_id or session)
    sns["Message"] = json.dumps(body)
    sns["MessageId"] = f"sns-{item_id}"
    for key, value in (("InitialContactId", session), ("ContactId", contact_id or session)):
        sns["MessageAttributes"][key]["Value"] = value
    return record


class Flaky(Receiver):
    """A receiver whose answers to ``/hook`` follow a script (then 204), to fail in the middle of a replay."""

    def __init__(self) -> None:
        super().__init__()
        self.script: list[int] = []
        self.delay = 0.0

    def _answer_for(self, path: str) -> Answer | None:
        with self._lock:
            status = self.script.pop(0) if self.script else 204
        return Answer(status=status, delay=self.delay)


@pytest.fixture
def receiver() -> Iterator[Flaky]:
    started = Flaky()
    with started:
        yield started


@pytest.fixture
def configure(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Flaky) -> Any:
    """Writes the destinations file: the archives, and (``backfill``) the receiver that joins later."""

    def write(*, backfill: bool, archives: tuple[dict[str, Any], ...] = (ARCHIVE, LAKE), **fields: Any) -> None:
        destinations = list(archives)
        if backfill:
            destinations.append(
                {
                    "name": "backfill",
                    "url": receiver.url("/hook"),
                    "secrets": [SECRET],
                    "allow_http": True,
                    "allow_private_network": True,
                    **fields,
                }
            )
        path = tmp_path / f"destinations-{time.monotonic_ns()}.json"
        path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": destinations}))
        monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
        dependencies.reset()

    return write


@pytest.fixture
def archived(configure: Any) -> list[tuple[str, str]]:
    """A session archived out of order, transferred and crossing midnight UTC, beside another session; then the
    ``backfill`` receiver is configured. Returns the session's (item id, time) in AbsoluteTime order."""
    configure(backfill=False)
    session = [
        ("m3", "2026-11-23T00:00:05.000Z", TRANSFERRED),
        ("m1", "2026-11-22T23:59:58.000Z", SESSION),
        ("m4", "2026-11-23T00:00:09.000Z", TRANSFERRED),
        ("m2", "2026-11-22T23:59:59.500Z", SESSION),
    ]
    for item_id, at, contact in session:
        on_chat_message(item(item_id, at, contact_id=contact), LambdaContext())
    on_chat_message(item("other-1", "2026-11-23T00:00:01.000Z", session=OTHER), LambdaContext())
    configure(backfill=True)
    return sorted(((item_id, at) for item_id, at, _ in session), key=lambda pair: pair[1])


def api() -> Client:
    return Client(app, stage_name="dev", project_dir=str(PROJECT))


def post(body: Any) -> Any:
    with api() as client:
        return client.http.post("/replays", headers={"Content-Type": "application/json"}, body=json.dumps(body))


def status(replay_id: str) -> dict[str, Any]:
    with api() as client:
        answer = client.http.get(f"/replays/{replay_id}")
    assert answer.status_code == 200
    body: dict[str, Any] = json.loads(answer.body)
    return body


def queue_url() -> str:
    return clients.sqs().get_queue_url(QueueName=RETRY_QUEUE)["QueueUrl"]


def pump(context_seconds: float = 60.0) -> list[str]:
    """Hand the retry queue's visible messages to retry_deliveries, as the event source mapping does, until it is
    empty; returns the bodies handled."""
    sqs, handled = clients.sqs(), list[str]()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return handled
        answer = retry_deliveries(sqs_event(*[m["Body"] for m in messages]), LambdaContext(context_seconds))
        assert answer == {"batchItemFailures": []}
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url(), ReceiptHandle=message["ReceiptHandle"])
        handled += [m["Body"] for m in messages]


def test_a_session_replays_with_its_original_webhook_ids_in_absolute_time_order_signed_afresh(
    receiver: Flaky, archived: list[tuple[str, str]]
) -> None:
    started = int(time.time())
    # When an operator replays the session to backfill
    answer = post({"destination": "backfill", "initial_contact_id": SESSION})
    assert answer.status_code == 202
    replay = json.loads(answer.body)
    assert answer.headers["Location"] == f"/replays/{replay['replay_id']}"
    assert (replay["status"], replay["found"], replay["archive"]) == ("queued", None, "archive")
    assert receiver.requests == []  # the route only queues the work
    pump()
    # Then every archived event of the session (both contact ids, both days) reaches it, in AbsoluteTime order
    requests = receiver.requests
    events = [Webhook(SECRET).verify(request.body, request.headers) for request in requests]
    assert [(e["data"]["item_id"], e["timestamp"]) for e in events] == archived
    # with the webhook-id it was first delivered with, the archived body byte for byte, and a fresh timestamp
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=f"sessions/{SESSION}/items/")["Contents"]
    bodies = [s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read() for o in listing]
    for request, (item_id, _) in zip(requests, archived, strict=True):
        assert request.headers["webhook-id"] == webhook_id_for(item_id)
        assert int(request.headers["webhook-timestamp"]) >= started
        assert request.body in bodies
    # And the replay reports its outcome
    done = status(replay["replay_id"])
    assert done["status"] == "completed"
    assert (done["found"], done["sent"], done["delivered"], done["retrying"], done["failed"]) == (4, 4, 4, 0, 0)
    assert done["outcome"].startswith("replayed: 4 delivered")
    assert done["finished_at"] is not None


def test_a_time_range_replays_every_session_of_the_range_from_the_date_partitioned_archive(
    receiver: Flaky, archived: list[tuple[str, str]]
) -> None:
    # Across midnight: the end of one day and the start of the next, both sessions, the end excluded
    answer = post({"destination": "backfill", "from": "2026-11-22T23:59:59Z", "to": "2026-11-23T00:00:09Z"})
    assert answer.status_code == 202
    replay = json.loads(answer.body)
    assert replay["archive"] == "lake"  # the session-keyed archive cannot be listed by time
    pump()
    events = [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.requests]
    assert [e["data"]["item_id"] for e in events] == ["m2", "other-1", "m3"]
    assert [r.headers["webhook-id"] for r in receiver.requests] == [webhook_id_for(i) for i in ("m2", "other-1", "m3")]
    done = status(replay["replay_id"])
    assert (done["status"], done["found"], done["delivered"]) == ("completed", 3, 3)
    assert (done["from"], done["to"]) == ("2026-11-22T23:59:59.000Z", "2026-11-23T00:00:09.000Z")


def test_a_receiver_failing_mid_replay_gets_the_rest_from_the_retry_queue(
    receiver: Flaky, archived: list[tuple[str, str]], queued: list[dict[str, Any]]
) -> None:
    # Given a receiver that fails the second and third events of the replay
    receiver.script = [204, 503, 500]
    replay = json.loads(post({"destination": "backfill", "initial_contact_id": SESSION}).body)
    pump()
    done = status(replay["replay_id"])
    assert (done["status"], done["delivered"], done["retrying"], done["failed"]) == ("completed", 2, 2, 0)
    # Then the two failures wait in the retry queue as ordinary retry tickets, never lost
    tickets = [entry["body"] for entry in queued]
    assert sorted(t["webhook_id"] for t in tickets) == sorted(webhook_id_for(i) for i, _ in archived[1:3])
    assert all(t["destination"] == "backfill" and len(t["attempts"]) == 1 for t in tickets)
    # and reach the receiver, same id and body, once it answers again
    for ticket in tickets:
        ticket["not_before"] = time.time()
    assert retry_deliveries(sqs_event(*map(json.dumps, tickets)), LambdaContext()) == {"batchItemFailures": []}
    first_tries = {r.headers["webhook-id"]: r.body for r in receiver.requests[1:3]}
    for request in receiver.requests[4:]:
        assert first_tries[request.headers["webhook-id"]] == request.body
        Webhook(SECRET).verify(request.body, request.headers)
    assert len(receiver.requests) == 6


def test_a_replay_larger_than_one_step_is_handed_on_in_chunks_and_resumes_after_a_stale_ticket(
    receiver: Flaky, configure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(backfill=False)
    for index in range(7):
        on_chat_message(item(f"c{index}", f"2026-11-22T10:00:0{index}.000Z"), LambdaContext())
    configure(backfill=True)
    monkeypatch.setattr("chalicelib.archive_replay.CHUNK_EVENTS", 3)
    replay = json.loads(post({"destination": "backfill", "initial_contact_id": SESSION}).body)
    handled = pump()
    offsets = [ReplayTicket.of(body) for body in handled]
    assert [ticket.offset for ticket in offsets if ticket] == [None, 0, 3, 6]
    # A ticket SQS delivers again after its step was recorded changes nothing
    assert retry_deliveries(sqs_event(ReplayTicket(replay["replay_id"], 3).to_json()), LambdaContext()) == {
        "batchItemFailures": []
    }
    assert [r.headers["webhook-id"] for r in receiver.requests] == [webhook_id_for(f"c{i}") for i in range(7)]
    assert status(replay["replay_id"])["delivered"] == 7
    assert CHUNK_EVENTS > 3


def test_a_replay_step_stops_within_the_invocations_time_and_hands_the_rest_on(
    receiver: Flaky, archived: list[tuple[str, str]]
) -> None:
    replay = json.loads(post({"destination": "backfill", "initial_contact_id": SESSION}).body)
    sqs = clients.sqs()

    def one_step(context_seconds: float) -> str:
        (message,) = sqs.receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10)["Messages"]
        answer = retry_deliveries(sqs_event(message["Body"]), LambdaContext(context_seconds))
        assert answer == {"batchItemFailures": []}
        sqs.delete_message(QueueUrl=queue_url(), ReceiptHandle=message["ReceiptHandle"])
        return str(message["Body"])

    one_step(60.0)  # the listing
    # A short invocation and a slow receiver: the step sends what fits, then hands the rest on from there
    receiver.delay = 0.3
    assert ReplayTicket.of(one_step(1.0)) == ReplayTicket(replay["replay_id"], 0)
    sent = len(receiver.requests)
    assert 1 <= sent < 4
    assert (status(replay["replay_id"])["status"], status(replay["replay_id"])["sent"]) == ("running", sent)
    # The next step starts where it stopped
    receiver.delay = 0.0
    assert ReplayTicket.of(one_step(60.0)) == ReplayTicket(replay["replay_id"], sent)
    assert [r.headers["webhook-id"] for r in receiver.requests] == [webhook_id_for(i) for i, _ in archived]
    assert status(replay["replay_id"])["status"] == "completed"


def test_the_command_line_replays_a_session_with_a_progress_bar_and_a_summary(
    receiver: Flaky, archived: list[tuple[str, str]]
) -> None:
    # The deployed stage's retry_deliveries, played by a thread taking the queue's messages
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            pump()
            time.sleep(0.05)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    out = io.StringIO()
    try:
        code = cli.main(["replay", "backfill", "--session", SESSION], out=out)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert code == 0
    text = out.getvalue()
    assert "4/4" in text
    assert "completed: found=4 delivered=4 retrying=0 parked=0 failed=0 skipped=0" in text
    assert len(receiver.requests) == 4


def test_the_command_line_reports_an_unknown_destination(archived: list[tuple[str, str]]) -> None:
    out = io.StringIO()
    assert cli.main(["replay", "nowhere", "--session", SESSION], out=out) == 2
    assert "no destination is called 'nowhere'" in out.getvalue()
