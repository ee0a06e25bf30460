"""`python -m chalicelib.cli reprocess-failed`: the failed-invocations queue's events go back to their functions.

The queue is SQS on moto; Lambda's Invoke API is a real HTTP server on 127.0.0.1 (``AWS_ENDPOINT_URL_LAMBDA``) that
records each invocation and answers as Lambda does (202 for an asynchronous one), or refuses.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from chalicelib import cli, clients, dependencies
from tests.conftest import load_event

pytestmark = pytest.mark.integration

QUEUE = "connect-chat-relay-dev-failed-invocations"
RECORD = "lambda/on-failure-on-chat-message.json"


class LambdaInvoke:
    """Lambda's Invoke API on 127.0.0.1: records (function, invocation type, payload); answers ``status``."""

    def __init__(self) -> None:
        self.invocations: list[tuple[str, str, Any]] = []
        self.status = 202
        invoke = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                function = unquote(self.path.split("/functions/", 1)[1].split("/invocations", 1)[0])
                kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
                invoke.invocations.append((function, kind, json.loads(body)))
                answer = b"" if invoke.status == 202 else b'{"Type":"User","message":"Function not found"}'
                self.send_response(invoke.status)
                if invoke.status != 202:
                    self.send_header("x-amzn-ErrorType", "ResourceNotFoundException")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def lambda_invoke(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaInvoke]:
    invoke = LambdaInvoke()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", invoke.url)
    dependencies.reset()
    try:
        yield invoke
    finally:
        invoke.server.shutdown()


@pytest.fixture
def queue_url(aws: None) -> str:
    url: str = clients.sqs().create_queue(QueueName=QUEUE)["QueueUrl"]
    return url


def put(queue_url: str, body: str) -> None:
    clients.sqs().send_message(QueueUrl=queue_url, MessageBody=body)


def left(queue_url: str) -> int:
    attributes = clients.sqs().get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_each_failed_event_is_invoked_again_asynchronously_in_its_function_and_leaves_the_queue(
    lambda_invoke: LambdaInvoke, queue_url: str
) -> None:
    """Given two of Lambda's on-failure records on the stage's queue (found by its name), when the command runs,
    then each event goes to the function and version that failed on it, as an asynchronous invocation, exactly as
    it was, and the queue is empty."""
    record = load_event(RECORD)
    put(queue_url, json.dumps(record))
    second = {**record, "requestPayload": load_event("contact/chat-initiated.json")}
    second["requestContext"] = {
        **record["requestContext"],
        "functionArn": "arn:aws:lambda:us-east-1:111122223333:function:connect-chat-relay-dev-on_contact_event:$LATEST",
    }
    put(queue_url, json.dumps(second))
    out = io.StringIO()

    assert cli.main(["reprocess-failed"], out=out) == 0

    assert sorted(lambda_invoke.invocations, key=lambda i: i[0]) == [
        (record["requestContext"]["functionArn"], "Event", record["requestPayload"]),
        (second["requestContext"]["functionArn"], "Event", second["requestPayload"]),
    ]
    assert left(queue_url) == 0
    assert "reprocessed=2 refused=0 unreadable=0 other_functions=0 complete=yes" in out.getvalue()


def test_what_cannot_be_reprocessed_stays_on_the_queue(lambda_invoke: LambdaInvoke, queue_url: str) -> None:
    """Given a record that is not JSON, one of another stage's function and one Lambda refuses, when the command
    runs, then nothing is deleted, only the third is invoked, and the command fails naming each count."""
    record = load_event(RECORD)
    put(queue_url, "not a record")
    other = {**record, "requestContext": {**record["requestContext"]}}
    other["requestContext"]["functionArn"] = (
        "arn:aws:lambda:us-east-1:111122223333:function:connect-chat-relay-devx-on_chat_message:$LATEST"
    )
    put(queue_url, json.dumps(other))
    put(queue_url, json.dumps(record))
    lambda_invoke.status = 404
    out = io.StringIO()

    assert cli.main(["reprocess-failed"], out=out) == 1

    assert [function for function, _, _ in lambda_invoke.invocations] == [record["requestContext"]["functionArn"]]
    assert left(queue_url) == 3
    assert "reprocessed=0 refused=1 unreadable=1 other_functions=1 complete=yes" in out.getvalue()


def test_a_limit_stops_the_run_and_a_second_run_goes_on(lambda_invoke: LambdaInvoke, queue_url: str) -> None:
    record = load_event(RECORD)
    for _ in range(3):
        put(queue_url, json.dumps(record))

    assert cli.main(["reprocess-failed", "--limit", "2"], out=io.StringIO()) == 0
    assert len(lambda_invoke.invocations) == 2
    assert left(queue_url) == 1

    assert cli.main(["reprocess-failed", "--queue-url", queue_url], out=io.StringIO()) == 0
    assert len(lambda_invoke.invocations) == 3
    assert left(queue_url) == 0
