"""Starting contacts through chalice.test.Client: Connect stubbed, DynamoDB emulated, every answer checked
against the OpenAPI document."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import clients, dependencies
from chalicelib.adapters.client_tokens import (
    TOKEN_VALIDITY_SECONDS,
    ClientTokenLedger,
    fingerprint,
    ledger_key,
    scoped_client_token,
)
from chalicelib.contact_starts import ROUTE_DELIVERY_TIMEOUT_SECONDS
from chalicelib.contacts import ContactStart, chat_start, webrtc_start
from chalicelib.errors import RequestValidationError, SettingsError, StorageError
from chalicelib.events import RelayEvent
from chalicelib.handlers import contacts_api
from chalicelib.settings import get_settings, load_settings
from chalicelib.streaming import STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE
from scripts.local_aws import ACCOUNT
from tests.conftest import (
    INSTANCE_ID,
    PROJECT,
    REGION,
    STREAMS_TABLE,
    TOPIC_ARN,
    dev_stage_environment,
    load_event,
)
from tests.fakes import RecordingRelay
from tests.functional.test_openapi import CheckedHTTP, contract
from tests.schemas import load_schema

SUPPORT_FLOW = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
SALES_FLOW = "bbbbbbbb-cccc-4ddd-8eee-ffffffffffff"
ORIGIN = "http://localhost:8000"
JSON = {"Content-Type": "application/json"}
WEBRTC_ANSWER = load_event("connect/start-webrtc-contact.json")
CHAT_ANSWER = load_event("connect/start-chat-contact.json")
CHAT_PERSISTENT_ANSWER = load_event("connect/start-chat-contact-persistent.json")


@pytest.fixture
def client(aws: None) -> Iterator[Any]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


@pytest.fixture
def http(client: Any) -> CheckedHTTP:
    return CheckedHTTP(client.http)


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[RelayEvent]:
    """Events handed to the fan-out, recorded instead of delivered."""
    relay = RecordingRelay()
    # Cached like the real getter, so dependencies.reset() can clear it
    monkeypatch.setattr(dependencies, "relay", cache(lambda: relay))
    return relay.published


def post(http: CheckedHTTP, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, str) else json.dumps(body)
    return http.post(path, body=raw, headers={**JSON, **(headers or {})})


def problems(response: Any) -> dict[str, str]:
    assert response.status_code == 400, response.body
    return {p["field"]: p["problem"] for p in response.json_body["fields"]}


def kept_item(key: str) -> dict[str, Any] | None:
    item = clients.dynamodb().get_item(TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": key}})
    return item.get("Item")


# ---------------------------------------------------------------------------------------------------------------
# POST /webrtc-contacts


class TestWebRTCContact:
    def test_a_full_request_reaches_connect_with_the_stage_s_instance_and_flow(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        # Given a body using every field, and an Idempotency-Key
        body = {
            "display_name": "Ana Lima",
            "attributes": {"customer-id": "c-42", "plan_tier": "gold"},
            "allowed_capabilities": {
                "customer": {"video": "SEND", "screen_share": "SEND"},
                "agent": {"video": "SEND"},
            },
            "references": {
                "order": {"type": "URL", "value": "https://shop.example/orders/42"},
                "total": {"type": "NUMBER", "value": "19.90"},
                "placed": {"type": "DATE", "value": "1714567890000"},
                "contact": {"type": "EMAIL", "value": "ana@example.com"},
                "note": {"type": "STRING", "value": "fragile"},
            },
            "description": "Help with order 42",
            "related_contact_id": "c0ffee00-0000-4000-8000-00000000beef",
            "flow": "sales",
        }
        connect_stub.add_response(
            "start_web_rtc_contact",
            WEBRTC_ANSWER,
            {
                "InstanceId": INSTANCE_ID,
                "ContactFlowId": SALES_FLOW,
                "ParticipantDetails": {"DisplayName": "Ana Lima"},
                "Attributes": {"customer-id": "c-42", "plan_tier": "gold"},
                "AllowedCapabilities": {
                    "Customer": {"Video": "SEND", "ScreenShare": "SEND"},
                    "Agent": {"Video": "SEND"},
                },
                "References": {
                    "order": {"Type": "URL", "Value": "https://shop.example/orders/42"},
                    "total": {"Type": "NUMBER", "Value": "19.90"},
                    "placed": {"Type": "DATE", "Value": "1714567890000"},
                    "contact": {"Type": "EMAIL", "Value": "ana@example.com"},
                    "note": {"Type": "STRING", "Value": "fragile"},
                },
                "Description": "Help with order 42",
                "RelatedContactId": "c0ffee00-0000-4000-8000-00000000beef",
                "ClientToken": scoped_client_token("webrtc", "anonymous", "call-1"),
            },
        )
        # When the front end posts it
        response = post(http, "/webrtc-contacts", body, {"Idempotency-Key": "call-1"})
        # Then Connect's answer comes back exactly as Connect gave it, for amazon-chime-sdk-js
        connect_stub.assert_no_pending_responses()
        assert response.status_code == 201
        assert response.json_body == WEBRTC_ANSWER
        assert "Idempotent-Replayed" not in response.headers

    def test_the_default_flow_and_no_client_token_without_a_key(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response(
            "start_web_rtc_contact",
            WEBRTC_ANSWER,
            {"InstanceId": INSTANCE_ID, "ContactFlowId": SUPPORT_FLOW, "ParticipantDetails": {"DisplayName": "Ana"}},
        )
        assert post(http, "/webrtc-contacts", {"display_name": "Ana"}).status_code == 201
        connect_stub.assert_no_pending_responses()

    def test_call_started_is_published_without_any_token(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        body = {"display_name": "Ana", "allowed_capabilities": {"customer": {"video": "SEND"}}}
        post(http, "/webrtc-contacts", body)
        # Then exactly one call.started, valid against its schema (and the OpenAPI webhook), with no token
        [event] = published
        assert event.type == "call.started"
        assert event.data == {
            "contact_id": WEBRTC_ANSWER["ContactId"],
            "participant_id": WEBRTC_ANSWER["ParticipantId"],
            "display_name": "Ana",
            "instance_id": INSTANCE_ID,
            "allowed_capabilities": {"Customer": {"Video": "SEND"}},
            "flow": "support",
        }
        envelope = json.loads(event.body)
        contract().validate(envelope, contract().component_schema("call.started"))
        load_schema("call.started")  # the file the document copies
        text = event.body.decode("utf-8")
        assert WEBRTC_ANSWER["ParticipantToken"] not in text
        assert WEBRTC_ANSWER["ConnectionData"]["Attendee"]["JoinToken"] not in text
        assert "token" not in text.lower()
        assert event.webhook_id.startswith("msg_")
        assert "." not in event.webhook_id

    def test_the_event_id_is_the_same_for_the_same_contact(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        post(http, "/webrtc-contacts", {"display_name": "Ana"})
        post(http, "/webrtc-contacts", {"display_name": "Ana"})
        assert len({event.webhook_id for event in published}) == 1

    def test_issue7_item4_an_announcement_nothing_could_keep_is_never_swallowed(
        self, http: CheckedHTTP, connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch, relay_output: Any
    ) -> None:
        # Given a relay that could keep the event neither in the retry queue nor in S3
        broken = RecordingRelay(
            {"publish": RuntimeError("destinations file invalid"), "hold": RuntimeError("retry queue and S3 down")}
        )
        monkeypatch.setattr(dependencies, "relay", cache(lambda: broken))
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        response = post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-9"})
        # Then the caller is told, and may retry with its key
        assert response.status_code == 503
        assert response.json_body["error"] == "EventNotKept"
        out = relay_output()
        assert "event not kept" in out
        assert "retry queue and S3 down" in out

    def test_the_call_is_announced_on_the_relay_dependencies_makes_with_the_route_s_short_timeout(
        self, http: CheckedHTTP, connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the relay as chalicelib.dependencies makes it (cached like the real getter, so reset() clears it)
        relay = RecordingRelay()
        monkeypatch.setattr(dependencies, "relay", cache(lambda: relay))
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        assert post(http, "/webrtc-contacts", {"display_name": "Ana"}).status_code == 201
        # Then the caller waits for the announcement: destinations get the route's short timeout
        assert [event.type for event in relay.published] == ["call.started"]
        assert relay.timeouts == [ROUTE_DELIVERY_TIMEOUT_SECONDS]


class TestIdempotencyKeys:
    def test_a_replayed_key_says_so_and_announces_the_same_event_again(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        # Given Connect answers the same contact for the same ClientToken, as it does for 7 days
        for _ in range(2):
            connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        first = post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        again = post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        # Then only the replay says it is one, and it announces the call again under the same webhook id
        assert "Idempotent-Replayed" not in first.headers
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json_body == first.json_body
        assert len(published) == 2
        assert published[0].webhook_id == published[1].webhook_id

    def test_the_key_itself_is_never_stored(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "secret-ish-key"})
        item = kept_item(ledger_key("webrtc", "anonymous", "secret-ish-key"))
        assert item is not None
        assert item["contact_id"]["S"] == WEBRTC_ANSWER["ContactId"]
        assert item["fingerprint"]["S"] == fingerprint({"display_name": "Ana"})
        assert "secret-ish-key" not in json.dumps(item)

    def test_a_chat_replay_says_so(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        for _ in range(2):
            connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        first = post(http, "/chat-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        again = post(http, "/chat-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        assert "Idempotent-Replayed" not in first.headers
        assert again.headers["Idempotent-Replayed"] == "true"

    def test_the_same_key_on_the_other_route_is_not_a_replay(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        chat = post(http, "/chat-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k-1"})
        assert "Idempotent-Replayed" not in chat.headers


class TestClientTokenLedger:
    def ledger(self) -> ClientTokenLedger:
        return ClientTokenLedger(clients.dynamodb(), STREAMS_TABLE)

    def begin(self, ledger: ClientTokenLedger, body: str = "b") -> Any:
        return ledger.begin(route="webrtc", principal="iam:ana", key="k", request_fingerprint=body)

    def test_first_use_then_replay(self, aws: None) -> None:
        ledger = self.ledger()
        use = self.begin(ledger)
        assert use.replay is False
        ledger.complete(use, contact_id="c-1")
        assert self.begin(ledger).replay is True

    def test_an_expired_record_counts_as_unused(self, aws: None) -> None:
        clients.dynamodb().put_item(
            TableName=STREAMS_TABLE,
            Item={
                "initial_contact_id": {"S": ledger_key("webrtc", "iam:ana", "k")},
                "state": {"S": "done"},
                "fingerprint": {"S": "another body"},
                "locked_until": {"N": "0"},
                "revision": {"S": "r"},
                "expires_at": {"N": str(1 + TOKEN_VALIDITY_SECONDS)},
            },
        )
        assert self.begin(self.ledger()).replay is False

    def test_a_table_failure_is_a_storage_error_not_a_guess(self, aws: None) -> None:
        ledger = ClientTokenLedger(clients.dynamodb(), "no-such-table")
        with pytest.raises(StorageError):
            self.begin(ledger)


# ---------------------------------------------------------------------------------------------------------------
# Validation: every limit one past its edge, every problem listed, Connect never called


def attributes_of_bytes(total: int, char: str = "é") -> dict[str, str]:
    """Attributes whose key "k" and value add up to ``total`` UTF-8 bytes, mostly in two-byte characters."""
    value_bytes = total - 1
    return {"k": char * (value_bytes // 2) + "a" * (value_bytes % 2)}


WEBRTC_INVALID = [
    pytest.param({"display_name": None}, "display_name", id="display_name missing"),
    pytest.param({"display_name": ""}, "display_name", id="display_name empty"),
    pytest.param({"display_name": "   "}, "display_name", id="display_name blank"),
    pytest.param({"display_name": "x" * 257}, "display_name", id="display_name 257"),
    pytest.param({"display_name": 7}, "display_name", id="display_name not a string"),
    pytest.param({"attributes": attributes_of_bytes(32_769)}, "attributes", id="attributes 32769 bytes"),
    pytest.param({"attributes": {"k": "é" * 32_768}}, "attributes", id="attributes 32768 chars of é"),
    pytest.param({"attributes": {"k": "€" * 11_000}}, "attributes", id="attributes 3-byte chars"),
    pytest.param({"attributes": {"bad key": "v"}}, "attributes.bad key", id="attribute key with a space"),
    pytest.param({"attributes": {"clé": "v"}}, "attributes.clé", id="attribute key not ASCII"),
    pytest.param({"attributes": {"": "v"}}, "attributes.", id="attribute key empty"),
    pytest.param({"attributes": {"k": 1}}, "attributes.k", id="attribute value not a string"),
    pytest.param({"attributes": ["k"]}, "attributes", id="attributes not an object"),
    pytest.param(
        {"allowed_capabilities": {"customer": {"video": "RECEIVE"}}},
        "allowed_capabilities.customer.video",
        id="capability not SEND",
    ),
    pytest.param(
        {"allowed_capabilities": {"customer": {"audio": "SEND"}}},
        "allowed_capabilities.customer.audio",
        id="capability unknown",
    ),
    pytest.param(
        {"allowed_capabilities": {"supervisor": {}}}, "allowed_capabilities.supervisor", id="participant unknown"
    ),
    pytest.param({"allowed_capabilities": "all"}, "allowed_capabilities", id="capabilities not an object"),
    pytest.param(
        {"references": {"r": {"type": "STRING", "value": "é" * 2048}}}, "references", id="references 4097 bytes"
    ),
    pytest.param(
        {"references": {"r" * 2049: {"type": "STRING", "value": "v" * 2048}}}, "references", id="names count too"
    ),
    pytest.param(
        {"references": {"r": {"type": "ATTACHMENT", "value": "x"}}}, "references.r.type", id="reference ATTACHMENT"
    ),
    pytest.param({"references": {"r": {"type": "PHONE", "value": "1"}}}, "references.r.type", id="reference type"),
    pytest.param({"references": {"r": {"type": "URL", "value": "ftp://x"}}}, "references.r.value", id="bad URL"),
    pytest.param({"references": {"r": {"type": "NUMBER", "value": "12a"}}}, "references.r.value", id="bad NUMBER"),
    pytest.param(
        {"references": {"r": {"type": "DATE", "value": "2024-05-01"}}}, "references.r.value", id="DATE not epoch"
    ),
    pytest.param({"references": {"r": {"type": "EMAIL", "value": "nope"}}}, "references.r.value", id="bad EMAIL"),
    pytest.param({"references": {"r": {"type": "STRING"}}}, "references.r.value", id="reference value missing"),
    pytest.param(
        {"references": {"r": {"type": "STRING", "value": "v", "Status": "APPROVED"}}},
        "references.r",
        id="reference unknown key",
    ),
    pytest.param({"description": "d" * 4097}, "description", id="description 4097"),
    pytest.param({"related_contact_id": ""}, "related_contact_id", id="related_contact_id empty"),
    pytest.param({"related_contact_id": "c" * 257}, "related_contact_id", id="related_contact_id 257"),
    pytest.param({"flow": "billing"}, "flow", id="flow not configured"),
    pytest.param({"flow": SUPPORT_FLOW}, "flow", id="flow id instead of name"),
    pytest.param({"instance_id": INSTANCE_ID}, "instance_id", id="instance from the client"),
    pytest.param({"contact_flow_id": SUPPORT_FLOW}, "contact_flow_id", id="flow id from the client"),
    pytest.param({"segment_attributes": {}}, "segment_attributes", id="unknown field"),
]


class TestWebRTCValidation:
    @pytest.mark.parametrize(("change", "field"), WEBRTC_INVALID)
    def test_each_limit_one_past_its_edge(
        self, http: CheckedHTTP, connect_stub: Stubber, change: dict[str, Any], field: str
    ) -> None:
        body = {key: value for key, value in {"display_name": "Ana", **change}.items() if value is not None}
        # When the body is posted, Then the field is named and Connect is never called
        assert field in problems(post(http, "/webrtc-contacts", body))
        connect_stub.assert_no_pending_responses()

    def test_each_limit_at_its_edge_is_accepted(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        body = {
            "display_name": "é" * 256,
            "attributes": attributes_of_bytes(32_768),
            "references": {"r": {"type": "STRING", "value": "é" * 2047 + "a"}},
            "description": "d" * 4096,
            "related_contact_id": "c" * 256,
        }
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        response = post(http, "/webrtc-contacts", body, {"Idempotency-Key": "k" * 500})
        assert response.status_code == 201
        contract().validate(body, contract().component_schema("WebRTCContactRequest"))

    def test_an_idempotency_key_past_500_is_refused(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        response = post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Idempotency-Key": "k" * 501})
        assert "Idempotency-Key" in problems(response)

    def test_several_invalid_fields_are_all_listed(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        body = {
            "display_name": "",
            "attributes": {"bad key": "v"},
            "allowed_capabilities": {"customer": {"video": "RECEIVE"}},
            "references": {"r": {"type": "ATTACHMENT", "value": "x"}},
            "description": "d" * 4097,
            "related_contact_id": "",
            "flow": "billing",
            "instance_id": "mine",
        }
        response = post(http, "/webrtc-contacts", body, {"Idempotency-Key": "k" * 501})
        assert set(problems(response)) == {
            "display_name",
            "attributes.bad key",
            "allowed_capabilities.customer.video",
            "references.r.type",
            "description",
            "related_contact_id",
            "flow",
            "instance_id",
            "Idempotency-Key",
        }
        assert response.json_body["error"] == "ValidationError"

    @pytest.mark.parametrize(
        ("raw", "problem"),
        [("", "a JSON object is required"), ("{nope", "not valid JSON"), ("[1]", "must be a JSON object")],
    )
    def test_a_body_that_is_not_a_json_object(
        self, http: CheckedHTTP, connect_stub: Stubber, raw: str, problem: str
    ) -> None:
        response = http.post("/webrtc-contacts", body=raw, headers=JSON)
        assert problem in problems(response)["body"]


CHAT_INVALID = [
    pytest.param({"display_name": "x" * 257}, "display_name", id="display_name 257"),
    pytest.param({"attributes": attributes_of_bytes(32_769)}, "attributes", id="attributes 32769 bytes"),
    pytest.param({"attributes": {"k": "é" * 32_768}}, "attributes", id="attributes 32768 chars of é"),
    pytest.param({"attributes": {"a.b": "v"}}, "attributes.a.b", id="attribute key with a dot"),
    pytest.param(
        {"initial_message": {"content_type": "text/plain", "content": "m" * 1025}},
        "initial_message.content",
        id="initial message 1025",
    ),
    pytest.param(
        {"initial_message": {"content_type": "text/plain", "content": ""}},
        "initial_message.content",
        id="initial message empty",
    ),
    pytest.param(
        {"initial_message": {"content_type": "application/json", "content": "{}"}},
        "initial_message.content_type",
        id="initial message type",
    ),
    pytest.param(
        {"initial_message": {"content_type": "text/plain", "content": "hi", "Role": "AGENT"}},
        "initial_message",
        id="initial message unknown key",
    ),
    pytest.param(
        {
            "initial_message": {"content_type": "text/markdown", "content": "**hi**"},
            "supported_content_types": ["text/plain"],
        },
        "initial_message.content_type",
        id="initial message type not supported",
    ),
    pytest.param({"initial_message": "hi"}, "initial_message", id="initial message not an object"),
    pytest.param({"supported_content_types": ["text/markdown"]}, "supported_content_types", id="no text/plain"),
    pytest.param(
        {"supported_content_types": ["text/plain", "text/html"]}, "supported_content_types", id="content type unknown"
    ),
    pytest.param(
        {"supported_content_types": ["text/plain", "text/plain"]}, "supported_content_types", id="content type twice"
    ),
    pytest.param({"supported_content_types": "text/plain"}, "supported_content_types", id="types not a list"),
    pytest.param({"chat_duration_minutes": 59}, "chat_duration_minutes", id="duration 59"),
    pytest.param({"chat_duration_minutes": 10_081}, "chat_duration_minutes", id="duration 10081"),
    pytest.param({"chat_duration_minutes": True}, "chat_duration_minutes", id="duration a boolean"),
    pytest.param({"chat_duration_minutes": 60.5}, "chat_duration_minutes", id="duration a fraction"),
    pytest.param({"chat_duration_minutes": "60"}, "chat_duration_minutes", id="duration a string"),
    pytest.param(
        {"persistent_chat": {"rehydration_type": "ENTIRE_PAST_SESSION"}},
        "persistent_chat.source_contact_id",
        id="persistent chat without source",
    ),
    pytest.param(
        {"persistent_chat": {"source_contact_id": "c" * 257, "rehydration_type": "FROM_SEGMENT"}},
        "persistent_chat.source_contact_id",
        id="persistent source 257",
    ),
    pytest.param(
        {"persistent_chat": {"source_contact_id": "c-1", "rehydration_type": "ALL"}},
        "persistent_chat.rehydration_type",
        id="rehydration type",
    ),
    pytest.param(
        {
            "persistent_chat": {"source_contact_id": "c-1", "rehydration_type": "FROM_SEGMENT"},
            "related_contact_id": "c-2",
        },
        "related_contact_id",
        id="persistent and related together",
    ),
    pytest.param({"related_contact_id": "c" * 257}, "related_contact_id", id="related_contact_id 257"),
    pytest.param({"flow": "billing"}, "flow", id="flow not configured"),
    pytest.param(
        {"chat_streaming_configuration": {"streaming_endpoint_arn": "arn:aws:sns:us-east-1:999999999999:theirs"}},
        "chat_streaming_configuration",
        id="a stream to somewhere else",
    ),
    pytest.param({"instance_id": INSTANCE_ID}, "instance_id", id="instance from the client"),
    pytest.param({"description": "d"}, "description", id="a WebRTC-only field"),
]


class TestChatValidation:
    @pytest.mark.parametrize(("change", "field"), CHAT_INVALID)
    def test_each_limit_one_past_its_edge(
        self, http: CheckedHTTP, connect_stub: Stubber, change: dict[str, Any], field: str
    ) -> None:
        assert field in problems(post(http, "/chat-contacts", {"display_name": "Ana", **change}))
        connect_stub.assert_no_pending_responses()

    def test_several_invalid_fields_are_all_listed(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        body = {
            "attributes": {"k": "é" * 32_768},
            "initial_message": {"content_type": "text/plain", "content": ""},
            "supported_content_types": ["text/markdown"],
            "chat_duration_minutes": 59,
            "persistent_chat": {"source_contact_id": "", "rehydration_type": "ALL"},
        }
        assert set(problems(post(http, "/chat-contacts", body))) == {
            "display_name",
            "attributes",
            "initial_message.content",
            "supported_content_types",
            "chat_duration_minutes",
            "persistent_chat.source_contact_id",
            "persistent_chat.rehydration_type",
        }

    def test_each_limit_at_its_edge_is_accepted(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        body = {
            "display_name": "x" * 256,
            # The relay's own attribute (the flow's sign that the chat streams already) shares Connect's limit.
            "attributes": attributes_of_bytes(32_768 - len(STREAMING_AT_START_ATTRIBUTE) - len(STREAMING_AT_START)),
            "initial_message": {"content_type": "text/plain", "content": "m" * 1024},
            "chat_duration_minutes": 10_080,
            "related_contact_id": "c" * 256,
        }
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        assert post(http, "/chat-contacts", body).status_code == 201
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        assert post(http, "/chat-contacts", {**body, "chat_duration_minutes": 60}).status_code == 201
        contract().validate(body, contract().component_schema("ChatContactRequest"))


# ---------------------------------------------------------------------------------------------------------------
# POST /chat-contacts


def chat_request(**extra: Any) -> dict[str, Any]:
    attributes = {**extra.pop("Attributes", {}), STREAMING_AT_START_ATTRIBUTE: STREAMING_AT_START}
    return {
        "InstanceId": INSTANCE_ID,
        "ContactFlowId": SUPPORT_FLOW,
        "ParticipantDetails": {"DisplayName": "Ana"},
        "Attributes": attributes,
        "ChatStreamingConfiguration": {"StreamingEndpointArn": TOPIC_ARN},
        **extra,
    }


def chat_initiated(contact_id: str) -> dict[str, Any]:
    """The EventBridge INITIATED event Connect sends for a chat, with its contact id."""
    event: dict[str, Any] = copy.deepcopy(load_event("contact/chat-initiated.json"))
    original = event["detail"]["contactId"]
    event["detail"]["contactId"] = contact_id
    event["resources"] = [arn.replace(original, contact_id) for arn in event["resources"]]
    return event


class TestChatContact:
    def test_a_full_request_streams_from_the_first_item(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        body = {
            "display_name": "Ana",
            "attributes": {"channel": "slack"},
            "initial_message": {"content_type": "text/markdown", "content": "**Hello**"},
            "supported_content_types": ["text/plain", "text/markdown", "application/json"],
            "chat_duration_minutes": 120,
            "persistent_chat": {
                "source_contact_id": "c0ffee00-0000-4000-8000-00000000c000",
                "rehydration_type": "ENTIRE_PAST_SESSION",
            },
            "flow": "sales",
        }
        connect_stub.add_response(
            "start_chat_contact",
            CHAT_PERSISTENT_ANSWER,
            chat_request(
                ContactFlowId=SALES_FLOW,
                Attributes={"channel": "slack"},
                InitialMessage={"ContentType": "text/markdown", "Content": "**Hello**"},
                SupportedMessagingContentTypes=["text/plain", "text/markdown", "application/json"],
                ChatDurationInMinutes=120,
                PersistentChat={
                    "SourceContactId": "c0ffee00-0000-4000-8000-00000000c000",
                    "RehydrationType": "ENTIRE_PAST_SESSION",
                },
                ClientToken=scoped_client_token("chat", "anonymous", "chat-1"),
            ),
        )
        response = post(http, "/chat-contacts", body, {"Idempotency-Key": "chat-1"})
        connect_stub.assert_no_pending_responses()
        assert response.status_code == 201
        # Then the front end gets what it needs to connect, and not the relay's StreamingId
        assert response.json_body == {
            "ContactId": CHAT_PERSISTENT_ANSWER["ContactId"],
            "ParticipantId": CHAT_PERSISTENT_ANSWER["ParticipantId"],
            "ParticipantToken": CHAT_PERSISTENT_ANSWER["ParticipantToken"],
            "ContinuedFromContactId": CHAT_PERSISTENT_ANSWER["ContinuedFromContactId"],
        }

    def test_the_streaming_id_is_kept_and_the_contact_event_does_not_call_connect_again(
        self, client: Any, http: CheckedHTTP, connect_stub: Stubber
    ) -> None:
        # Given a chat the relay started with its streaming configuration
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER, chat_request())
        post(http, "/chat-contacts", {"display_name": "Ana"})
        contact_id = CHAT_ANSWER["ContactId"]
        item = kept_item(contact_id)
        assert item is not None
        assert item["streaming_id"]["S"] == CHAT_ANSWER["StreamingId"]
        assert item["started_by"]["S"] == "chat_start"
        assert item["topic_arn"]["S"] == TOPIC_ARN
        # When Connect's INITIATED event for that chat arrives
        client.lambda_.invoke("on_contact_event", chat_initiated(contact_id))
        # Then the relay recognises it and Connect is not called again (the stub holds no answer to give)
        connect_stub.assert_no_pending_responses()

    def test_a_chat_without_a_streaming_id_still_starts(
        self, http: CheckedHTTP, connect_stub: Stubber, relay_output: Any
    ) -> None:
        answer = {k: v for k, v in CHAT_ANSWER.items() if k != "StreamingId"}
        connect_stub.add_response("start_chat_contact", answer)
        assert post(http, "/chat-contacts", {"display_name": "Ana"}).status_code == 201
        assert kept_item(CHAT_ANSWER["ContactId"]) is None
        assert "without a StreamingId" in relay_output()

    def test_connection_details_connect_returns_are_passed_on(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        answer = {
            **CHAT_ANSWER,
            "ConnectionCredentials": {"ConnectionToken": "fake-connection-token", "Expiry": "2024-05-01T13:00:00Z"},
            "Websocket": {"Url": "wss://example.invalid/ws", "ConnectionExpiry": "2024-05-01T13:00:00Z"},
        }
        connect_stub.add_response("start_chat_contact", answer)
        body = post(http, "/chat-contacts", {"display_name": "Ana"}).json_body
        assert body["ConnectionCredentials"] == answer["ConnectionCredentials"]
        assert body["Websocket"] == answer["Websocket"]
        assert "StreamingId" not in body

    def test_a_recording_failure_never_fails_the_started_chat(
        self, http: CheckedHTTP, connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch, relay_output: Any
    ) -> None:
        class TableDown:
            def record(self, **kept: str) -> None:
                raise RuntimeError("table down")

        monkeypatch.setattr(dependencies, "streaming_starter", cache(TableDown))
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        response = post(http, "/chat-contacts", {"display_name": "Ana"})
        assert response.status_code == 201
        assert "streaming id not recorded" in relay_output()


# ---------------------------------------------------------------------------------------------------------------
# Connect's errors


CONNECT_ERRORS = [
    ("ResourceNotFoundException", 404, "flow not found", 404),
    ("InvalidRequestException", 400, "bad request", 400),
    ("InvalidParameterException", 400, "bad parameter", 400),
    ("LimitExceededException", 429, "Concurrent active chats exceeded", 429),
    ("ThrottlingException", 429, "Rate exceeded", 429),
    ("TooManyRequestsException", 429, "Too many", 429),
    ("InternalServiceException", 500, "oops", 502),
    ("AccessDeniedException", 403, "not allowed", 502),
]


class TestConnectErrors:
    @pytest.mark.parametrize(("code", "http_status", "message", "status"), CONNECT_ERRORS)
    @pytest.mark.parametrize(
        ("path", "operation"), [("/webrtc-contacts", "start_web_rtc_contact"), ("/chat-contacts", "start_chat_contact")]
    )
    def test_each_maps_to_a_clear_answer(
        self,
        http: CheckedHTTP,
        connect_stub: Stubber,
        published: list[RelayEvent],
        path: str,
        operation: str,
        code: str,
        http_status: int,
        message: str,
        status: int,
    ) -> None:
        connect_stub.add_client_error(
            operation,
            service_error_code=code,
            service_message=message,
            http_status_code=http_status,
            response_meta={"HTTPHeaders": {"retry-after": "7"}},
        )
        response = post(http, path, {"display_name": "Ana"}, {"Origin": ORIGIN})
        assert response.status_code == status
        assert response.json_body["error"] == ("ConnectRefused" if code == "AccessDeniedException" else code)
        assert message not in response.body.decode()
        if status == 429:
            assert response.headers["Retry-After"] == "7"
        # Browsers can read the error too
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert published == []
        assert kept_item(CHAT_ANSWER["ContactId"]) is None

    def test_a_streaming_limit_is_a_conflict(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        connect_stub.add_client_error(
            "start_chat_contact",
            service_error_code="LimitExceededException",
            service_message="The contact already has 2 streaming endpoints",
            http_status_code=429,
        )
        assert post(http, "/chat-contacts", {"display_name": "Ana"}).status_code == 409

    def test_an_answer_without_a_contact_id_is_a_bad_gateway(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", {"ParticipantId": "p"})
        response = post(http, "/webrtc-contacts", {"display_name": "Ana"})
        assert response.status_code == 502
        assert response.json_body["error"] == "ConnectUnavailable"
        assert published == []

    @pytest.mark.parametrize("path", ["/webrtc-contacts", "/chat-contacts"])
    def test_a_stage_without_contact_settings_is_misconfigured_not_a_bare_500(
        self, http: CheckedHTTP, connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch, path: str
    ) -> None:
        # The test client re-applies the stage's environment: the settings the services are built from are replaced
        monkeypatch.setattr(
            dependencies, "get_settings", cache(lambda: dataclasses.replace(get_settings(), connect_instance_id=None))
        )
        response = post(http, path, {"display_name": "Ana"})
        assert response.status_code == 500
        assert response.json_body["error"] == "RelayMisconfigured"


# ---------------------------------------------------------------------------------------------------------------
# CORS


class TestCORS:
    def test_a_listed_origin_is_echoed(
        self, http: CheckedHTTP, connect_stub: Stubber, published: list[RelayEvent]
    ) -> None:
        connect_stub.add_response("start_web_rtc_contact", WEBRTC_ANSWER)
        response = post(http, "/webrtc-contacts", {"display_name": "Ana"}, {"Origin": ORIGIN})
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Vary"] == "Origin"
        assert "Idempotent-Replayed" in response.headers["Access-Control-Expose-Headers"]

    def test_another_origin_gets_no_cors_headers(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        connect_stub.add_response("start_chat_contact", CHAT_ANSWER)
        response = post(http, "/chat-contacts", {"display_name": "Ana"}, {"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in response.headers
        assert response.headers["Vary"] == "Origin"

    def test_validation_errors_carry_cors_headers(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        response = post(http, "/chat-contacts", {}, {"Origin": ORIGIN})
        assert response.status_code == 400
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN

    @pytest.mark.parametrize("path", ["/webrtc-contacts", "/chat-contacts"])
    def test_the_preflight_of_a_listed_origin(self, http: CheckedHTTP, path: str) -> None:
        response = http.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,idempotency-key,x-api-key",
            },
        )
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"content-type", "idempotency-key", "x-api-key", "authorization"} <= allowed
        assert response.headers["Vary"] == "Origin"

    @pytest.mark.parametrize("path", ["/webrtc-contacts", "/chat-contacts"])
    def test_the_preflight_of_another_origin_is_refused(self, http: CheckedHTTP, path: str) -> None:
        response = http.options(path, headers={"Origin": "http://localhost:8001"})
        assert response.status_code == 403
        assert "Access-Control-Allow-Origin" not in response.headers

    @pytest.mark.parametrize("path", ["/webrtc-contacts", "/chat-contacts"])
    def test_preflights_need_no_authorisation_and_posts_do(self, path: str) -> None:
        assert app.routes[path]["OPTIONS"].authorizer is None
        assert not app.routes[path]["OPTIONS"].api_key_required
        assert app.routes[path]["POST"].authorizer is not None

    def test_several_origins(self, http: CheckedHTTP, monkeypatch: pytest.MonkeyPatch) -> None:
        origins = ("https://app.example.com", "http://localhost:8000")
        monkeypatch.setattr(
            contacts_api, "get_settings", lambda: dataclasses.replace(get_settings(), cors_allowed_origins=origins)
        )
        for origin in origins:
            response = http.options("/webrtc-contacts", headers={"Origin": origin})
            assert response.headers["Access-Control-Allow-Origin"] == origin
        assert http.options("/webrtc-contacts", headers={"Origin": "https://app.example.com.evil"}).status_code == 403


class TestCORSSettings:
    def env(self, origins: str) -> dict[str, str]:
        return {**dev_stage_environment(), "AWS_REGION": REGION, "CORS_ALLOWED_ORIGINS": origins}

    def test_a_comma_separated_list(self) -> None:
        settings = load_settings(self.env(" https://App.Example.com , http://localhost:8000,https://a.b:8443 "))
        assert settings.cors_allowed_origins == ("https://app.example.com", "http://localhost:8000", "https://a.b:8443")

    def test_none_is_an_empty_tuple(self) -> None:
        assert load_settings(self.env("")).cors_allowed_origins == ()

    @pytest.mark.parametrize(
        "origin", ["*", "null", "https://app.example.com/", "https://app.example.com/path", "ftp://x.example", "app.io"]
    )
    def test_anything_but_an_origin_is_refused(self, origin: str) -> None:
        with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
            load_settings(self.env(f"http://localhost:8000,{origin}"))


# ---------------------------------------------------------------------------------------------------------------
# Untrusted input and deployment


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELDS = sorted(
    {"display_name", "attributes", "allowed_capabilities", "references", "description", "related_contact_id"}
    | {"flow", "initial_message", "supported_content_types", "chat_duration_minutes", "persistent_chat"}
)


class TestUntrustedBodies:
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    @given(
        body=st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON_VALUES, max_size=6),
        key=st.none() | st.text(max_size=600),
    )
    def test_a_body_is_either_a_valid_request_or_every_problem_listed(
        self, body: dict[str, Any], key: str | None
    ) -> None:
        configured = load_settings({**dev_stage_environment(), "AWS_REGION": REGION})
        for build in (webrtc_start, chat_start):
            outcome: ContactStart | RequestValidationError
            try:
                outcome = build(body, key, configured)
            except RequestValidationError as exc:
                outcome = exc
            if isinstance(outcome, RequestValidationError):
                assert outcome.problems
                continue
            start = outcome
            assert start.request["InstanceId"] == INSTANCE_ID
            assert start.request["ContactFlowId"] in configured.contact_flows.values()
            attributes = start.request.get("Attributes", {})
            assert (
                sum(
                    len(k.encode("utf-8", "surrogatepass")) + len(v.encode("utf-8", "surrogatepass"))
                    for k, v in attributes.items()
                )
                <= 32_768
            )


class TestPolicies:
    @pytest.mark.parametrize("stage", ["dev", "prod"])
    def test_the_api_may_start_contacts_only_on_the_stage_s_flows(self, stage: str) -> None:
        config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
        variables = config["stages"][stage]["environment_variables"]
        instance = variables["CONNECT_INSTANCE_ID"]
        flows = json.loads(variables["CONTACT_FLOWS"]).values()
        policy = json.loads(Path(PROJECT / ".chalice" / f"policy-{stage}-api.json").read_text())
        statements = policy["Statement"]
        assert all("*" not in action for s in statements for action in s["Action"])
        [start] = [s for s in statements if "connect:StartChatContact" in s["Action"]]
        assert sorted(start["Action"]) == ["connect:StartChatContact", "connect:StartWebRTCContact"]
        base = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{instance}"
        assert set(start["Resource"]) == {f"{base}/contact-flow/{flow}" for flow in flows} | {f"{base}/contact/*"}
