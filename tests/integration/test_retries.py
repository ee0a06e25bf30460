"""Retrying on AWS's own queues: the chat stream hands failed deliveries to the SQS retry queue, and
``retry_deliveries`` (called as Lambda calls it, with an SQS event and a context) attempts them again.

moto for SQS and S3, receivers on 127.0.0.1 that verify every signature with the standardwebhooks package.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client
from standardwebhooks import Webhook

from app import app
from chalicelib import clients, dependencies
from chalicelib.adapters.health_table import HealthTable
from chalicelib.events import RelayEvent
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.handlers.retries import retry_deliveries
from scripts.receivers import Answer, Receiver
from tests.conftest import (
    HEALTH_TABLE,
    PROJECT,
    QUARANTINE_BUCKET,
    RETRY_QUEUE,
    LambdaContext,
    emitted_metrics,
    load_event,
    sqs_event,
)

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
MESSAGE = "chat/sns-record-customer-message.json"


@pytest.fixture
def configure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Any:
    """Writes a destinations file with one destination, ``hook``, on the receiver."""

    def write(**fields: Any) -> None:
        destination = {
            "name": "hook",
            "url": receiver.url("/hook"),
            "secrets": [SECRET],
            "allow_http": True,
            "allow_private_network": True,
            **fields,
        }
        path = tmp_path / "destinations.json"
        path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": [destination]}))
        monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))

    write()
    return write


def kept(prefix: str) -> list[dict[str, Any]]:
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=prefix).get("Contents", [])
    return [json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read()) for o in listing]


def retry(queued: list[dict[str, Any]], *, due: bool = True) -> dict[str, Any]:
    """Hand every ticket sent so far to retry_deliveries in one batch, as the event source mapping would once
    their delays have passed (``due``: the test does not wait them out)."""
    if due:
        for ticket in queued:
            ticket["body"]["not_before"] = min(ticket["body"]["not_before"], time.time())
    bodies = [json.dumps(ticket["body"]) for ticket in queued]
    queued.clear()
    answer: dict[str, Any] = retry_deliveries(sqs_event(*bodies), LambdaContext())
    return answer


def test_a_failed_delivery_is_retried_from_the_queue_signed_afresh_with_the_same_id_and_body(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    # Given a receiver that is down for the first attempt
    receiver.answer("/hook", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    assert 4 <= ticket["delay"] <= 6  # the schedule's 5 s, ±20 %
    # When it is back and retry_deliveries takes the ticket (at least a second later)
    receiver.answer("/hook", Answer(status=204))
    time.sleep(1.05)
    assert retry(queued) == {"batchItemFailures": []}
    # Then the retry carries the same webhook-id and body, a fresh timestamp, and a signature that verifies
    first, second = receiver.requests
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    Webhook(SECRET).verify(second.body, second.headers)
    assert queued == []
    assert emitted_metrics(relay_output())["DeliveryRecovered"] == 1


def test_every_attempt_failing_ends_in_a_dead_letter_with_its_attempt_log(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    configure(retry_schedule=[0, 0, 0])
    receiver.answer("/hook", Answer(status=500, body=b'{"error": "database down"}\r\n'))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    retry(queued)
    retry(queued)
    assert queued == []
    (dead,) = kept("quarantine/dead-letters/hook/")
    assert dead["reason"] == "exhausted"
    assert dead["disable_endpoint"] is False
    assert [(a["attempt"], a["status"], a["error"], a["excerpt"]) for a in dead["attempts"]] == [
        (1, 500, "HTTP 500", '{"error": "database down"}'),
        (2, 500, "HTTP 500", '{"error": "database down"}'),
        (3, 500, "HTTP 500", '{"error": "database down"}'),
    ]
    assert dead["event"]["type"] == "chat.message"
    assert dead["webhook_id"] == receiver.requests[0].headers["webhook-id"]
    assert len(receiver.requests) == 3
    assert emitted_metrics(relay_output())["DeliveryExhausted"] == 1


def test_410_is_permanent_disables_the_destination_and_parks_the_event(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    receiver.answer("/hook", Answer(status=410))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    # Not retried, not dead: endpoint health disables the destination and keeps the event until it is enabled
    assert queued == []
    assert kept("quarantine/dead-letters/") == []
    health = HealthTable(clients.dynamodb(), HEALTH_TABLE).read("hook")
    assert (health.status, health.parked) == ("disabled", 1)


@pytest.mark.parametrize("status", [302, 400, 404, 422])
def test_redirects_and_client_errors_are_retried_by_default(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]], status: int
) -> None:
    receiver.answer("/hook", Answer(status=status, location=receiver.url("/elsewhere")))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    assert ticket["body"]["attempts"][0]["status"] == status
    assert [request.path for request in receiver.requests] == ["/hook"]  # never followed


def test_a_destination_may_make_client_errors_permanent(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    configure(retry_client_errors=False)
    receiver.answer("/hook", Answer(status=404))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    assert queued == []
    (dead,) = kept("quarantine/dead-letters/hook/")
    assert (dead["reason"], dead["status"]) == ("rejected", 404)


def test_throttling_429_is_retried_even_where_client_errors_are_permanent(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    configure(retry_client_errors=False, retry_schedule=[0, 5, 60])
    receiver.answer("/hook", Answer(status=429, retry_after="100000"))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    assert ticket["delay"] == 60  # Retry-After honoured, bounded by the schedule's longest wait


def test_a_wait_longer_than_sqs_delays_hops_through_the_queue(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    # Given a ticket whose next attempt is an hour away (SQS delays at most 15 minutes)
    receiver.answer("/hook", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    ticket["body"]["not_before"] = time.time() + 3600
    # When retry_deliveries receives it early, Then it goes back for another 15 minutes, undelivered
    assert retry(queued, due=False) == {"batchItemFailures": []}
    (hop,) = queued
    assert hop["delay"] == 900
    assert hop["body"]["attempts"] == ticket["body"]["attempts"]
    assert len(receiver.requests) == 1


def test_without_sqs_the_failure_is_kept_in_s3_and_without_both_the_invocation_fails(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    receiver.answer("/hook", Answer(status=503))
    sqs = clients.sqs()
    sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=RETRY_QUEUE)["QueueUrl"])
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (copy,) = kept("quarantine/undelivered/hook/")
    assert [a["status"] for a in copy["attempts"]] == [503]
    assert copy["event"]["type"] == "chat.message"
    # And with S3 gone as well, the invocation fails, so Lambda's retries and on-failure queue keep the item
    s3 = clients.s3()
    for item in s3.list_object_versions(Bucket=QUARANTINE_BUCKET).get("Versions", []):
        s3.delete_object(Bucket=QUARANTINE_BUCKET, Key=item["Key"])
    s3.delete_bucket(Bucket=QUARANTINE_BUCKET)
    with pytest.raises(Exception, match="NoSuchBucket"):
        on_chat_message(load_event(MESSAGE), LambdaContext())


def test_an_event_too_large_for_a_queue_message_goes_by_s3_reference(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    # Given an event whose ASCII queue message would pass SQS's 256 KB (chat items stop at 16 K characters of
    # content, so the publisher is called directly here, as future event kinds would call it)
    event = RelayEvent(
        type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"content": "é" * 60_000}, webhook_id="msg_big"
    )
    receiver.answer("/hook", Answer(status=503))
    dependencies.relay().publish(event)
    (ticket,) = queued
    assert "event" not in ticket["body"]
    assert ticket["body"]["event_ref"] == "quarantine/retrying/msg_big.json"
    receiver.answer("/hook", Answer(status=204))
    assert retry(queued) == {"batchItemFailures": []}
    first, second = receiver.requests
    assert second.body == first.body == event.body


def test_a_batch_reports_only_what_it_could_not_settle(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    # Given a batch with a good ticket, an unreadable message, and a ticket whose event body is missing from S3
    receiver.answer("/hook", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (good,) = queued
    missing = {**good["body"], "event_ref": "quarantine/retrying/gone.json", "not_before": time.time()}
    del missing["event"]
    receiver.answer("/hook", Answer(status=204))
    good["body"]["not_before"] = time.time()
    answer = retry_deliveries(sqs_event(json.dumps(good["body"]), "not a ticket", json.dumps(missing)), LambdaContext())
    # Then only the third stays on the queue; the unreadable one is quarantined, the good one delivered
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    (invalid,) = kept("quarantine/invalid/retry-queue/")
    assert invalid["record"] == "not a ticket"
    assert len(receiver.requests) == 2
    assert emitted_metrics(relay_output())["InvalidRetryTicket"] == 1


def test_a_ticket_for_a_destination_no_longer_configured_is_dead_lettered(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    receiver.answer("/hook", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    ticket["body"]["destination"] = "removed"
    assert retry(queued) == {"batchItemFailures": []}
    (dead,) = kept("quarantine/dead-letters/removed/")
    assert dead["reason"] == "unknown destination"


def test_issue7_item3_with_3_s_left_a_receiver_answering_after_10_s_is_cut_short_and_kept(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    # Given an invocation with 3 s left and a receiver that answers after 10 s (within its own 10 s timeout)
    receiver.answer("/hook", Answer(status=204, delay=10))
    started = time.monotonic()
    on_chat_message(load_event(MESSAGE), LambdaContext(3))
    # Then the handler returns before Lambda would stop it, and that delivery waits in the retry queue
    assert time.monotonic() - started < 3
    (ticket,) = queued
    assert ticket["body"]["attempts"][0]["error"] == "timed out waiting for the answer"


def test_issue7_item3_a_retry_batch_returns_what_it_has_no_time_left_for(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]]
) -> None:
    receiver.answer("/hook", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    receiver.answer("/hook", Answer(status=204))
    answer = retry_deliveries(sqs_event(json.dumps(ticket["body"]), json.dumps(ticket["body"])), LambdaContext(0.5))
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}]}
    assert len(receiver.requests) == 1


def test_issue7_item4_with_an_invalid_destinations_file_call_started_is_held_in_the_queue(
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    queued: list[dict[str, Any]],
    connect_stub: Any,
) -> None:
    # Given a destinations file that does not validate, and a web call placed through the route
    path = tmp_path / "destinations.json"
    path.write_text('{"version": 1, "destinations": [{"name": "hook"}]}')
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    connect_stub.add_response("start_web_rtc_contact", load_event("connect/start-webrtc-contact.json"))
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as client:
        response = client.http.post(
            "/webrtc-contacts", body=json.dumps({"display_name": "Ana"}), headers={"Content-Type": "application/json"}
        )
    # Then the call is placed, and its call.started waits in the retry queue for every destination
    assert response.status_code == 201
    (ticket,) = queued
    assert (ticket["body"]["destination"], ticket["delay"]) == ("*", 60)
    # And once the file is fixed, retry_deliveries publishes it
    hook = {"name": "hook", "url": receiver.url("/hook"), "secrets": [SECRET]}
    local = {"allow_http": True, "allow_private_network": True}
    path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": [{**hook, **local}]}))
    assert retry(queued) == {"batchItemFailures": []}
    (request,) = receiver.requests
    assert request.headers["webhook-id"] == ticket["body"]["webhook_id"]
    assert json.loads(request.body)["type"] == "call.started"


def test_issue7_item4_a_call_started_announcement_takes_the_durable_path(
    receiver: Receiver, configure: Any, queued: list[dict[str, Any]], connect_stub: Any
) -> None:
    # Given a destination that refuses the announcement of a web call placed through the route
    receiver.answer("/hook", Answer(status=503))
    connect_stub.add_response("start_web_rtc_contact", load_event("connect/start-webrtc-contact.json"))
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as client:
        response = client.http.post(
            "/webrtc-contacts", body=json.dumps({"display_name": "Ana"}), headers={"Content-Type": "application/json"}
        )
    # Then the call is placed and its call.started waits in the retry queue, like any chat event
    assert response.status_code == 201
    (ticket,) = queued
    assert ticket["body"]["event"]["type"] == "call.started"
    assert ticket["body"]["webhook_id"] == receiver.requests[0].headers["webhook-id"]


def test_issue7_item4_a_display_name_with_a_lone_surrogate_is_refused(aws: None, connect_stub: Any) -> None:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as client:
        response = client.http.post(
            "/webrtc-contacts", body='{"display_name": "Ana \\ud800"}', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert [p["field"] for p in response.json_body["fields"]] == ["display_name"]
    connect_stub.assert_no_pending_responses()
