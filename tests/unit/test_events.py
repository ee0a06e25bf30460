"""event_from_chat_item: every chat item maps to one event type of the catalogue, with the data the contract lists,
and a webhook id that is the same on every redelivery."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.chat_items import Attachment, ChatItem, parse_sns_record
from chalicelib.events import (
    EVENT_TYPES,
    MAX_CONTENT_JSON_DEPTH,
    RelayEvent,
    event_from_chat_item,
    webhook_id_for,
)

FIXTURES = Path(__file__).parents[1] / "events" / "chat"
VALID_FIXTURES = sorted(FIXTURES.glob("*.json"))
EVENT = "application/vnd.amazonaws.connect.event."
INTERACTIVE = "application/vnd.amazonaws.connect.message.interactive"
COMMON_KEYS = {
    "item_id",
    "initial_contact_id",
    "contact_id",
    "related_contact_id",
    "instance_id",
    "participant",
    "visibility",
    "connect_type",
    "content_type",
    "content",
}

EXPECTED_TYPES = {
    "attachment.json": "chat.attachment",
    "event-chat-ended.json": "chat.ended",
    "event-chat-rehydrated.json": "chat.rehydrated",
    "event-message-delivered.json": "chat.receipt",
    "event-message-read.json": "chat.receipt",
    "event-participant-autodisconnection.json": "chat.participant.auto_disconnected",
    "event-participant-displayname-updated.json": "chat.participant.display_name_updated",
    "event-participant-idle.json": "chat.participant.idle",
    "event-participant-invited.json": "chat.participant.invited",
    "event-participant-joined.json": "chat.participant.joined",
    "event-participant-left.json": "chat.participant.left",
    "event-participant-returned.json": "chat.participant.returned",
    "event-transfer-failed.json": "chat.transfer.failed",
    "event-transfer-succeeded.json": "chat.transfer.succeeded",
    "event-typing.json": "chat.typing",
    "event-unknown-content-type.json": "chat.event",
    "message-after-transfer.json": "chat.message",
    "message-application-json.json": "chat.message",
    "message-interactive-list-picker.json": "chat.message",
    "message-interactive-response.json": "chat.message",
    "message-text-markdown.json": "chat.message",
    "messagemetadata-receipts.json": "chat.receipt",
    "no-message-attributes.json": "chat.message",
    "sns-record-customer-message.json": "chat.message",
    "sns-record-system-message.json": "chat.message",
    "unknown-type.json": "chat.event",
}


def fixture_item(name: str) -> ChatItem:
    sns = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["Records"][0]["Sns"]
    return parse_sns_record(sns)


def fixture_event(name: str) -> RelayEvent:
    return event_from_chat_item(fixture_item(name))


def an_item(**fields: Any) -> ChatItem:
    """The AWS customer-message sample with ``fields`` changed."""
    return replace(fixture_item("sns-record-customer-message.json"), **fields)


# --- The catalogue ---


def test_every_fixture_has_an_expected_type() -> None:
    """Given the fixtures, then each one is in the table (a new fixture cannot go unchecked)."""
    assert {path.name for path in VALID_FIXTURES} == set(EXPECTED_TYPES)


def test_fixtures_cover_every_chat_event_type() -> None:
    """Every chat.* type of the catalogue is produced by at least one recorded item."""
    built_elsewhere = {"call.started", "chat.transcript.reconciled", "chat.transcript.completed"}
    assert set(EXPECTED_TYPES.values()) == {
        event_type for event_type in EVENT_TYPES if event_type not in built_elsewhere
    }


def test_catalogue_is_unique_and_includes_calls() -> None:
    """The catalogue lists each type once, and includes call.started, reconciliations and transcripts (built
    elsewhere)."""
    assert len(EVENT_TYPES) == len(set(EVENT_TYPES)) == 19
    assert "call.started" in EVENT_TYPES


@pytest.mark.parametrize("path", VALID_FIXTURES, ids=lambda p: p.name)
def test_fixture_maps_to_its_event(path: Path) -> None:
    """Given a recorded item, when turned into an event, then type, timestamp, id and common data are right."""
    item = fixture_item(path.name)

    event = event_from_chat_item(item)

    assert event.type == EXPECTED_TYPES[path.name]
    assert event.timestamp == item.absolute_time
    assert event.webhook_id == webhook_id_for(item.item_id)
    assert event.data.keys() >= COMMON_KEYS
    assert event.data["item_id"] == item.item_id
    assert (event.data["initial_contact_id"], event.data["contact_id"]) == (item.initial_contact_id, item.contact_id)
    assert event.data["participant"] == {
        "id": item.participant_id,
        "role": item.participant_role,
        "display_name": item.display_name,
    }
    assert (event.data["connect_type"], event.data["content_type"], event.data["content"]) == (
        item.type,
        item.content_type,
        item.content,
    )
    assert json.loads(event.body) == event.envelope()


CLASSIFICATION = [
    ("MESSAGE", "text/plain", "chat.message", None),
    ("MESSAGE", EVENT + "typing", "chat.message", None),
    ("ATTACHMENT", None, "chat.attachment", None),
    ("EVENT", EVENT + "typing", "chat.typing", None),
    ("EVENT", EVENT + "participant.joined", "chat.participant.joined", None),
    ("EVENT", EVENT + "participant.left", "chat.participant.left", None),
    ("EVENT", EVENT + "participant.idle", "chat.participant.idle", None),
    ("EVENT", EVENT + "participant.returned", "chat.participant.returned", None),
    ("EVENT", EVENT + "participant.invited", "chat.participant.invited", None),
    ("EVENT", EVENT + "participant.autodisconnection", "chat.participant.auto_disconnected", None),
    ("EVENT", EVENT + "participant.displayname.updated", "chat.participant.display_name_updated", None),
    ("EVENT", EVENT + "transfer.succeeded", "chat.transfer.succeeded", None),
    ("EVENT", EVENT + "transfer.failed", "chat.transfer.failed", None),
    ("EVENT", EVENT + "chat.ended", "chat.ended", None),
    ("EVENT", EVENT + "chat.rehydrated", "chat.rehydrated", None),
    ("EVENT", EVENT + "message.read", "chat.receipt", "read"),
    ("EVENT", EVENT + "message.delivered", "chat.receipt", "delivered"),
    ("EVENT", EVENT + "message.metadata", "chat.receipt", "metadata"),
    ("EVENT", EVENT + "participant.active", "chat.event", None),
    ("EVENT", EVENT + "authentication.initiated", "chat.event", None),
    ("EVENT", EVENT + "connection.acknowledged", "chat.event", None),
    ("EVENT", "text/plain", "chat.event", None),
    ("EVENT", None, "chat.event", None),
    # Legacy Types: the content type decides when known, else the Type itself.
    ("TYPING", EVENT + "typing", "chat.typing", None),
    ("TYPING", None, "chat.typing", None),
    ("PARTICIPANT_JOINED", None, "chat.participant.joined", None),
    ("PARTICIPANT_LEFT", EVENT + "something.new", "chat.participant.left", None),
    ("CHAT_ENDED", None, "chat.ended", None),
    ("TRANSFER_SUCCEEDED", None, "chat.transfer.succeeded", None),
    ("TRANSFER_FAILED", None, "chat.transfer.failed", None),
    ("MESSAGE_DELIVERED", None, "chat.receipt", "delivered"),
    ("MESSAGE_READ", None, "chat.receipt", "read"),
    ("MESSAGEMETADATA", EVENT + "message.metadata", "chat.receipt", "metadata"),
    ("MESSAGEMETADATA", EVENT + "message.read", "chat.receipt", "read"),
    ("PARTICIPANT_JOINED", EVENT + "participant.left", "chat.participant.left", None),
    ("CONNECTION_ACK", None, "chat.event", None),
    ("CONNECTION_ACK", EVENT + "typing", "chat.event", None),
    ("message", "text/plain", "chat.event", None),
    ("SOME_FUTURE_TYPE", None, "chat.event", None),
]


@pytest.mark.parametrize(
    ("connect_type", "content_type", "event_type", "receipt_type"),
    CLASSIFICATION,
    ids=[f"{row[0]}:{row[1]}" for row in CLASSIFICATION],
)
def test_classification(connect_type: str, content_type: str | None, event_type: str, receipt_type: str | None) -> None:
    """Given Connect's Type and ContentType, then the event type (and receipt type) follow the table."""
    event = event_from_chat_item(an_item(type=connect_type, content_type=content_type))

    assert event.type == event_type
    assert event.data.get("receipt_type") == receipt_type


# --- Per-type data ---


def test_plain_message_has_no_parsed_content() -> None:
    """A text message carries its content as text only."""
    event = fixture_event("message-text-markdown.json")

    assert event.data["content"] == "**Order 1234** ships _today_."
    assert "interactive" not in event.data
    assert "json" not in event.data


def test_interactive_message_carries_its_template() -> None:
    """Given a ListPicker, then data.interactive is the parsed template."""
    event = fixture_event("message-interactive-list-picker.json")

    assert event.data["interactive"]["templateType"] == "ListPicker"
    assert [e["title"] for e in event.data["interactive"]["data"]["content"]["elements"]] == [
        "Apple",
        "Orange",
        "Banana",
    ]


def test_interactive_response_carries_the_selection() -> None:
    """Given the customer's answer to a ListPicker, then data.interactive is parsed too."""
    event = fixture_event("message-interactive-response.json")

    assert event.data["interactive"]["data"]["content"]["selectedElement"] == {"title": "Apple"}


def test_json_message_carries_its_value() -> None:
    """Given an application/json message, then data.json is the parsed value."""
    event = fixture_event("message-application-json.json")

    assert event.data["json"] == {"orderId": "1234", "items": [1, 2]}


@pytest.mark.parametrize(
    "content",
    [
        None,
        "not json",
        '["a", "list"]',
        '"a string"',
        '{"templateType": NaN}',
        '{"a": Infinity}',
        "[" * 5000 + "]" * 5000,
        '{"a":' * (MAX_CONTENT_JSON_DEPTH + 1) + "1" + "}" * (MAX_CONTENT_JSON_DEPTH + 1),
    ],
    ids=["absent", "text", "array", "string", "nan", "infinity", "too-deep-to-load", "deeper-than-limit"],
)
def test_interactive_that_is_not_a_json_object_is_null(content: str | None) -> None:
    """Given interactive content that is not a usable JSON object, then data.interactive is null, content kept."""
    event = event_from_chat_item(an_item(content_type=INTERACTIVE, content=content))

    assert event.data["interactive"] is None
    assert event.data["content"] == content


def test_json_content_at_the_depth_limit_is_parsed() -> None:
    """Given JSON nested exactly as deep as allowed, then it is passed on parsed."""
    depth = MAX_CONTENT_JSON_DEPTH
    content = "[" * depth + "]" * depth

    event = event_from_chat_item(an_item(content_type="application/json", content=content))

    assert event.data["json"] is not None
    assert json.loads(event.body)["data"]["json"] == json.loads(content)


def test_many_shallow_brackets_are_not_too_deep() -> None:
    """Given many brackets side by side (wide, not deep), then the content is still parsed."""
    content = json.dumps([[i] for i in range(500)])

    event = event_from_chat_item(an_item(content_type="application/json", content=content))

    assert event.data["json"] == [[i] for i in range(500)]


@pytest.mark.parametrize(
    ("content", "expected"),
    [('["a", 1]', ["a", 1]), ("3", 3), ("null", None), ("{bad", None), ('{"x": NaN}', None)],
)
def test_json_message_value_or_null(content: str, expected: Any) -> None:
    """Given application/json content, then data.json is any JSON value, or null when it is not JSON."""
    event = event_from_chat_item(an_item(content_type="application/json", content=content))

    assert event.data["json"] == expected


# --- Content every consumer can read: strict RFC 8259 bodies in UTF-8 (issue 7, items 1 and 15) ---

JSON_TYPES = ["application/json", INTERACTIVE, INTERACTIVE + ".response"]


@pytest.mark.parametrize("content_type", JSON_TYPES)
@pytest.mark.parametrize(
    "content",
    ['{"a":"\\ud800"}', '{"\\udfff":1}', '["ok", "\\uDBFF\\u0041"]', '{"templateType": "\\ud800"}'],
    ids=["lone-high", "lone-low-key", "high-then-not-low", "interactive"],
)
def test_issue7_item1_json_content_with_a_lone_surrogate_is_delivered_as_text(content_type: str, content: str) -> None:
    """Given JSON content holding an escaped unpaired surrogate (valid JSON, no UTF-8 form), then the event is built,
    its body is strict JSON in UTF-8, the content reaches consumers verbatim as text, and the parse is null."""
    event = event_from_chat_item(an_item(content_type=content_type, content=content))

    sent = orjson.loads(event.body)

    assert sent["data"]["content"] == content
    assert sent["data"]["json" if content_type == "application/json" else "interactive"] is None


def test_a_surrogate_pair_in_json_content_is_one_character() -> None:
    """Given a correctly paired escape, then the content is parsed as usual."""
    event = event_from_chat_item(an_item(content_type="application/json", content='{"wave":"\\ud83d\\udc4b"}'))

    assert orjson.loads(event.body)["data"]["json"] == {"wave": "👋"}


@pytest.mark.parametrize(
    "content",
    ["1e400", "-1e400", "[1e400, 2]", '{"n": 1E+999}', '{"n": -12e1000}', "1" + "0" * 309, "-" + "9" * 400],
)
def test_issue7_item15_numbers_beyond_a_double_are_never_sent_as_infinity(content: str) -> None:
    """Given JSON content with a number no double holds, then the body has no Infinity: it parses with a strict
    RFC 8259 parser, data.json is null and the number reaches consumers in data.content, as written."""
    event = event_from_chat_item(an_item(content_type="application/json", content=content))

    sent = orjson.loads(event.body)

    assert b"Infinity" not in event.body
    assert sent["data"]["json"] is None
    assert sent["data"]["content"] == content


@pytest.mark.parametrize(("content", "expected"), [("1.7976931348623157e308", 1.7976931348623157e308), ("1e-400", 0.0)])
def test_numbers_a_double_holds_are_kept(content: str, expected: float) -> None:
    """Given the largest double, or a number that underflows to zero (finite), then data.json holds it."""
    event = event_from_chat_item(an_item(content_type="application/json", content=content))

    assert orjson.loads(event.body)["data"]["json"] == expected


def test_issue7_item15_a_non_finite_number_in_an_event_never_becomes_a_body() -> None:
    """Given an event whose data holds a non-finite float however it got there, then no body is made of it."""
    event = RelayEvent(type="chat.message", timestamp="t", data={"n": float("inf")}, webhook_id="msg_1")

    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _ = event.body


# JSON texts, leaves written as text, so numbers beyond a double and lone surrogate escapes can appear anywhere.
json_texts = st.recursive(
    (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)).map(json.dumps)
    | st.sampled_from(["1e400", "-1E999", "1" + "0" * 320, "1e-400", '"\\ud800"', '"\\udc00x"', '"\\ud83d\\udc4b"']),
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ",".join(items) + "]")
        | st.dictionaries(st.sampled_from(['"a"', '"\\ud800"', '"b"']), children, max_size=3).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs.items()) + "}"
        )
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(content=json_texts | st.text(max_size=40), content_type=st.sampled_from(JSON_TYPES))
def test_any_content_gives_a_strict_utf8_body(content: str, content_type: str) -> None:
    """Given any content (JSON or not, with any numbers and escapes), then the body parses with a strict RFC 8259
    parser, and the parse is what a strict parser makes of the content (null where it refuses it)."""
    event = event_from_chat_item(an_item(content_type=content_type, content=content))

    sent = orjson.loads(event.body)

    assert sent["data"]["content"] == content
    try:
        strictly_parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        strictly_parsed = None
    if content_type == "application/json":
        assert sent["data"]["json"] == strictly_parsed
    else:
        assert sent["data"]["interactive"] == (strictly_parsed if isinstance(strictly_parsed, dict) else None)


def test_attachment_event_lists_attachments() -> None:
    """Given an ATTACHMENT item, then data.attachments lists each attachment's metadata."""
    item = fixture_item("attachment.json")

    event = event_from_chat_item(item)

    assert event.data["attachments"] == [
        {
            "attachment_id": item.attachments[0].attachment_id,
            "name": "receipt.pdf",
            "content_type": "application/pdf",
            "status": "APPROVED",
        },
        {
            "attachment_id": item.attachments[1].attachment_id,
            "name": "photo.jpg",
            "content_type": "image/jpeg",
            "status": "IN_PROGRESS",
        },
    ]


def test_attachment_event_without_attachments_has_an_empty_list() -> None:
    """An ATTACHMENT item whose list is absent still has data.attachments, empty."""
    event = event_from_chat_item(an_item(type="ATTACHMENT", attachments=()))

    assert event.data["attachments"] == []


@pytest.mark.parametrize(
    ("name", "receipt_type", "delivered_at", "read_at"),
    [
        ("event-message-read.json", "read", None, "2024-03-20T09:36:58.001Z"),
        ("event-message-delivered.json", "delivered", "2024-03-20T09:36:57.412Z", None),
    ],
)
def test_receipt_events(name: str, receipt_type: str, delivered_at: str | None, read_at: str | None) -> None:
    """Given a read or delivered receipt, then data.receipts has the message, the recipient and the times."""
    item = fixture_item(name)
    assert item.message_metadata is not None

    event = event_from_chat_item(item)

    assert event.data["receipt_type"] == receipt_type
    assert event.data["receipts"] == [
        {
            "message_id": item.message_metadata["MessageId"],
            "recipient_participant_id": "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
            "delivered_at": delivered_at,
            "read_at": read_at,
        }
    ]


def test_metadata_receipts_list_every_recipient() -> None:
    """Given MESSAGEMETADATA with two recipients, then there is one receipt per recipient."""
    event = fixture_event("messagemetadata-receipts.json")

    assert event.data["receipt_type"] == "metadata"
    assert [r["recipient_participant_id"] for r in event.data["receipts"]] == [
        "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
        "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    ]
    assert event.data["receipts"][1]["read_at"] is None


@pytest.mark.parametrize(
    ("metadata", "receipts"),
    [
        (None, []),
        ({}, []),
        (
            {"MessageId": "m-1"},
            [{"message_id": "m-1", "recipient_participant_id": None, "delivered_at": None, "read_at": None}],
        ),
        (
            {"MessageId": "m-1", "Receipts": []},
            [{"message_id": "m-1", "recipient_participant_id": None, "delivered_at": None, "read_at": None}],
        ),
    ],
    ids=["no-metadata", "empty", "message-only", "no-receipts"],
)
def test_receipt_without_recipients(metadata: dict[str, Any] | None, receipts: list[dict[str, Any]]) -> None:
    """Given a receipt with little detail, then data.receipts keeps what there is (at least the message id)."""
    event = event_from_chat_item(an_item(type="EVENT", content_type=EVENT + "message.read", message_metadata=metadata))

    assert event.data["receipts"] == receipts


def test_chat_ended_has_a_null_participant() -> None:
    """Given chat.ended, then the participant's fields are all null, and the common keys are all there."""
    event = fixture_event("event-chat-ended.json")

    assert event.data["participant"] == {"id": None, "role": None, "display_name": None}
    assert set(event.data) == COMMON_KEYS


def test_rehydrated_chat_carries_the_related_contact() -> None:
    """Given chat.rehydrated, then data.related_contact_id names the previous contact."""
    event = fixture_event("event-chat-rehydrated.json")

    assert event.data["related_contact_id"] == "0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a"


def test_item_after_transfer_keeps_the_session_key() -> None:
    """Given an item after a transfer, then the event keeps the initial contact id and the new contact id."""
    before = fixture_event("sns-record-customer-message.json")
    after = fixture_event("message-after-transfer.json")

    assert after.data["initial_contact_id"] != after.data["contact_id"]
    assert before.data["initial_contact_id"] == before.data["contact_id"]


def test_data_does_not_leak_account_or_sns_ids() -> None:
    """The account id and the SNS message id stay inside the relay."""
    sns = json.loads((FIXTURES / "sns-record-customer-message.json").read_text(encoding="utf-8"))["Records"][0]["Sns"]

    body = event_from_chat_item(parse_sns_record(sns)).body

    assert sns["MessageAttributes"]["AccountId"]["Value"].encode() not in body
    assert sns["MessageId"].encode() not in body


def test_body_keeps_non_ascii_text_as_utf8() -> None:
    """Non-ASCII content is sent as UTF-8, not as escapes."""
    event = event_from_chat_item(an_item(content="Grüße 👋"))

    assert "Grüße 👋".encode() in event.body


# --- Webhook ids ---


def test_webhook_id_is_a_hash_of_the_item_id() -> None:
    """The id is msg_ + the first 32 hex characters of sha256(item id), as the contract fixes it."""
    webhook_id = webhook_id_for("333333333-be0d-4a44-889d-d2a86fc06f0c")

    assert webhook_id == "msg_b0ab6572ce8f3a0cfe0a062df7ec42a2"
    assert re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id)


@pytest.mark.parametrize("item_id", ["a", "a.b.c", "é", "\ud800", "x" * 256])
def test_webhook_id_never_contains_a_dot(item_id: str) -> None:
    """Standard Webhooks forbids '.' in ids: whatever the item id, there is none (lone surrogates included)."""
    assert re.fullmatch(r"msg_[0-9a-f]{32}", webhook_id_for(item_id))


def test_webhook_ids_differ_between_items() -> None:
    """Different items have different ids."""
    assert webhook_id_for("item-1") != webhook_id_for("item-2")


def test_redelivery_has_the_same_webhook_id() -> None:
    """Given the same item delivered twice by SNS (different SNS message ids), then the webhook id is the same."""
    sns = json.loads((FIXTURES / "sns-record-customer-message.json").read_text(encoding="utf-8"))["Records"][0]["Sns"]
    redelivered = {**sns, "MessageId": "another-sns-message"}

    assert event_from_chat_item(parse_sns_record(sns)).webhook_id == (
        event_from_chat_item(parse_sns_record(redelivered)).webhook_id
    )


def test_attachment_dataclass_is_frozen() -> None:
    """Items and attachments are immutable values: events built from them cannot change them."""
    attachment = Attachment(attachment_id="a", name=None, content_type=None, status=None)

    with pytest.raises(AttributeError):
        attachment.name = "b"  # type: ignore[misc]
