"""Redrive: a destination's dead letters and undelivered copies (of either format) back on the retry queue, by
the IAM-authorised route and by the command line; resumable, with a summary."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.app import IAMAuthorizer
from chalice.test import Client

from app import app
from chalicelib import cli, clients
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.handlers.retries import retry_deliveries
from scripts.receivers import Answer, Receiver
from tests.conftest import PROJECT, QUARANTINE_BUCKET, LambdaContext, load_event, sqs_event

pytestmark = pytest.mark.integration

SECRET = "whsec_" + "cmVkcml2ZS10ZXN0LXNpZ25pbmcta2V5LTAxMjM0NTY3"
MESSAGE = "chat/sns-record-customer-message.json"
# The shape quarantine/undelivered/ had before the retry queue: no attempt log.
OLD_FORMAT = {
    "destination": "hook",
    "webhook_id": "msg_old",
    "status": 503,
    "error": "HTTP 503",
    "retryable": True,
    "retry_after_seconds": None,
    "kept_at": 1764000000,
    "event": {"type": "chat.ended", "timestamp": "2026-11-22T10:00:00.000Z", "version": 1, "data": {"x": 1}},
}


@pytest.fixture
def kept_two(aws: None, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead letter (a 404 the destination does not retry) and an undelivered copy in the old format, for the
    destination ``hook``."""
    path = tmp_path / "destinations.json"
    hook = {
        "name": "hook",
        "url": receiver.url("/hook"),
        "secrets": [SECRET],
        "allow_http": True,
        "retry_client_errors": False,
    }
    path.write_text(
        json.dumps(
            {"version": 1, "allow_literal_secrets": True, "destinations": [{**hook, "allow_private_network": True}]}
        )
    )
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    receiver.answer("/hook", Answer(status=404))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    clients.s3().put_object(
        Bucket=QUARANTINE_BUCKET, Key="quarantine/undelivered/hook/2025/11/24/msg_old.json", Body=json.dumps(OLD_FORMAT)
    )
    receiver.answer("/hook", Answer(status=204))


def objects(prefix: str = "quarantine/") -> list[str]:
    listing = clients.s3().list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def redrive(body: dict[str, Any] | None = None, name: str = "hook") -> Any:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as client:
        return client.http.post(
            f"/destinations/{name}/redrive",
            body=json.dumps(body) if body is not None else "",
            headers={"Content-Type": "application/json"},
        )


def test_the_route_requeues_dead_letters_and_old_undelivered_copies(
    kept_two: None, receiver: Receiver, queued: list[dict[str, Any]]
) -> None:
    assert len(objects()) == 2
    response = redrive()
    assert response.status_code == 200
    assert response.json_body == {
        "destination": "hook",
        "requeued": 2,
        "refused": 0,
        "unreadable": 0,
        "complete": True,
    }
    assert objects() == []
    assert {t["body"]["webhook_id"] for t in queued} >= {"msg_old"}
    assert all(t["body"]["attempts"] == [] and t["body"]["redriven"] == 1 for t in queued)
    # And the re-queued tickets deliver, with their original ids
    for ticket in queued:
        ticket["body"]["not_before"] = time.time()
    answer = retry_deliveries(sqs_event(*(json.dumps(t["body"]) for t in queued)), LambdaContext())
    assert answer == {"batchItemFailures": []}
    assert "msg_old" in {request.headers["webhook-id"] for request in receiver.requests}


def test_a_limited_redrive_resumes_where_it_stopped(kept_two: None, queued: list[dict[str, Any]]) -> None:
    first = redrive({"limit": 1})
    assert (first.json_body["requeued"], first.json_body["complete"]) == (1, False)
    second = redrive({"limit": 1})
    assert (second.json_body["requeued"], second.json_body["complete"]) == (1, True)
    assert objects() == []
    assert len(queued) == 2


def test_only_the_kinds_asked_for_are_requeued(kept_two: None, queued: list[dict[str, Any]]) -> None:
    response = redrive({"kinds": ["undelivered"]})
    assert response.json_body["requeued"] == 1
    assert len(objects("quarantine/dead-letters/")) == 1


@pytest.mark.parametrize(
    "body",
    [{"kinds": []}, {"kinds": ["parked"]}, {"limit": 0}, {"limit": 501}, {"limit": True}, {"other": 1}],
)
def test_an_invalid_request_is_refused(kept_two: None, body: dict[str, Any]) -> None:
    assert redrive(body).status_code == 400


def test_an_unknown_destination_is_404(kept_two: None) -> None:
    assert redrive(name="nobody").status_code == 404


def test_the_route_is_iam_authorised_whatever_the_stage_says() -> None:
    (route,) = app.routes["/destinations/{name}/redrive"].values()
    assert route.authorizer is not None
    assert isinstance(route.authorizer, IAMAuthorizer)


def test_the_command_line_redrives_with_progress_and_a_summary(kept_two: None, queued: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    assert cli.main(["redrive", "hook"], out=out) == 0
    text = out.getvalue()
    assert "2 re-queued" in text
    assert "requeued=2 refused=0 unreadable=0 complete=yes" in text
    assert objects() == []


def test_s3_failing_part_way_answers_502_and_a_second_call_resumes(
    kept_two: None, queued: list[dict[str, Any]]
) -> None:
    # Given S3 refusing the first read of a kept delivery
    s3 = clients.s3()
    calls = {"n": 0}

    def refuse_once(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "GetObject")

    s3.meta.events.register("before-call.s3.GetObject", refuse_once)
    first = redrive()
    assert (first.status_code, first.json_body["error"]) == (502, "RedriveInterrupted")
    second = redrive()
    assert (second.status_code, second.json_body["requeued"], second.json_body["complete"]) == (200, 2, True)
