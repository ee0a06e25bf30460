"""The contact flow's function answers within its budget when DynamoDB and Connect are slow.

DynamoDB is moto's server and Connect the emulated one, each behind a loopback proxy that holds every request
before forwarding it: 2.5 s on a first try, 1.8 s on a retry (botocore numbers its attempts in the
``amz-sdk-request`` header). The function is called as Lambda calls it, with a Lambda context that counts down.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from chalice.local import LambdaContext

from chalicelib import clients, dependencies
from chalicelib.budget import Budget, BudgetExhaustedError, run_within
from chalicelib.handlers.flow import start_streaming_from_flow
from scripts.emulated_connect import EmulatedConnect
from tests.conftest import INSTANCE_ID, REGION, STREAMS_TABLE, load_event

pytestmark = pytest.mark.integration

FIRST_TRY_SECONDS = 2.5
RETRY_SECONDS = 1.8


@dataclass
class SlowProxy:
    """Forwards every request to ``upstream`` after holding it: ``delays[attempt - 1]`` seconds."""

    upstream: str
    delays: tuple[float, ...]
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, request target)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        proxy = self
        target = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                operation = self.headers.get("X-Amz-Target") or self.path
                proxy.arrivals.append((time.monotonic(), operation))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                attempt = int(self.headers.get("amz-sdk-request", "attempt=1").split(";")[0].split("=")[1])
                time.sleep(proxy.delays[min(attempt, len(proxy.delays)) - 1])
                upstream = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "connection"}}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                upstream.close()
                try:
                    self.send_response(answer.status)
                    for name, value in answer.getheaders():
                        if name.lower() not in {"connection", "transfer-encoding", "content-length", "date", "server"}:
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up waiting (its read timeout): as with a slow service

            do_POST = do_PUT = do_GET = _forward

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="slow-proxy").start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass
class SlowWorld:
    moto_url: str
    connect: EmulatedConnect
    dynamodb_proxy: SlowProxy
    connect_proxy: SlowProxy


@pytest.fixture
def slow_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowWorld]:
    """moto's server and the emulated Connect, each behind a slow proxy; the relay's clients go through them."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    # moto keeps its state in the process: start each case from nothing.
    reset = http.client.HTTPConnection(host, port, timeout=10)
    reset.request("POST", "/moto-api/reset")
    reset.getresponse().read()
    reset.close()
    connect = EmulatedConnect(REGION)
    connect_url = connect.start()
    delays = (FIRST_TRY_SECONDS, RETRY_SECONDS)
    world = SlowWorld(moto_url, connect, SlowProxy(moto_url, delays), SlowProxy(connect_url, delays))
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", world.dynamodb_proxy.start())
    monkeypatch.setenv("AWS_ENDPOINT_URL_CONNECT", world.connect_proxy.start())
    dependencies.reset()
    import boto3

    boto3.client("dynamodb", endpoint_url=moto_url).create_table(
        TableName=STREAMS_TABLE,
        KeySchema=[{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "initial_contact_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield world
    world.dynamodb_proxy.stop()
    world.connect_proxy.stop()
    connect.stop()
    moto.stop()


def wait_for_abandoned_work() -> None:
    """Let the work the function left at its deadline finish, so what it sends afterwards can be checked."""
    for thread in threading.enumerate():
        if thread.name == "budgeted-work":
            thread.join(timeout=10)


def kept_streams(world: SlowWorld) -> int:
    """Streams kept in the table (a start's claim, left to lapse, is not a stream)."""
    import boto3

    table = boto3.client("dynamodb", endpoint_url=world.moto_url)
    return int(table.scan(TableName=STREAMS_TABLE, FilterExpression="attribute_exists(streaming_id)")["Count"])


def invoke_flow(world: SlowWorld, *, lambda_timeout_ms: int) -> tuple[dict[str, str], LambdaContext, float]:
    event = load_event("flow-invocation-chat.json")
    world.connect.open_chat(INSTANCE_ID, event["Details"]["ContactData"]["ContactId"])
    context = LambdaContext("start_streaming_from_flow", memory_size=256, max_runtime_ms=lambda_timeout_ms)
    answer = start_streaming_from_flow(event, context)
    return answer, context, time.monotonic()


def test_issue7_item14_the_flow_function_answers_a_timeout_within_the_flows_8_seconds(slow_aws: SlowWorld) -> None:
    """Given DynamoDB and Connect that take 2.5 s to a first try and 1.8 s to a retry (11.7 s end to end before),
    when the flow function runs with Lambda's 8 s, then it answers the documented failure before its time is up,
    and the work it left behind sends nothing more."""
    answer, context, answered_at = invoke_flow(slow_aws, lambda_timeout_ms=8_000)

    assert answer == {"streaming": "failed", "reason": "timeout"}
    assert context.get_remaining_time_in_millis() > 0
    wait_for_abandoned_work()
    late = [
        operation
        for at, operation in slow_aws.dynamodb_proxy.arrivals + slow_aws.connect_proxy.arrivals
        if at > answered_at
    ]
    assert late == []
    assert kept_streams(slow_aws) == 0


def test_issue7_item14_a_shorter_lambda_remaining_time_bounds_the_flow_function(slow_aws: SlowWorld) -> None:
    """Given the same slow services and only 2 s left to the invocation, then the answer comes within those 2 s."""
    answer, context, _ = invoke_flow(slow_aws, lambda_timeout_ms=2_000)

    assert answer == {"streaming": "failed", "reason": "timeout"}
    assert context.get_remaining_time_in_millis() > 0
    wait_for_abandoned_work()


def test_within_its_budget_the_flow_function_starts_streaming_through_the_same_services(slow_aws: SlowWorld) -> None:
    """Given the services answering at once, then the same path starts streaming and keeps the stream."""
    slow_aws.dynamodb_proxy.delays = slow_aws.connect_proxy.delays = (0.0,)

    answer, _, _ = invoke_flow(slow_aws, lambda_timeout_ms=8_000)

    assert answer["streaming"] == "started"
    assert kept_streams(slow_aws) == 1


def test_work_left_behind_at_the_deadline_makes_no_aws_call(aws: None) -> None:
    """Given work that reaches its DynamoDB write after the budget is spent, then the caller is told in time and
    the write never leaves the client."""
    write = {"TableName": STREAMS_TABLE, "Item": {"initial_contact_id": {"S": "late"}}}

    def late_write() -> None:
        time.sleep(0.3)
        clients.dynamodb_for_flow().put_item(**write)  # type: ignore[arg-type]

    with pytest.raises(BudgetExhaustedError):
        run_within(Budget(time.monotonic() + 0.1), late_write)
    wait_for_abandoned_work()

    assert clients.dynamodb().scan(TableName=STREAMS_TABLE)["Count"] == 0
    run_within(Budget(time.monotonic() + 5), lambda: clients.dynamodb_for_flow().put_item(**write))  # type: ignore[arg-type]
    assert clients.dynamodb().scan(TableName=STREAMS_TABLE)["Count"] == 1
