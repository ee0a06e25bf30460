"""`make demo` itself: the whole relay on emulated AWS, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.integration


def test_the_demo_runs_end_to_end_and_every_signature_verifies() -> None:
    # Given a clean environment with no AWS account, When the demo runs, Then it succeeds, every receiver's
    # deliveries verify, and what it promises to write is there.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    receivers = {d["receiver"] for d in deliveries}
    assert receivers == {"crm", "agent-assist", "archive", "analytics"}
    assert all(d["signature_verified"] for d in deliveries)
    assert {d["body"]["type"] for d in deliveries} >= {"chat.message", "chat.ended", "chat.attachment", "call.started"}
    assert all("webhook-signature" in d["headers"] for d in deliveries)
    config = json.loads((PROJECT / ".relay-demo" / "config.json").read_text())
    assert len(config["destinations"]) == 4
    for secret in (s for d in config["destinations"] for s in d["secrets"]):
        assert secret not in done.stdout
    assert "Idempotent-Replayed: true" in done.stdout
    assert "quarantine/invalid/" in done.stdout
