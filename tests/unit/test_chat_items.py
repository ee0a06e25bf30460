"""parse_sns_record: every recorded item shape parses, every malformed record is refused with a precise reason,
and no input at all makes it raise anything but ChatItemInvalidError."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.chat_items import (
    MAX_CONTENT_LENGTH,
    MAX_MESSAGE_BYTES,
    VISIBILITIES,
    Attachment,
    ChatItem,
    ChatItemInvalidError,
    parse_sns_record,
)
from chalicelib.errors import RelayError

FIXTURES = Path(__file__).parents[1] / "events" / "chat"
VALID_FIXTURES = sorted(FIXTURES.glob("*.json"))
INVALID_FIXTURES = sorted((FIXTURES / "invalid").glob("*.json"))
EVENT = "application/vnd.amazonaws.connect.event."


def load_sns(path: Path) -> dict[str, Any]:
    """The ``Sns`` object of a fixture's only record."""
    sns: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["Records"][0]["Sns"]
    return sns


def body_of(sns: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(sns["Message"])
    return body


def with_body(sns: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``sns`` whose Message has ``changes`` applied; ``...`` deletes a key."""
    body = body_of(sns)
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return {**sns, "Message": json.dumps(body)}


def customer_message() -> dict[str, Any]:
    return load_sns(FIXTURES / "sns-record-customer-message.json")


# --- Hypothesis strategies: Connect-shaped records whose every field may also be arbitrary JSON. ---

json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
# Lone surrogates are valid in Python strings and in JSON escapes, but not in UTF-8.
any_text = st.text(max_size=40) | st.text(st.characters(categories=["Cs", "Ll", "Nd"]), max_size=8)
ids = st.uuids().map(str) | st.text(min_size=0, max_size=300)
timestamps = (
    st.datetimes(timezones=st.builds(timezone, st.integers(-1380, 1380).map(lambda m: timedelta(minutes=m)))).map(
        lambda moment: moment.isoformat()
    )
    | st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat().replace("+00:00", "Z"))
    | st.sampled_from(["2024-03-20T09:36:56.174Z", "2024-02-30T09:36:56Z", "2024-03-20 09:36:56", "", "2024"])
)
connect_types = st.sampled_from(["MESSAGE", "EVENT", "ATTACHMENT", "TYPING", "CHAT_ENDED", "MESSAGEMETADATA", ""])
content_types = st.sampled_from(
    [
        "text/plain",
        "application/json",
        "application/vnd.amazonaws.connect.message.interactive",
        "application/vnd.amazonaws.connect.message.interactive.response",
        EVENT + "participant.joined",
        EVENT + "message.read",
        EVENT + "authentication.initiated",
    ]
)
roles = st.sampled_from(["AGENT", "CUSTOMER", "SYSTEM", "CUSTOM_BOT", "SUPERVISOR"])
# Hypothesis draws short texts; long ones (around the limit, or deeply nested JSON) are built by repetition.
long_texts = st.builds(
    lambda unit, length: (unit * length)[:length],
    st.sampled_from(["a", "[", '{"a":', "\u00e9"]),
    st.integers(MAX_CONTENT_LENGTH - 2, MAX_CONTENT_LENGTH + 2),
)
contents = any_text | long_texts | st.builds(json.dumps, json_values)
attachments = st.lists(
    st.fixed_dictionaries(
        {"AttachmentId": ids},
        optional={"AttachmentName": any_text, "ContentType": any_text, "Status": any_text},
    ),
    max_size=2,
)
receipts = st.fixed_dictionaries(
    {},
    optional={
        "MessageId": ids,
        "Receipts": st.lists(
            st.fixed_dictionaries(
                {},
                optional={"DeliveredTimestamp": timestamps, "ReadTimestamp": timestamps, "RecipientParticipantId": ids},
            ),
            max_size=2,
        ),
    },
)
# What Connect could send for each field; some values are still invalid (empty, too long, impossible dates).
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "Id": ids,
    "Type": connect_types,
    "AbsoluteTime": timestamps,
    "InitialContactId": ids,
    "ContactId": ids,
    "ContentType": content_types | any_text,
    "Content": contents,
    "RelatedContactId": ids,
    "ParticipantId": ids,
    "DisplayName": any_text,
    "ParticipantRole": roles,
    "Attachments": attachments,
    "MessageMetadata": receipts,
}
REQUIRED_FIELDS = ("Id", "Type", "AbsoluteTime", "InitialContactId", "ContactId")


def _break(body: dict[str, Any], replaced: dict[str, Any], dropped: set[str]) -> dict[str, Any]:
    return {key: value for key, value in {**body, **replaced}.items() if key not in dropped}


plausible_bodies = st.fixed_dictionaries(
    {key: PLAUSIBLE[key] for key in REQUIRED_FIELDS},
    optional={key: value for key, value in PLAUSIBLE.items() if key not in REQUIRED_FIELDS},
)
fields = st.sampled_from(sorted(PLAUSIBLE))
bodies = st.builds(
    _break, plausible_bodies, st.dictionaries(fields, json_values, max_size=2), st.sets(fields, max_size=2)
)
attribute_names = st.sampled_from(
    [
        "InitialContactId",
        "ContactId",
        "ParticipantRole",
        "InstanceId",
        "AccountId",
        "Type",
        "ContentType",
        "MessageVisibility",
    ]
)
attribute_entries = st.fixed_dictionaries(
    {"Value": ids | st.sampled_from(sorted(VISIBILITIES)) | any_text | json_values},
    optional={"Type": st.sampled_from(["String", "String", "Number", "String.Array"]) | json_values},
)
message_attributes = st.dictionaries(attribute_names, attribute_entries | json_values, max_size=8) | json_values
sns_ids = ids | json_values
sns_records = st.fixed_dictionaries(
    {"Message": st.builds(json.dumps, bodies, ensure_ascii=st.booleans())},
    optional={"MessageAttributes": message_attributes, "MessageId": sns_ids},
) | st.fixed_dictionaries(
    {},
    optional={
        "Message": any_text | st.builds(json.dumps, json_values) | json_values,
        "MessageAttributes": message_attributes,
        "MessageId": sns_ids,
    },
)

# Records that are valid by construction, to check that the parser keeps what it is given.
good_texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
good_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=256)
good_bodies = st.fixed_dictionaries(
    {
        "Id": good_ids,
        "Type": connect_types.filter(bool) | good_ids,
        "AbsoluteTime": st.datetimes(timezones=st.just(UTC)).map(
            lambda moment: moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        ),
        "InitialContactId": good_ids,
        "ContactId": good_ids,
    },
    optional={
        "ContentType": content_types | good_texts,
        "Content": good_texts | long_texts.filter(lambda text: len(text) <= MAX_CONTENT_LENGTH),
        "ParticipantId": good_ids,
        "DisplayName": good_texts,
        "ParticipantRole": st.sampled_from(["AGENT", "CUSTOMER", "SYSTEM", "CUSTOM_BOT", "SUPERVISOR"]),
        "RelatedContactId": good_ids,
    },
)


# --- Every fixture ---


def test_fixture_directories_are_populated() -> None:
    """Given the fixture globs, then they find the recorded shapes (a wrong path would make the tables vacuous)."""
    assert len(VALID_FIXTURES) >= 25
    assert len(INVALID_FIXTURES) >= 5


@pytest.mark.parametrize("path", VALID_FIXTURES + INVALID_FIXTURES, ids=lambda p: p.name)
def test_fixture_is_a_lambda_sns_event(path: Path) -> None:
    """Every fixture has the shape Lambda hands an SNS subscriber: one record whose Message is a string."""
    event = json.loads(path.read_text(encoding="utf-8"))
    (record,) = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["Sns"]["Type"] == "Notification"
    assert isinstance(record["Sns"]["Message"], str)


@pytest.mark.parametrize("path", VALID_FIXTURES, ids=lambda p: p.name)
def test_valid_fixture_parses_to_its_body(path: Path) -> None:
    """Given a recorded item, when parsed, then the ChatItem carries the body's fields unchanged."""
    sns = load_sns(path)
    body = body_of(sns)

    item = parse_sns_record(sns)

    assert item.item_id == body["Id"]
    assert item.type == body["Type"]
    assert item.absolute_time == body["AbsoluteTime"]
    assert item.content == body.get("Content")
    assert item.content_type == body.get("ContentType")
    assert item.initial_contact_id == body["InitialContactId"]
    assert item.contact_id == body["ContactId"]
    assert item.related_contact_id == body.get("RelatedContactId")
    assert item.participant_id == body.get("ParticipantId")
    assert item.participant_role == body.get("ParticipantRole")
    assert item.display_name == body.get("DisplayName")
    assert item.message_metadata == body.get("MessageMetadata")
    assert item.visibility == (sns.get("MessageAttributes") or {}).get("MessageVisibility", {}).get("Value")


def test_aws_customer_message_sample() -> None:
    """Given AWS's documented customer message, then every field of the ChatItem is as documented."""
    item = parse_sns_record(customer_message())

    assert item == ChatItem(
        item_id="333333333-be0d-4a44-889d-d2a86fc06f0c",
        type="MESSAGE",
        content_type="text/plain",
        content="help",
        absolute_time="2021-09-08T13:28:24.656Z",
        initial_contact_id="33333333-abc5-46db-9ad5-d772559ab556",
        contact_id="33333333-abc5-46db-9ad5-d772559ab556",
        related_contact_id=None,
        instance_id="dddddddd-b64e-40c5-921b-109fd92499ae",
        participant_id="bbbbbbbb-c562-4d95-b76c-dcbca8b4b5f7",
        participant_role="CUSTOMER",
        display_name="Jane",
        visibility="ALL",
        attachments=(),
        message_metadata=None,
    )


def test_chat_ended_has_no_participant() -> None:
    """Given chat.ended (no ParticipantRole attribute, no participant in the body), then the participant is None."""
    item = parse_sns_record(load_sns(FIXTURES / "event-chat-ended.json"))

    assert (item.participant_id, item.participant_role, item.display_name) == (None, None, None)
    assert item.content_type == EVENT + "chat.ended"


def test_item_after_transfer_keeps_both_contact_ids() -> None:
    """Given an item after a transfer, then it keeps the new ContactId and the chat's InitialContactId."""
    item = parse_sns_record(load_sns(FIXTURES / "message-after-transfer.json"))

    before = parse_sns_record(load_sns(FIXTURES / "event-participant-joined.json"))

    assert item.initial_contact_id == before.initial_contact_id
    assert item.contact_id != before.contact_id


def test_record_without_message_attributes_uses_the_body() -> None:
    """Given no MessageAttributes (SNS sends an empty object), then the body supplies what it has; visibility and
    instance are unknown; a record without the key at all reads the same."""
    sns = load_sns(FIXTURES / "no-message-attributes.json")
    assert sns["MessageAttributes"] == {}
    assert parse_sns_record({k: v for k, v in sns.items() if k != "MessageAttributes"}) == parse_sns_record(sns)

    item = parse_sns_record(sns)

    assert (item.instance_id, item.visibility) == (None, None)
    assert item.participant_role == "CUSTOMER"


def test_attachments_are_parsed() -> None:
    """Given an ATTACHMENT item, then each attachment's metadata is kept in order."""
    item = parse_sns_record(load_sns(FIXTURES / "attachment.json"))

    assert [attachment.name for attachment in item.attachments] == ["receipt.pdf", "photo.jpg"]
    assert item.attachments[0] == Attachment(
        attachment_id=item.attachments[0].attachment_id,
        name="receipt.pdf",
        content_type="application/pdf",
        status="APPROVED",
    )


def test_visibility_comes_from_the_attribute() -> None:
    """Given MessageVisibility AGENT, then the item is for agents only."""
    item = parse_sns_record(load_sns(FIXTURES / "event-participant-invited.json"))

    assert item.visibility == "AGENT"


# --- Body and attributes ---


def test_body_is_authoritative_over_attributes() -> None:
    """Given attributes that disagree with the body, then the body wins."""
    sns = customer_message()
    attributes = {
        key: {"Type": "String", "Value": "from-attribute"}
        for key in ("Type", "ContentType", "ContactId", "InitialContactId", "ParticipantRole")
    }

    item = parse_sns_record({**sns, "MessageAttributes": {**sns["MessageAttributes"], **attributes}})

    assert (item.type, item.content_type, item.participant_role) == ("MESSAGE", "text/plain", "CUSTOMER")
    assert item.contact_id == item.initial_contact_id == "33333333-abc5-46db-9ad5-d772559ab556"


def test_attributes_fill_fields_the_body_lacks() -> None:
    """Given a body without Type, ContentType, ContactId and ParticipantRole, then the attributes supply them."""
    sns = with_body(customer_message(), Type=..., ContentType=..., ContactId=..., ParticipantRole=None)
    sns["MessageAttributes"]["ContactId"] = {"Type": "String", "Value": "attribute-contact"}

    item = parse_sns_record(sns)

    assert (item.type, item.content_type, item.participant_role) == ("MESSAGE", "text/plain", "CUSTOMER")
    assert item.contact_id == "attribute-contact"


@pytest.mark.parametrize(("missing", "present"), [("InitialContactId", "ContactId"), ("ContactId", "InitialContactId")])
def test_one_contact_id_stands_in_for_the_other(missing: str, present: str) -> None:
    """Given only one of InitialContactId and ContactId anywhere, then both fields hold it."""
    sns = with_body(customer_message(), **{missing: ...})
    del sns["MessageAttributes"][missing]

    item = parse_sns_record(sns)

    assert item.initial_contact_id == item.contact_id == body_of(customer_message())[present]


@pytest.mark.parametrize(
    "attributes",
    [
        None,
        [],
        "InstanceId=x",
        {"InstanceId": "x"},
        {"InstanceId": {"Type": "Number", "Value": "1"}},
        {"InstanceId": {"Type": "String", "Value": 5}},
        {"InstanceId": {"Type": "String", "Value": "\ud800"}},
        {"InstanceId": None},
    ],
    ids=repr,
)
def test_malformed_attributes_are_ignored(attributes: Any) -> None:
    """Given attributes in any other shape, then they are treated as absent rather than failing the item."""
    item = parse_sns_record({**customer_message(), "MessageAttributes": attributes})

    assert item.instance_id is None
    assert item.visibility is None


@pytest.mark.parametrize(
    "entry",
    [
        {"Type": "String", "Value": "EVERYONE"},
        {"Type": "String", "Value": "all"},
        {"Type": "String", "Value": None},
        {"Type": "Number", "Value": "ALL"},
        "ALL",
    ],
    ids=repr,
)
def test_unreadable_visibility_is_refused_not_widened(entry: Any) -> None:
    """Given a MessageVisibility that is present but not AGENT/CUSTOMER/ALL, then the item is refused."""
    sns = customer_message()
    sns["MessageAttributes"]["MessageVisibility"] = entry

    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(sns)

    assert caught.value.reason == "MessageVisibility is not AGENT, CUSTOMER or ALL"


def test_issue7_item7_without_attributes_visibility_and_instance_come_from_the_body() -> None:
    """Given no MessageAttributes but a body that carries MessageVisibility and InstanceId, then the body's hold."""
    sns = with_body(load_sns(FIXTURES / "no-message-attributes.json"), MessageVisibility="AGENT", InstanceId="inst-1")

    item = parse_sns_record(sns)

    assert (item.visibility, item.instance_id) == ("AGENT", "inst-1")


def test_issue7_item7_unknown_visibility_is_none_never_all() -> None:
    """Given a record whose attributes and body say nothing of visibility, then it is unknown, not ALL."""
    sns = customer_message()
    del sns["MessageAttributes"]["MessageVisibility"]

    assert parse_sns_record(sns).visibility is None


def test_the_body_visibility_is_authoritative_over_the_attribute() -> None:
    """Given a body MessageVisibility that differs from the attribute, then the body's holds, like every field."""
    assert parse_sns_record(with_body(customer_message(), MessageVisibility="AGENT")).visibility == "AGENT"


@pytest.mark.parametrize("value", ["EVERYONE", "all", 1, ["ALL"], {"Value": "ALL"}], ids=repr)
def test_unreadable_body_visibility_is_refused_not_widened(value: Any) -> None:
    """Given a body MessageVisibility that is not AGENT/CUSTOMER/ALL, then the item is refused."""
    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(with_body(customer_message(), MessageVisibility=value))

    assert caught.value.reason == "MessageVisibility is not AGENT, CUSTOMER or ALL"


@pytest.mark.parametrize("message_id", [None, 42, {"id": "x"}, "\udfff"], ids=repr)
def test_an_odd_sns_message_id_does_not_matter(message_id: Any) -> None:
    """Given a missing or non-string SNS MessageId, then the item still parses, as it would with a good one."""
    sns = customer_message()
    if message_id is None:
        del sns["MessageId"]
    else:
        sns["MessageId"] = message_id

    assert parse_sns_record(sns) == parse_sns_record(customer_message())


def test_unknown_type_and_content_type_are_data() -> None:
    """Given a Type and ContentType Connect may add later, then they parse as they are."""
    item = parse_sns_record(load_sns(FIXTURES / "unknown-type.json"))

    assert (item.type, item.content_type) == ("SOME_FUTURE_TYPE", "application/x-future")


@pytest.mark.parametrize(
    "changes",
    [
        {"Id": "i" * 256},
        {"Content": "c" * MAX_CONTENT_LENGTH},
        {"Content": "smile \U0001f600"},
        {"AbsoluteTime": "2024-03-20T09:36:56+05:30"},
        {"AbsoluteTime": "2024-02-29T23:59:59.123456789Z"},
        {"DisplayName": None, "RelatedContactId": None},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_edge_values_are_accepted(changes: dict[str, Any]) -> None:
    """Given values at the limits, then the item parses and keeps them."""
    item = parse_sns_record(with_body(customer_message(), **changes))

    if "Content" in changes:
        assert item.content == changes["Content"]


def test_escaped_surrogate_pair_is_a_character() -> None:
    """Given an emoji sent as a JSON surrogate-pair escape, then it parses as one character."""
    sns = customer_message()
    sns["Message"] = sns["Message"].replace('"help"', '"\\ud83d\\ude00"')

    assert parse_sns_record(sns).content == "\U0001f600"


# --- Invalid records ---

INVALID_FIXTURE_REASONS = {
    "absolute-time-not-rfc3339.json": "AbsoluteTime is not an RFC 3339 timestamp",
    "absolute-time-number.json": "AbsoluteTime is not a string",
    "attachment-without-id.json": "Attachments[0].AttachmentId is missing",
    "id-number.json": "Id is not a string",
    "message-json-array.json": "Message is not a JSON object",
    "message-not-json.json": "Message is not JSON",
    "message-visibility-unknown.json": "MessageVisibility is not AGENT, CUSTOMER or ALL",
    "missing-id.json": "Id is missing",
    "no-contact-ids.json": "InitialContactId and ContactId are missing",
    "receipts-not-a-list.json": "MessageMetadata.Receipts is not a list",
}


def test_every_invalid_fixture_has_an_expected_reason() -> None:
    """Given the invalid fixtures, then each one is in the reason table (a new file cannot go untested)."""
    assert {path.name for path in INVALID_FIXTURES} == set(INVALID_FIXTURE_REASONS)


@pytest.mark.parametrize("path", INVALID_FIXTURES, ids=lambda p: p.name)
def test_invalid_fixture_is_refused_with_its_reason(path: Path) -> None:
    """Given a malformed record, when parsed, then ChatItemInvalidError names exactly what is wrong."""
    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(load_sns(path))

    assert caught.value.reason == INVALID_FIXTURE_REASONS[path.name]


# Oversize inputs are built here rather than committed as files.
INVALID_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"Id": ""}, "Id is empty"),
    ({"Id": "i" * 257}, "Id exceeds 256 characters"),
    ({"Id": None}, "Id is missing"),
    ({"Type": 3}, "Type is not a string"),
    ({"Type": ""}, "Type is empty"),
    ({"AbsoluteTime": ...}, "AbsoluteTime is missing"),
    ({"AbsoluteTime": "2024-02-30T09:36:56.174Z"}, "AbsoluteTime is not an RFC 3339 timestamp"),
    ({"AbsoluteTime": "2024-03-20T09:36:56"}, "AbsoluteTime is not an RFC 3339 timestamp"),
    ({"AbsoluteTime": "2024-03-20T09:36:56.174+0100"}, "AbsoluteTime is not an RFC 3339 timestamp"),
    ({"AbsoluteTime": "2024-03-20T09:36:56,174Z"}, "AbsoluteTime is not an RFC 3339 timestamp"),
    ({"AbsoluteTime": "2024-03-20T09:36:56-00:60"}, "AbsoluteTime is not an RFC 3339 timestamp"),
    ({"Content": "c" * (MAX_CONTENT_LENGTH + 1)}, "Content exceeds 16384 characters"),
    ({"Content": ["help"]}, "Content is not a string"),
    ({"ContentType": {"type": "text/plain"}}, "ContentType is not a string"),
    ({"DisplayName": 5}, "DisplayName is not a string"),
    ({"ParticipantId": True}, "ParticipantId is not a string"),
    ({"ParticipantRole": ["CUSTOMER"]}, "ParticipantRole is not a string"),
    ({"ContactId": 7}, "ContactId is not a string"),
    ({"ContactId": "c" * 257}, "ContactId exceeds 256 characters"),
    ({"RelatedContactId": "r" * 257}, "RelatedContactId exceeds 256 characters"),
    ({"Attachments": {"AttachmentId": "a"}}, "Attachments is not a list"),
    ({"Attachments": ["a"]}, "Attachments[0] is not an object"),
    ({"Attachments": [{"AttachmentId": "a", "Status": 1}]}, "Attachments[0].Status is not a string"),
    ({"MessageMetadata": "read"}, "MessageMetadata is not an object"),
    ({"MessageMetadata": {"MessageId": 1}}, "MessageMetadata.MessageId is not a string"),
    ({"MessageMetadata": {"Receipts": [None]}}, "MessageMetadata.Receipts[0] is not an object"),
    (
        {"MessageMetadata": {"Receipts": [{"ReadTimestamp": 17}]}},
        "MessageMetadata.Receipts[0].ReadTimestamp is not a string",
    ),
    ({"DisplayName": "\udc00"}, "Message contains an unpaired surrogate"),
]


@pytest.mark.parametrize(("changes", "reason"), INVALID_BODIES, ids=[reason for _, reason in INVALID_BODIES])
def test_invalid_body_is_refused_with_its_reason(changes: dict[str, Any], reason: str) -> None:
    """Given one broken field in an otherwise valid item, then that field is named."""
    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(with_body(customer_message(), **changes))

    assert caught.value.reason == reason


INVALID_MESSAGES: list[tuple[Any, str]] = [
    (None, "Message is missing"),
    (b"{}", "Message is not a string"),
    ({"Id": "x"}, "Message is not a string"),
    ("", "Message is not JSON"),
    ('{"Id": NaN}', "Message is not JSON"),
    ('{"Id": "x"} trailing', "Message is not JSON"),
    ("[" * 100_000 + "]" * 100_000, "Message is not JSON"),
    ('"a string"', "Message is not a JSON object"),
    ("null", "Message is not a JSON object"),
    ('{"Id": "\udc00"}', "Message is not valid UTF-8"),
    ("x" * (MAX_MESSAGE_BYTES + 1), f"Message exceeds {MAX_MESSAGE_BYTES} bytes"),
    # Fewer characters than the limit, but more bytes: SNS counts bytes.
    ('{"Content": "' + "\u20ac" * 90_000 + '"}', f"Message exceeds {MAX_MESSAGE_BYTES} bytes"),
]


@pytest.mark.parametrize(("message", "reason"), INVALID_MESSAGES, ids=[reason for _, reason in INVALID_MESSAGES])
def test_invalid_message_is_refused_with_its_reason(message: Any, reason: str) -> None:
    """Given a Message that is not a usable JSON object, then the record is refused before any field is read."""
    sns = customer_message()
    if message is None:
        del sns["Message"]
    else:
        sns["Message"] = message

    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(sns)

    assert caught.value.reason == reason


def test_message_of_exactly_the_sns_limit_is_accepted() -> None:
    """Given a Message of exactly 256 KiB, then the size check lets it through (the limit is inclusive)."""
    sns = customer_message()
    start = sns["Message"][:-1] + ',"Padding":"\u00e9'
    end = '"}'
    sns["Message"] = start + "x" * (MAX_MESSAGE_BYTES - len(start.encode("utf-8")) - len(end)) + end
    assert len(sns["Message"].encode("utf-8")) == MAX_MESSAGE_BYTES

    assert parse_sns_record(sns).item_id == "333333333-be0d-4a44-889d-d2a86fc06f0c"


def test_reason_never_echoes_content() -> None:
    """Given oversize Content holding a secret, then the reason does not repeat it."""
    with pytest.raises(ChatItemInvalidError) as caught:
        parse_sns_record(with_body(customer_message(), Content="card 4111111111111111 " * 1000))

    assert "4111" not in caught.value.reason
    assert "4111" not in str(caught.value)


def test_invalid_error_is_a_relay_error_carrying_its_reason() -> None:
    """ChatItemInvalidError belongs to the relay's hierarchy and its message is the reason."""
    error = ChatItemInvalidError("Id is missing")

    assert isinstance(error, RelayError)
    assert (error.reason, str(error)) == ("Id is missing", "Id is missing")


# --- Properties over untrusted input ---


@settings(max_examples=400, deadline=None)
@given(sns=sns_records)
def test_any_record_parses_or_is_refused(sns: dict[str, Any]) -> None:
    """Given any record at all, then parsing returns a coherent ChatItem or raises ChatItemInvalidError."""
    try:
        item: ChatItem | None = parse_sns_record(sns)
    except ChatItemInvalidError as error:
        item, reason = None, error.reason
    if item is None:
        assert 0 < len(reason) <= 80
        return
    assert 0 < len(item.item_id) <= 256
    assert item.initial_contact_id
    assert item.contact_id
    assert item.visibility is None or item.visibility in VISIBILITIES
    assert item.content is None or len(item.content) <= MAX_CONTENT_LENGTH
    assert all(attachment.attachment_id for attachment in item.attachments)


@settings(max_examples=200, deadline=None)
@given(body=good_bodies, message_id=st.uuids().map(str))
def test_any_well_formed_record_parses_to_its_body(body: dict[str, Any], message_id: str) -> None:
    """Given any well-formed body without attributes, then every field is kept exactly."""
    item = parse_sns_record({"MessageId": message_id, "Message": json.dumps(body)})

    assert (item.item_id, item.type, item.absolute_time) == (body["Id"], body["Type"], body["AbsoluteTime"])
    assert (item.initial_contact_id, item.contact_id) == (body["InitialContactId"], body["ContactId"])
    assert (item.content_type, item.content) == (body.get("ContentType"), body.get("Content"))
    assert (item.participant_id, item.participant_role, item.display_name) == (
        body.get("ParticipantId"),
        body.get("ParticipantRole"),
        body.get("DisplayName"),
    )
    assert item.related_contact_id == body.get("RelatedContactId")
