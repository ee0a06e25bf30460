"""The event handlers as Lambda loads them: from their blueprint's module, without app.py.

`chalice package` names them `chalicelib.handlers.<module>.<function>`, so nothing registered on the app (its
middleware) runs for them. Each case runs in a fresh interpreter, as a cold Lambda container would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT, dev_stage_environment

pytestmark = pytest.mark.integration

PRELUDE = """
import json, sys
from moto import mock_aws
import boto3
mock = mock_aws(); mock.start()
boto3.client("s3").create_bucket(Bucket="connect-chat-relay-dev-111122223333")
boto3.client("dynamodb").create_table(
    TableName="connect-chat-relay-dev-streams",
    KeySchema=[{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
    AttributeDefinitions=[{"AttributeName": "initial_contact_id", "AttributeType": "S"}],
    BillingMode="PAY_PER_REQUEST",
)
class Context:
    aws_request_id = "req-0001"
"""


def run_cold(body: str) -> str:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        **dev_stage_environment(),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    script = PRELUDE + textwrap.dedent(body) + '\nassert "app" not in sys.modules, "app.py was imported"\n'
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def metric_names(output: str) -> set[str]:
    names = set()
    for line in output.splitlines():
        if '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names |= {m["Name"] for m in directive["Metrics"]}
    return names


def test_the_chat_stream_function_quarantines_a_partial_record_and_publishes_its_metrics() -> None:
    output = run_cold(
        """
        from chalicelib.handlers.chat_stream import on_chat_message
        sns = {"MessageId": "m-1", "Subject": None, "Message": None, "MessageAttributes": {}}
        on_chat_message({"Records": [{"EventSource": "aws:sns", "Sns": sns}]}, Context())
        kept = boto3.client("s3").list_objects_v2(Bucket="connect-chat-relay-dev-111122223333")["KeyCount"]
        print(json.dumps({"kept": kept}))
        """
    )
    assert '{"kept": 1}' in output
    assert "InvalidChatItem" in metric_names(output)
    assert '"request_id":"req-0001"' in output


def test_issue7_item5_the_chat_stream_function_keeps_every_record_of_an_event() -> None:
    output = run_cold(
        """
        from chalicelib.handlers.chat_stream import on_chat_message
        sns = {"Subject": None, "Message": "not json", "MessageAttributes": {}}
        records = [{"EventSource": "aws:sns", "Sns": sns} for _ in range(3)]
        on_chat_message({"Records": records}, Context())
        kept = boto3.client("s3").list_objects_v2(Bucket="connect-chat-relay-dev-111122223333")["KeyCount"]
        print(json.dumps({"kept": kept}))
        """
    )
    assert '{"kept": 3}' in output


def test_the_contact_event_function_publishes_its_metrics() -> None:
    event = json.loads((PROJECT / "tests" / "events" / "contact" / "voice-initiated.json").read_text())
    output = run_cold(
        f"""
        from chalicelib.handlers.contact_events import on_contact_event
        on_contact_event({event!r}, Context())
        """
    )
    assert "StreamingSkipped" in metric_names(output)


def test_the_flow_function_answers_and_publishes_its_metrics() -> None:
    output = run_cold(
        """
        from chalicelib.handlers.flow import start_streaming_from_flow
        print(json.dumps(start_streaming_from_flow({"Details": "not an object"}, Context())))
        """
    )
    assert '"streaming": "failed"' in output
    assert "StreamingStartFailed" in metric_names(output)
