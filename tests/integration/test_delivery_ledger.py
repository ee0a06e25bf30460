"""The delivery ledger: a destination that answered 2xx for a webhook-id is not sent that event again.

moto for DynamoDB, SQS and S3; the handlers called as Lambda calls them (an event and a context); receivers on
127.0.0.1 that verify every signature with the standardwebhooks package.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from standardwebhooks import Webhook

from chalicelib import clients, dependencies
from chalicelib.adapters.deliveries_table import DeliveriesTable
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.handlers.retries import retry_deliveries
from chalicelib.ledger import DeliveryLedgerError
from scripts.receivers import Answer, Receiver
from tests.conftest import DELIVERIES_TABLE, LambdaContext, emitted_metrics, load_event, sqs_event

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
MESSAGE = "chat/sns-record-customer-message.json"


@pytest.fixture
def two_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, aws: None) -> None:
    """Two destinations on the receiver: ``good`` (``/good``) and ``bad`` (``/bad``)."""
    destinations = [
        {
            "name": name,
            "url": receiver.url(f"/{name}"),
            "secrets": [SECRET],
            "allow_http": True,
            "allow_private_network": True,
        }
        for name in ("good", "bad")
    ]
    path = tmp_path / "destinations.json"
    path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": destinations}))
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))


def to(receiver: Receiver, path: str) -> list[Any]:
    return [request for request in receiver.requests if request.path == path]


def due(ticket: dict[str, Any]) -> str:
    """A queued ticket's body, made due now (the test does not wait out its delay)."""
    body = dict(ticket["body"])
    body["not_before"] = min(body["not_before"], time.time())
    return json.dumps(body)


class TestTheTable:
    """The DynamoDB adapter itself, on moto."""

    def test_a_recorded_pair_is_known_and_expires_after_its_time_to_live(self, aws: None) -> None:
        ledger = DeliveriesTable(clients.dynamodb(), DELIVERIES_TABLE, ttl_seconds=3 * 86_400, clock=lambda: 1000.0)
        ledger.record([("crm", "msg_1"), ("crm", "msg_1"), ("bi", "msg_1")])
        assert ledger.delivered([("crm", "msg_1"), ("crm", "msg_2"), ("bi", "msg_1"), ("bi", "msg_2")]) == {
            ("crm", "msg_1"),
            ("bi", "msg_1"),
        }
        item = clients.dynamodb().get_item(TableName=DELIVERIES_TABLE, Key={"pk": {"S": "crm#msg_1"}})["Item"]
        assert item["expires_at"] == {"N": str(1000 + 3 * 86_400)}
        assert item["delivered_at"] == {"N": "1000"}

    def test_more_pairs_than_one_call_takes_are_read_and_written_in_several(self, aws: None) -> None:
        ledger = DeliveriesTable(clients.dynamodb(), DELIVERIES_TABLE, ttl_seconds=60)
        pairs = [(f"d{index % 7}", f"msg_{index}") for index in range(260)]
        ledger.record(pairs[:130])  # 6 BatchWriteItem calls of at most 25
        assert ledger.delivered(pairs) == set(pairs[:130])  # 3 BatchGetItem calls of at most 100

    def test_unprocessed_keys_are_asked_again_and_what_stays_unanswered_counts_as_not_delivered(
        self, aws: None
    ) -> None:
        client = clients.dynamodb()
        ledger = DeliveriesTable(client, DELIVERIES_TABLE, ttl_seconds=60, pause=lambda _: None)
        key = {"pk": {"S": "crm#msg_1"}}
        request = {DELIVERIES_TABLE: {"Keys": [key], "ConsistentRead": True, "ProjectionExpression": "pk"}}
        unprocessed = {"Responses": {}, "UnprocessedKeys": request}
        with Stubber(client) as stubber:
            stubber.add_response("batch_get_item", unprocessed, {"RequestItems": request})
            stubber.add_response("batch_get_item", {"Responses": {DELIVERIES_TABLE: [key]}}, {"RequestItems": request})
            assert ledger.delivered([("crm", "msg_1")]) == {("crm", "msg_1")}
            for _ in range(3):
                stubber.add_response("batch_get_item", unprocessed, {"RequestItems": request})
            assert ledger.delivered([("crm", "msg_1")]) == set()

    def test_a_refused_call_is_a_ledger_error_that_names_the_code_only(self, aws: None) -> None:
        client = clients.dynamodb()
        ledger = DeliveriesTable(client, DELIVERIES_TABLE, ttl_seconds=60)
        with Stubber(client) as stubber:
            stubber.add_client_error("batch_write_item", "ProvisionedThroughputExceededException", "secret text")
            with pytest.raises(DeliveryLedgerError) as raised:
                ledger.record([("crm", "msg_1")])
        assert "ProvisionedThroughputExceededException" in str(raised.value)
        assert "secret text" not in str(raised.value)


def test_an_sns_redelivery_skips_the_receiver_that_answered_2xx_and_retries_the_one_that_failed(
    receiver: Receiver, two_hooks: None, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    # Given one destination that answers 204 and one that answers 503
    receiver.answer("/bad", Answer(status=503))
    event = load_event(MESSAGE)
    on_chat_message(event, LambdaContext())
    assert (len(to(receiver, "/good")), len(to(receiver, "/bad"))) == (1, 1)
    # When SNS delivers the same record again (or Lambda retries the invocation)
    on_chat_message(event, LambdaContext())
    # Then the destination that answered 2xx is not sent it again; the one that failed is, with the same id
    good, bad = to(receiver, "/good"), to(receiver, "/bad")
    assert (len(good), len(bad)) == (1, 2)
    assert bad[1].headers["webhook-id"] == bad[0].headers["webhook-id"] == good[0].headers["webhook-id"]
    Webhook(SECRET).verify(bad[1].body, bad[1].headers)
    # and each failed attempt is waiting in the retry queue, for "bad" only
    assert [ticket["body"]["destination"] for ticket in queued] == ["bad", "bad"]
    metrics = emitted_metrics(relay_output())
    assert metrics["DeliverySkipped"] == 1
    assert "DeliveryLedgerUnavailable" not in metrics


def test_a_retry_ticket_for_a_pair_already_delivered_is_dropped_as_done(
    receiver: Receiver, two_hooks: None, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    # Given a delivery to "bad" that failed and waits in the retry queue
    receiver.answer("/bad", Answer(status=503))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    (ticket,) = queued
    queued.clear()
    # and that a redelivery of the record has since got through to it (the ledger knows it)
    receiver.answer("/bad", Answer(status=204))
    on_chat_message(load_event(MESSAGE), LambdaContext())
    assert len(to(receiver, "/bad")) == 2
    # When retry_deliveries takes the ticket (twice in one batch: SQS may hand over a message twice)
    answer = retry_deliveries(sqs_event(due(ticket), due(ticket)), LambdaContext())
    # Then nothing is sent, nothing is queued again, and the batch is settled
    assert answer == {"batchItemFailures": []}
    assert len(to(receiver, "/bad")) == 2
    assert queued == []
    assert emitted_metrics(relay_output())["DeliverySkipped"] == 3  # good on the redelivery, bad twice


def test_a_retry_batch_reads_the_ledger_once_and_writes_it_once(
    receiver: Receiver, two_hooks: None, queued: list[dict[str, Any]]
) -> None:
    receiver.answer("/bad", Answer(status=503))
    for index in range(3):
        event = load_event(MESSAGE)
        message = json.loads(event["Records"][0]["Sns"]["Message"])
        message["Id"] = f"item-{index}"
        event["Records"][0]["Sns"]["Message"] = json.dumps(message)
        on_chat_message(event, LambdaContext())
    assert len(queued) == 3
    receiver.answer("/bad", Answer(status=204))
    reads: list[int] = []
    writes: list[int] = []
    client = clients.dynamodb_for_health()
    client.meta.events.register(
        "provide-client-params.dynamodb.BatchGetItem",
        lambda params, **_: reads.append(len(params["RequestItems"][DELIVERIES_TABLE]["Keys"])),
    )
    client.meta.events.register(
        "provide-client-params.dynamodb.BatchWriteItem",
        lambda params, **_: writes.append(len(params["RequestItems"][DELIVERIES_TABLE])),
    )
    tickets = [due(ticket) for ticket in queued]
    assert retry_deliveries(sqs_event(*tickets), LambdaContext()) == {"batchItemFailures": []}
    assert (reads, writes) == ([3], [3])
    assert len(to(receiver, "/bad")) == 6
    # and the ledger now knows all three: the same batch again sends nothing
    assert retry_deliveries(sqs_event(*tickets), LambdaContext()) == {"batchItemFailures": []}
    assert len(to(receiver, "/bad")) == 6


def test_with_dynamodb_failing_every_destination_is_still_delivered_and_it_is_counted(
    receiver: Receiver, two_hooks: None, queued: list[dict[str, Any]], relay_output: Any
) -> None:
    # Given a ledger table that cannot be reached (deleted: every call fails)
    clients.dynamodb().delete_table(TableName=DELIVERIES_TABLE)
    dependencies.reset()
    event = load_event(MESSAGE)
    # When the record comes, and comes again
    on_chat_message(event, LambdaContext())
    on_chat_message(event, LambdaContext())
    # Then both destinations get it both times: at least once beats at most once
    assert (len(to(receiver, "/good")), len(to(receiver, "/bad"))) == (2, 2)
    assert queued == []
    metrics = emitted_metrics(relay_output())
    assert metrics["DeliveryLedgerUnavailable"] == 4  # a read and a write per invocation
    assert "DeliverySkipped" not in metrics
