"""Destinations of the AWS kinds on moto: the real on_chat_message through chalice.test.Client writes to an S3
archive, SQS queues (standard and FIFO), an EventBridge bus (a rule routes to a queue) and a Kinesis stream."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from chalice.test import Client

from app import app
from chalicelib import clients, dependencies
from chalicelib.budget import attempts_until
from chalicelib.chat_items import parse_sns_record
from chalicelib.events import RelayEvent, event_from_chat_item, webhook_id_for
from chalicelib.handlers.chat_stream import on_chat_message
from tests.conftest import PROJECT, REGION, LambdaContext, load_event

pytestmark = pytest.mark.integration

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
TRANSFERRED = "7c2b9f40-3d1e-4b8a-a5f6-9e8d7c6b5a41"
ARCHIVE = "relay-archive"
KEY_ALIAS = "alias/relay-archive"
MOTO_ACCOUNT = "123456789012"


def stream_record(item_id: str, absolute_time: str, *, contact_id: str = SESSION, **item: Any) -> Any:
    """An SNS record of the chat stream carrying a customer message, with the given fields changed."""
    record = copy.deepcopy(load_event("chat/sns-record-customer-message.json"))
    sns = record["Records"][0]["Sns"]
    body = json.loads(sns["Message"])
    body.update(Id=item_id, AbsoluteTime=absolute_time, InitialContactId=SESSION, ContactId=contact_id, **item)
    sns["Message"] = json.dumps(body)
    sns["MessageAttributes"]["InitialContactId"]["Value"] = SESSION
    sns["MessageAttributes"]["ContactId"]["Value"] = contact_id
    return record


def relay_event(item_id: str, absolute_time: str, **item: Any) -> RelayEvent:
    """The event the relay makes of such a record."""
    return event_from_chat_item(parse_sns_record(stream_record(item_id, absolute_time, **item)["Records"][0]["Sns"]))


def arn(service: str, resource: str) -> str:
    """An ARN in moto's account (moto's resources live there, whatever the stage's placeholder account is)."""
    return f"arn:aws:{service}:{REGION}:{MOTO_ACCOUNT}:{resource}"


@pytest.fixture
def resources(aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An archive bucket with a KMS key, two queues, a bus whose rule feeds a queue, a stream; one of each kind."""
    kms = boto3.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=key_id)
    clients.s3().create_bucket(Bucket=ARCHIVE)
    sqs = clients.sqs()
    urls = {
        "standard": sqs.create_queue(QueueName="chat")["QueueUrl"],
        "fifo": sqs.create_queue(
            QueueName="chat.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
        )["QueueUrl"],
        "routed": sqs.create_queue(QueueName="routed")["QueueUrl"],
    }
    events = clients.events()
    events.create_event_bus(Name="chat")
    events.put_rule(Name="messages", EventBusName="chat", EventPattern=json.dumps({"source": ["com.example.chat"]}))
    events.put_targets(Rule="messages", EventBusName="chat", Targets=[{"Id": "routed", "Arn": arn("sqs", "routed")}])
    clients.kinesis().create_stream(StreamName="chat", ShardCount=1)
    path = tmp_path / "destinations.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "destinations": [
                    {"name": "archive", "kind": "s3", "bucket": ARCHIVE, "kms_key": arn("kms", KEY_ALIAS)},
                    {"name": "lake", "kind": "s3", "bucket": ARCHIVE, "layout": "date"},
                    {"name": "queue", "kind": "sqs", "queue_arn": arn("sqs", "chat")},
                    {"name": "fifo", "kind": "sqs", "queue_arn": arn("sqs", "chat.fifo"), "events": ["chat.message"]},
                    {
                        "name": "bus",
                        "kind": "eventbridge",
                        "event_bus_arn": arn("events", "event-bus/chat"),
                        "source": "com.example.chat",
                    },
                    {"name": "stream", "kind": "kinesis", "stream_arn": arn("kinesis", "stream/chat")},
                ],
            }
        )
    )
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    dependencies.reset()
    return urls | {"key_id": key_id}


@pytest.fixture
def client(resources: dict[str, str]) -> Iterator[Any]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


def archived(prefix: str = "") -> dict[str, bytes]:
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=ARCHIVE, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=ARCHIVE, Key=o["Key"])["Body"].read() for o in listing}


def received(url: str) -> list[Any]:
    answer = clients.sqs().receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    )
    return answer.get("Messages", [])


def kinesis_records() -> list[Any]:
    stream = clients.kinesis()
    shard = stream.describe_stream(StreamName="chat")["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = stream.get_shard_iterator(StreamName="chat", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    return stream.get_records(ShardIterator=iterator["ShardIterator"])["Records"]


def test_an_item_is_archived_under_its_session_key_with_the_webhook_body_metadata_and_kms(client: Any) -> None:
    # Given one destination of each kind, When a customer message arrives
    client.lambda_.invoke("on_chat_message", stream_record("item-1", "2026-11-22T10:00:00.000Z"))
    # Then the archive keeps the envelope under the session's key, SSE-KMS with the configured key
    key = f"sessions/{SESSION}/items/2026-11-22T10:00:00.000Z_item-1.json"
    objects = archived("sessions/")
    assert list(objects) == [key]
    envelope = json.loads(objects[key])
    assert envelope["type"] == "chat.message"
    assert envelope["data"]["item_id"] == "item-1"
    head = clients.s3().head_object(Bucket=ARCHIVE, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {
        "initial-contact-id": SESSION,
        "contact-id": SESSION,
        "event-type": "chat.message",
        "participant-role": "CUSTOMER",
        "webhook-id": webhook_id_for("item-1"),
        "absolute-time": "2026-11-22T10:00:00.000Z",
    }
    # And the lake layout partitions by day
    assert list(archived("dt=")) == [f"dt=2026-11-22/initial_contact_id={SESSION}/2026-11-22T10:00:00.000Z_item-1.json"]


def test_a_redelivered_item_rewrites_its_object_with_the_same_bytes(client: Any) -> None:
    record = stream_record("item-1", "2026-11-22T10:00:00.000Z")
    client.lambda_.invoke("on_chat_message", record)
    first = archived("sessions/")
    client.lambda_.invoke("on_chat_message", record)
    assert archived("sessions/") == first


def test_a_transfer_and_midnight_stay_in_one_session(client: Any) -> None:
    # Given a chat that starts before midnight UTC and is transferred to a new contact id after it
    client.lambda_.invoke("on_chat_message", stream_record("before", "2026-11-22T23:59:58.000Z"))
    client.lambda_.invoke("on_chat_message", stream_record("after", "2026-11-23T00:00:03.000Z", contact_id=TRANSFERRED))
    # Then both items are in the session's folder, in time order
    assert list(archived(f"sessions/{SESSION}/items/")) == [
        f"sessions/{SESSION}/items/2026-11-22T23:59:58.000Z_before.json",
        f"sessions/{SESSION}/items/2026-11-23T00:00:03.000Z_after.json",
    ]
    # And the FIFO queue keeps them in one group, so a consumer gets them in order
    messages = received(arn_url(client, "fifo"))
    assert [m["Attributes"]["MessageGroupId"] for m in messages] == [SESSION, SESSION]


def arn_url(_: Any, name: str) -> str:
    return clients.sqs().get_queue_url(QueueName={"fifo": "chat.fifo"}.get(name, name))["QueueUrl"]


def test_queues_get_the_envelope_with_the_webhook_id_and_fifo_deduplicates_on_it(
    client: Any, resources: dict[str, str]
) -> None:
    record = stream_record("item-1", "2026-11-22T10:00:00.000Z")
    client.lambda_.invoke("on_chat_message", record)
    client.lambda_.invoke("on_chat_message", record)
    (fifo,) = received(resources["fifo"])
    assert fifo["Attributes"]["MessageDeduplicationId"] == webhook_id_for("item-1")
    assert fifo["MessageAttributes"]["webhook-id"]["StringValue"] == webhook_id_for("item-1")
    standard = received(resources["standard"])
    # The redelivery is not written again: the delivery ledger knows the queue took it (without the ledger a
    # standard queue is at least once, and consumers deduplicate on webhook-id)
    assert len(standard) == 1
    assert standard[0]["Body"] == fifo["Body"]
    assert json.loads(fifo["Body"])["data"]["item_id"] == "item-1"


def test_the_bus_routes_the_event_by_its_source_and_type(client: Any, resources: dict[str, str]) -> None:
    client.lambda_.invoke("on_chat_message", stream_record("item-1", "2026-11-22T10:00:00.000Z"))
    (message,) = received(resources["routed"])
    event = json.loads(message["Body"])
    assert event["source"] == "com.example.chat"
    assert event["detail-type"] == "chat.message"
    assert event["detail"]["webhook_id"] == webhook_id_for("item-1")
    assert event["detail"]["data"]["item_id"] == "item-1"


def test_the_stream_is_partitioned_by_session(client: Any) -> None:
    client.lambda_.invoke("on_chat_message", stream_record("item-1", "2026-11-22T10:00:00.000Z"))
    client.lambda_.invoke(
        "on_chat_message", stream_record("item-2", "2026-11-22T10:00:01.000Z", contact_id=TRANSFERRED)
    )
    records = kinesis_records()
    assert [r["PartitionKey"] for r in records] == [SESSION, SESSION]
    assert [json.loads(r["Data"])["data"]["item_id"] for r in records] == ["item-1", "item-2"]


def test_a_batch_the_queue_refuses_fails_its_own_events_only(client: Any, resources: dict[str, str]) -> None:
    # Given a queue that takes messages of at most 1 KiB, and 15 events of which the 12th is larger
    clients.sqs().set_queue_attributes(QueueUrl=resources["standard"], Attributes={"MaximumMessageSize": "1024"})
    events = [
        relay_event(f"item-{n:02}", f"2026-11-22T10:00:{n:02}.000Z", Content="x" * (2000 if n == 11 else 10))
        for n in range(15)
    ]
    # When they are written to the queue (two batches: 10, then 5)
    queue = next(d for d in dependencies.destinations().destinations if d.name == "queue")
    results = dependencies.aws_delivery().deliver(queue, events)
    # Then the first batch is written, the second (with the large one) is refused as a whole, event by event
    assert [r.ok for r in results] == [True] * 10 + [False] * 5
    assert all(r.retryable and "InvalidParameterValue" in (r.error or "") for r in results[10:])
    assert len(received(resources["standard"])) == 10


def test_a_write_to_a_missing_resource_waits_in_the_retry_queue(client: Any, queued: list[dict[str, Any]]) -> None:
    clients.kinesis().delete_stream(StreamName="chat")
    client.lambda_.invoke("on_chat_message", stream_record("item-1", "2026-11-22T10:00:00.000Z"))
    (ticket,) = queued
    assert ticket["body"]["attempts"][0]["error"] == "kinesis write failed: ResourceNotFoundException"
    assert ticket["body"]["event"]["data"]["item_id"] == "item-1"


class SlowStream:
    """A botocore ``before-send`` hook that holds every Kinesis request for ``seconds`` and counts the attempts.

    Far longer than the invocation's deadline, so the machine's load cannot blur which one the invocation waited for.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.attempts = 0
        self.done = threading.Event()

    def __call__(self, **_: Any) -> None:
        self.attempts += 1
        time.sleep(self.seconds)
        self.done.set()


def test_a_write_still_going_at_the_deadline_waits_in_the_retry_queue(
    resources: dict[str, str], queued: list[dict[str, Any]]
) -> None:
    # Given a Kinesis stream that takes 8 s to answer, and an invocation with 2 s left (its deadline ~1.5 s away)
    slow = SlowStream(8.0)
    clients.kinesis().meta.events.register("before-send.kinesis.PutRecords", slow)
    started = time.monotonic()
    # When an item arrives
    on_chat_message(stream_record("item-1", "2026-11-22T10:00:00.000Z"), LambdaContext(2.0))
    # Then the invocation ends at its deadline (plus the retry queue's hand-over), long before the stream answers
    assert time.monotonic() - started < 6.0
    # And the stream's event waits in the retry queue; the other destinations have theirs
    (ticket,) = queued
    assert ticket["body"]["destination"] == "stream"
    assert ticket["body"]["attempts"][0]["error"] == "kinesis write not done by the invocation's deadline"
    assert ticket["body"]["event"]["data"]["item_id"] == "item-1"
    assert len(archived("sessions/")) == 1
    # And the attempt left in flight is the only one: none starts past the deadline
    assert slow.done.wait(15)
    time.sleep(0.2)
    assert slow.attempts == 1


def test_no_attempt_starts_past_the_deadline(resources: dict[str, str]) -> None:
    # Given a write whose deadline has passed
    attempts: list[str] = []
    for client in (clients.s3(), clients.sqs(), clients.events(), clients.kinesis()):
        client.meta.events.register("before-send", lambda **kw: attempts.append(kw["request"].url))
    destinations = {d.name: d for d in dependencies.destinations().destinations}
    event = relay_event("item-1", "2026-11-22T10:00:00.000Z")
    with attempts_until(time.monotonic() - 1):
        # When it is written to each kind
        results = [dependencies.aws_delivery().deliver(destinations[name], [event])[0] for name in destinations]
    # Then nothing is sent, and every event failed retryably (its destination's retry ticket follows)
    assert not attempts
    assert all(not r.ok and r.retryable and "AttemptPastDeadlineError" in (r.error or "") for r in results)
