"""Configuration that protects itself, through the chat stream function called as Lambda calls it.

A secret pasted where a reference belongs is refused before it is used, so it reaches no log, no error and no
quarantined object; allowing private networks never opens the Lambda runtime API; and a production stage refuses
the development switches unless its override is set. moto holds S3 and Secrets Manager; receivers are real HTTP
servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.local import LambdaContext

from chalicelib import clients
from chalicelib.destinations import RelayConfigError
from chalicelib.handlers.chat_stream import on_chat_message
from scripts.receivers import Receiver
from tests.conftest import QUARANTINE_BUCKET, load_event

pytestmark = pytest.mark.integration


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def invoke(event: dict[str, Any]) -> None:
    on_chat_message(event, LambdaContext("on_chat_message", memory_size=1024, max_runtime_ms=60_000))


def write_config(path: Path, monkeypatch: pytest.MonkeyPatch, *destinations: dict[str, Any]) -> None:
    path.write_text(json.dumps({"version": 1, "destinations": list(destinations)}))
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))


def local_hook(receiver: Receiver, name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "url": receiver.url("/hook"),
        "secrets": [new_secret()],
        "allow_http": True,
        "allow_private_network": True,
        "allow_literal_secrets": True,
        **fields,
    }


def quarantined() -> list[str]:
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET).get("Contents", [])
    return [s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read().decode() for o in listing]


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    first, second = Receiver().start(), Receiver().start()
    yield first, second
    first.stop()
    second.stop()


def test_issue7_item16_a_pasted_secret_never_reaches_logs_errors_or_the_quarantine(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay_output: Any
) -> None:
    """Given a destination whose reference is a pasted secret ("secretsmanager:whsec_..."), when chat items arrive,
    then the file is refused naming the field, and the value shows in no log line, no error, no S3 object."""
    pasted = new_secret()
    write_config(
        tmp_path / "destinations.json",
        monkeypatch,
        {"name": "crm", "url": "https://crm.example.com/hook", "secrets": [f"secretsmanager:{pasted}"]},
    )
    errors = []
    for _ in range(2):  # every invocation
        with pytest.raises(RelayConfigError) as refused:
            invoke(load_event("chat/sns-record-customer-message.json"))
        errors.append(f"{refused.value} {refused.value!r}")

    assert 'destinations[0] ("crm").secrets[0]: looks like a secret value pasted after "secretsmanager:"' in errors[0]
    value = pasted.removeprefix("whsec_")
    for text in [relay_output(), *errors, *quarantined()]:
        assert value[:16] not in text
        assert value[-16:] not in text


def test_issue7_item17_allow_private_network_never_reaches_the_lambda_runtime_api(
    aws: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receivers: tuple[Receiver, Receiver],
) -> None:
    """Given two local receivers with allow_private_network, one listening where AWS_LAMBDA_RUNTIME_API points,
    when an item is relayed, then the runtime API gets nothing (the delivery is refused and kept) and the other
    receiver gets the event."""
    runtime_api, other = receivers
    monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", f"127.0.0.1:{runtime_api.port}")
    write_config(
        tmp_path / "destinations.json",
        monkeypatch,
        local_hook(runtime_api, "runtime-api", url=f"http://localhost:{runtime_api.port}/hook"),
        local_hook(other, "local"),
    )

    invoke(load_event("chat/sns-record-customer-message.json"))

    assert runtime_api.requests == []
    assert len(other.requests) == 1
    (kept,) = [json.loads(text) for text in quarantined()]
    assert kept["destination"] == "runtime-api"
    assert "lambda-runtime-api" in kept["error"]


@pytest.mark.parametrize("override", [None, "false"])
def test_issue7_item17_a_production_stage_refuses_the_development_switches(
    aws: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receivers: tuple[Receiver, Receiver],
    override: str | None,
) -> None:
    """Given the prod stage and a local receiver with allow_http, allow_private_network and allow_literal_secrets,
    when an item arrives, then the destinations file is refused naming each switch, and nothing is sent."""
    receiver = receivers[0]
    monkeypatch.setenv("RELAY_STAGE", "prod")
    if override is not None:
        monkeypatch.setenv("ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION", override)
    write_config(tmp_path / "destinations.json", monkeypatch, local_hook(receiver, "local"))

    with pytest.raises(RelayConfigError) as refused:
        invoke(load_event("chat/sns-record-customer-message.json"))

    assert [problem.split(":")[0] for problem in refused.value.problems] == [
        'destinations[0] ("local").allow_http',
        'destinations[0] ("local").allow_private_network',
        'destinations[0] ("local").allow_literal_secrets',
    ]
    assert receiver.requests == []


def test_the_documented_override_lets_a_production_stage_use_them(
    aws: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receivers: tuple[Receiver, Receiver]
) -> None:
    """Given the prod stage with ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION=true, then the local receiver is served."""
    receiver = receivers[0]
    monkeypatch.setenv("RELAY_STAGE", "prod")
    monkeypatch.setenv("ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION", "true")
    write_config(tmp_path / "destinations.json", monkeypatch, local_hook(receiver, "local"))

    invoke(load_event("chat/sns-record-customer-message.json"))

    assert len(receiver.requests) == 1
