"""The failed-invocations queue (SQS): where Lambda sends the events of asynchronous invocations that failed after
its two retries (the on-failure destination of ``on_chat_message``, ``on_contact_event``, ``on_transcript_written``).

Each message is Lambda's invocation record: ``requestContext.functionArn`` names the function (with its qualifier),
``requestPayload`` is the event as it was. Reprocessing invokes that function again, asynchronously, with that
event, and deletes the message only once Lambda has taken the invocation; a record that is not readable, or that
names a function of another application or stage, stays on the queue for a person to look at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

# Long enough for ten invocations; a message this run could not reprocess is visible again after it.
VISIBILITY_SECONDS = 120


@dataclass
class ReprocessSummary:
    """What a run did: invoked again (and deleted), left on the queue, and whether the queue looked empty."""

    reprocessed: int = 0
    unreadable: int = 0
    foreign: int = 0
    refused: int = 0
    complete: bool = False


class FailedInvocations:
    """Reads the failed-invocations queue and hands each event back to the function that failed on it."""

    def __init__(self, sqs: SQSClient, lambda_client: LambdaClient, queue_url: str, function_prefix: str) -> None:
        """``function_prefix``: the stage's functions are it, or it followed by ``-``; no other is invoked."""
        self._sqs = sqs
        self._lambda = lambda_client
        self._queue_url = queue_url
        self._prefix = function_prefix

    def reprocess(
        self, *, limit: int | None = None, progress: Callable[[ReprocessSummary], None] | None = None
    ) -> ReprocessSummary:
        """Invoke each recorded event again until the queue answers empty or ``limit`` are reprocessed."""
        summary = ReprocessSummary()
        seen: set[str] = set()
        while limit is None or summary.reprocessed < limit:
            wanted = 10 if limit is None else min(10, limit - summary.reprocessed)
            messages = self._sqs.receive_message(
                QueueUrl=self._queue_url,
                MaxNumberOfMessages=wanted,
                VisibilityTimeout=VISIBILITY_SECONDS,
                WaitTimeSeconds=1,
            ).get("Messages", [])
            fresh = [m for m in messages if m["MessageId"] not in seen]
            if not fresh:
                summary.complete = True
                return summary
            for message in fresh:
                seen.add(message["MessageId"])
                self._one(message, summary)
                if progress is not None:
                    progress(summary)
        return summary

    def _one(self, message: MessageTypeDef, summary: ReprocessSummary) -> None:
        target = _invocation(message.get("Body", ""))
        if target is None:
            summary.unreadable += 1
            logger.warning(
                "failed invocation record not readable; left on the queue", extra={"id": message["MessageId"]}
            )
            return
        function, payload = target
        name = function.split(":function:", 1)[1].split(":", 1)[0]
        if name != self._prefix and not name.startswith(self._prefix + "-"):
            summary.foreign += 1
            logger.warning("failed invocation of another function; left on the queue", extra={"function": name})
            return
        try:
            self._lambda.invoke(FunctionName=function, InvocationType="Event", Payload=payload)
        except (BotoCoreError, ClientError) as exc:
            summary.refused += 1
            logger.warning("invocation refused; left on the queue", extra={"error": type(exc).__name__})
            return
        self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])
        summary.reprocessed += 1


def _invocation(body: str) -> tuple[str, bytes] | None:
    """The function's ARN (with its qualifier) and the event of Lambda's invocation record, or None."""
    try:
        record = json.loads(body)
    except ValueError:
        return None
    if not isinstance(record, dict) or "requestPayload" not in record:
        return None
    context = record.get("requestContext")
    arn = context.get("functionArn") if isinstance(context, dict) else None
    if not isinstance(arn, str) or not arn.startswith("arn:") or ":function:" not in arn:
        return None
    return arn, json.dumps(record["requestPayload"]).encode()
