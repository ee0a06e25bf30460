"""The web-call example: its local mode (``chalice local`` on emulated AWS) places a call as the README says, and
the page loads the Chime SDK only when it joins a call, says so when it cannot, and labels its media."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.conftest import PROJECT, free_port

pytestmark = pytest.mark.integration

PAGE = PROJECT / "examples" / "web-call" / "index.html"
ORIGIN = "http://localhost:8000"  # the page's origin in the README, listed in the dev stage's CORS_ALLOWED_ORIGINS


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RELAY_", "MOTO_"))}


@pytest.fixture
def local_aws() -> Iterator[dict[str, str]]:
    """`python -m scripts.local_aws`, as the README runs it; yields the variables it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.local_aws"],
        cwd=PROJECT,
        env=clean_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    exported: dict[str, str] = {}
    for line in process.stdout:
        if line.startswith("export "):
            exported = dict(pair.split("=", 1) for pair in line.split()[1:])
            break
    assert exported, "scripts.local_aws printed no export line"
    yield exported
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def chalice_local(local_aws: dict[str, str]) -> Iterator[str]:
    """`chalice local --stage dev` with that environment; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [str(PROJECT / ".venv" / "bin" / "chalice"), "local", "--stage", "dev", "--port", str(port)],
        cwd=PROJECT,
        env={**clean_environment(), **local_aws},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/openapi.json", timeout=2).close()  # noqa: S310 - a loopback URL
            break
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None, "chalice local exited"
            assert time.monotonic() < give_up, "chalice local did not start"
            time.sleep(0.2)
    yield base
    process.terminate()
    process.wait(timeout=10)


def post(url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - a loopback URL
        return answer.status, dict(answer.headers), json.loads(answer.read())


def test_local_mode_places_a_web_call_through_chalice_local(chalice_local: str) -> None:
    """Given the README's local mode (scripts.local_aws, then chalice local --stage dev), when the page's request is
    sent from its origin without a credential, then the call is placed and the answer is what the page reads."""
    status, headers, answer = post(
        f"{chalice_local}/webrtc-contacts",
        {"display_name": "Web caller"},
        {"Content-Type": "application/json", "Origin": ORIGIN, "Idempotency-Key": str(uuid.uuid4())},
    )

    assert status == 201
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer["ContactId"]
    assert answer["ConnectionData"]["Meeting"]["MeetingId"]
    assert answer["ConnectionData"]["Attendee"]["AttendeeId"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.module = ""
        self._in_module = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        self._in_module = tag == "script" and dict(attrs).get("type") == "module"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_module = False

    def handle_data(self, data: str) -> None:
        if self._in_module:
            self.module += data


def page() -> _Page:
    parsed = _Page()
    parsed.feed(PAGE.read_text())
    return parsed


def test_the_page_loads_the_chime_sdk_only_to_join_and_says_when_it_cannot() -> None:
    """Given the page's script, then nothing is imported at its top (offline, the form still works), the SDK is
    imported when a call is joined, from a URL the user can change, and a failure says what to do."""
    script = page().module
    assert not re.search(r"^\s*import\s", script, re.MULTILINE)
    assert "await import(url)" in script
    assert "Could not load the Amazon Chime SDK from" in script
    assert any(tag == "input" and attrs.get("id") == "sdk-url" for tag, attrs in page().elements)


def test_the_page_offers_a_local_mode() -> None:
    options = [attrs.get("value") for tag, attrs in page().elements if tag == "option"]
    assert "local" in options


def test_every_media_element_is_labelled() -> None:
    """Given the page, then each video names its label element and each label exists; the audio has a label."""
    elements = page().elements
    ids = {attrs.get("id") for _, attrs in elements}
    media = [(tag, attrs) for tag, attrs in elements if tag in {"video", "audio"}]
    assert {tag for tag, _ in media} == {"video", "audio"}
    for tag, attrs in media:
        label = attrs.get("aria-labelledby")
        assert attrs.get("aria-label") or (label and label in ids), f"{tag}#{attrs.get('id')} has no label"


def test_the_page_script_is_valid_javascript(tmp_path: Any) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the syntax check needs it")
    module = tmp_path / "page.mjs"
    module.write_text(page().module)
    done = subprocess.run([node, "--check", str(module)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
