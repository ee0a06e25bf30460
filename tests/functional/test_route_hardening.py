"""Issue 7, items 8 to 13: the routes' answers when streams restart, starts race, callers reuse Idempotency-Keys,
Connect or DynamoDB fail, and bodies are hostile. Through chalice.test.Client, with DynamoDB in moto and the
emulated Connect on 127.0.0.1; every answer is checked against the OpenAPI document."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from botocore.exceptions import ClientError
from chalice.app import Request
from chalice.local import LambdaContext
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import app
from chalicelib import clients, dependencies
from chalicelib.adapters import streams_table
from chalicelib.adapters.client_tokens import LOCK_SECONDS, ClientTokenLedger, fingerprint
from chalicelib.adapters.connect import connect_error
from chalicelib.adapters.streams_table import CLAIM_SECONDS, Session, StreamsTable
from chalicelib.errors import StreamingStartInProgressError
from chalicelib.handlers.http import MAX_PROBLEMS, error_response, principal_of
from chalicelib.streaming import STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE
from scripts.emulated_connect import EmulatedConnect
from tests.conftest import INSTANCE_ARN, INSTANCE_ID, PROJECT, STREAMS_TABLE, TOPIC_ARN, free_port, load_event
from tests.fakes import RecordingRelay
from tests.functional.test_openapi import CheckedHTTP

# The emulated Connect and Participant Service listen on 127.0.0.1.
pytestmark = pytest.mark.loopback

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def client(emulated_connect: EmulatedConnect) -> Iterator[Any]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield test_client


@pytest.fixture
def http(client: Any) -> CheckedHTTP:
    return CheckedHTTP(client.http)


def streaming_path(contact_id: str) -> str:
    return f"/contacts/{contact_id}/streaming"


def starts(connect: EmulatedConnect) -> list[dict[str, Any]]:
    """The StartContactStreaming calls that reached Connect."""
    return [body for operation, body in connect.calls if operation == "start_contact_streaming"]


def kept(contact_id: str) -> dict[str, Any]:
    item = clients.dynamodb().get_item(TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": contact_id}})
    return item.get("Item") or {}


def chat_initiated(contact_id: str) -> dict[str, Any]:
    """Connect's EventBridge INITIATED event for a chat."""
    event: dict[str, Any] = copy.deepcopy(load_event("contact/chat-initiated.json"))
    original = event["detail"]["contactId"]
    event["detail"]["contactId"] = contact_id
    event["resources"] = [arn.replace(original, contact_id) for arn in event["resources"]]
    return event


def run_flow(event: dict[str, Any]) -> Any:
    """The flow function as Lambda runs it: loaded from its module, with its 8 s timeout."""
    from chalicelib.handlers.flow import start_streaming_from_flow

    return start_streaming_from_flow(event, LambdaContext("start_streaming_from_flow", 256, max_runtime_ms=8_000))


def flow_event(contact_id: str, attributes: dict[str, str]) -> dict[str, Any]:
    """The contact flow's invocation of the relay's function, as Connect sends it for a chat."""
    event: dict[str, Any] = copy.deepcopy(load_event("flow-invocation-chat.json"))
    contact = event["Details"]["ContactData"]
    contact.update(ContactId=contact_id, InitialContactId=contact_id, Attributes=attributes)
    return event


# ---------------------------------------------------------------------------------------------------------------
# Item 8: a start after a stop is a new stream


class TestRestartAfterStop:
    def test_issue7_item8_put_delete_put_streams_again_with_a_new_stream(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        # Given a chat whose stream the relay started, then stopped
        contact = emulated_connect.open_chat(INSTANCE_ID)
        first = http.put(streaming_path(contact))
        assert first.status_code == 201
        assert http.delete(streaming_path(contact)).status_code == 200
        assert emulated_connect.chats[contact].topics == {}
        # When it is started again
        again = http.put(streaming_path(contact))
        # Then Connect got a new ClientToken and streams the chat again, and the relay keeps the new stream
        assert again.status_code == 201
        assert again.json_body["status"] == "started"
        new_id = again.json_body["streaming_id"]
        assert new_id != first.json_body["streaming_id"]
        assert emulated_connect.chats[contact].topics == {TOPIC_ARN: new_id}
        assert len({body["ClientToken"] for body in starts(emulated_connect)}) == 2
        assert kept(contact)["streaming_id"]["S"] == new_id
        # And a stop after the restart stops the new stream
        assert http.delete(streaming_path(contact)).json_body["streaming_id"] == new_id
        assert emulated_connect.chats[contact].topics == {}

    def test_issue7_item8_a_caller_s_token_replayed_after_a_stop_is_a_conflict_not_a_false_start(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        body = json.dumps({"client_token": "mine"})
        assert http.put(streaming_path(contact), body=body, headers=JSON).status_code == 201
        assert http.delete(streaming_path(contact)).status_code == 200
        # When the caller starts again with the token of the stopped stream, Connect answers that stopped stream
        replayed = http.put(streaming_path(contact), body=body, headers=JSON)
        assert replayed.status_code == 409
        assert replayed.json_body["error"] == "ClientTokenReused"
        assert "streaming_id" not in kept(contact)
        # And a new token starts it
        fresh = http.put(streaming_path(contact), body=json.dumps({"client_token": "mine-2"}), headers=JSON)
        assert fresh.status_code == 201
        assert emulated_connect.chats[contact].topics == {TOPIC_ARN: fresh.json_body["streaming_id"]}

    def test_issue7_item8_a_late_contact_event_does_not_restart_a_stopped_stream(
        self, client: Any, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        http.put(streaming_path(contact))
        http.delete(streaming_path(contact))
        client.lambda_.invoke("on_contact_event", chat_initiated(contact))
        answer = run_flow(flow_event(contact, {}))
        assert answer == {"streaming": "skipped", "reason": "streaming was stopped for this chat"}
        assert len(starts(emulated_connect)) == 1
        assert emulated_connect.chats[contact].topics == {}


# ---------------------------------------------------------------------------------------------------------------
# Item 9: of two starts racing for one chat, one reaches Connect


class TestStartRaces:
    def test_issue7_item9_a_put_with_its_own_token_racing_a_contact_event_calls_connect_once(
        self, client: Any, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        raced: list[object] = []

        def event_arrives(request: dict[str, Any], answer: dict[str, Any]) -> None:
            try:
                raced.append(client.lambda_.invoke("on_contact_event", chat_initiated(contact)).payload)
            except Exception as exc:
                raced.append(exc)

        # Given the contact event arrives while the route's call is at Connect
        emulated_connect.during("start_contact_streaming", event_arrives)
        response = http.put(streaming_path(contact), body=json.dumps({"client_token": "mine"}), headers=JSON)
        # Then one call reached Connect; the event found the claim and left the start to Lambda's retry
        assert response.status_code == 201
        assert [body["ClientToken"] for body in starts(emulated_connect)] == ["mine"]
        [outcome] = raced
        assert isinstance(outcome, StreamingStartInProgressError)
        # And Lambda's retry finds the chat streaming, without calling Connect
        client.lambda_.invoke("on_contact_event", chat_initiated(contact))
        assert len(starts(emulated_connect)) == 1
        assert kept(contact)["streaming_id"]["S"] == response.json_body["streaming_id"]

    def test_issue7_item9_a_put_racing_a_contact_event_s_start_answers_409_with_retry_after(
        self, client: Any, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        answers: list[Any] = []
        checked = CheckedHTTP(client.http)
        emulated_connect.during(
            "start_contact_streaming",
            lambda request, answer: answers.append(
                checked.put(streaming_path(contact), body=json.dumps({"client_token": "mine"}), headers=JSON)
            ),
        )
        client.lambda_.invoke("on_contact_event", chat_initiated(contact))
        [loser] = answers
        assert loser.status_code == 409
        assert loser.json_body["error"] == "StreamingStartInProgress"
        assert loser.headers["Retry-After"] == "1"
        assert len(starts(emulated_connect)) == 1
        # Retried after Retry-After, the PUT finds the stream the event started
        again = checked.put(streaming_path(contact), body=json.dumps({"client_token": "mine"}), headers=JSON)
        assert again.status_code == 200
        assert again.json_body["status"] == "already_streaming"

    def test_issue7_item9_chat_contacts_racing_the_flow_function_calls_connect_once(
        self, client: Any, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        flow_answers: list[dict[str, str]] = []

        def flow_runs(request: dict[str, Any], answer: dict[str, Any]) -> None:
            # Connect runs the chat's flow as soon as the contact exists, with the attributes it was started with
            event = flow_event(answer["ContactId"], request["Attributes"])
            flow_answers.append(run_flow(event))

        emulated_connect.during("start_chat_contact", flow_runs)
        response = http.post("/chat-contacts", body=json.dumps({"display_name": "Ana"}), headers=JSON)
        assert response.status_code == 201
        assert flow_answers == [{"streaming": "started", "alreadyStreaming": "true"}]
        assert starts(emulated_connect) == []
        contact = response.json_body["ContactId"]
        assert list(emulated_connect.chats[contact].topics) == [TOPIC_ARN]

    def test_issue7_item9_the_relay_s_own_attribute_is_reserved(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        body = {"display_name": "Ana", "attributes": {STREAMING_AT_START_ATTRIBUTE: STREAMING_AT_START}}
        response = http.post("/chat-contacts", body=json.dumps(body), headers=JSON)
        assert response.status_code == 400
        assert response.json_body["fields"][0]["field"] == f"attributes.{STREAMING_AT_START_ATTRIBUTE}"
        assert emulated_connect.calls == []

    def test_issue7_item9_a_claim_never_completed_lapses(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a start that claimed the chat and crashed before calling Connect
        contact = emulated_connect.open_chat(INSTANCE_ID)
        table = StreamsTable(clients.dynamodb(), STREAMS_TABLE, ttl_days=8)
        assert table.claim(Session(contact), started_by="route") is not None
        # While the claim is in force, a start is told to retry
        assert http.put(streaming_path(contact)).status_code == 409
        assert starts(emulated_connect) == []
        # Once it has lapsed, a start goes ahead
        later = time.time() + CLAIM_SECONDS + 1
        monkeypatch.setattr(time, "time", lambda: later)
        response = http.put(streaming_path(contact))
        assert response.status_code == 201
        assert len(starts(emulated_connect)) == 1

    def test_issue7_item9_a_failed_start_releases_its_claim_at_once(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        emulated_connect.fail("start_contact_streaming", "InvalidParameterException", 400, "try again")
        assert http.put(streaming_path(contact)).status_code == 400
        assert http.put(streaming_path(contact)).status_code == 201
        # Both attempts sent the same token: had the first reached Connect, the second would get its stream
        assert len({body["ClientToken"] for body in starts(emulated_connect)}) == 1


# ---------------------------------------------------------------------------------------------------------------
# Item 10: an Idempotency-Key belongs to its caller and its body

ANA = {"authorizer": {"claims": {"sub": "ana-sub"}}}
BEN = {"identity": {"userArn": "arn:aws:iam::111122223333:user/ben"}}
ANONYMOUS: dict[str, Any] = {}
CALLERS: dict[str, dict[str, Any]] = {"ana": ANA, "ben": BEN, "anonymous": ANONYMOUS}


def post_as(client: Any, caller: dict[str, Any], body: dict[str, Any], key: str, path: str = "/webrtc-contacts") -> Any:
    """POST as an authenticated caller: API Gateway stamps who it is in the request's requestContext."""
    converter = client.http._local_gateway.event_converter
    make = converter.create_lambda_event
    outer = converter.__dict__.get("create_lambda_event")  # a POST made while another is at Connect

    def stamped(**request: Any) -> dict[str, Any]:
        event: dict[str, Any] = make(**request)
        event["requestContext"].update(copy.deepcopy(caller))
        return event

    converter.create_lambda_event = stamped
    try:
        return CheckedHTTP(client.http).post(path, body=json.dumps(body), headers={**JSON, "Idempotency-Key": key})
    finally:
        if outer is None:
            del converter.create_lambda_event
        else:
            converter.create_lambda_event = outer


def webrtc_calls(connect: EmulatedConnect) -> list[dict[str, Any]]:
    return [body for operation, body in connect.calls if operation == "start_web_rtc_contact"]


@pytest.fixture
def no_announcements(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dependencies, "relay", cache(RecordingRelay))


@pytest.mark.usefixtures("no_announcements")
class TestIdempotencyKeys:
    def test_issue7_item10_another_caller_reusing_a_key_never_gets_the_first_caller_s_answer(
        self, client: Any, emulated_connect: EmulatedConnect
    ) -> None:
        body = {"display_name": "Ana", "flow": "support"}
        first = post_as(client, ANA, body, "k-1")
        assert first.status_code == 201
        # When another caller sends the same key, even with the same body
        theirs = post_as(client, BEN, body, "k-1")
        # Then they get a contact of their own, never Ana's tokens
        assert theirs.status_code == 201
        assert "Idempotent-Replayed" not in theirs.headers
        assert theirs.json_body["ContactId"] != first.json_body["ContactId"]
        assert theirs.json_body["ParticipantToken"] != first.json_body["ParticipantToken"]
        assert first.json_body["ParticipantToken"] not in theirs.body.decode()
        # And Ana's replay is hers
        again = post_as(client, ANA, body, "k-1")
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json_body == first.json_body
        tokens = [call["ClientToken"] for call in webrtc_calls(emulated_connect)]
        assert len(tokens) == 3
        assert len(set(tokens)) == 2
        assert "k-1" not in tokens

    def test_issue7_item10_the_same_key_with_another_body_is_422_and_never_reaches_connect(
        self, client: Any, emulated_connect: EmulatedConnect
    ) -> None:
        assert post_as(client, ANA, {"display_name": "Ana"}, "k-1").status_code == 201
        other = post_as(client, ANA, {"display_name": "Eve", "flow": "sales"}, "k-1")
        assert other.status_code == 422
        assert other.json_body["error"] == "IdempotencyKeyReused"
        assert len(webrtc_calls(emulated_connect)) == 1
        # The same JSON spaced and ordered differently is the same body
        reordered = CheckedHTTP(client.http).post(
            "/webrtc-contacts", body='{ "display_name" :"Ana" }', headers={**JSON, "Idempotency-Key": "k-2"}
        )
        assert reordered.status_code == 201
        assert post_as(client, ANONYMOUS, {"display_name": "Ana"}, "k-2").headers["Idempotent-Replayed"] == "true"

    def test_issue7_item10_a_concurrent_duplicate_answers_409(
        self, client: Any, emulated_connect: EmulatedConnect
    ) -> None:
        duplicates: list[Any] = []
        body = {"display_name": "Ana"}
        emulated_connect.during(
            "start_web_rtc_contact", lambda request, answer: duplicates.append(post_as(client, ANA, body, "k-1"))
        )
        first = post_as(client, ANA, body, "k-1")
        assert first.status_code == 201
        [duplicate] = duplicates
        assert duplicate.status_code == 409
        assert duplicate.json_body["error"] == "IdempotencyKeyInFlight"
        assert duplicate.headers["Retry-After"] == "1"
        assert len(webrtc_calls(emulated_connect)) == 1
        # Retried once the first has its answer, it is a replay
        assert post_as(client, ANA, body, "k-1").headers["Idempotent-Replayed"] == "true"

    def test_issue7_item10_a_failed_request_frees_its_key_for_the_same_body_only(
        self, client: Any, emulated_connect: EmulatedConnect
    ) -> None:
        emulated_connect.fail("start_chat_contact", "InvalidParameterException", 400, "try again")
        body = {"display_name": "Ana"}
        assert post_as(client, ANA, body, "k-1", "/chat-contacts").status_code == 400
        assert post_as(client, ANA, {"display_name": "Eve"}, "k-1", "/chat-contacts").status_code == 422
        retried = post_as(client, ANA, body, "k-1", "/chat-contacts")
        assert retried.status_code == 201
        assert "Idempotent-Replayed" not in retried.headers

    def test_issue7_item10_a_crashed_request_s_lock_lapses(
        self, client: Any, emulated_connect: EmulatedConnect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given a request that took the key and crashed before Connect answered
        body = {"display_name": "Ana"}
        ledger = ClientTokenLedger(clients.dynamodb(), STREAMS_TABLE)
        ledger.begin(route="webrtc", principal="cognito:ana-sub", key="k-1", request_fingerprint=fingerprint(body))
        assert post_as(client, ANA, body, "k-1").status_code == 409
        later = time.time() + LOCK_SECONDS + 1
        monkeypatch.setattr(time, "time", lambda: later)
        assert post_as(client, ANA, body, "k-1").status_code == 201


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    requests=st.lists(
        st.tuples(st.sampled_from(sorted(CALLERS)), st.sampled_from(["k-1", "k-2"]), st.sampled_from(["Ana", "Eve"])),
        min_size=1,
        max_size=5,
    )
)
def test_issue7_item10_a_key_replays_only_its_caller_s_own_request(
    client: Any, emulated_connect: EmulatedConnect, no_announcements: None, requests: list[tuple[str, str, str]]
) -> None:
    # Whatever callers, keys and bodies come in, a request replays exactly its own caller's earlier request with
    # that key and body, is refused with another body, and otherwise starts a contact no one else got
    run = uuid.uuid4().hex
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    contacts: set[str] = set()
    for caller, key, name in requests:
        response = post_as(client, CALLERS[caller], {"display_name": name}, f"{run}-{key}")
        earlier = seen.get((caller, key))
        if earlier is None:
            assert response.status_code == 201
            assert "Idempotent-Replayed" not in response.headers
            assert response.json_body["ContactId"] not in contacts
            seen[(caller, key)] = (name, response.json_body["ContactId"])
            contacts.add(response.json_body["ContactId"])
        elif earlier[0] == name:
            assert response.status_code == 201
            assert response.headers["Idempotent-Replayed"] == "true"
            assert response.json_body["ContactId"] == earlier[1]
        else:
            assert response.status_code == 422


# ---------------------------------------------------------------------------------------------------------------
# Item 11: Connect's words never reach the caller

SECRET_LADEN = (
    "User: arn:aws:sts::111122223333:assumed-role/connect-chat-relay-dev-api_handler/x is not authorized to perform "
    f"connect:StartContactStreaming on resource: {INSTANCE_ARN}/contact/c-1"
)


class TestConnectWords:
    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("AccessDeniedException", 403),
            ("UnrecognizedClientException", 403),
            ("ExpiredTokenException", 400),
            ("InvalidSignatureException", 403),
            ("SomethingNewException", 418),
        ],
    )
    def test_issue7_item11_access_denied_and_unknown_4xx_answer_502_with_a_request_id(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, relay_output: Any, code: str, status: int
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        emulated_connect.fail("start_contact_streaming", code, status, SECRET_LADEN)
        response = http.put(streaming_path(contact))
        assert response.status_code == 502
        assert response.json_body["error"] == "ConnectRefused"
        text = response.body.decode()
        assert "arn:" not in text
        assert "111122223333" not in text
        assert INSTANCE_ID not in text
        # The operators find Connect's message in the logs, under the answer's request id
        [line] = [line for line in relay_output().splitlines() if "Connect refused or failed" in line]
        logged = json.loads(line)
        assert logged["request_id"] == response.json_body["request_id"]
        assert logged["code"] == code
        assert logged["reason"] == SECRET_LADEN

    def test_issue7_item11_the_contact_routes_say_no_more(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        emulated_connect.fail("start_chat_contact", "InvalidParameterException", 400, SECRET_LADEN)
        response = http.post("/chat-contacts", body=json.dumps({"display_name": "Ana"}), headers=JSON)
        assert response.status_code == 400
        assert response.json_body["error"] == "InvalidParameterException"
        assert "arn:" not in response.body.decode()

    def test_issue7_item11_tokens_are_cut_from_the_logged_message(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, relay_output: Any
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        emulated_connect.fail(
            "start_contact_streaming", "InvalidRequestException", 400, "ClientToken secret-token-1 is malformed"
        )
        body = json.dumps({"client_token": "secret-token-1"})
        assert http.put(streaming_path(contact), body=body, headers=JSON).status_code == 400
        output = relay_output()
        assert "secret-token-1" not in output
        assert "ClientToken [redacted] is malformed" in output


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    code=st.text(min_size=1, max_size=60),
    status=st.integers(min_value=400, max_value=599),
    message=st.text(min_size=1, max_size=300),
)
def test_issue7_item11_no_connect_error_answers_connect_s_message(code: str, status: int, message: str) -> None:
    # Whatever Connect answers, the caller gets one of the documented statuses and never Connect's message
    answer: Any = {
        "Error": {"Code": code, "Message": "«" + message + "»"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    failure = ClientError(answer, "StartContactStreaming")
    response = error_response(connect_error(failure))
    assert response.status_code in {400, 404, 409, 429, 502}
    assert "«" not in response.body
    assert "«" not in json.loads(response.body)["message"]
    if status < 500 and code not in {
        "ResourceNotFoundException",
        "InvalidRequestException",
        "InvalidParameterException",
        "LimitExceededException",
        "ThrottlingException",
        "TooManyRequestsException",
        "Throttling",
        "RequestLimitExceeded",
    }:
        assert response.status_code == 502


# ---------------------------------------------------------------------------------------------------------------
# Item 12: DynamoDB failures answer the documented shape


class TestStorageFailures:
    def test_issue7_item12_a_missing_table_answers_502_storage_failed(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        clients.dynamodb().delete_table(TableName=STREAMS_TABLE)
        for method in (http.put, http.delete):
            response = method(streaming_path(contact))
            assert response.status_code == 502
            assert response.json_body["error"] == "StorageFailed"
            assert response.json_body["request_id"]
            assert STREAMS_TABLE not in response.body.decode()
        assert starts(emulated_connect) == []

    def test_issue7_item12_an_unreachable_table_answers_503_with_retry_after(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        contact = emulated_connect.open_chat(INSTANCE_ID)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{free_port()}")
        clients.reset()
        for method in (http.put, http.delete):
            response = method(streaming_path(contact))
            assert response.status_code == 503
            assert response.json_body["error"] == "StorageUnavailable"
            assert response.headers["Retry-After"] == "1"

    def test_issue7_item12_a_table_failing_after_connect_answered_is_503_and_the_retry_keeps_the_stream(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the table fails just after Connect started the stream
        contact = emulated_connect.open_chat(INSTANCE_ID)
        real_put = StreamsTable.put

        def table_down(self: StreamsTable, **record: Any) -> Any:
            monkeypatch.setattr(StreamsTable, "put", real_put)
            raise streams_table.storage_error(ClientError({"Error": {"Code": "InternalServerError"}}, "PutItem"))

        monkeypatch.setattr(StreamsTable, "put", table_down)
        assert http.put(streaming_path(contact)).status_code == 503
        # When the caller retries, Connect answers the same stream for the same token, and the relay keeps it
        again = http.put(streaming_path(contact))
        assert again.status_code == 201
        assert again.json_body["streaming_id"] == emulated_connect.chats[contact].topics[TOPIC_ARN]
        assert len(emulated_connect.chats[contact].topics) == 1


# ---------------------------------------------------------------------------------------------------------------
# Item 13: bounded answers


class TestBoundedAnswers:
    @pytest.mark.parametrize("path", ["/contacts/c-1/streaming", "/chat-contacts", "/webrtc-contacts"])
    def test_issue7_item13_a_number_past_4300_digits_is_a_400(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect, path: str
    ) -> None:
        body = '{"display_name": "Ana", "chat_duration_minutes": ' + "9" * 4_301 + "}"
        method = http.put if path.startswith("/contacts") else http.post
        response = method(path, body=body, headers=JSON)
        assert response.status_code == 400
        assert response.json_body["fields"] == [
            {"field": "body", "problem": "not valid JSON (a number has too many digits)"}
        ]

    def test_issue7_item13_a_megabyte_of_invalid_keys_answers_a_bounded_list(
        self, http: CheckedHTTP, emulated_connect: EmulatedConnect
    ) -> None:
        # Given 1.25 MB of attributes, every key invalid and long
        attributes = {f"bad key {i} " + "x" * 500: "v" for i in range(2_400)}
        body = json.dumps({"display_name": "Ana", "attributes": attributes})
        assert len(body) > 1_250_000
        response = http.post("/webrtc-contacts", body=body, headers=JSON)
        # Then the answer lists the first problems, cut short, and says how many it left out
        assert response.status_code == 400
        assert len(response.body) < 30_000
        fields = response.json_body["fields"]
        assert len(fields) == MAX_PROBLEMS
        assert response.json_body["omitted"] == 2_400 - MAX_PROBLEMS
        assert all(len(problem["field"]) <= 200 for problem in fields)
        assert emulated_connect.calls == []


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    keys=st.lists(st.text(min_size=1, max_size=3_000), min_size=1, max_size=300, unique=True),
    digits=st.integers(min_value=1, max_value=6_000),
)
def test_issue7_item13_any_hostile_body_answers_within_bounds(aws: None, keys: list[str], digits: int) -> None:
    # Whatever keys and numbers a body holds, the answer is a 400 or a start, never a 500, and never large
    attributes = {f"{key} !": "v" for key in keys}
    body = json.dumps({"display_name": "Ana", "attributes": attributes})[:-1] + ', "chat_duration_minutes": '
    body += "7" * digits + "}"
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        response = test_client.http.post("/chat-contacts", body=body, headers=JSON)
    assert response.status_code == 400
    answer = json.loads(response.body)
    assert len(response.body) <= 2 * MAX_PROBLEMS * 1_300
    assert len(answer["fields"]) <= MAX_PROBLEMS
    if "omitted" in answer:
        assert len(answer["fields"]) == MAX_PROBLEMS


# ---------------------------------------------------------------------------------------------------------------
# principal_of: who is calling, as API Gateway authenticated them


def request_with(context: dict[str, Any]) -> Request:
    """A route's request with the requestContext API Gateway stamps after authorising the caller."""
    event = {
        "requestContext": {"httpMethod": "POST", "resourcePath": "/chat-contacts", **context},
        "headers": {},
        "pathParameters": {},
        "stageVariables": {},
        "multiValueQueryStringParameters": None,
        "body": None,
    }
    return Request(event)


@pytest.mark.parametrize(
    ("context", "principal"),
    [
        ({"authorizer": {"claims": {"sub": "u-1"}}, "identity": {"apiKeyId": "k-1"}}, "cognito:u-1"),
        (
            {"identity": {"userArn": "arn:aws:iam::111122223333:user/ana", "apiKeyId": "k-1"}},
            "iam:arn:aws:iam::111122223333:user/ana",
        ),
        ({"identity": {"apiKeyId": "k-1", "sourceIp": "127.0.0.1"}}, "apikey:k-1"),
        ({"identity": {"sourceIp": "127.0.0.1"}}, "anonymous"),
        ({"authorizer": {"claims": "not claims"}, "identity": None}, "anonymous"),
        ({}, "anonymous"),
    ],
)
def test_principal_of(context: dict[str, Any], principal: str) -> None:
    assert principal_of(request_with(context)) == principal
