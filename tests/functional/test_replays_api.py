"""The replay routes through chalice.test.Client (DynamoDB, S3 and SQS in moto), every answer checked against the
OpenAPI document: 202 and the record, each refusal in the relay's words, IAM whatever API_AUTH says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.app import IAMAuthorizer
from chalice.test import Client

from app import app
from chalicelib import clients, dependencies
from chalicelib.archive_replay import ReplayTicket
from tests.conftest import HEALTH_TABLE, PROJECT, QUARANTINE_BUCKET, RETRY_QUEUE
from tests.functional.test_openapi import CheckedHTTP

SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
HOOK = {
    "name": "crm",
    "url": "https://crm.example.com/hooks",
    "secrets": ["whsec_" + "cmVwbGF5LXRlc3Qtc2lnbmluZy1rZXktMDEyMzQ1Njc="],
}
ARCHIVE = {"name": "archive", "kind": "s3", "bucket": QUARANTINE_BUCKET}


@pytest.fixture
def destinations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    def write(*entries: dict[str, Any]) -> None:
        path = tmp_path / f"destinations-{len(list(tmp_path.iterdir()))}.json"
        path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": list(entries)}))
        monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
        dependencies.reset()

    write(HOOK, ARCHIVE)
    return write


@pytest.fixture
def http(aws: None, destinations: Any) -> Iterator[CheckedHTTP]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield CheckedHTTP(test_client.http)


def post(http: CheckedHTTP, body: Any) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return http.post("/replays", headers={"Content-Type": "application/json"}, body=raw)


def queued() -> list[str]:
    url = clients.sqs().get_queue_url(QueueName=RETRY_QUEUE)["QueueUrl"]
    return [m["Body"] for m in clients.sqs().receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])]


def test_a_replay_is_queued_and_answered_202_with_its_record(http: CheckedHTTP) -> None:
    answer = post(http, {"destination": "crm", "initial_contact_id": SESSION})
    assert answer.status_code == 202
    body = json.loads(answer.body)
    assert body["status"] == "queued"
    assert (body["destination"], body["archive"], body["initial_contact_id"]) == ("crm", "archive", SESSION)
    assert (body["found"], body["sent"], body["delivered"], body["from"], body["to"]) == (None, 0, 0, None, None)
    # Its first step waits on the retry queue, and its record is readable at the Location
    assert queued() == [ReplayTicket(body["replay_id"]).to_json()]
    shown = http.get(answer.headers["Location"])
    assert shown.status_code == 200
    assert json.loads(shown.body) == body


def test_every_problem_of_a_bad_body_is_listed(http: CheckedHTTP) -> None:
    answer = post(http, {"destination": 7, "initial_contact_id": "a/b", "from": "yesterday", "colour": "red"})
    assert answer.status_code == 400
    fields = {(p["field"], p["problem"].split(":")[0]) for p in json.loads(answer.body)["fields"]}
    assert {field for field, _ in fields} == {"colour", "destination", "initial_contact_id"}
    answer = post(http, {"from": "2026-11-22T00:00:00", "to": "2026-11-21T00:00:00Z", "archive": ""})
    problems = {p["field"]: p["problem"] for p in json.loads(answer.body)["fields"]}
    assert set(problems) == {"destination", "from", "archive"}
    assert "offset" in problems["from"]
    answer = post(http, {"destination": "crm", "from": "2026-11-01T00:00:00Z", "to": "2026-12-02T00:00:01Z"})
    assert json.loads(answer.body)["fields"] == [{"field": "to", "problem": "a range spans at most 31 days"}]
    answer = post(http, {"destination": "crm", "from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"})
    assert json.loads(answer.body)["fields"] == [{"field": "to", "problem": "must be after from"}]
    assert post(http, {"destination": "crm"}).status_code == 400
    assert post(http, "[1]").status_code == 400
    assert http.post("/replays").status_code == 400
    assert queued() == []


def test_an_unknown_destination_is_404(http: CheckedHTTP) -> None:
    answer = post(http, {"destination": "nowhere", "initial_contact_id": SESSION})
    assert answer.status_code == 404
    assert json.loads(answer.body)["error"] == "DestinationNotFound"


def test_without_an_archive_the_answer_is_409_saying_what_is_missing(http: CheckedHTTP, destinations: Any) -> None:
    destinations(HOOK)
    answer = post(http, {"destination": "crm", "initial_contact_id": SESSION})
    assert answer.status_code == 409
    body = json.loads(answer.body)
    assert body["error"] == "ArchiveUnavailable"
    assert "add a destination of kind s3" in body["message"]


def test_a_time_range_needs_a_date_partitioned_archive(http: CheckedHTTP, destinations: Any) -> None:
    window = {"destination": "crm", "from": "2026-11-22T00:00:00Z", "to": "2026-11-23T00:00:00Z"}
    answer = post(http, window)
    assert answer.status_code == 409
    assert "layout date" in json.loads(answer.body)["message"]
    answer = post(http, {**window, "archive": "archive"})
    assert answer.status_code == 409
    assert "not partitioned by date" in json.loads(answer.body)["message"]
    assert post(http, {**window, "archive": "crm"}).status_code == 400
    destinations(HOOK, ARCHIVE, {**ARCHIVE, "name": "lake", "layout": "date"})
    answer = post(http, window)
    assert answer.status_code == 202
    assert json.loads(answer.body)["archive"] == "lake"
    assert post(http, {"destination": "crm", "initial_contact_id": SESSION, "archive": "lake"}).status_code == 409


def test_an_unknown_replay_is_404(http: CheckedHTTP) -> None:
    for replay_id in ("0" * 32, "not-an-id"):
        answer = http.get(f"/replays/{replay_id}")
        assert answer.status_code == 404
        assert json.loads(answer.body)["error"] == "ReplayNotFound"


def test_a_table_that_fails_answers_503_with_retry_after(http: CheckedHTTP) -> None:
    clients.dynamodb().delete_table(TableName=HEALTH_TABLE)
    answer = post(http, {"destination": "crm", "initial_contact_id": SESSION})
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "ResourceNotFound" not in answer.body.decode()
    assert http.get(f"/replays/{'0' * 32}").status_code == 503


def test_the_routes_are_iam_authorised_whatever_api_auth_says() -> None:
    for path, method in (("/replays", "POST"), ("/replays/{replay_id}", "GET")):
        assert isinstance(app.routes[path][method].authorizer, IAMAuthorizer)


def test_a_replay_the_queue_does_not_take_is_answered_503_and_recorded_failed(http: CheckedHTTP) -> None:
    clients.sqs().delete_queue(QueueUrl=clients.sqs().get_queue_url(QueueName=RETRY_QUEUE)["QueueUrl"])
    answer = post(http, {"destination": "crm", "initial_contact_id": SESSION})
    assert answer.status_code == 503
    items = clients.dynamodb().scan(TableName=HEALTH_TABLE)["Items"]
    [record] = [item for item in items if item["pk"]["S"].startswith("replay#")]
    assert record["status"]["S"] == "failed"
    assert "start it again" in record["outcome"]["S"]
