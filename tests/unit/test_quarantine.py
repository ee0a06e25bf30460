"""The quarantine's keys (moto's S3, in process): every kept record has a key of its own, and a redelivered record
overwrites its own copy only."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import clients
from chalicelib.adapters.quarantine import Quarantine
from chalicelib.events import RelayEvent
from tests.conftest import QUARANTINE_BUCKET


@pytest.fixture
def quarantine(aws: None) -> Quarantine:
    return Quarantine(clients.s3(), QUARANTINE_BUCKET, "quarantine/")


def stored(prefix: str = "quarantine/") -> dict[str, dict[str, Any]]:
    s3 = clients.s3()
    listing = s3.list_objects_v2(Bucket=QUARANTINE_BUCKET, Prefix=prefix).get("Contents", [])
    return {o["Key"]: json.loads(s3.get_object(Bucket=QUARANTINE_BUCKET, Key=o["Key"])["Body"].read()) for o in listing}


def keep(quarantine: Quarantine, record_id: str | None, record: Any) -> str:
    return quarantine.keep_invalid(
        source="chat-stream", record_id=record_id, reason="Message is not JSON", record=record
    )


def test_a_record_with_an_id_is_kept_under_it_and_a_redelivery_overwrites_its_own_copy(quarantine: Quarantine) -> None:
    record = {"MessageId": "30fdd852-2b8a", "Message": "x"}

    first, again = keep(quarantine, "30fdd852-2b8a", record), keep(quarantine, "30fdd852-2b8a", record)

    assert first == again
    assert re.fullmatch(r"quarantine/invalid/chat-stream/\d{4}/\d{2}/\d{2}/30fdd852-2b8a-[0-9a-f]{16}\.json", first)
    assert list(stored()) == [first]


def test_issue7_item6_records_sharing_an_id_but_not_their_content_get_a_key_each(quarantine: Quarantine) -> None:
    keys = {keep(quarantine, "same-id", {"Message": text}) for text in ("a", "b", "c")}

    assert len(keys) == 3
    assert len(stored()) == 3


@pytest.mark.parametrize("record_id", [None, "", "unknown/../../x", "a b", "m" * 129, "ü-id", "-leading-dash"])
def test_issue7_item6_records_without_a_usable_id_each_get_a_fresh_key(
    quarantine: Quarantine, record_id: str | None
) -> None:
    """Even two identical records without a usable id are two objects: each arrival is kept."""
    record = {"Message": "not json"}

    first, second = keep(quarantine, record_id, record), keep(quarantine, record_id, record)

    assert first != second
    assert all(key.rsplit("/", 1)[1].startswith("no-id-") for key in (first, second))
    assert [o["id"] for o in stored().values()] == [record_id, record_id]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(st.tuples(st.none() | st.text(max_size=6), st.text(max_size=6)), min_size=1, max_size=6))
def test_no_two_different_records_ever_share_a_key(
    quarantine: Quarantine, records: list[tuple[str | None, str]]
) -> None:
    """Given any ids (absent, odd, repeated) and contents, then one key never holds two different records."""
    holders: dict[str, tuple[str | None, str]] = {}
    for record_id, message in records:
        key = keep(quarantine, record_id, {"Message": message})
        assert holders.setdefault(key, (record_id, message)) == (record_id, message)


def test_an_undecided_event_is_kept_per_destination_with_its_reason(quarantine: Quarantine) -> None:
    event = RelayEvent(
        type="chat.message", timestamp="2024-03-20T09:36:56.174Z", data={"visibility": None}, webhook_id="msg_1"
    )

    key = quarantine.keep_undecided(event, "customers", "the event's visibility is unknown")

    assert re.fullmatch(r"quarantine/undecided/customers/\d{4}/\d{2}/\d{2}/msg_1\.json", key)
    (kept,) = stored().values()
    assert (kept["destination"], kept["reason"], kept["event"]) == (
        "customers",
        "the event's visibility is unknown",
        event.envelope(),
    )
