"""Transcripts on moto: the real handlers through chalice.test.Client. The stream archives a chat that is transferred
and crosses midnight; chat.ended schedules the assembly on the transcript queue; the assembler writes the JSON and
the Markdown beside the archive and announces chat.transcript.completed to a receiver that verifies the signature."""

from __future__ import annotations

import base64
import copy
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator, FormatChecker
from standardwebhooks import Webhook

from app import app
from chalicelib import clients, dependencies
from chalicelib.errors import SettingsError
from chalicelib.handlers import transcripts as transcripts_handler
from scripts.receivers import Receiver
from tests.conftest import PROJECT, QUARANTINE_BUCKET, SESSIONS_TABLE, TRANSCRIPT_QUEUE, load_event
from tests.schemas import load_schema

pytestmark = pytest.mark.integration

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
TRANSFERRED = "7c2b9f40-3d1e-4b8a-a5f6-9e8d7c6b5a41"
SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def item(item_id: str, at: str, *, contact_id: str = SESSION, **fields: Any) -> Any:
    record = copy.deepcopy(load_event("chat/sns-record-customer-message.json"))
    sns = record["Records"][0]["Sns"]
    body = json.loads(sns["Message"])
    body.update(Id=item_id, AbsoluteTime=at, InitialContactId=SESSION, ContactId=contact_id, **fields)
    sns["Message"] = json.dumps(body)
    for key, value in (("InitialContactId", SESSION), ("ContactId", contact_id)):
        sns["MessageAttributes"][key]["Value"] = value
    sns["MessageAttributes"]["ParticipantRole"]["Value"] = body["ParticipantRole"]
    return record


def chat_ended(at: str) -> Any:
    record = copy.deepcopy(load_event("chat/event-chat-ended.json"))
    sns = record["Records"][0]["Sns"]
    body = json.loads(sns["Message"])
    body.update(AbsoluteTime=at, ContactId=TRANSFERRED)
    sns["Message"] = json.dumps(body)
    return record


@pytest.fixture
def client(aws: None, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    path = tmp_path / "destinations.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "allow_literal_secrets": True,
                "destinations": [
                    {"name": "archive", "kind": "s3", "bucket": QUARANTINE_BUCKET},
                    {
                        "name": "hook",
                        "url": receiver.url("/hook"),
                        "events": ["chat.transcript.completed"],
                        "secrets": [SECRET],
                        "allow_http": True,
                        "allow_private_network": True,
                    },
                ],
            }
        )
    )
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    monkeypatch.setenv("TRANSCRIPT_GRACE_SECONDS", "0")
    monkeypatch.setenv("TRANSCRIPT_RECHECK_SECONDS", "0")
    dependencies.reset()
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


def queue_url() -> str:
    return clients.sqs().get_queue_url(QueueName=TRANSCRIPT_QUEUE)["QueueUrl"]


def requested() -> list[str]:
    messages = clients.sqs().receive_message(QueueUrl=queue_url(), MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def assemble(client: Any, bodies: list[str]) -> None:
    event = client.events.generate_sqs_event(message_bodies=bodies, queue_name=TRANSCRIPT_QUEUE)
    client.lambda_.invoke("assemble_transcripts", event)


def kept(key: str) -> bytes:
    return clients.s3().get_object(Bucket=QUARANTINE_BUCKET, Key=key)["Body"].read()


def converse(client: Any) -> None:
    """A chat that crosses midnight UTC and is transferred, arriving out of order and with a duplicate."""
    records = [
        item(
            "m2",
            "2026-11-23T00:00:03.000Z",
            contact_id=TRANSFERRED,
            ParticipantRole="AGENT",
            DisplayName="Sam",
            ParticipantId="agent-2",
            Content="Sam here, after the transfer",
        ),
        item("m1", "2026-11-22T23:59:58.000Z", Content="Hello before midnight"),
        item("m1", "2026-11-22T23:59:58.000Z", Content="Hello before midnight"),
        chat_ended("2026-11-23T00:00:09.000Z"),
    ]
    for record in records:
        client.lambda_.invoke("on_chat_message", record)


def test_chat_end_schedules_the_assembly_which_keeps_and_announces_the_transcript(
    client: Any, receiver: Receiver
) -> None:
    # Given a whole chat archived, When it ends
    converse(client)
    # Then its assembly is requested on the transcript queue
    bodies = requested()
    assert [json.loads(b) for b in bodies] == [{"initial_contact_id": SESSION, "reason": "ended"}]
    # When the assembler runs
    assemble(client, bodies)
    # Then the transcript is kept in Connect's shape, in time order across midnight and the transfer
    document = json.loads(kept(f"transcripts/{SESSION}/v0001.json"))
    assert [entry["Id"] for entry in document["Transcript"]] == ["m1", "m2", "15f13853-7022-51dd-9892-ecd2c9a5b386"]
    assert document["ContactIds"] == [SESSION, TRANSFERRED]
    assert document["InitialContactId"] == SESSION
    markdown = kept(f"transcripts/{SESSION}/v0001.md").decode()
    assert markdown.index("Hello before midnight") < markdown.index("Sam here, after the transfer")
    head = clients.s3().head_object(Bucket=QUARANTINE_BUCKET, Key=f"transcripts/{SESSION}/v0001.json")
    assert head["ServerSideEncryption"] == "aws:kms"
    # And chat.transcript.completed reaches the receiver, signed, valid, with a link and a summary
    (request,) = receiver.requests
    envelope = Webhook(SECRET).verify(request.body, request.headers)
    Draft202012Validator(load_schema(envelope["type"]), format_checker=FormatChecker()).validate(envelope)
    data = envelope["data"]
    assert data["version"] == 1
    assert data["reason"] == "chat_ended"
    assert f"transcripts/{SESSION}/v0001.json" in data["transcript"]["url"]
    assert data["summary"]["message_counts"] == {"CUSTOMER": 1, "AGENT": 1}
    assert data["summary"]["contact_ids"] == [SESSION, TRANSFERRED]


def test_a_late_item_makes_a_new_version_and_a_rerun_with_nothing_new_makes_none(
    client: Any, receiver: Receiver
) -> None:
    converse(client)
    assemble(client, requested())
    # Given an item that arrives after the transcript was made
    client.lambda_.invoke("on_chat_message", item("late", "2026-11-23T00:00:01.000Z", Content="a late one"))
    # When the recheck runs, twice (SQS delivers at least once)
    recheck = json.dumps({"initial_contact_id": SESSION, "reason": "recheck"})
    assemble(client, [recheck])
    assemble(client, [recheck])
    # Then a second version has the late item in its place, and only one more event says so
    document = json.loads(kept(f"transcripts/{SESSION}/v0002.json"))
    assert [entry["Id"] for entry in document["Transcript"]][:3] == ["m1", "late", "m2"]
    assert document["TranscriptVersion"] == 2
    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=f"transcripts/{SESSION}/")
    assert len(listing["Contents"]) == 4
    versions = [
        (json.loads(r.body)["data"]["version"], json.loads(r.body)["data"]["reason"]) for r in receiver.requests
    ]
    assert versions == [(1, "chat_ended"), (2, "late_items")]


def test_the_ended_assembly_schedules_a_recheck(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSCRIPT_RECHECK_SECONDS", "600")
    dependencies.reset()
    converse(client)
    assemble(client, requested())
    attributes = clients.sqs().get_queue_attributes(QueueUrl=queue_url(), AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"


def test_an_unreadable_request_is_kept_not_retried(client: Any) -> None:
    assemble(client, ["not json"])
    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/invalid/transcripts/")
    assert len(listing["Contents"]) == 1


def test_a_request_without_a_transcript_queue_stays_on_the_queue(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a stage whose transcript queue setting is gone, when a request arrives, then the invocation fails so SQS
    keeps the request (and its dead-letter queue after that) instead of deleting it unassembled."""
    # The stage's own environment is applied on every invoke, so the unconfigured service is stood in directly.
    monkeypatch.setattr(transcripts_handler, "transcript_service", lambda: None)
    body = json.dumps({"initial_contact_id": SESSION, "reason": "ended"})
    with pytest.raises(SettingsError, match="not configured"):
        assemble(client, [body])


def session_record() -> dict[str, Any]:
    answer = clients.dynamodb().get_item(TableName=SESSIONS_TABLE, Key={"initial_contact_id": {"S": SESSION}})
    return answer.get("Item", {})


def age_session(seconds: int) -> None:
    """Move the session's last item ``seconds`` into the past, as if the chat had gone quiet that long ago."""
    last = int(session_record()["last_item_at"]["N"])
    clients.dynamodb().update_item(
        TableName=SESSIONS_TABLE,
        Key={"initial_contact_id": {"S": SESSION}},
        UpdateExpression="SET last_item_at = :t",
        ExpressionAttributeValues={":t": {"N": str(last - seconds * 1000)}},
    )


def test_a_session_whose_end_never_comes_is_closed_by_the_sweep_and_a_late_end_makes_a_new_version(
    client: Any, receiver: Receiver
) -> None:
    # Given a chat across midnight and a transfer, whose chat.ended never arrives
    for record in (
        item("m1", "2026-11-22T23:59:58.000Z", Content="Hello before midnight"),
        item("m2", "2026-11-23T00:00:03.000Z", contact_id=TRANSFERRED, ParticipantRole="AGENT", Content="after"),
    ):
        client.lambda_.invoke("on_chat_message", record)
    assert session_record()["open"] == {"S": "open"}
    # When the sweep runs before the session has been idle for SESSION_IDLE_SECONDS, Then it leaves it open
    client.lambda_.invoke("sweep_sessions", client.events.generate_cw_event("Scheduled Event", "aws.events", {}, []))
    assert requested() == []
    # When it runs once the session has been idle longer than that
    age_session(3601)
    client.lambda_.invoke("sweep_sessions", client.events.generate_cw_event("Scheduled Event", "aws.events", {}, []))
    # Then the session's assembly is queued, the session is no longer open, and a second sweep finds nothing
    bodies = requested()
    assert [json.loads(b) for b in bodies] == [{"initial_contact_id": SESSION, "reason": "sweep"}]
    assert "open" not in session_record()
    client.lambda_.invoke("sweep_sessions", client.events.generate_cw_event("Scheduled Event", "aws.events", {}, []))
    assert requested() == []
    # When the assembler runs, Then the transcript has the whole chat and the event says the sweep closed it
    assemble(client, bodies)
    document = json.loads(kept(f"transcripts/{SESSION}/v0001.json"))
    assert [entry["Id"] for entry in document["Transcript"]] == ["m1", "m2"]
    (request,) = receiver.requests
    envelope = Webhook(SECRET).verify(request.body, request.headers)
    Draft202012Validator(load_schema(envelope["type"]), format_checker=FormatChecker()).validate(envelope)
    assert envelope["data"]["reason"] == "idle_sweep"
    assert envelope["data"]["closed_by"] == "sweep"
    assert envelope["data"]["supersedes"] is None
    # When the chat.ended comes after all, Then version 2 includes it, closed by chat_ended, superseding version 1
    client.lambda_.invoke("on_chat_message", chat_ended("2026-11-23T00:00:09.000Z"))
    assemble(client, requested())
    data = [json.loads(r.body)["data"] for r in receiver.requests]
    assert [(d["version"], d["reason"], d["closed_by"], d["supersedes"]) for d in data] == [
        (1, "idle_sweep", "sweep", None),
        (2, "late_items", "chat_ended", 1),
    ]


def test_late_items_after_the_assembly_queue_one_re_assembly_that_makes_version_2(
    client: Any, receiver: Receiver
) -> None:
    # Given a chat whose transcript is made
    converse(client)
    assemble(client, requested())
    # When three items arrive after it (the first claims the re-assembly; the others ride along)
    for n in range(3):
        client.lambda_.invoke("on_chat_message", item(f"late-{n}", f"2026-11-23T00:00:0{n + 4}.000Z", Content="late"))
    # Then one re-assembly is queued, and it makes version 2 with every late item, superseding version 1
    bodies = requested()
    assert [json.loads(b) for b in bodies] == [{"initial_contact_id": SESSION, "reason": "late"}]
    assemble(client, bodies)
    document = json.loads(kept(f"transcripts/{SESSION}/v0002.json"))
    assert {"late-0", "late-1", "late-2"} <= {entry["Id"] for entry in document["Transcript"]}
    data = json.loads(receiver.requests[-1].body)["data"]
    assert (data["version"], data["reason"], data["supersedes"], data["closed_by"]) == (
        2,
        "late_items",
        1,
        "chat_ended",
    )
    # And an item after that re-assembly queues another (the claim lapses once an assembly has started since)
    client.lambda_.invoke("on_chat_message", item("later", "2026-11-23T00:00:08.000Z", Content="later still"))
    assert [json.loads(b)["reason"] for b in requested()] == ["late"]


def test_an_item_between_the_end_and_the_assembly_queues_nothing_more(client: Any) -> None:
    # Given a chat that ended and whose assembly is queued but has not run
    converse(client)
    ended = requested()
    # When an item arrives in the grace period, Then no re-assembly is queued: the assembly will read it
    client.lambda_.invoke("on_chat_message", item("in-grace", "2026-11-23T00:00:05.000Z", Content="just in time"))
    assert requested() == []
    assemble(client, ended)
    document = json.loads(kept(f"transcripts/{SESSION}/v0001.json"))
    assert "in-grace" in [entry["Id"] for entry in document["Transcript"]]
