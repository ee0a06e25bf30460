"""Shared fixtures: fake AWS credentials, the dev stage's settings, moto, and a stubbed Connect client."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from chalicelib import dependencies, observability
from scripts.local_aws import ACCOUNT

# Property tests judge correctness, not speed: on a loaded machine (CI, several suites at once) a per-example
# deadline only makes them flaky. Speed lives in `make bench`.
settings.register_profile("relay", deadline=None)
settings.load_profile("relay")

EVENTS = Path(__file__).parent / "events"
PROJECT = Path(__file__).parent.parent
REGION = "us-east-1"
INSTANCE_ID = "12345678-1234-1234-1234-123456789012"
INSTANCE_ARN = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:connect-chat-relay-dev-stream"
STREAMS_TABLE = "connect-chat-relay-dev-streams"
SESSIONS_TABLE = "connect-chat-relay-dev-sessions"
HEALTH_TABLE = "connect-chat-relay-dev-destinations"
DELIVERIES_TABLE = "connect-chat-relay-dev-deliveries"
QUARANTINE_BUCKET = f"connect-chat-relay-dev-{ACCOUNT}"
TRANSCRIPT_QUEUE = "connect-chat-relay-dev-transcripts"
RETRY_QUEUE = "connect-chat-relay-dev-retries"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit and functional tests run with sockets blocked (pytest-socket), unless marked ``loopback``; the others
    may connect to 127.0.0.1 only (``--allow-hosts`` in pyproject.toml)."""
    blocked = (PROJECT / "tests" / "unit", PROJECT / "tests" / "functional")
    for item in items:
        inside = item.path.is_relative_to(blocked[0]) or item.path.is_relative_to(blocked[1])
        if inside and item.get_closest_marker("loopback") is None:
            item.add_marker(pytest.mark.disable_socket)


def load_event(relative: str) -> Any:
    """A recorded payload from tests/events/."""
    return json.loads((EVENTS / relative).read_text())


def dev_stage_environment() -> dict[str, str]:
    """The dev stage's environment variables, as `.chalice/config.json` gives them to Lambda."""
    config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
    return {**config["environment_variables"], **config["stages"]["dev"]["environment_variables"]}


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and the dev stage's settings; no test can reach a real AWS account."""
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CONNECT",
        "AWS_ENDPOINT_URL_CONNECTPARTICIPANT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    for name, value in dev_stage_environment().items():
        monkeypatch.setenv(name, value)
    dependencies.reset()
    observability.discard()
    yield
    dependencies.reset()


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's emulated AWS with the relay's tables, bucket and retry queue."""
    from moto import mock_aws

    from chalicelib import clients
    from chalicelib.adapters.sessions_table import table_definition

    with mock_aws():
        clients.dynamodb().create_table(
            TableName=STREAMS_TABLE,
            KeySchema=[{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "initial_contact_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        clients.dynamodb().create_table(
            TableName=HEALTH_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        clients.dynamodb().create_table(
            TableName=DELIVERIES_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        clients.dynamodb().create_table(**table_definition(SESSIONS_TABLE))
        clients.s3().create_bucket(Bucket=QUARANTINE_BUCKET)
        clients.sqs().create_queue(QueueName=TRANSCRIPT_QUEUE)
        clients.sqs().create_queue(QueueName=RETRY_QUEUE)
        yield


@pytest.fixture
def emulated_connect(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The emulated Connect (scripts/emulated_connect.py) on 127.0.0.1, the relay's Connect clients pointed at it
    with AWS_ENDPOINT_URL_CONNECT, as in Lambda; DynamoDB and S3 stay in moto."""
    from scripts.emulated_connect import EmulatedConnect

    connect = EmulatedConnect(REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CONNECT", connect.start())
    dependencies.reset()
    try:
        yield connect
    finally:
        connect.stop()


@pytest.fixture
def connect_stub(aws: None) -> Iterator[Any]:
    """botocore's Stubber on the relay's Connect clients (moto implements none of the streaming calls)."""
    from botocore.stub import Stubber

    from chalicelib import clients

    with Stubber(clients.connect()) as stubber:
        yield stubber


@pytest.fixture
def flow_connect_stub(aws: None) -> Iterator[Any]:
    """The Stubber on the Connect client of the contact flow's function (a tighter time budget)."""
    from botocore.stub import Stubber

    from chalicelib import clients

    with Stubber(clients.connect_for_flow()) as stubber:
        yield stubber


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def emitted_metrics(output: str) -> dict[str, float]:
    """Metrics printed as CloudWatch EMF lines, summed by ``Name`` or ``Name/reason``."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name = metric["Name"]
                key = f"{name}/{blob['reason']}" if "reason" in blob else name
                values = blob[name] if isinstance(blob[name], list) else [blob[name]]
                totals[key] = totals.get(key, 0) + sum(values)
    return totals


class _CurrentStdout:
    """Writes to whatever sys.stdout is now, so pytest's capsys sees the relay's log lines."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(scope="session", autouse=True)
def _logs_follow_stdout() -> None:
    from chalicelib.observability import logger

    logger.registered_handler.setStream(_CurrentStdout())  # type: ignore[attr-defined]


@pytest.fixture
def relay_output(capsys: pytest.CaptureFixture[str]) -> Any:
    """Reads what the relay printed: its JSON log lines and its EMF metrics."""
    return lambda: capsys.readouterr().out


@pytest.fixture
def queued(aws: None) -> Iterator[list[dict[str, Any]]]:
    """Every retry ticket the relay sends to the retry queue, as sent: ``{"body": {...}, "delay": seconds}``.

    Registered on boto3's default session as well as on the current client, so clients made after a
    ``dependencies.reset()`` record too.
    """
    import boto3

    from chalicelib import clients

    sent: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        if not str(params.get("QueueUrl", "")).endswith("/" + RETRY_QUEUE):
            return  # a destination of kind sqs, not the retry queue
        entries = params["Entries"]
        sent.extend({"body": json.loads(e["MessageBody"]), "delay": e.get("DelaySeconds", 0)} for e in entries)

    event = "provide-client-params.sqs.SendMessageBatch"
    session_events = boto3._get_default_session().events
    session_events.register(event, record, unique_id="test-queued")
    clients.sqs().meta.events.register(event, record, unique_id="test-queued")
    yield sent
    session_events.unregister(event, unique_id="test-queued")


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it."""
    return {
        "Records": [
            {
                "messageId": f"m-{index}",
                "receiptHandle": f"r-{index}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{RETRY_QUEUE}",
                "awsRegion": REGION,
            }
            for index, body in enumerate(bodies)
        ]
    }


class LambdaContext:
    """What Lambda passes as the context: a request id, and the time left, counting down from ``seconds``."""

    def __init__(self, seconds: float = 60.0) -> None:
        import time

        self._ends_at = time.monotonic() + seconds
        self.aws_request_id = "req-test"
        self.function_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        import time

        return max(0, int((self._ends_at - time.monotonic()) * 1000))
