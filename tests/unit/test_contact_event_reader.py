"""The decision to start streaming, over a table of recorded contact events."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.contact_event_reader import SkipReason, decide, instance_id_from_arn, read_contact_event
from tests.conftest import INSTANCE_ID, load_event

ALLOWED = frozenset({INSTANCE_ID})
FIRST = "a1b2c3d4-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("fixture", "skip"),
    [
        ("contact/chat-initiated.json", None),
        ("contact/chat-initiated-pascal-case.json", None),
        ("contact/chat-initiated-instance-arn-key.json", None),
        ("contact/chat-initiated-arn-only-in-resources.json", None),
        ("contact/chat-initiated-sms.json", None),
        ("contact/chat-transfer.json", SkipReason.FOLLOW_ON_SEGMENT),
        ("contact/chat-queue-transfer.json", SkipReason.FOLLOW_ON_SEGMENT),
        ("contact/chat-disconnect-flow.json", SkipReason.FOLLOW_ON_SEGMENT),
        ("contact/chat-contact-data-updated.json", SkipReason.NOT_INITIATED),
        ("contact/voice-initiated.json", SkipReason.NOT_CHAT),
        ("contact/webrtc-initiated.json", SkipReason.NOT_CHAT),
        ("contact/chat-initiated-other-instance.json", SkipReason.INSTANCE_NOT_ALLOWED),
    ],
)
def test_decision_over_recorded_events(fixture: str, skip: SkipReason | None) -> None:
    # Given a recorded contact event, When the relay decides, Then it starts or skips for the right reason.
    decision = decide(load_event(fixture), allowed_instance_ids=ALLOWED)
    assert decision.skip == skip
    assert (decision.event is not None and decision.skip is None) is (skip is None)


def test_first_segment_streams_on_its_own_contact_id() -> None:
    decision = decide(load_event("contact/chat-initiated.json"), allowed_instance_ids=ALLOWED)
    assert decision.event is not None
    assert decision.event.initial_contact_id == FIRST
    assert decision.event.instance_id == INSTANCE_ID
    assert decision.event.region == "us-east-1"


def test_transfer_segment_keys_on_the_initial_contact() -> None:
    event = read_contact_event(load_event("contact/chat-transfer.json"))
    assert event.contact_id != FIRST
    assert event.initial_contact_id == FIRST


def test_a_duplicate_delivery_decides_the_same() -> None:
    event = load_event("contact/chat-initiated.json")
    assert decide(event, allowed_instance_ids=ALLOWED) == decide(copy.deepcopy(event), allowed_instance_ids=ALLOWED)


def _mutated(mutate: Any) -> dict[str, Any]:
    event = load_event("contact/chat-initiated.json")
    mutate(event)
    return event  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("event", "skip"),
    [
        (_mutated(lambda e: e.update(source="aws.s3")), SkipReason.NOT_A_CONTACT_EVENT),
        (_mutated(lambda e: e.pop("detail")), SkipReason.MALFORMED),
        (_mutated(lambda e: e.update(detail=["not", "an", "object"])), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].pop("contactId")), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].update(contactId="x" * 257)), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].update(initialContactId="x" * 257)), SkipReason.MALFORMED),
        (_mutated(lambda e: (e["detail"].pop("instanceArn"), e.pop("resources"))), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].update(instanceArn="arn:aws:sns:us-east-1:1:t")), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].update(contactId=12345)), SkipReason.MALFORMED),
        (_mutated(lambda e: e["detail"].pop("eventType")), SkipReason.NOT_INITIATED),
        (_mutated(lambda e: e["detail"].update(eventType="PAUSED")), SkipReason.NOT_INITIATED),
        (_mutated(lambda e: e["detail"].update(channel="TASK")), SkipReason.NOT_CHAT),
        (_mutated(lambda e: e["detail"].update(channel="EMAIL")), SkipReason.NOT_CHAT),
        (_mutated(lambda e: e["detail"].pop("channel")), SkipReason.NOT_CHAT),
        (_mutated(lambda e: e["detail"].update(channel="chat")), None),
        (_mutated(lambda e: e["detail"].update(initiationMethod="INBOUND")), None),
    ],
)
def test_edge_cases(event: dict[str, Any], skip: SkipReason | None) -> None:
    assert decide(event, allowed_instance_ids=ALLOWED).skip == skip


def test_instance_id_from_contact_arn() -> None:
    arn = f"arn:aws:connect:eu-west-2:111122223333:instance/{INSTANCE_ID}/contact/abc"
    assert instance_id_from_arn(arn) == (INSTANCE_ID, "eu-west-2")
    assert instance_id_from_arn("arn:aws:connect:eu-west-2:1:instance/x") is None
    assert instance_id_from_arn("arn:aws:connect:eu-west-2:111122223333:instance/" + "a" * 101) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)


@given(detail=st.dictionaries(st.sampled_from(["eventType", "channel", "contactId", "instanceArn", "x"]), json_values))
def test_any_detail_gives_a_decision_never_an_exception(detail: dict[str, Any]) -> None:
    decision = decide({"source": "aws.connect", "detail": detail, "resources": []}, allowed_instance_ids=ALLOWED)
    assert decision.skip is not None or decision.event is not None
