"""Reconciliation on moto: Connect's transcript objects in S3, the EventBridge "Object Created" notice as recorded,
the real handlers through chalice.test.Client (on_chat_message archives the stream, on_transcript_written schedules,
reconcile_transcripts compares), and a receiver on 127.0.0.1 that verifies every signature."""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator, FormatChecker
from standardwebhooks import Webhook

from app import app
from chalicelib import clients, dependencies
from chalicelib.events import webhook_id_for
from scripts.receivers import Receiver
from tests.conftest import PROJECT, QUARANTINE_BUCKET, SESSIONS_TABLE, TRANSCRIPT_QUEUE, load_event
from tests.schemas import load_schema

pytestmark = pytest.mark.integration

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
SECOND_CONTACT = "8c0d4f7a-2b1e-4c9d-a3f6-7e5b1c2d3e4f"
CONNECT_BUCKET = "amazon-connect-dev-111122223333"
PREFIX = "connect/relay-dev/ChatTranscripts/"
QUEUE = "connect-chat-relay-dev-reconciliation"
GREETING = "7f1d2c3b-0002-4a5b-8c6d-000000000002"
MIDDLE = "7f1d2c3b-0005-4a5b-8c6d-000000000005"
CHAT_ENDED = "7f1d2c3b-0008-4a5b-8c6d-000000000008"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def transcript(name: str) -> dict[str, Any]:
    document: dict[str, Any] = load_event(f"transcripts/{name}")
    return document


def record_of(document: dict[str, Any], entry: dict[str, Any]) -> Any:
    """The SNS record the stream would have carried for one transcript entry."""
    record = copy.deepcopy(load_event("chat/sns-record-customer-message.json"))
    sns = record["Records"][0]["Sns"]
    body = {**entry, "InitialContactId": document["InitialContactId"], "ContactId": document["ContactId"]}
    sns["Message"] = json.dumps(body)
    attributes = sns["MessageAttributes"]
    attributes["InitialContactId"]["Value"] = document["InitialContactId"]
    attributes["ContactId"]["Value"] = document["ContactId"]
    for key in ("ParticipantRole", "Type", "ContentType"):
        attributes.pop(key, None)
    return record


def stream(client: Any, document: dict[str, Any], *, leave_out: frozenset[str] = frozenset()) -> None:
    for entry in document["Transcript"]:
        if entry["Id"] not in leave_out:
            client.lambda_.invoke("on_chat_message", record_of(document, entry))


def notice(key: str) -> Any:
    event = copy.deepcopy(load_event("transcripts/eventbridge-object-created.json"))
    event["detail"]["bucket"]["name"] = CONNECT_BUCKET
    event["detail"]["object"]["key"] = key
    return event


def write_transcript(client: Any, key: str, body: bytes) -> list[str]:
    """Connect writes the object; EventBridge tells the relay; returns the requests queued."""
    clients.s3().put_object(Bucket=CONNECT_BUCKET, Key=key, Body=body)
    client.lambda_.invoke("on_transcript_written", notice(key))
    return queued()


def queued() -> list[str]:
    """The requests on the queue, once their delay (one second here) has passed."""
    url = clients.sqs().get_queue_url(QueueName=QUEUE)["QueueUrl"]
    names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"]
    counts = clients.sqs().get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    if not any(int(value) for value in counts.values()):
        return []
    messages = (
        clients.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=5).get("Messages", [])
    )
    for message in messages:
        clients.sqs().delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [m["Body"] for m in messages]


def run(client: Any, bodies: list[str]) -> list[str]:
    """The queue hands the requests to reconcile_transcripts; returns what it queued in turn."""
    event = client.events.generate_sqs_event(message_bodies=bodies, queue_name=QUEUE)
    client.lambda_.invoke("reconcile_transcripts", event)
    return queued()


def key_of(name: str) -> str:
    """Where Connect writes a transcript: named after its contact (an object that is no transcript, after itself)."""
    contact = transcript(name)["ContactId"] if name.endswith(".json") else name.partition(".")[0]
    return f"{PREFIX}2024/03/20/{contact}_20240320T09:38_UTC.json"


def delivered(receiver: Receiver) -> list[dict[str, Any]]:
    envelopes = [Webhook(SECRET).verify(request.body, request.headers) for request in receiver.requests]
    for envelope in envelopes:
        Draft202012Validator(load_schema(envelope["type"]), format_checker=FormatChecker()).validate(envelope)
    return envelopes


@pytest.fixture
def client(aws: None, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    path = tmp_path / "destinations.json"
    hook = {
        "name": "hook",
        "url": receiver.url("/hook"),
        "secrets": [SECRET],
        "allow_http": True,
        "allow_private_network": True,
    }
    config = {
        "version": 1,
        "allow_literal_secrets": True,
        "destinations": [{"name": "archive", "kind": "s3", "bucket": QUARANTINE_BUCKET}, hook],
    }
    path.write_text(json.dumps(config))
    clients.s3().create_bucket(Bucket=CONNECT_BUCKET)
    url = clients.sqs().create_queue(QueueName=QUEUE)["QueueUrl"]
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    monkeypatch.setenv("RECONCILE_QUEUE_URL", url)
    monkeypatch.setenv("RECONCILE_TRANSCRIPT_LOCATIONS", f"s3://{CONNECT_BUCKET}/{PREFIX}")
    monkeypatch.setenv("RECONCILE_DELAY_SECONDS", "1")
    dependencies.reset()
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


def reconcile_now(client: Any, name: str, body: bytes | None = None) -> list[str]:
    """The check pass, and the confirmation it asks for if it found gaps."""
    document = (PROJECT / "tests" / "events" / "transcripts" / name).read_bytes()
    requests = write_transcript(client, key_of(name), document if body is None else body)
    assert [json.loads(r)["phase"] for r in requests] == ["check"]
    again = run(client, requests)
    if again:
        assert [json.loads(r)["phase"] for r in again] == ["confirm"]
        assert run(client, again) == []
    return again


def test_no_gap_sends_only_the_report(client: Any, receiver: Receiver) -> None:
    document = transcript("chat-transcript.json")
    stream(client, document)
    streamed = len(receiver.requests)

    assert reconcile_now(client, "chat-transcript.json") == []

    [report] = delivered(receiver)[streamed:]
    assert report["type"] == "chat.transcript.reconciled"
    assert report["data"]["counts"] == {
        "recorded": 8,
        "streamed": 8,
        "recovered": 0,
        "only_in_stream": 0,
        "unreadable": 0,
    }


@pytest.mark.parametrize("lost", [GREETING, MIDDLE])
def test_a_lost_item_reaches_the_receiver_marked_recovered_with_its_live_webhook_id(
    client: Any, receiver: Receiver, lost: str
) -> None:
    document = transcript("chat-transcript.json")
    stream(client, document, leave_out=frozenset({lost}))
    streamed = len(receiver.requests)

    reconcile_now(client, "chat-transcript.json")

    recovered, report = delivered(receiver)[streamed:]
    assert recovered["data"]["item_id"] == lost
    assert recovered["data"]["recovered"] is True
    assert receiver.requests[streamed].headers["webhook-id"] == webhook_id_for(lost)
    assert report["data"]["recovered_item_ids"] == [lost]
    assert report["data"]["counts"]["streamed"] == 7
    # And the archive is completed: a second comparison recovers nothing
    again = write_transcript(client, key_of("chat-transcript.json"), json.dumps(document).encode())
    assert run(client, again) == []
    # Its report has the webhook-id of the first (the same transcript object): the delivery ledger skips it
    assert len(receiver.requests) == streamed + 2


def test_a_transfer_has_one_transcript_per_contact_and_both_are_reconciled(client: Any, receiver: Receiver) -> None:
    first, second = transcript("transfer-first-contact.json"), transcript("transfer-second-contact.json")
    lost = second["Transcript"][1]["Id"]
    stream(client, first)
    stream(client, second, leave_out=frozenset({lost}))
    streamed = len(receiver.requests)

    reconcile_now(client, "transfer-first-contact.json")
    reconcile_now(client, "transfer-second-contact.json")

    first_report, recovered, second_report = delivered(receiver)[streamed:]
    assert first_report["data"]["contact_ids"] == [SESSION]
    assert first_report["data"]["counts"]["recovered"] == 0
    assert recovered["data"]["item_id"] == lost
    assert recovered["data"]["contact_id"] == SECOND_CONTACT
    assert second_report["data"]["contact_ids"] == [SECOND_CONTACT]


def test_a_transcript_written_before_the_streams_last_items_recovers_nothing_they_bring(
    client: Any, receiver: Receiver
) -> None:
    document = transcript("chat-transcript.json")
    last = document["Transcript"][-1]
    stream(client, document, leave_out=frozenset({last["Id"]}))
    requests = write_transcript(client, key_of("chat-transcript.json"), json.dumps(document).encode())
    confirm = run(client, requests)
    assert [json.loads(r)["phase"] for r in confirm] == ["confirm"]
    # The stream's last item arrives during the delay
    client.lambda_.invoke("on_chat_message", record_of(document, last))
    streamed = len(receiver.requests)

    run(client, confirm)

    [report] = delivered(receiver)[streamed:]
    assert report["data"]["counts"]["recovered"] == 0


def test_an_object_that_is_not_json_is_kept_and_reported_never_a_crash(client: Any, receiver: Receiver) -> None:
    body = (PROJECT / "tests" / "events" / "transcripts" / "not-json.txt").read_bytes()

    reconcile_now(client, "chat-transcript.json", body)

    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/invalid/connect-transcripts/")
    assert len(listing["Contents"]) == 1
    assert receiver.requests == []
    # Connect's object is left as it was
    assert clients.s3().get_object(Bucket=CONNECT_BUCKET, Key=key_of("chat-transcript.json"))["Body"].read() == body


def test_an_object_outside_the_watched_prefix_is_ignored(client: Any) -> None:
    clients.s3().put_object(Bucket=CONNECT_BUCKET, Key="connect/relay-dev/CallRecordings/x.wav", Body=b"RIFF")
    client.lambda_.invoke("on_transcript_written", notice("connect/relay-dev/CallRecordings/x.wav"))

    assert queued() == []


def test_archive_only_keeps_recovered_items_in_the_archive_and_sends_only_the_report(
    client: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILE_DELIVERY", "archive-only")
    dependencies.reset()
    stream(client, transcript("chat-transcript.json"), leave_out=frozenset({GREETING}))
    streamed = len(receiver.requests)

    reconcile_now(client, "chat-transcript.json")

    [report] = delivered(receiver)[streamed:]
    assert report["data"]["recovered_item_ids"] == [GREETING]
    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=f"sessions/{SESSION}/items/")
    [kept] = [obj["Key"] for obj in listing["Contents"] if obj["Key"].endswith(f"_{GREETING}.json")]
    envelope = json.loads(clients.s3().get_object(Bucket=QUARANTINE_BUCKET, Key=kept)["Body"].read())
    assert envelope["data"]["recovered"] is True


def test_unreadable_notices_and_requests_are_kept_not_retried(client: Any) -> None:
    event = notice(key_of("chat-transcript.json"))
    del event["detail"]["object"]
    client.lambda_.invoke("on_transcript_written", event)
    run(client, ["not json", json.dumps({"bucket": CONNECT_BUCKET, "key": "k", "phase": "later"})])

    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/invalid/reconciliation/")
    assert len(listing["Contents"]) == 3


def transcript_requests() -> list[str]:
    url = clients.sqs().get_queue_url(QueueName=TRANSCRIPT_QUEUE)["QueueUrl"]
    messages = clients.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        clients.sqs().delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return [m["Body"] for m in messages]


def latest_transcript() -> dict[str, Any]:
    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=f"transcripts/{SESSION}/")["Contents"]
    latest = max(obj["Key"] for obj in listing if obj["Key"].endswith(".json"))
    document: dict[str, Any] = json.loads(clients.s3().get_object(Bucket=QUARANTINE_BUCKET, Key=latest)["Body"].read())
    return document


def stream_losing(client: Any, monkeypatch: pytest.MonkeyPatch, *lost: str) -> None:
    """Stream the recorded chat but the items ``lost``, transcripts asked for at once (no grace, no recheck)."""
    monkeypatch.setenv("TRANSCRIPT_GRACE_SECONDS", "0")
    monkeypatch.setenv("TRANSCRIPT_RECHECK_SECONDS", "0")
    dependencies.reset()
    stream(client, transcript("chat-transcript.json"), leave_out=frozenset(lost))


def test_the_sessions_transcript_is_assembled_again_with_the_recovered_item(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a chat whose greeting the stream lost, and the transcript assembled when it ended (without it)
    stream_losing(client, monkeypatch, GREETING)
    [ended] = transcript_requests()
    client.lambda_.invoke(
        "assemble_transcripts", client.events.generate_sqs_event(message_bodies=[ended], queue_name=TRANSCRIPT_QUEUE)
    )
    assert GREETING not in {item["Id"] for item in latest_transcript()["Transcript"]}

    # When reconciliation recovers the greeting
    reconcile_now(client, "chat-transcript.json")

    # Then the transcript is requested again, and its new version has the greeting, in its place
    [again] = transcript_requests()
    assert json.loads(again) == {"initial_contact_id": SESSION, "reason": "late"}
    client.lambda_.invoke(
        "assemble_transcripts", client.events.generate_sqs_event(message_bodies=[again], queue_name=TRANSCRIPT_QUEUE)
    )
    completed = latest_transcript()
    assert completed["TranscriptVersion"] == 2
    assert [item["Id"] for item in completed["Transcript"]][:3] == [
        "7f1d2c3b-0001-4a5b-8c6d-000000000001",
        GREETING,
        "7f1d2c3b-0003-4a5b-8c6d-000000000003",
    ]


def test_a_chat_whose_end_the_stream_lost_is_ended_by_reconciliation_and_its_transcript_made(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a chat whose greeting and chat.ended the stream lost: its session is open, no transcript asked for
    stream_losing(client, monkeypatch, GREETING, CHAT_ENDED)
    assert transcript_requests() == []

    # When reconciliation recovers them (Connect writes a contact's transcript once it has ended)
    reconcile_now(client, "chat-transcript.json")

    # Then the session is ended as its chat.ended would have ended it, and the transcript made has both
    [ended] = transcript_requests()
    assert json.loads(ended) == {"initial_contact_id": SESSION, "reason": "ended"}
    client.lambda_.invoke(
        "assemble_transcripts", client.events.generate_sqs_event(message_bodies=[ended], queue_name=TRANSCRIPT_QUEUE)
    )
    assert {GREETING, CHAT_ENDED} <= {item["Id"] for item in latest_transcript()["Transcript"]}
    record = clients.dynamodb().get_item(TableName=SESSIONS_TABLE, Key={"initial_contact_id": {"S": SESSION}})
    assert "ended_at" in record["Item"]
    assert "open" not in record["Item"]


def test_a_recovered_flow_greeting_reaches_a_customer_facing_destination_not_the_undecided_quarantine(
    client: Any, receiver: Receiver
) -> None:
    # Given a destination that keeps what the customer sees (Connect's visibility rule), and a chat whose flow
    # greeting (a transcript item: no MessageVisibility) the stream lost
    path = Path(os.environ["RELAY_CONFIG_FILE"])
    config = json.loads(path.read_text())
    bridge = {**config["destinations"][1], "name": "bridge", "url": receiver.url("/bridge"), "audience": "customer"}
    config["destinations"].append({**bridge, "events": ["chat.message"]})
    path.write_text(json.dumps(config))
    dependencies.reset()
    stream(client, transcript("chat-transcript.json"), leave_out=frozenset({GREETING}))
    streamed = [r for r in receiver.requests if r.path == "/bridge"]

    reconcile_now(client, "chat-transcript.json")

    # Then the bridge gets it, marked recovered, and nothing waits undecided
    [recovered] = [r for r in receiver.requests if r.path == "/bridge"][len(streamed) :]
    envelope = Webhook(SECRET).verify(recovered.body, recovered.headers)
    assert (envelope["data"]["item_id"], envelope["data"]["recovered"]) == (GREETING, True)
    assert envelope["data"]["visibility"] == "ALL"
    undecided = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/undecided/")
    assert undecided.get("KeyCount", 0) == 0


def test_a_key_naming_another_contact_is_kept_not_reconciled(client: Any, receiver: Receiver) -> None:
    body = (PROJECT / "tests" / "events" / "transcripts" / "chat-transcript.json").read_bytes()
    key = key_of("chat-transcript.json").replace(SESSION, SECOND_CONTACT)

    run(client, write_transcript(client, key, body))

    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/invalid/connect-transcripts/")
    [kept] = listing["Contents"]
    record = json.loads(clients.s3().get_object(Bucket=QUARANTINE_BUCKET, Key=kept["Key"])["Body"].read())
    assert record["reason"] == "the object's key names a contact the document does not"
    assert receiver.requests == []


def scan(client: Any) -> list[str]:
    """EventBridge's schedule invokes scan_transcripts; returns the requests it queued."""
    event = client.events.generate_cw_event(
        source="aws.events", detail_type="Scheduled Event", detail={}, resources=["arn:aws:events:rule/scan"]
    )
    client.lambda_.invoke("scan_transcripts", event)
    return queued()


def todays_key(contact: str) -> str:
    """Where Connect writes a transcript today."""
    now = datetime.now(UTC)
    return f"{PREFIX}{now:%Y/%m/%d}/{contact}_{now:%Y%m%dT%H:%M}_UTC.json"


def test_the_scan_is_off_unless_switched_on(client: Any) -> None:
    body = (PROJECT / "tests" / "events" / "transcripts" / "chat-transcript.json").read_bytes()
    clients.s3().put_object(Bucket=CONNECT_BUCKET, Key=todays_key(SESSION), Body=body)

    assert scan(client) == []


def test_the_scan_queues_what_connect_wrote_and_an_object_queued_twice_is_recovered_once(
    client: Any, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the scan switched on (no EventBridge notice at all), and a chat whose greeting the stream lost
    monkeypatch.setenv("RECONCILE_SCAN", "on")
    dependencies.reset()
    stream(client, transcript("chat-transcript.json"), leave_out=frozenset({GREETING}))
    streamed = len(receiver.requests)
    body = (PROJECT / "tests" / "events" / "transcripts" / "chat-transcript.json").read_bytes()
    key = todays_key(SESSION)
    clients.s3().put_object(Bucket=CONNECT_BUCKET, Key=key, Body=body)
    clients.s3().put_object(Bucket=CONNECT_BUCKET, Key="connect/relay-dev/CallRecordings/x.wav", Body=b"RIFF")

    # When it runs twice, the second time within the overlap
    first, second = scan(client), scan(client)

    # Then each run queued the transcript as the EventBridge path does, and no other object
    expected = {"bucket": CONNECT_BUCKET, "key": key, "phase": "check"}
    assert [json.loads(r) for r in first + second] == [expected, expected]
    # And both comparisons together recover the greeting once; the reports share their webhook-id, so the
    # delivery ledger sends the second one nowhere it was delivered already
    confirms = run(client, first + second)
    assert run(client, confirms) == []
    envelopes = delivered(receiver)[streamed:]
    assert [e["data"]["item_id"] for e in envelopes if e["type"] == "chat.message"] == [GREETING]
    reports = receiver.requests[streamed + 1 :]
    assert len(reports) == 1
    assert [e["type"] for e in envelopes[1:]] == ["chat.transcript.reconciled"]
    # And the watermark is kept for the next run
    parameter = clients.ssm().get_parameter(Name="/connect-chat-relay/dev/reconciliation/scan-watermark")
    assert set(json.loads(parameter["Parameter"]["Value"])) == {f"s3://{CONNECT_BUCKET}/{PREFIX}"}
