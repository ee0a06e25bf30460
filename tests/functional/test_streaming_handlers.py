"""The streaming starter end to end through chalice.test.Client: Connect stubbed, DynamoDB emulated by moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import clients
from chalicelib.errors import SettingsError
from chalicelib.streaming import client_token_for
from tests.conftest import (
    INSTANCE_ID,
    PROJECT,
    QUARANTINE_BUCKET,
    STREAMS_TABLE,
    TOPIC_ARN,
    emitted_metrics,
    load_event,
)

FIRST = "a1b2c3d4-0000-4000-8000-000000000001"


@pytest.fixture
def client(aws: None) -> Any:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


def expect_start(stub: Stubber, contact_id: str = FIRST, streaming_id: str = "stream-1") -> None:
    stub.add_response(
        "start_contact_streaming",
        {"StreamingId": streaming_id},
        {
            "InstanceId": INSTANCE_ID,
            "ContactId": contact_id,
            "ChatStreamingConfiguration": {"StreamingEndpointArn": TOPIC_ARN},
            "ClientToken": client_token_for(contact_id, TOPIC_ARN),
        },
    )


def kept_stream(contact_id: str) -> dict[str, Any] | None:
    """The session's item while it holds a stream on (not a claim, not a stopped stream)."""
    item = clients.dynamodb().get_item(TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": contact_id}})
    kept = item.get("Item")
    return kept if kept and "streaming_id" in kept else None


class TestContactEvents:
    def test_a_new_chat_starts_streaming_and_keeps_the_streaming_id(
        self, client: Any, connect_stub: Stubber, relay_output: Any
    ) -> None:
        expect_start(connect_stub)
        client.lambda_.invoke("on_contact_event", load_event("contact/chat-initiated.json"))
        connect_stub.assert_no_pending_responses()
        item = kept_stream(FIRST)
        assert item is not None
        assert item["streaming_id"]["S"] == "stream-1"
        assert item["started_by"]["S"] == "event"
        assert int(item["expires_at"]["N"]) > int(item["started_at"]["N"])
        assert emitted_metrics(relay_output()).get("StreamingStarted") == 1

    def test_a_duplicate_delivery_calls_connect_once(
        self, client: Any, connect_stub: Stubber, relay_output: Any
    ) -> None:
        expect_start(connect_stub)
        event = load_event("contact/chat-initiated.json")
        client.lambda_.invoke("on_contact_event", event)
        client.lambda_.invoke("on_contact_event", event)
        connect_stub.assert_no_pending_responses()
        metrics = emitted_metrics(relay_output())
        assert metrics.get("StreamingStarted") == 1
        assert metrics.get("StreamingSkipped/AlreadyStreaming") == 1

    @pytest.mark.parametrize(
        ("fixture", "reason"),
        [
            ("contact/chat-transfer.json", "FollowOnSegment"),
            ("contact/chat-queue-transfer.json", "FollowOnSegment"),
            ("contact/voice-initiated.json", "NotChat"),
            ("contact/chat-contact-data-updated.json", "NotInitiated"),
            ("contact/chat-initiated-other-instance.json", "InstanceNotAllowed"),
        ],
    )
    def test_other_events_are_skipped_and_counted(
        self, client: Any, connect_stub: Stubber, relay_output: Any, fixture: str, reason: str
    ) -> None:
        client.lambda_.invoke("on_contact_event", load_event(fixture))
        connect_stub.assert_no_pending_responses()
        assert emitted_metrics(relay_output()) == {f"StreamingSkipped/{reason}": 1}

    @pytest.mark.parametrize("code", ["ResourceNotFoundException", "InvalidRequestException"])
    def test_an_ended_chat_is_logged_and_counted_not_retried(
        self, client: Any, connect_stub: Stubber, relay_output: Any, code: str
    ) -> None:
        connect_stub.add_client_error("start_contact_streaming", service_error_code=code, service_message="chat ended")
        response = client.lambda_.invoke("on_contact_event", load_event("contact/chat-initiated.json"))
        assert response.payload is None
        out = relay_output()
        assert "chat ended" in out
        assert FIRST in out
        assert emitted_metrics(out) == {f"StreamingStartFailed/{code}": 1}
        assert kept_stream(FIRST) is None

    @pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 429), ("InternalServiceException", 500)])
    def test_throttling_and_connect_failures_are_raised_for_lambda_to_retry(
        self, client: Any, connect_stub: Stubber, relay_output: Any, code: str, status: int
    ) -> None:
        connect_stub.add_client_error("start_contact_streaming", service_error_code=code, http_status_code=status)
        with pytest.raises(Exception, match=code):
            client.lambda_.invoke("on_contact_event", load_event("contact/chat-initiated.json"))
        assert emitted_metrics(relay_output()) == {f"StreamingStartFailed/{code}": 1}

    @pytest.mark.parametrize(
        "mutate",
        [
            lambda e: e["detail"].pop("contactId"),
            lambda e: e["detail"].update(instanceArn="not-an-arn", contactId="c-1") or e.update(resources=[]),
            lambda e: e.update(detail=["not", "an", "object"]),
        ],
    )
    def test_a_malformed_event_is_kept_with_its_reason_not_dropped(
        self, client: Any, connect_stub: Stubber, relay_output: Any, mutate: Any
    ) -> None:
        event = load_event("contact/chat-initiated.json")
        mutate(event)
        assert client.lambda_.invoke("on_contact_event", event).payload is None
        s3 = clients.s3()
        listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix="quarantine/invalid/contact-events/")
        (entry,) = listing["Contents"]
        kept = json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=entry["Key"])["Body"].read())
        assert kept["record"] == event
        assert kept["reason"]
        assert event["id"] in entry["Key"]
        output = relay_output()
        assert emitted_metrics(output) == {"StreamingSkipped/Malformed": 1}
        assert event["id"] in output

    def test_every_log_line_of_a_contact_carries_its_ids(
        self, client: Any, connect_stub: Stubber, relay_output: Any
    ) -> None:
        expect_start(connect_stub)
        client.lambda_.invoke("on_contact_event", load_event("contact/chat-initiated.json"))
        logs = [line for line in relay_output().splitlines() if '"level"' in line]
        assert logs
        assert all(f'"initial_contact_id":"{FIRST}"' in line for line in logs)

    def test_invalid_settings_fail_the_invocation_with_one_clear_message(
        self, aws: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Invoked as Lambda would, without the test client (which re-applies the stage's configuration).
        monkeypatch.setenv("STREAMING_TOPIC_ARN", "")
        with pytest.raises(SettingsError, match="STREAMING_TOPIC_ARN is not set"):
            app.handler_map["on_contact_event"](load_event("contact/chat-initiated.json"), None)


class TestFlowFunction:
    def test_the_flow_starts_streaming_and_reads_strings(self, client: Any, flow_connect_stub: Stubber) -> None:
        expect_start(flow_connect_stub)
        answer = client.lambda_.invoke("start_streaming_from_flow", load_event("flow-invocation-chat.json")).payload
        assert answer == {"streaming": "started", "streamingId": "stream-1", "alreadyStreaming": "false"}
        assert all(isinstance(v, str) for v in answer.values())
        assert kept_stream(FIRST)["started_by"]["S"] == "flow"  # type: ignore[index]

    def test_then_the_contact_event_finds_it_streaming(
        self, client: Any, flow_connect_stub: Stubber, connect_stub: Stubber
    ) -> None:
        expect_start(flow_connect_stub)
        client.lambda_.invoke("start_streaming_from_flow", load_event("flow-invocation-chat.json"))
        client.lambda_.invoke("on_contact_event", load_event("contact/chat-initiated.json"))
        connect_stub.assert_no_pending_responses()

    def test_connect_errors_come_back_as_failed_never_raised(self, client: Any, flow_connect_stub: Stubber) -> None:
        flow_connect_stub.add_client_error(
            "start_contact_streaming", service_error_code="ThrottlingException", http_status_code=429
        )
        answer = client.lambda_.invoke("start_streaming_from_flow", load_event("flow-invocation-chat.json")).payload
        assert answer == {"streaming": "failed", "reason": "ThrottlingException"}

    @pytest.mark.parametrize(
        ("event", "expected"),
        [
            ({}, {"streaming": "failed", "reason": "the event has no Details.ContactData"}),
            ({"Details": "x"}, {"streaming": "failed", "reason": "the event has no Details.ContactData"}),
            (
                {"Details": {"ContactData": ["x"]}},
                {"streaming": "failed", "reason": "the event has no Details.ContactData"},
            ),
            (
                {"Details": {"ContactData": {"Channel": "CHAT"}}},
                {"streaming": "failed", "reason": "ContactId is missing or invalid"},
            ),
            (
                {"Details": {"ContactData": {"ContactId": "client-token#chat#0", "Channel": "CHAT"}}},
                {"streaming": "failed", "reason": "ContactId is missing or invalid"},
            ),
            (
                {"Details": {"ContactData": {"ContactId": "c-1", "Channel": "VOICE"}}},
                {"streaming": "skipped", "reason": "channel VOICE does not stream"},
            ),
            (
                {"Details": {"ContactData": {"ContactId": "c-1", "Channel": "CHAT", "InstanceARN": "nope"}}},
                {"streaming": "failed", "reason": "InstanceARN is missing or invalid"},
            ),
        ],
    )
    def test_malformed_flow_events_answer_failed(
        self, client: Any, event: dict[str, Any], expected: dict[str, str]
    ) -> None:
        assert client.lambda_.invoke("start_streaming_from_flow", event).payload == expected

    def test_unexpected_failures_never_reach_the_flow(
        self, flow_connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Invoked as Lambda would, without the test client (which re-applies the stage's configuration).
        monkeypatch.setenv("STREAMS_TABLE_NAME", "no-such-table")
        answer = app.handler_map["start_streaming_from_flow"](load_event("flow-invocation-chat.json"), None)
        assert answer == {"streaming": "failed", "reason": "unexpected error"}

    def test_invalid_settings_answer_failed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ALLOWED_INSTANCE_IDS", "")
        answer = app.handler_map["start_streaming_from_flow"](load_event("flow-invocation-chat.json"), None)
        assert answer == {"streaming": "failed", "reason": "relay misconfigured"}


class TestRoutes:
    def test_put_starts_streaming(self, client: Any, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        response = client.http.put(f"/contacts/{FIRST}/streaming")
        assert response.status_code == 201
        assert response.json_body == {
            "contact_id": FIRST,
            "instance_id": INSTANCE_ID,
            "streaming_id": "stream-1",
            "topic_arn": TOPIC_ARN,
            "status": "started",
        }

    def test_put_again_answers_already_streaming(self, client: Any, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        client.http.put(f"/contacts/{FIRST}/streaming")
        again = client.http.put(f"/contacts/{FIRST}/streaming")
        assert again.status_code == 200
        assert again.json_body["status"] == "already_streaming"

    def test_put_with_a_client_token(self, client: Any, connect_stub: Stubber) -> None:
        connect_stub.add_response(
            "start_contact_streaming",
            {"StreamingId": "s-9"},
            {"InstanceId": INSTANCE_ID, "ContactId": FIRST, "ChatStreamingConfiguration": ANY, "ClientToken": "mine"},
        )
        body = json.dumps({"instance_id": INSTANCE_ID, "client_token": "mine"})
        response = client.http.put(
            f"/contacts/{FIRST}/streaming", body=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201

    def test_every_invalid_field_is_listed(self, client: Any, connect_stub: Stubber) -> None:
        body = json.dumps({"instance_id": "i" * 101, "client_token": "t" * 501, "extra": 1})
        response = client.http.put(
            f"/contacts/{'c' * 257}/streaming", body=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        fields = {f["field"] for f in response.json_body["fields"]}
        assert fields == {"extra", "instance_id", "contact_id", "client_token"}

    def test_an_instance_the_relay_does_not_serve_is_refused(self, client: Any, connect_stub: Stubber) -> None:
        body = '{"instance_id": "87654321-4321-4321-4321-210987654321"}'
        response = client.http.put(
            f"/contacts/{FIRST}/streaming", body=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json_body["fields"][0]["field"] == "instance_id"

    def test_a_body_that_is_not_json_is_refused(self, client: Any, connect_stub: Stubber) -> None:
        response = client.http.put(
            f"/contacts/{FIRST}/streaming", body="{nope", headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json_body["fields"][0]["field"] == "body"

    @pytest.mark.parametrize(
        ("code", "http", "message", "status"),
        [
            ("ResourceNotFoundException", 404, "contact not found", 404),
            ("LimitExceededException", 429, "The contact already has 2 streaming endpoints", 409),
            ("ThrottlingException", 429, "Rate exceeded", 429),
            ("InternalServiceException", 500, "oops", 502),
            ("InvalidParameterException", 400, "bad", 400),
            ("AccessDeniedException", 403, "no", 502),
        ],
    )
    def test_connect_errors_map_to_clear_answers(
        self, client: Any, connect_stub: Stubber, code: str, http: int, message: str, status: int
    ) -> None:
        connect_stub.add_client_error(
            "start_contact_streaming",
            service_error_code=code,
            service_message=message,
            http_status_code=http,
            response_meta={"HTTPHeaders": {"retry-after": "7"}},
        )
        response = client.http.put(f"/contacts/{FIRST}/streaming")
        assert response.status_code == status
        assert response.json_body["error"] == ("ConnectRefused" if code == "AccessDeniedException" else code)
        assert response.json_body["request_id"]
        assert message not in response.body.decode()
        if status == 429:
            assert response.headers["Retry-After"] == "7"

    def test_delete_stops_with_the_kept_streaming_id(self, client: Any, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        client.http.put(f"/contacts/{FIRST}/streaming")
        connect_stub.add_response(
            "stop_contact_streaming", {}, {"InstanceId": INSTANCE_ID, "ContactId": FIRST, "StreamingId": "stream-1"}
        )
        response = client.http.delete(f"/contacts/{FIRST}/streaming")
        assert response.status_code == 200
        assert response.json_body == {"contact_id": FIRST, "streaming_id": "stream-1", "status": "stopped"}
        assert kept_stream(FIRST) is None

    def test_delete_of_an_unknown_stream_is_404(self, client: Any, connect_stub: Stubber) -> None:
        response = client.http.delete(f"/contacts/{FIRST}/streaming")
        assert response.status_code == 404
        assert response.json_body["error"] == "StreamingNotFound"

    def test_delete_after_the_chat_ended_forgets_the_stream(self, client: Any, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        client.http.put(f"/contacts/{FIRST}/streaming")
        connect_stub.add_client_error("stop_contact_streaming", service_error_code="ResourceNotFoundException")
        assert client.http.delete(f"/contacts/{FIRST}/streaming").status_code == 404
        assert kept_stream(FIRST) is None


class TestUntrustedRouteInput:
    @pytest.mark.parametrize("contact_id", ["client-token%23webrtc%23abc", "a%0A", "x" * 257])
    def test_contact_ids_that_are_not_ids_are_refused(
        self, client: Any, connect_stub: Stubber, contact_id: str
    ) -> None:
        for method in (client.http.put, client.http.delete):
            response = method(f"/contacts/{contact_id}/streaming")
            assert response.status_code == 400
            assert response.json_body["fields"][0]["field"] == "contact_id"

    def test_a_deeply_nested_body_is_a_400_not_a_crash(self, client: Any, connect_stub: Stubber) -> None:
        response = client.http.put(
            f"/contacts/{FIRST}/streaming", body="[" * 200_000, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json_body["fields"][0]["field"] == "body"


@pytest.mark.parametrize(
    ("auth", "pool", "message"),
    [("cognito", "", "COGNITO_USER_POOL_ARN"), ("basic", "", "API_AUTH='basic' is invalid")],
)
def test_route_authorisation_settings_fail_the_deployment_clearly(
    monkeypatch: pytest.MonkeyPatch, auth: str, pool: str, message: str
) -> None:
    from chalicelib.handlers.http import route_auth

    monkeypatch.setenv("API_AUTH", auth)
    monkeypatch.setenv("COGNITO_USER_POOL_ARN", pool)
    with pytest.raises(SettingsError, match=message):
        route_auth()


def test_route_authorisation_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.handlers.http import route_auth

    monkeypatch.setenv("API_AUTH", "api_key")
    assert route_auth() == {"api_key_required": True}
    monkeypatch.setenv("API_AUTH", "cognito")
    monkeypatch.setenv("COGNITO_USER_POOL_ARN", "arn:aws:cognito-idp:us-east-1:111122223333:userpool/us-east-1_x")
    assert type(route_auth()["authorizer"]).__name__ == "CognitoUserPoolAuthorizer"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=15), children, max_size=4),
    max_leaves=15,
)
contact_data = st.fixed_dictionaries(
    {},
    optional={
        "ContactId": json_values | st.just(FIRST),
        "InitialContactId": json_values,
        "Channel": json_values | st.sampled_from(["CHAT", "chat", "VOICE"]),
        "InstanceARN": json_values | st.just(f"arn:aws:connect:us-east-1:111122223333:instance/{INSTANCE_ID}"),
    },
)
flow_events = json_values | st.fixed_dictionaries(
    {"Details": json_values | st.fixed_dictionaries({"ContactData": contact_data})}
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(event=flow_events)
def test_the_flow_function_answers_any_event_with_strings(flow_connect_stub: Stubber, event: Any) -> None:
    # Whatever the flow sends, the answer is a flat map of strings (Connect is stubbed with nothing: a start fails).
    answer = app.handler_map["start_streaming_from_flow"](event, None)
    assert answer["streaming"] in {"started", "skipped", "failed"}
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in answer.items())
