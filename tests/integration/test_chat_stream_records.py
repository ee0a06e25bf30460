"""The chat stream's hardening (issue 7, items 1, 5, 6, 7 and 15), through the Lambda entry point as Lambda calls it:
``on_chat_message(event, context)``, with moto's S3 for the quarantine and webhook receivers on 127.0.0.1.

Every body a receiver gets is checked with orjson, a strict RFC 8259 parser (no NaN or Infinity, no unpaired
surrogate, UTF-8 only), and its signature with the standardwebhooks package.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from standardwebhooks import Webhook

from chalicelib import clients
from chalicelib.destinations import UNKNOWN_INSTANCE, UNKNOWN_VISIBILITY
from chalicelib.events import event_from_chat_item
from chalicelib.handlers import chat_stream
from chalicelib.handlers.chat_stream import on_chat_message
from chalicelib.relay import Relay
from scripts.receivers import Receiver
from tests.conftest import QUARANTINE_BUCKET, emitted_metrics, load_event
from tests.schemas import load_schema

pytestmark = pytest.mark.integration

INSTANCE = "c800978e-fdc0-406e-bbb0-4f575f5842a6"  # the instance of the recorded items' attributes
NAMES = ("everyone", "customers", "instance")


class LambdaContext:
    """The parts of Lambda's context object the relay reads."""

    function_name = "connect-chat-relay-dev-on_chat_message"
    aws_request_id = "req-issue7"

    def __init__(self, remaining_seconds: float = 60.0) -> None:
        self._deadline = time.monotonic() + remaining_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {name: Receiver().start() for name in NAMES}
    yield started
    for receiver in started.values():
        receiver.stop()


@pytest.fixture
def keys(aws: None, tmp_path: Path, receivers: dict[str, Receiver], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Destinations: everyone (no filter), customers (audience customer), instance (one instance only)."""
    keys = {name: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode() for name in NAMES}
    filters: dict[str, dict[str, Any]] = {
        "everyone": {},
        "customers": {"audience": "customer"},
        "instance": {"instances": [INSTANCE]},
    }
    config = {
        "version": 1,
        "allow_literal_secrets": True,
        "destinations": [
            {
                "name": name,
                "url": receivers[name].url("/hook"),
                "secrets": [keys[name]],
                "allow_http": True,
                "allow_private_network": True,
                **filters[name],
            }
            for name in NAMES
        ],
    }
    path = tmp_path / "destinations.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("RELAY_CONFIG_FILE", str(path))
    return keys


def invoke(*records: dict[str, Any]) -> Any:
    """Call the handler as Lambda does: one SNS event holding ``records`` (each an ``Sns`` object), and a context."""
    event = {"Records": [{"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns} for sns in records]}
    return on_chat_message(event, LambdaContext())


def sns_of(fixture: str, **body_changes: Any) -> dict[str, Any]:
    """A recorded record's ``Sns`` object, with ``body_changes`` applied to its Message (``...`` removes a key)."""
    sns: dict[str, Any] = copy.deepcopy(load_event(fixture)["Records"][0]["Sns"])
    body = json.loads(sns["Message"])
    for key, value in body_changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    sns["Message"] = json.dumps(body)
    return sns


def message(item_id: str, **body_changes: Any) -> dict[str, Any]:
    sns = sns_of("chat/sns-record-system-message.json", Id=item_id, **body_changes)
    sns["MessageId"] = f"sns-{item_id}"
    return sns


def unreadable(message_id: Any = ...) -> dict[str, Any]:
    # As SNS hands every record to Lambda: Subject and MessageAttributes are always there (null, {}).
    sns: dict[str, Any] = {
        "Type": "Notification",
        "Subject": None,
        "Message": "not json",
        "Timestamp": "2024-03-20T09:36:56.236Z",
        "MessageAttributes": {},
    }
    if message_id is not ...:
        sns["MessageId"] = message_id
    return sns


def kept(prefix: str) -> dict[str, dict[str, Any]]:
    """The quarantine's objects under ``prefix``, by key."""
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read()) for o in listing}


def delivered(receiver: Receiver, key: str) -> list[dict[str, Any]]:
    """Every envelope ``receiver`` got: strictly parsed, signature verified, valid against its schema."""
    envelopes = []
    for request in receiver.requests:
        envelope = orjson.loads(request.body)
        assert Webhook(key).verify(request.body, request.headers) == envelope
        Draft202012Validator(load_schema(envelope["type"]), format_checker=FormatChecker()).validate(envelope)
        envelopes.append(envelope)
    return envelopes


# --- Item 1: poison items ---


@pytest.mark.parametrize(
    ("fixture", "content"),
    [
        ("chat/message-application-json.json", '{"a":"\\ud800"}'),
        ("chat/message-interactive-list-picker.json", '{"templateType":"ListPicker","data":"\\udc00"}'),
    ],
    ids=["json", "interactive"],
)
def test_issue7_item1_a_lone_surrogate_in_json_content_is_delivered_as_strict_utf8_json(
    keys: dict[str, str], receivers: dict[str, Receiver], relay_output: Callable[[], str], fixture: str, content: str
) -> None:
    # Given JSON content holding an escaped unpaired surrogate, When invoked, Then every destination that wants it
    # gets a body in UTF-8 that a strict parser reads, with the content verbatim as text, and nothing is kept.
    assert invoke(sns_of(fixture, Content=content)) is None

    (envelope,) = delivered(receivers["everyone"], keys["everyone"])
    assert envelope["data"]["content"] == content
    assert envelope["data"].get("json") is None
    assert envelope["data"].get("interactive") is None
    assert kept("quarantine/") == {}
    assert "DeliverySucceeded" in emitted_metrics(relay_output())


def test_issue7_item1_any_exception_building_an_item_event_keeps_it_and_the_invocation_goes_on(
    keys: dict[str, str], receivers: dict[str, Receiver], relay_output: Callable[[], str], monkeypatch: Any
) -> None:
    # Given an item whose event cannot be built (a bug nobody foresaw), and a good item after it in the same event
    def failing_for_poison(item: Any) -> Any:
        if item.item_id == "poison":
            raise RuntimeError("cannot build")
        return event_from_chat_item(item)

    monkeypatch.setattr(chat_stream, "event_from_chat_item", failing_for_poison)
    poison, good = message("poison"), message("good")

    # When invoked, Then it returns, the poison item is kept with the reason, and the good one is delivered
    assert invoke(poison, good) is None

    (record,) = kept("quarantine/invalid/chat-stream/").values()
    assert record["record"] == poison
    assert record["reason"] == "its event could not be built (RuntimeError)"
    assert [e["data"]["item_id"] for e in delivered(receivers["everyone"], keys["everyone"])] == ["good"]
    assert emitted_metrics(relay_output())["InvalidChatItem"] == 1


# --- Item 5: every record ---


def test_issue7_item5_every_record_of_an_event_is_relayed(keys: dict[str, str], receivers: dict[str, Receiver]) -> None:
    invoke(message("first"), message("second"), message("third"))

    envelopes = delivered(receivers["everyone"], keys["everyone"])
    assert sorted(e["data"]["item_id"] for e in envelopes) == ["first", "second", "third"]


def test_issue7_item5_one_bad_record_never_stops_the_others(
    keys: dict[str, str], receivers: dict[str, Receiver], relay_output: Callable[[], str]
) -> None:
    # Given an unreadable record between two good ones, and a record that is not even a record
    event = {"Records": [{"Sns": message("before")}, {"Sns": unreadable("sns-bad")}, "junk", {"Sns": message("after")}]}

    assert on_chat_message(event, LambdaContext()) is None

    envelopes = delivered(receivers["everyone"], keys["everyone"])
    assert sorted(e["data"]["item_id"] for e in envelopes) == ["after", "before"]
    assert sorted((r["reason"], r["record"] != "junk") for r in kept("quarantine/invalid/chat-stream/").values()) == [
        ("Message is not JSON", True),
        ("the record has no Sns object", False),  # kept as it came
    ]
    assert emitted_metrics(relay_output())["InvalidChatItem"] == 2


def test_issue7_item5_a_failing_publish_stops_no_other_record_and_fails_the_invocation_after_them(
    keys: dict[str, str], receivers: dict[str, Receiver], monkeypatch: Any
) -> None:
    # Given publishing one record fails (an AWS call, say), When invoked, Then the next record is still delivered,
    # and the invocation fails afterwards, so Lambda retries the event and nothing is lost.
    publish = Relay.publish

    def failing_once(relay: Relay, event: Any, **kwargs: Any) -> Any:
        if event.data["item_id"] == "unlucky":
            raise ConnectionError("S3 is unreachable")
        return publish(relay, event, **kwargs)

    monkeypatch.setattr(Relay, "publish", failing_once)

    with pytest.raises(ConnectionError):
        invoke(message("unlucky"), message("lucky"))

    assert [e["data"]["item_id"] for e in delivered(receivers["everyone"], keys["everyone"])] == ["lucky"]


def test_an_event_without_records_fails_the_invocation(keys: dict[str, str]) -> None:
    # SNS never sends one; if it came, Chalice's SNSEvent refuses it before the handler, the invocation fails and
    # Lambda's retries and on-failure destination keep it (nothing is consumed silently).
    with pytest.raises(IndexError):
        on_chat_message({"Records": []}, LambdaContext())

    assert kept("quarantine/invalid/chat-stream/") == {}


# --- Item 6: quarantine keys ---


def test_issue7_item6_records_without_a_usable_message_id_each_get_their_own_key(keys: dict[str, str]) -> None:
    # Given five unreadable records with no usable MessageId (absent, not a string, empty, path-like, too long)
    records = [unreadable(), unreadable(None), unreadable(""), unreadable("../../x"), unreadable("m" * 300)]

    invoke(*records)

    objects = kept("quarantine/invalid/chat-stream/")
    assert len(objects) == 5
    assert sorted(json.dumps(o["record"], sort_keys=True) for o in objects.values()) == sorted(
        json.dumps(r, sort_keys=True) for r in records
    )


def test_issue7_item6_records_sharing_a_message_id_are_kept_apart_and_a_redelivery_overwrites_its_own(
    keys: dict[str, str],
) -> None:
    first, second = unreadable("sns-1"), {**unreadable("sns-1"), "Message": "also not json"}

    invoke(first, second)
    invoke(first)  # SNS redelivers the first

    objects = kept("quarantine/invalid/chat-stream/")
    assert sorted(o["record"]["Message"] for o in objects.values()) == ["also not json", "not json"]
    assert all(key.rsplit("/", 1)[1].startswith("sns-1-") for key in objects)


# --- Item 7: missing MessageAttributes fail closed ---


def test_issue7_item7_an_item_of_unknown_visibility_and_instance_reaches_no_filtered_destination_and_is_kept(
    keys: dict[str, str], receivers: dict[str, Receiver], relay_output: Callable[[], str]
) -> None:
    # Given an agent's note whose record lost its MessageAttributes (so its visibility and instance are unknown)
    note = sns_of("chat/no-message-attributes.json", ParticipantRole="AGENT", Content="internal: VIP, refund ok")

    invoke(note)

    # Then the unfiltered destination gets it, saying the visibility is unknown; the filtered ones do not
    (envelope,) = delivered(receivers["everyone"], keys["everyone"])
    assert (envelope["data"]["visibility"], envelope["data"]["instance_id"]) == (None, None)
    assert not receivers["customers"].requests
    assert not receivers["instance"].requests
    # and what their filters could not decide is kept, with the reason, and counted
    undecided = kept("quarantine/undecided/")
    assert {(key.split("/")[2], o["reason"]) for key, o in undecided.items()} == {
        ("customers", UNKNOWN_VISIBILITY),
        ("instance", UNKNOWN_INSTANCE),
    }
    assert all(o["event"] == envelope for o in undecided.values())
    assert emitted_metrics(relay_output())["FilterUndecided"] == 2


def test_issue7_item7_without_attributes_the_body_visibility_and_instance_decide(
    keys: dict[str, str], receivers: dict[str, Receiver]
) -> None:
    # Given a record without MessageAttributes whose body says AGENT-only, on the instance
    note = sns_of(
        "chat/no-message-attributes.json", ParticipantRole="AGENT", MessageVisibility="AGENT", InstanceId=INSTANCE
    )

    invoke(note)

    # Then the customer side never sees it, the instance's destination gets it, and nothing is left undecided
    assert not receivers["customers"].requests
    (envelope,) = delivered(receivers["instance"], keys["instance"])
    assert (envelope["data"]["visibility"], envelope["data"]["instance_id"]) == ("AGENT", INSTANCE)
    assert kept("quarantine/undecided/") == {}


# --- Item 15: non-finite numbers ---


@pytest.mark.parametrize("content", ["1e400", '{"total": -1e400, "items": [1, 2]}', "[" + "9" * 400 + "]"])
def test_issue7_item15_numbers_beyond_a_double_reach_receivers_as_strict_json(
    keys: dict[str, str], receivers: dict[str, Receiver], content: str
) -> None:
    invoke(sns_of("chat/message-application-json.json", Content=content))

    for name in ("everyone", "instance"):
        (envelope,) = delivered(receivers[name], keys[name])  # orjson refuses Infinity and NaN
        assert envelope["data"]["json"] is None
        assert envelope["data"]["content"] == content
