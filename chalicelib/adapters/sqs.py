"""SQS destinations: one message per event, sent in batches of up to 10, each failure reported per message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.batches import SQS_LIMITS, WriteFailure, aws_error_code, session_key, write_in_batches

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

    from chalicelib.destination_kinds import QueueTarget
    from chalicelib.events import RelayEvent


class QueueWriter:
    """Sends events to SQS queues named by ARN; each queue's url is looked up once and kept."""

    def __init__(self, client: SQSClient) -> None:
        self._client = client
        self._urls: dict[str, str] = {}

    def send(self, target: QueueTarget, events: Sequence[RelayEvent]) -> list[WriteFailure | None]:
        """Send each event's envelope (attributes: ``webhook-id``, ``event-type``); None where it was accepted.

        On a FIFO queue the group is the event's session, so a conversation keeps its order, and SQS drops a
        resend of the same ``webhook-id`` within its five-minute deduplication window.
        """
        try:
            url = self._url(target)
        except (BotoCoreError, ClientError) as exc:
            return [WriteFailure(aws_error_code(exc), retryable=True)] * len(events)
        sized: list[tuple[SendMessageBatchRequestEntryTypeDef, int]] = []
        for position, event in enumerate(events):
            entry: SendMessageBatchRequestEntryTypeDef = {
                "Id": str(position),
                "MessageBody": event.body.decode("utf-8"),
                "MessageAttributes": {
                    "webhook-id": {"DataType": "String", "StringValue": event.webhook_id},
                    "event-type": {"DataType": "String", "StringValue": event.type},
                },
            }
            if target.fifo:
                entry["MessageGroupId"] = session_key(event)
                entry["MessageDeduplicationId"] = event.webhook_id
            sized.append((entry, len(event.body)))

        def write(entries: list[SendMessageBatchRequestEntryTypeDef]) -> list[WriteFailure | None]:
            answer = self._client.send_message_batch(QueueUrl=url, Entries=entries)
            failed = {f["Id"]: WriteFailure(f["Code"], not f["SenderFault"]) for f in answer.get("Failed", [])}
            return [failed.get(entry["Id"]) for entry in entries]

        return write_in_batches(sized, SQS_LIMITS, write)

    def _url(self, target: QueueTarget) -> str:
        arn = target.queue.value
        if arn not in self._urls:
            self._urls[arn] = self._client.get_queue_url(
                QueueName=target.queue.name, QueueOwnerAWSAccountId=target.queue.account
            )["QueueUrl"]
        return self._urls[arn]
