"""Two-way chats through chalice.test.Client, against the emulated Connect and Participant Service on 127.0.0.1
(KMS, DynamoDB and SNS in moto). Every answer is checked against the OpenAPI document."""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from chalice.test import Client
from jsonschema import Draft202012Validator

from app import app
from chalicelib import clients, dependencies
from chalicelib.events import RelayEvent
from chalicelib.handlers import chat_stream
from chalicelib.two_way_chats import MAX_ATTACHMENT_BYTES, MAX_MESSAGE_BYTES
from scripts.emulated_connect import EmulatedConnect, chat_item
from scripts.local_aws import ACCOUNT
from tests.conftest import INSTANCE_ID, PROJECT, QUARANTINE_BUCKET, STREAMS_TABLE, load_event
from tests.functional.test_openapi import CheckedHTTP
from tests.schemas import load_schema

# The emulated Connect and Participant Service listen on 127.0.0.1.
pytestmark = pytest.mark.loopback

KEY_ALIAS = "alias/connect-chat-relay-dev-participant-tokens"
ALICE = f"arn:aws:iam::{ACCOUNT}:role/alice-channel"
BOB = f"arn:aws:iam::{ACCOUNT}:role/bob-channel"
CALLER_HEADER = "x-test-caller"
RAW_CONNECT_TEXT = "internal detail from Connect"


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[EmulatedConnect]:
    """moto (in the relay's account) and the emulated Connect; the relay's clients pointed at both."""
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    request.getfixturevalue("aws")
    connect = EmulatedConnect()
    url = connect.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_CONNECT", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CONNECTPARTICIPANT", url)
    dependencies.reset()
    kms = clients.kms()
    kms.create_alias(AliasName=KEY_ALIAS, TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    clients.s3()  # the bucket and table of the aws fixture live on in moto; only the clients were reset
    import boto3

    boto3.client("sns").create_topic(Name="connect-chat-relay-dev-stream")
    yield connect
    connect.stop()


@pytest.fixture
def http(emulated: EmulatedConnect, monkeypatch: pytest.MonkeyPatch) -> Iterator[CheckedHTTP]:
    """The test client; API Gateway's IAM authorisation puts the caller's ARN in the request context, and the local
    gateway does not, so a test names the caller in a header that becomes ``requestContext.identity.userArn``."""
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        converter = test_client.http._local_gateway.event_converter
        create = converter.create_lambda_event

        def with_caller(method: str, path: str, headers: dict[str, str], body: bytes | None = None) -> Any:
            event = create(method, path, headers, body)
            caller = event["headers"].pop(CALLER_HEADER, None)
            if caller:
                event["requestContext"]["identity"]["userArn"] = caller
            return event

        monkeypatch.setattr(converter, "create_lambda_event", with_caller)
        yield ChatHTTP(test_client, emulated)


def post(http: CheckedHTTP, path: str, body: Any, *, caller: str = ALICE, **headers: str) -> Any:
    return http.post(
        path, body=json.dumps(body), headers={"Content-Type": "application/json", CALLER_HEADER: caller, **headers}
    )


def start_chat(http: CheckedHTTP, *, caller: str = ALICE, **fields: Any) -> str:
    response = post(
        http, "/chat-contacts", {"display_name": "Ana", "participant_connection": True, **fields}, caller=caller
    )
    assert response.status_code == 201, response.body
    answer = json.loads(response.body)
    assert answer["ConnectionHeldByRelay"] is True
    return str(answer["ContactId"])


def customer_items(emulated: EmulatedConnect, contact_id: str, type_: str = "MESSAGE") -> list[dict[str, Any]]:
    return [
        item
        for item in emulated.transcripts.get(contact_id, [])
        if item.get("ParticipantRole") == "CUSTOMER" and item["Type"] == type_
    ]


class ChatHTTP(CheckedHTTP):
    """The checked HTTP side, with the test client (for the stream's Lambda) and the emulated Connect at hand."""

    def __init__(self, client: Client, emulated: EmulatedConnect) -> None:
        super().__init__(client.http)
        self.client = client
        self.emulated = emulated


def emulated_of(http: CheckedHTTP) -> EmulatedConnect:
    assert isinstance(http, ChatHTTP)
    return http.emulated


def calls(emulated: EmulatedConnect, operation: str) -> list[dict[str, Any]]:
    return [body for name, body in emulated.calls if name == operation]


class TestTheConnection:
    def test_a_two_way_start_opens_the_connection_and_marks_the_customer_connected(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        contact_id = start_chat(http)
        [opened] = calls(emulated, "create_participant_connection")
        assert opened == {"Type": ["CONNECTION_CREDENTIALS"], "ConnectParticipant": True}
        assert [p.connected for p in emulated.participants.values()] == [True]
        assert contact_id in emulated.chats

    def test_the_tokens_are_kept_only_encrypted_and_never_answered_or_logged(
        self, http: CheckedHTTP, emulated: EmulatedConnect, relay_output: Any
    ) -> None:
        response = post(http, "/chat-contacts", {"display_name": "Ana", "participant_connection": True})
        contact_id = json.loads(response.body)["ContactId"]
        [connection_token] = emulated.connections
        [participant_token] = emulated.participants
        item = clients.dynamodb().get_item(
            TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": f"chat-connection#{contact_id}"}}
        )["Item"]
        stored = repr(item)
        assert connection_token not in stored
        assert participant_token not in stored
        assert connection_token.encode() not in item["connection_token"]["B"]
        assert int(item["expires_at"]["N"]) > 0
        assert connection_token not in response.body.decode()
        post(http, f"/chats/{contact_id}/messages", {"content": "hi"})
        assert connection_token not in relay_output()

    def test_the_connection_lives_until_the_chat_can_last(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        import time

        contact_id = start_chat(http, chat_duration_minutes=60)
        item = clients.dynamodb().get_item(
            TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": f"chat-connection#{contact_id}"}}
        )["Item"]
        assert abs(int(item["expires_at"]["N"]) - (time.time() + 3600)) < 30

    def test_a_chat_without_the_flag_holds_nothing(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        response = post(http, "/chat-contacts", {"display_name": "Ana"})
        contact_id = json.loads(response.body)["ContactId"]
        assert "ConnectionHeldByRelay" not in json.loads(response.body)
        assert calls(emulated, "create_participant_connection") == []
        assert post(http, f"/chats/{contact_id}/messages", {"content": "hi"}).status_code == 404

    def test_a_replayed_start_keeps_the_connection_it_has(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        body = {"display_name": "Ana", "participant_connection": True}
        first = post(http, "/chat-contacts", body, **{"Idempotency-Key": "start-1"})
        again = post(http, "/chat-contacts", body, **{"Idempotency-Key": "start-1"})
        assert json.loads(first.body)["ContactId"] == json.loads(again.body)["ContactId"]
        assert len(calls(emulated, "create_participant_connection")) == 1

    def test_a_refused_connection_answers_without_connects_words(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        emulated.fail("create_participant_connection", "AccessDeniedException", 403, RAW_CONNECT_TEXT)
        response = post(http, "/chat-contacts", {"display_name": "Ana", "participant_connection": True})
        assert response.status_code == 502
        assert json.loads(response.body)["error"] == "ConnectUnavailable"
        assert RAW_CONNECT_TEXT not in response.body.decode()

    def test_the_flag_must_be_a_boolean(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        response = post(http, "/chat-contacts", {"display_name": "Ana", "participant_connection": "yes"})
        assert response.status_code == 400
        assert calls(emulated, "start_chat_contact") == []


class TestMessages:
    def test_a_message_is_sent_as_the_customer(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        response = post(http, f"/chats/{contact_id}/messages", {"content_type": "text/markdown", "content": "**hi**"})
        assert response.status_code == 201
        answer = json.loads(response.body)
        [item] = customer_items(emulated, contact_id)
        assert answer == {"contact_id": contact_id, "item_id": item["Id"], "absolute_time": item["AbsoluteTime"]}
        assert (item["ContentType"], item["Content"], item["DisplayName"]) == ("text/markdown", "**hi**", "Ana")

    def test_json_content_goes_as_json(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        content = json.dumps({"order": 42})
        response = post(http, f"/chats/{contact_id}/messages", {"content_type": "application/json", "content": content})
        assert response.status_code == 201
        assert customer_items(emulated, contact_id)[0]["Content"] == content

    def test_an_idempotent_resend_is_one_message(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        first = post(http, f"/chats/{contact_id}/messages", {"content": "once"}, **{"Idempotency-Key": "m-1"})
        again = post(http, f"/chats/{contact_id}/messages", {"content": "once"}, **{"Idempotency-Key": "m-1"})
        assert json.loads(first.body)["item_id"] == json.loads(again.body)["item_id"]
        assert len(customer_items(emulated, contact_id)) == 1
        assert [c["ClientToken"] for c in calls(emulated, "send_message")] == ["m-1", "m-1"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"content": "é" * (MAX_MESSAGE_BYTES // 2 + 1)}, "content"),
            ({"content": "   "}, "content"),
            ({"content_type": "application/json", "content": "{not json"}, "content"),
            (
                {"content_type": "application/vnd.amazonaws.connect.message.interactive", "content": "{}"},
                "content_type",
            ),
            ({"content": "hi", "extra": 1}, "extra"),
        ],
    )
    def test_connects_limits_are_checked_before_calling_it(
        self, http: CheckedHTTP, emulated: EmulatedConnect, body: dict[str, Any], field: str
    ) -> None:
        contact_id = start_chat(http)
        response = post(http, f"/chats/{contact_id}/messages", body)
        assert response.status_code == 400
        assert field in {problem["field"] for problem in json.loads(response.body)["fields"]}
        assert calls(emulated, "send_message") == []

    def test_the_largest_message_connect_takes_is_sent(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        response = post(http, f"/chats/{contact_id}/messages", {"content": "é" * (MAX_MESSAGE_BYTES // 2)})
        assert response.status_code == 201


class TestConnectsErrors:
    @pytest.mark.parametrize(
        ("code", "status", "answer", "error"),
        [
            ("ValidationException", 400, 400, "ConnectRejected"),
            ("ConflictException", 409, 409, "ConnectConflict"),
        ],
    )
    def test_they_map_to_clear_answers_without_connects_message(
        self, http: CheckedHTTP, emulated: EmulatedConnect, code: str, status: int, answer: int, error: str
    ) -> None:
        contact_id = start_chat(http)
        emulated.fail("send_message", code, status, RAW_CONNECT_TEXT)
        response = post(http, f"/chats/{contact_id}/messages", {"content": "hi"})
        assert response.status_code == answer
        assert json.loads(response.body)["error"] == error
        assert RAW_CONNECT_TEXT not in response.body.decode()

    def test_access_denied_twice_is_a_chat_that_ended(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        emulated.fail("send_message", "AccessDeniedException", 403, RAW_CONNECT_TEXT, times=2)
        response = post(http, f"/chats/{contact_id}/messages", {"content": "hi"})
        assert response.status_code == 410
        assert json.loads(response.body) == {
            "error": "ChatEnded",
            "message": "the chat has ended or the customer left it",
        }

    def test_an_ended_chat_answers_410(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        emulated.end_chat(contact_id)
        response = post(http, f"/chats/{contact_id}/messages", {"content": "hi"})
        assert response.status_code == 410


class TestAnExpiredConnection:
    def test_it_is_renewed_with_the_kept_participant_token_and_the_message_goes(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        contact_id = start_chat(http)
        emulated.expire_connections(contact_id)
        response = post(http, f"/chats/{contact_id}/messages", {"content": "still here"})
        assert response.status_code == 201
        assert len(calls(emulated, "create_participant_connection")) == 2
        assert len(calls(emulated, "send_message")) == 2  # refused once, then sent with the new token
        # The renewed token is kept: the next message needs no renewal.
        post(http, f"/chats/{contact_id}/messages", {"content": "again"})
        assert len(calls(emulated, "create_participant_connection")) == 2

    def test_a_connection_past_its_expiry_is_renewed_before_use(
        self, http: CheckedHTTP, emulated: EmulatedConnect, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        contact_id = start_chat(http)
        chats = dependencies.two_way_chats()
        monkeypatch.setattr(chats, "_clock", lambda: 4_000_000_000.0)
        monkeypatch.setattr(emulated, "connections", {})  # any old token would be refused now
        response = post(http, f"/chats/{contact_id}/messages", {"content": "hi"})
        assert response.status_code == 201
        assert len(calls(emulated, "send_message")) == 1


class TestTheWrongPrincipal:
    def test_another_caller_reaches_none_of_the_chats_routes(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        contact_id = start_chat(http, caller=ALICE)
        answers = [
            post(http, f"/chats/{contact_id}/messages", {"content": "hi"}, caller=BOB),
            post(http, f"/chats/{contact_id}/events", {"type": "typing"}, caller=BOB),
            post(
                http,
                f"/chats/{contact_id}/attachments",
                {"name": "a.txt", "content_type": "text/plain", "size_bytes": 3},
                caller=BOB,
            ),
            post(http, f"/chats/{contact_id}/attachments/att-1/complete", {}, caller=BOB),
            http.get(f"/chats/{contact_id}/transcript", headers={CALLER_HEADER: BOB}),
            http.delete(f"/chats/{contact_id}", headers={CALLER_HEADER: BOB}),
        ]
        assert [a.status_code for a in answers] == [404] * 6
        assert {json.loads(a.body)["error"] for a in answers} == {"ChatNotFound"}
        assert [name for name, _ in emulated.calls if name != "start_chat_contact"] == ["create_participant_connection"]
        # And the chat is still Alice's.
        assert post(http, f"/chats/{contact_id}/messages", {"content": "hi"}).status_code == 201

    def test_an_anonymous_caller_is_not_the_owner_either(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http, caller=ALICE)
        response = http.post(
            f"/chats/{contact_id}/messages",
            body=json.dumps({"content": "hi"}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 404


class TestEvents:
    def test_typing_and_receipts(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        agent_item = chat_item(
            contact_id, type_="MESSAGE", content_type="text/plain", content="Hello", participant=("a-1", "AGENT", "Sam")
        )
        emulated.publish(agent_item)
        typing = post(http, f"/chats/{contact_id}/events", {"type": "typing"})
        read = post(http, f"/chats/{contact_id}/events", {"type": "read", "message_id": agent_item["Id"]})
        assert (typing.status_code, read.status_code) == (201, 201)
        assert json.loads(read.body)["type"] == "read"
        [typing_item, read_item] = customer_items(emulated, contact_id, "EVENT")
        assert typing_item["ContentType"] == "application/vnd.amazonaws.connect.event.typing"
        assert read_item["MessageMetadata"]["MessageId"] == agent_item["Id"]
        assert json.loads(calls(emulated, "send_event")[1]["Content"]) == {"messageId": agent_item["Id"]}

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "read"},
            {"type": "typing", "message_id": "m"},
            {"type": "joined"},
            {"type": "delivered", "message_id": ""},
        ],
    )
    def test_invalid_events_are_refused_first(
        self, http: CheckedHTTP, emulated: EmulatedConnect, body: dict[str, Any]
    ) -> None:
        contact_id = start_chat(http)
        assert post(http, f"/chats/{contact_id}/events", body).status_code == 400
        assert calls(emulated, "send_event") == []


class TestAttachments:
    def test_a_small_file_in_one_step(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        data = b"%PDF-1.7 receipt"
        response = post(
            http,
            f"/chats/{contact_id}/attachments",
            {
                "name": "receipt.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(data).decode(),
            },
        )
        assert response.status_code == 201, response.body
        answer = json.loads(response.body)
        assert answer["status"] == "uploaded"
        upload = emulated.uploads[answer["attachment_id"]]
        assert (upload.data, upload.status) == (data, "APPROVED")
        [item] = customer_items(emulated, contact_id, "ATTACHMENT")
        assert item["Attachments"][0]["AttachmentName"] == "receipt.pdf"

    def test_a_large_file_in_two_steps(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        data = b"\x89PNG" + bytes(5 * 1024 * 1024)
        started = post(
            http,
            f"/chats/{contact_id}/attachments",
            {"name": "photo.png", "content_type": "image/png", "size_bytes": len(data)},
            **{"Idempotency-Key": "upload-1"},
        )
        assert started.status_code == 201, started.body
        answer = json.loads(started.body)
        assert answer["status"] == "awaiting_upload"
        assert customer_items(emulated, contact_id, "ATTACHMENT") == []
        upload = answer["upload"]
        put = urllib3.request(upload["method"], upload["url"], body=data, headers=upload["headers"])
        assert put.status == 200
        done = post(http, answer["complete_path"], {})
        assert done.status_code == 200
        assert json.loads(done.body) == {
            "contact_id": contact_id,
            "attachment_id": answer["attachment_id"],
            "status": "uploaded",
        }
        assert emulated.uploads[answer["attachment_id"]].data == data
        assert len(customer_items(emulated, contact_id, "ATTACHMENT")) == 1

    def test_a_file_over_connects_size_limit_is_refused_before_connect_is_called(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        contact_id = start_chat(http)
        response = post(
            http,
            f"/chats/{contact_id}/attachments",
            {"name": "video.mp4", "content_type": "video/mp4", "size_bytes": MAX_ATTACHMENT_BYTES + 1},
        )
        assert response.status_code == 400
        assert json.loads(response.body)["fields"][0]["field"] == "size_bytes"
        assert calls(emulated, "start_attachment_upload") == []

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "tool.exe", "content_type": "application/octet-stream", "size_bytes": 10},
            {"name": "photo.png", "content_type": "image/jpeg", "size_bytes": 10},
            {"name": "a.txt", "content_type": "text/plain", "content_base64": "not base64!"},
            {"name": "a.txt", "content_type": "text/plain", "content_base64": "aGk=", "size_bytes": 2},
            {"name": "a.txt", "content_type": "text/plain"},
        ],
    )
    def test_connects_types_and_forms_are_checked_first(
        self, http: CheckedHTTP, emulated: EmulatedConnect, body: dict[str, Any]
    ) -> None:
        contact_id = start_chat(http)
        assert post(http, f"/chats/{contact_id}/attachments", body).status_code == 400
        assert calls(emulated, "start_attachment_upload") == []

    def test_a_one_step_file_too_large_for_a_request_asks_for_the_two_step_form(
        self, http: CheckedHTTP, emulated: EmulatedConnect
    ) -> None:
        contact_id = start_chat(http)
        encoded = base64.b64encode(bytes(4 * 1024 * 1024 + 1)).decode()
        response = post(
            http,
            f"/chats/{contact_id}/attachments",
            {"name": "a.txt", "content_type": "text/plain", "content_base64": encoded},
        )
        assert response.status_code == 400
        assert "two-step" in json.loads(response.body)["fields"][0]["problem"]


class TestTranscript:
    def test_every_page_in_order(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        for number in range(130):
            role = ("a-1", "AGENT", "Sam") if number % 2 else ("c-1", "CUSTOMER", "Ana")
            emulated.publish(
                chat_item(contact_id, type_="MESSAGE", content_type="text/plain", content=str(number), participant=role)
            )
        response = http.get(f"/chats/{contact_id}/transcript", headers={CALLER_HEADER: ALICE})
        assert response.status_code == 200
        answer = json.loads(response.body)
        assert [item["Content"] for item in answer["items"]] == [str(n) for n in range(130)]
        assert answer["initial_contact_id"] == contact_id
        assert len(calls(emulated, "get_transcript")) == 2


class TestDisconnect:
    def test_the_customer_leaves_and_the_tokens_are_deleted(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        response = http.delete(f"/chats/{contact_id}", headers={CALLER_HEADER: ALICE})
        assert response.status_code == 200
        assert json.loads(response.body) == {"contact_id": contact_id, "status": "disconnected"}
        assert [p.left for p in emulated.participants.values()] == [True]
        item = clients.dynamodb().get_item(
            TableName=STREAMS_TABLE, Key={"initial_contact_id": {"S": f"chat-connection#{contact_id}"}}
        )
        assert "Item" not in item
        assert post(http, f"/chats/{contact_id}/messages", {"content": "hi"}).status_code == 404

    def test_an_ended_chat_is_forgotten_too(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        contact_id = start_chat(http)
        emulated.end_chat(contact_id)
        response = http.delete(f"/chats/{contact_id}", headers={CALLER_HEADER: ALICE})
        assert json.loads(response.body)["status"] == "already_ended"
        assert http.delete(f"/chats/{contact_id}", headers={CALLER_HEADER: ALICE}).status_code == 404

    def test_an_invalid_contact_id_is_refused(self, http: CheckedHTTP, emulated: EmulatedConnect) -> None:
        assert http.delete("/chats/not%20an%20id", headers={CALLER_HEADER: ALICE}).status_code == 400


def stream_record(item: dict[str, Any]) -> dict[str, Any]:
    """Connect's chat item as the SNS record Lambda hands ``on_chat_message`` (the recorded fixture's shape)."""
    event: dict[str, Any] = copy.deepcopy(load_event("chat/attachment.json"))
    sns = event["Records"][0]["Sns"]
    sns["Message"] = json.dumps(item)
    sns["MessageId"] = str(uuid.uuid4())
    for name in ("InitialContactId", "ContactId"):
        sns["MessageAttributes"][name]["Value"] = item[name]
    sns["MessageAttributes"]["InstanceId"]["Value"] = INSTANCE_ID
    return event


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[RelayEvent]:
    """What the stream handler hands the fan-out (the delivery itself is tested elsewhere)."""
    events: list[RelayEvent] = []

    class Recorder:
        def publish(self, event: RelayEvent, **_: Any) -> list[Any]:
            events.append(event)
            return []

    monkeypatch.setattr(chat_stream, "relay", Recorder)
    return events


class TestAttachmentsInTheStream:
    def send(self, http: CheckedHTTP, contact_id: str, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        encoded = base64.b64encode(data).decode()
        response = post(
            http,
            f"/chats/{contact_id}/attachments",
            {"name": name, "content_type": content_type, "content_base64": encoded},
        )
        assert response.status_code == 201, response.body
        item: dict[str, Any] = customer_items(emulated_of(http), contact_id, "ATTACHMENT")[-1]
        return item

    def deliver(self, http: CheckedHTTP, item: dict[str, Any]) -> None:
        assert isinstance(http, ChatHTTP)
        http.client.lambda_.invoke("on_chat_message", stream_record(item))

    def test_an_approved_attachment_is_copied_and_its_event_links_the_copy(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        contact_id = start_chat(http)
        data = b"%PDF-1.7 the invoice"
        item = self.send(http, contact_id, "invoice.pdf", data, "application/pdf")
        self.deliver(http, item)
        [event] = published
        [attachment] = event.data["attachments"]
        archive = attachment["archive"]
        assert archive["status"] == "copied"
        assert archive["size_bytes"] == len(data)
        assert archive["key"] == f"attachments/{contact_id}/{item['Attachments'][0]['AttachmentId']}/invoice.pdf"
        copy_ = clients.s3().get_object(Bucket=QUARANTINE_BUCKET, Key=archive["key"])
        assert copy_["Body"].read() == data
        assert copy_["ContentType"] == "application/pdf"
        link = urllib.parse.urlsplit(archive["url"])
        query = urllib.parse.parse_qs(link.query)
        assert link.path.endswith(archive["key"])
        assert query["X-Amz-Expires"] == ["3600"]
        assert attachment["name"] == "invoice.pdf"  # the metadata stays next to the link
        validate_event(event)

    def test_a_rejected_attachment_is_reported_as_such_and_not_fetched(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        emulated.scan = lambda name, data: "REJECTED"
        contact_id = start_chat(http)
        self.deliver(http, self.send(http, contact_id, "notes.txt", b"eicar", "text/plain"))
        assert published[0].data["attachments"][0]["archive"] == {"status": "rejected"}
        assert calls(emulated, "get_attachment") == []
        validate_event(published[0])

    def test_a_pending_attachment_is_reported_as_such(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        contact_id = start_chat(http)
        item = self.send(http, contact_id, "notes.txt", b"hello", "text/plain")
        item["Attachments"][0]["Status"] = "IN_PROGRESS"
        self.deliver(http, item)
        assert published[0].data["attachments"][0]["archive"] == {"status": "pending"}

    def test_a_chat_without_a_held_connection_keeps_the_metadata_only_event(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        self.deliver(http, load_event_message("chat/attachment.json"))
        [event] = published
        assert "archive" not in event.data["attachments"][0]
        assert calls(emulated, "get_attachment") == []

    def test_a_copy_that_fails_is_reported_and_the_event_still_goes_out(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        contact_id = start_chat(http)
        item = self.send(http, contact_id, "photo.png", b"\x89PNG", "image/png")
        emulated.fail("get_attachment", "ValidationException", 400, RAW_CONNECT_TEXT)
        self.deliver(http, item)
        assert published[0].data["attachments"][0]["archive"] == {"status": "failed"}

    def test_an_ended_chat_makes_the_copy_unavailable(
        self, http: CheckedHTTP, emulated: EmulatedConnect, published: list[RelayEvent]
    ) -> None:
        contact_id = start_chat(http)
        item = self.send(http, contact_id, "photo.png", b"\x89PNG", "image/png")
        emulated.end_chat(contact_id)
        self.deliver(http, item)
        assert published[0].data["attachments"][0]["archive"] == {"status": "unavailable"}


def load_event_message(relative: str) -> dict[str, Any]:
    """The chat item inside a recorded SNS record."""
    return dict(json.loads(load_event(relative)["Records"][0]["Sns"]["Message"]))


def validate_event(event: RelayEvent) -> None:
    Draft202012Validator(load_schema(event.type), format_checker=Draft202012Validator.FORMAT_CHECKER).validate(
        json.loads(event.body)
    )
