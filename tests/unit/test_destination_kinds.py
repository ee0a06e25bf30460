"""Destinations of the AWS kinds in the destinations file: what each kind takes, and every problem named."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.destination_kinds import DATE_TEMPLATE, SESSION_TEMPLATE, ArchiveTarget, BusTarget
from chalicelib.destinations import RelayConfigError, parse_relay_config

QUEUE = "arn:aws:sqs:us-east-1:111122223333:chat.fifo"
BUS = "arn:aws:events:us-east-1:111122223333:event-bus/chat"
STREAM = "arn:aws:kinesis:us-east-1:111122223333:stream/chat"
KEY = "arn:aws:kms:us-east-1:111122223333:alias/relay-archive"


def parse(*entries: dict[str, Any]) -> Any:
    return parse_relay_config({"version": 1, "destinations": list(entries)}, source="test.json").destinations


def problems(*entries: dict[str, Any]) -> list[str]:
    with pytest.raises(RelayConfigError) as caught:
        parse(*entries)
    return caught.value.problems


def test_each_kind_is_read_with_its_own_fields_and_the_common_filters() -> None:
    archive, queue, bus, stream = parse(
        {"name": "archive", "kind": "s3", "bucket": "relay-bucket", "kms_key": KEY, "events": ["chat.*"]},
        {"name": "queue", "kind": "sqs", "queue_arn": QUEUE, "audience": "agent"},
        {"name": "bus", "kind": "eventbridge", "event_bus_arn": BUS, "source": "com.example.chat"},
        {"name": "stream", "kind": "kinesis", "stream_arn": STREAM, "roles": ["CUSTOMER"], "kms_key": KEY},
    )
    assert [d.kind for d in (archive, queue, bus, stream)] == ["s3", "sqs", "eventbridge", "kinesis"]
    assert archive.target == ArchiveTarget(
        bucket="relay-bucket", key_template=SESSION_TEMPLATE, kms_key=archive.target.kms_key
    )
    assert archive.target.kms_key.name == "alias/relay-archive"
    assert archive.event_types == frozenset({"chat.*"})
    assert queue.target.fifo
    assert queue.target.queue.account == "111122223333"
    assert queue.audience == "agent"
    assert bus.target == BusTarget(bus=bus.target.bus, source="com.example.chat")
    assert stream.target.stream.name == "chat"
    assert stream.target.kms_key is not None
    assert stream.target.kms_key.name == "alias/relay-archive"
    assert queue.target.kms_key is None
    assert stream.participant_roles == frozenset({"CUSTOMER"})


def test_webhook_is_the_default_kind() -> None:
    (hook,) = parse({"name": "crm", "url": "https://crm.example.com/hook", "secrets": ["ssm:/s"]})
    assert hook.kind == "webhook"
    assert hook.target is None


def test_the_date_layout_and_own_templates() -> None:
    lake, own = parse(
        {"name": "lake", "kind": "s3", "bucket": "lake-bucket", "layout": "date"},
        {"name": "own", "kind": "s3", "bucket": "lake-bucket", "key_template": "x/{initial_contact_id}/{item_id}"},
    )
    assert lake.target.key_template == DATE_TEMPLATE
    assert own.target.key_template == "x/{initial_contact_id}/{item_id}"
    assert own.target.key_prefix == "x/"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"kind": "ftp"}, "kind: must be one of"),
        ({"kind": "s3"}, "bucket: must be an S3 bucket name"),
        ({"kind": "s3", "bucket": "b-b", "layout": "flat"}, "layout: must be one of"),
        ({"kind": "s3", "bucket": "b-b", "key_template": "{item_id}.json"}, "key_template: must be"),
        ({"kind": "s3", "bucket": "b-b", "key_template": "/{initial_contact_id}/{item_id}"}, "key_template: must be"),
        ({"kind": "s3", "bucket": "b-b", "key_template": "{initial_contact_id}/{item_id}/{secret}"}, "key_template"),
        (
            {"kind": "s3", "bucket": "b-b", "key_template": "{initial_contact_id}/{item_id}", "layout": "date"},
            "exclude",
        ),
        ({"kind": "s3", "bucket": "b-b", "kms_key": "alias/x"}, "kms_key: must be a KMS key ARN"),
        ({"kind": "sqs", "queue_arn": "https://sqs.us-east-1.amazonaws.com/1/q"}, "queue_arn: must be an SQS queue"),
        ({"kind": "eventbridge", "event_bus_arn": BUS, "source": "aws.connect"}, "source: must be"),
        ({"kind": "eventbridge", "event_bus_arn": "chat"}, "event_bus_arn: must be"),
        ({"kind": "kinesis", "stream_arn": QUEUE}, "stream_arn: must be a Kinesis stream ARN"),
        ({"kind": "sqs", "queue_arn": QUEUE, "kms_key": QUEUE}, "kms_key: must be a KMS key ARN"),
        ({"kind": "kinesis", "stream_arn": STREAM, "kms_key": "key/x"}, "kms_key: must be a KMS key ARN"),
        ({"kind": "kinesis", "stream_arn": STREAM, "url": "https://x.example.com"}, "url: unknown field"),
        ({"kind": "sqs", "queue_arn": QUEUE, "secrets": ["ssm:/s"]}, "secrets: unknown field"),
        ({"kind": "sqs", "queue_arn": QUEUE, "events": ["chat.nothing"]}, "events:"),
    ],
)
def test_each_problem_is_named_with_its_destination_and_field(entry: dict[str, Any], expected: str) -> None:
    found = problems({"name": "target", **entry})
    assert any(p.startswith('destinations[0] ("target").') and expected in p for p in found), found


def test_every_field_of_a_kind_is_named_at_once() -> None:
    assert problems(
        {"name": "a", "kind": "s3", "bucket": "B", "layout": 1, "key_template": "/x", "kms_key": "alias/x", "x": 1},
        {"name": "b", "kind": "eventbridge", "event_bus_arn": QUEUE, "source": "", "kms_key": None},
    ) == [
        'destinations[0] ("a").x: unknown field',
        'destinations[0] ("a").bucket: must be an S3 bucket name',
        'destinations[0] ("a").layout: must be one of session, date',
        'destinations[0] ("a").key_template: must be a relative key naming {initial_contact_id} and {item_id}, with '
        "placeholders among absolute_time, contact_id, date, day, initial_contact_id, item_id, month, type, "
        "webhook_id, year",
        'destinations[0] ("a").kms_key: must be a KMS key ARN or alias ARN',
        'destinations[1] ("b").event_bus_arn: must be an EventBridge event bus ARN',
        "destinations[1] (\"b\").source: must be 1 to 256 letters, digits, '.', '_', '/' or '-', not starting with "
        "'aws.'",
    ]


TOKEN = "tok3nFromTheQuery"
secrets = st.binary(min_size=24, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
urls = st.sampled_from(["https", "arn:aws:sqs:us-east-1:111122223333:q", "s3"]).map(
    lambda head: f"{head}://u:p@hooks.example.com/in?t={TOKEN}"
)
planted = secrets | urls | st.lists(secrets | urls, min_size=1, max_size=2) | st.dictionaries(secrets | urls, urls)
# Each kind's fields, none of which takes a secret or a URL.
KIND_FIELDS = {
    "s3": ["bucket", "layout", "key_template", "kms_key"],
    "sqs": ["queue_arn", "kms_key"],
    "eventbridge": ["event_bus_arn", "kms_key"],
    "kinesis": ["stream_arn", "kms_key"],
}


@given(data=st.data(), kind=st.sampled_from(sorted(KIND_FIELDS)))
def test_planted_secrets_and_urls_are_named_by_their_field_and_never_quoted(data: st.DataObject, kind: str) -> None:
    # Given secrets and URLs with tokens planted in any of a kind's fields
    fields = data.draw(st.dictionaries(st.sampled_from(KIND_FIELDS[kind]), planted, min_size=1))
    # When the destination is read, Then each of those fields is named, and none of the values shows
    found = problems({"name": "target", "kind": kind, **fields})
    assert {p.split(": ", 1)[0].removeprefix('destinations[0] ("target").') for p in found} >= set(fields)
    text = " ".join(found)
    assert TOKEN not in text
    for value in fields.values():
        for part in value if isinstance(value, list | dict) else [value]:
            assert part.removeprefix("whsec_") not in text
