"""The AWS kinds' writers: batches within each service's limits, and per-entry failures reported per event.

botocore's Stubber answers as the services do when part of a batch fails (moto never fails single entries).
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.stub import ANY, Stubber

from chalicelib.adapters.eventbridge import BusWriter
from chalicelib.adapters.kinesis import StreamWriter
from chalicelib.adapters.sqs import QueueWriter
from chalicelib.batches import EVENTBRIDGE_LIMITS, BatchLimits, WriteFailure, batches
from chalicelib.destination_kinds import Arn, BusTarget, QueueTarget, StreamTarget
from chalicelib.events import RelayEvent

QUEUE = Arn("arn:aws:sqs:us-east-1:111122223333:chat.fifo", "aws", "us-east-1", "111122223333", "chat.fifo")
BUS = Arn("arn:aws:events:us-east-1:111122223333:event-bus/chat", "aws", "us-east-1", "111122223333", "chat")
STREAM = Arn("arn:aws:kinesis:us-east-1:111122223333:stream/chat", "aws", "us-east-1", "111122223333", "chat")


def event(n: int, session: str = "session-1") -> RelayEvent:
    return RelayEvent(
        type="chat.message",
        timestamp=f"2026-11-22T10:00:{n:02}.000Z",
        data={"item_id": f"item-{n}", "initial_contact_id": session, "contact_id": session},
        webhook_id=f"msg_{n}",
    )


def test_batches_respect_the_count_and_the_total_size_and_skip_what_no_call_takes() -> None:
    limits = BatchLimits(entries=3, total_bytes=100, entry_bytes=60)
    sizes = [10, 10, 10, 10, 70, 50, 50]
    grouped = [[position for position, _ in batch] for batch in batches([(n, s) for n, s in enumerate(sizes)], limits)]
    assert grouped == [[0, 1, 2], [3, 5], [6]]


def test_sqs_reports_each_failed_entry_and_sender_faults_are_not_retried() -> None:
    client = boto3.client("sqs")
    writer = QueueWriter(client)
    with Stubber(client) as stub:
        stub.add_response(
            "get_queue_url",
            {"QueueUrl": "https://queue"},
            {"QueueName": "chat.fifo", "QueueOwnerAWSAccountId": "111122223333"},
        )
        stub.add_response(
            "send_message_batch",
            {
                "Successful": [{"Id": "0", "MessageId": "m", "MD5OfMessageBody": "x"}],
                "Failed": [
                    {"Id": "1", "SenderFault": True, "Code": "InvalidMessageContents"},
                    {"Id": "2", "SenderFault": False, "Code": "InternalError"},
                ],
            },
            {"QueueUrl": "https://queue", "Entries": ANY},
        )
        outcomes = writer.send(QueueTarget(QUEUE), [event(0), event(1), event(2)])
    assert outcomes == [
        None,
        WriteFailure("InvalidMessageContents", retryable=False),
        WriteFailure("InternalError", retryable=True),
    ]


def test_fifo_messages_are_grouped_by_session_and_deduplicated_by_webhook_id() -> None:
    client = boto3.client("sqs")
    first, second = event(0, "a"), event(1, "b")

    def entry(position: int, sent: RelayEvent, group: str) -> dict[str, Any]:
        return {
            "Id": str(position),
            "MessageBody": sent.body.decode(),
            "MessageAttributes": {
                "webhook-id": {"DataType": "String", "StringValue": sent.webhook_id},
                "event-type": {"DataType": "String", "StringValue": "chat.message"},
            },
            "MessageGroupId": group,
            "MessageDeduplicationId": sent.webhook_id,
        }

    with Stubber(client) as stub:
        stub.add_response("get_queue_url", {"QueueUrl": "https://queue"})
        stub.add_response(
            "send_message_batch",
            {"Successful": [], "Failed": []},
            {"QueueUrl": "https://queue", "Entries": [entry(0, first, "a"), entry(1, second, "b")]},
        )
        assert QueueWriter(client).send(QueueTarget(QUEUE), [first, second]) == [None, None]


def test_eventbridge_takes_ten_a_call_and_reports_failed_entries() -> None:
    client = boto3.client("events")
    with Stubber(client) as stub:
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"EventId": "e"}] * 9 + [{"ErrorCode": "ThrottlingException"}]},
        )
        stub.add_response(
            "put_events", {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "MalformedDetail"}, {"EventId": "e"}]}
        )
        outcomes = BusWriter(client).put(BusTarget(BUS), [event(n) for n in range(12)])
    assert EVENTBRIDGE_LIMITS.entries == 10
    assert outcomes[:9] == [None] * 9
    assert outcomes[9] == WriteFailure("ThrottlingException", retryable=True)
    assert outcomes[10] == WriteFailure("MalformedDetail", retryable=False)
    assert outcomes[11] is None


def test_kinesis_reports_failed_records_and_a_failed_call_fails_its_batch() -> None:
    client = boto3.client("kinesis")
    with Stubber(client) as stub:
        stub.add_response(
            "put_records",
            {
                "FailedRecordCount": 1,
                "Records": [
                    {"SequenceNumber": "1", "ShardId": "s"},
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
                ],
            },
        )
        stub.add_client_error("put_records", "ResourceNotFoundException")
        writer = StreamWriter(client)
        first = writer.put(StreamTarget(STREAM), [event(0), event(1)])
        second = writer.put(StreamTarget(STREAM), [event(2)])
    assert first == [None, WriteFailure("ProvisionedThroughputExceededException", retryable=True)]
    assert second == [WriteFailure("ResourceNotFoundException", retryable=True)]


def test_an_event_too_large_for_any_call_fails_without_a_call() -> None:
    client = boto3.client("events")
    huge = RelayEvent(
        type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"content": "x" * 300_000}, webhook_id="msg_big"
    )
    with Stubber(client) as stub:
        outcomes = BusWriter(client).put(BusTarget(BUS), [huge])
        stub.assert_no_pending_responses()
    assert outcomes == [WriteFailure("larger than the 256 KiB a single entry may be", retryable=False)]
