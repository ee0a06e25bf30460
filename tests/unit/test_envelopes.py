"""Chalice builds each handler's event with its own class (SNSEvent, CloudWatchEvent), which reads fields of the
envelope before the handler runs. Real envelopes always carry them: SNS hands Lambda every record with ``Subject``
(null when none) and ``MessageAttributes`` ({} when none); every EventBridge event has the same top-level fields.
The recorded payloads say so, and the relay needs no event class of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chalice.app import CloudWatchEvent, SNSEvent

EVENTS = Path(__file__).parents[1] / "events"
SNS_FIXTURES = sorted((EVENTS / "chat").rglob("*.json"))
CONTACT_FIXTURES = sorted((EVENTS / "contact").glob("*.json"))
EVENTBRIDGE_FIELDS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}


@pytest.mark.parametrize("path", SNS_FIXTURES, ids=lambda p: p.name)
def test_every_recorded_sns_record_has_what_chalice_reads(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    for record in event["Records"]:
        assert {"Subject", "MessageAttributes", "Message"} <= set(record["Sns"])
    assert SNSEvent(event, None).to_dict() == event


@pytest.mark.parametrize("path", CONTACT_FIXTURES, ids=lambda p: p.name)
def test_every_recorded_contact_event_has_the_eventbridge_envelope(path: Path) -> None:
    event = json.loads(path.read_text(encoding="utf-8"))
    assert set(event) >= EVENTBRIDGE_FIELDS
    assert CloudWatchEvent(event, None).event_id == event["id"]
