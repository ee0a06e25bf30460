"""The published JSON Schemas: one per catalogue type, valid draft 2020-12, matching every event the relay builds."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from jsonschema import Draft202012Validator, FormatChecker

from chalicelib.chat_items import ChatItemInvalidError, parse_sns_record
from chalicelib.events import EVENT_TYPES, SCHEMA_DIR, event_from_chat_item
from tests.schemas import load_schema
from tests.unit.test_chat_items import sns_records

FIXTURES = Path(__file__).parents[1] / "events" / "chat"
VALID_FIXTURES = sorted(FIXTURES.glob("*.json"))
FORMAT_CHECKER = FormatChecker()


def validator(event_type: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(event_type), format_checker=FORMAT_CHECKER)


def errors(envelope: dict[str, Any]) -> list[str]:
    """Every validation error of ``envelope`` against its own type's schema."""
    return [error.message for error in validator(envelope["type"]).iter_errors(envelope)]


def fixture_envelope(name: str) -> dict[str, Any]:
    sns = json.loads((FIXTURES / name).read_text(encoding="utf-8"))["Records"][0]["Sns"]
    return event_from_chat_item(parse_sns_record(sns)).envelope()


def call_started() -> dict[str, Any]:
    return {
        "type": "call.started",
        "timestamp": "2024-03-20T09:36:56.174Z",
        "version": 1,
        "data": {
            "contact_id": "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e",
            "participant_id": "6f0c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
            "display_name": "Jane",
            "instance_id": "c800978e-fdc0-406e-bbb0-4f575f5842a6",
            "allowed_capabilities": {"Customer": {"Video": "SEND", "ScreenShare": "SEND"}},
            "flow": "video-support",
        },
    }


def test_format_checker_checks_timestamps() -> None:
    """The date-time format is actually checked (it needs rfc3339-validator), so timestamp tests mean something."""
    assert "date-time" in FORMAT_CHECKER.checkers
    assert not FORMAT_CHECKER.conforms("2024-03-20 09:36", "date-time")


def test_one_schema_file_per_catalogue_type() -> None:
    """The schema directory holds exactly one file per event type, no more."""
    assert sorted(path.name for path in SCHEMA_DIR.glob("*.json")) == sorted(f"{t}.schema.json" for t in EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_schema_is_valid_draft_2020_12(event_type: str) -> None:
    """Each schema is itself valid, declares draft 2020-12, and pins its type and version."""
    schema = load_schema(event_type)

    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["properties"]["type"] == {"const": event_type}
    assert schema["properties"]["version"] == {"const": 1}
    assert schema["additionalProperties"] is False
    assert schema["properties"]["data"]["additionalProperties"] is True


@pytest.mark.parametrize("path", VALID_FIXTURES, ids=lambda p: p.name)
def test_every_fixture_event_validates(path: Path) -> None:
    """Given a recorded item, then the event the relay builds from it validates against its type's schema."""
    assert errors(fixture_envelope(path.name)) == []


def test_call_started_example_validates() -> None:
    """A call.started envelope of the documented shape validates."""
    assert errors(call_started()) == []


def _without(envelope: dict[str, Any], *path: str | int) -> dict[str, Any]:
    broken = copy.deepcopy(envelope)
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return broken


def _with(envelope: dict[str, Any], value: Any, *path: str | int) -> dict[str, Any]:
    broken = copy.deepcopy(envelope)
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return broken


MESSAGE = fixture_envelope("sns-record-customer-message.json")
INTERACTIVE = fixture_envelope("message-interactive-list-picker.json")
RECEIPT = fixture_envelope("event-message-read.json")
ATTACHMENT = fixture_envelope("attachment.json")
CALL = call_started()

BROKEN = {
    "missing data": _without(MESSAGE, "data"),
    "missing timestamp": _without(MESSAGE, "timestamp"),
    "missing version": _without(MESSAGE, "version"),
    "extra top-level key": _with(MESSAGE, "x", "extra"),
    "version 2": _with(MESSAGE, 2, "version"),
    "version true": _with(MESSAGE, True, "version"),
    "timestamp not date-time": _with(MESSAGE, "20/03/2024 09:36", "timestamp"),
    "timestamp a number": _with(MESSAGE, 1710927416, "timestamp"),
    "data missing item_id": _without(MESSAGE, "data", "item_id"),
    "data missing content": _without(MESSAGE, "data", "content"),
    "empty item_id": _with(MESSAGE, "", "data", "item_id"),
    "participant missing role": _without(MESSAGE, "data", "participant", "role"),
    "unknown visibility": _with(MESSAGE, "EVERYONE", "data", "visibility"),
    "content too long": _with(MESSAGE, "c" * 16385, "data", "content"),
    "message not MESSAGE": _with(MESSAGE, "EVENT", "data", "connect_type"),
    "interactive missing": _without(INTERACTIVE, "data", "interactive"),
    "interactive an array": _with(INTERACTIVE, [], "data", "interactive"),
    "receipt missing receipts": _without(RECEIPT, "data", "receipts"),
    "receipt type unknown": _with(RECEIPT, "seen", "data", "receipt_type"),
    "receipt missing read_at": _without(RECEIPT, "data", "receipts", 0, "read_at"),
    "attachment without id": _without(ATTACHMENT, "data", "attachments", 0, "attachment_id"),
    "call missing flow": _without(CALL, "data", "flow"),
    "call with a participant token": _with(CALL, "secret", "data", "participant_token"),
    "call with a join token": _with(CALL, "secret", "data", "JoinToken"),
}


@pytest.mark.parametrize("envelope", BROKEN.values(), ids=BROKEN.keys())
def test_broken_envelope_is_rejected(envelope: dict[str, Any]) -> None:
    """Given an envelope with one thing broken, then its schema rejects it."""
    assert errors(envelope) != []


def test_unknown_data_keys_are_allowed() -> None:
    """Consumers validating today's schema keep accepting tomorrow's events with new data keys."""
    assert errors(_with(MESSAGE, "new", "data", "future_key")) == []
    assert errors(_with(CALL, "new", "data", "future_key")) == []


@settings(max_examples=300, deadline=None)
@given(sns=sns_records)
def test_every_event_the_relay_can_build_validates(sns: dict[str, Any]) -> None:
    """Given any record that parses, then its event validates against its schema and its body is UTF-8 JSON."""
    try:
        item = parse_sns_record(sns)
    except ChatItemInvalidError:
        return
    event = event_from_chat_item(item)

    assert errors(event.envelope()) == []
    assert json.loads(event.body.decode("utf-8")) == event.envelope()
