"""The chat stream end to end: the real on_chat_message through chalice.test.Client, moto for S3 and SSM, and
webhook receivers on 127.0.0.1 that verify every signature with the standardwebhooks package."""

from __future__ import annotations

import base64
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
from chalicelib import clients
from chalicelib.handlers.chat_stream import on_chat_message
from scripts.receivers import Answer, Receiver
from tests.conftest import EVENTS, PROJECT, QUARANTINE_BUCKET, LambdaContext, emitted_metrics, load_event
from tests.schemas import load_schema

pytestmark = pytest.mark.integration


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {name: Receiver().start() for name in ("crm", "agent", "down")}
    started["down"].answer("/hook", Answer(status=503, retry_after="30"))
    yield started
    for receiver in started.values():
        receiver.stop()


@pytest.fixture
def destinations(tmp_path: Path, receivers: dict[str, Receiver], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A destinations file: crm gets everything, agent gets what customers say, down answers 503."""
    keys = {name: new_secret() for name in receivers}

    def hook(name: str, **filters: Any) -> dict[str, Any]:
        return {
            "name": name,
            "url": receivers[name].url("/hook"),
            "secrets": [keys[name]],
            "allow_http": True,
            "allow_private_network": True,
            **filters,
        }

    path = tmp_path / "destinations.json"
    config = {
        "version": 1,
        "allow_literal_secrets": True,
        "destinations": [
            hook("crm"),
            hook("agent", audience="agent", events=["chat.message"]),
            hook("down", events=["chat.ended"], retry_schedule=[0, 5, 300]),
        ],
    }
    path.write_text(json.dumps(config))
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    return keys


@pytest.fixture
def client(aws: None, destinations: dict[str, str]) -> Iterator[Any]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


def kept_objects(prefix: str) -> list[dict[str, Any]]:
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=prefix).get("Contents", [])
    return [json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read()) for o in listing]


VALID = sorted(p.relative_to(EVENTS).as_posix() for p in (EVENTS / "chat").glob("*.json"))


@pytest.mark.parametrize("fixture", VALID)
def test_every_item_kind_reaches_the_crm_signed_and_valid(
    client: Any, receivers: dict[str, Receiver], destinations: dict[str, str], fixture: str
) -> None:
    # Given a recorded stream record, When it is invoked, Then the catch-all crm gets one signed, valid event.
    client.lambda_.invoke("on_chat_message", load_event(fixture))
    typing = "typing" in fixture
    requests = receivers["crm"].requests
    assert len(requests) == (0 if typing else 1)  # typing is off unless asked for
    for request in requests:
        envelope = Webhook(destinations["crm"]).verify(request.body, request.headers)
        Draft202012Validator(load_schema(envelope["type"]), format_checker=FormatChecker()).validate(envelope)
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"].startswith("connect-chat-relay/")


def test_a_redelivered_item_keeps_its_webhook_id_and_is_not_sent_again_once_it_got_through(
    client: Any, receivers: dict[str, Receiver]
) -> None:
    # Given a crm that fails the first delivery, When SNS delivers the record three times
    event = load_event("chat/sns-record-customer-message.json")
    receivers["crm"].answer("/hook", Answer(status=503))
    client.lambda_.invoke("on_chat_message", event)
    receivers["crm"].answer("/hook", Answer(status=204))
    client.lambda_.invoke("on_chat_message", event)
    client.lambda_.invoke("on_chat_message", event)
    # Then the second carries the same webhook-id and body, and the third is not sent (the delivery ledger)
    first, second = receivers["crm"].requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body


def test_the_agent_facing_destination_gets_what_the_customer_says_only(
    client: Any, receivers: dict[str, Receiver]
) -> None:
    client.lambda_.invoke("on_chat_message", load_event("chat/sns-record-customer-message.json"))
    agent_message = load_event("chat/sns-record-customer-message.json")
    sns = agent_message["Records"][0]["Sns"]
    item = json.loads(sns["Message"])
    item.update(Id="agent-item-1", ParticipantRole="AGENT", ParticipantId="agent-1")
    sns["Message"] = json.dumps(item)
    sns["MessageAttributes"]["ParticipantRole"]["Value"] = "AGENT"
    client.lambda_.invoke("on_chat_message", agent_message)
    bodies = [json.loads(r.body) for r in receivers["agent"].requests]
    assert [b["data"]["participant"]["role"] for b in bodies] == ["CUSTOMER"]
    assert len(receivers["crm"].requests) == 2


def test_a_failing_destination_waits_in_the_retry_queue_and_fails_no_other(
    client: Any, receivers: dict[str, Receiver], relay_output: Any, queued: list[dict[str, Any]]
) -> None:
    client.lambda_.invoke("on_chat_message", load_event("chat/event-chat-ended.json"))
    assert len(receivers["crm"].requests) == 1
    assert len(receivers["down"].requests) == 1
    (ticket,) = queued
    assert ticket["delay"] == 30  # Retry-After: 30, more than the schedule's 5 s and within its longest wait
    assert ticket["body"]["destination"] == "down"
    assert [(a["attempt"], a["status"]) for a in ticket["body"]["attempts"]] == [(1, 503)]
    assert ticket["body"]["event"]["type"] == "chat.ended"
    assert ticket["body"]["webhook_id"] == receivers["down"].requests[0].headers["webhook-id"]
    assert not kept_objects("quarantine/undelivered/")
    metrics = emitted_metrics(relay_output())
    assert metrics["DeliverySucceeded"] == 1
    assert metrics["DeliveryFailed"] == 1
    assert metrics["DeliveryRetried"] == 1


INVALID = sorted(p.relative_to(EVENTS).as_posix() for p in (EVENTS / "chat" / "invalid").glob("*.json"))


@pytest.mark.parametrize("fixture", INVALID)
def test_invalid_items_are_quarantined_counted_and_never_raise(
    client: Any, receivers: dict[str, Receiver], relay_output: Any, fixture: str
) -> None:
    # Given a record the relay cannot read, When invoked, Then it returns normally (no endless SNS redelivery),
    # keeps the record with its reason in S3, logs the SNS MessageId and counts InvalidChatItem.
    event = load_event(fixture)
    response = client.lambda_.invoke("on_chat_message", event)
    assert response.payload is None
    (kept,) = kept_objects("quarantine/invalid/")
    assert kept["record"] == event["Records"][0]["Sns"]
    assert kept["reason"]
    output = relay_output()
    assert emitted_metrics(output) == {"InvalidChatItem": 1}
    assert event["Records"][0]["Sns"]["MessageId"] in output
    assert all(not r.requests for r in receivers.values())


def test_an_unavailable_secret_fails_that_destination_only(
    queued: list[dict[str, Any]], receivers: dict[str, Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "destinations.json"
    hook = {"allow_http": True, "allow_private_network": True}
    config = {
        "version": 1,
        "allow_literal_secrets": True,
        "destinations": [
            {"name": "crm", "url": receivers["crm"].url("/hook"), "secrets": [new_secret()], **hook},
            {"name": "agent", "url": receivers["agent"].url("/hook"), "secrets": ["ssm:/relay/missing"], **hook},
        ],
    }
    path.write_text(json.dumps(config))
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    # Called as Lambda calls it, with a minute left: moto's first SSM answer can take longer than chalice.test's 3 s.
    on_chat_message(load_event("chat/sns-record-customer-message.json"), LambdaContext(60))
    assert len(receivers["crm"].requests) == 1
    assert not receivers["agent"].requests
    (ticket,) = queued
    assert "ssm:/relay/missing" in ticket["body"]["attempts"][0]["error"]


def test_secrets_never_reach_the_logs(client: Any, destinations: dict[str, str], relay_output: Any) -> None:
    client.lambda_.invoke("on_chat_message", load_event("chat/event-chat-ended.json"))
    output = relay_output()
    for key in destinations.values():
        assert key not in output
        assert key.removeprefix("whsec_") not in output


# As SNS hands a record to Lambda: Subject and MessageAttributes are always there (null, {}).
_ENVELOPE: dict[str, Any] = {"MessageId": "m-1", "Subject": None, "MessageAttributes": {}}


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [{"EventSource": "aws:sns", "Sns": {**_ENVELOPE, "Message": None}}]},
        {"Records": [{"EventSource": "aws:sns", "Sns": {**_ENVELOPE, "Message": "{}"}}]},
        {"Records": [{"EventSource": "aws:sns", "Sns": {**_ENVELOPE, "Message": "{}"}}, {"EventSource": "aws:sns"}]},
    ],
)
def test_records_missing_their_parts_are_quarantined_not_crashed_on(
    client: Any, relay_output: Any, event: dict[str, Any]
) -> None:
    assert client.lambda_.invoke("on_chat_message", event).payload is None
    records = len(event["Records"])
    assert len(kept_objects("quarantine/invalid/")) == records
    assert emitted_metrics(relay_output()) == {"InvalidChatItem": records}


@pytest.mark.parametrize(
    "event",
    [
        {"Records": [{"EventSource": "aws:sns", "Sns": {"MessageId": "m-1"}}]},
        {"Records": [{"EventSource": "aws:sns"}]},
        {"Records": []},
    ],
)
def test_an_envelope_sns_never_sends_fails_the_invocation(client: Any, event: dict[str, Any]) -> None:
    # Chalice's SNSEvent reads the first record's Subject, Message and MessageAttributes before the handler runs:
    # the invocation fails, and Lambda's retries and on-failure destination keep the event.
    with pytest.raises((KeyError, IndexError)):
        client.lambda_.invoke("on_chat_message", event)
    assert kept_objects("quarantine/invalid/") == []
