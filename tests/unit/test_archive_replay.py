"""Replays' pure parts: the request, the ticket, how an archive is listed by day and read back from its keys, and
what one replayed delivery came to."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters.archive import archive_key
from chalicelib.archive_replay import (
    ReplayTicket,
    day_prefixes,
    iso,
    key_pattern,
    outcome_of,
    parse_request,
)
from chalicelib.delivery import DeliveryResult
from chalicelib.destination_kinds import DATE_TEMPLATE, SESSION_TEMPLATE, ArchiveTarget
from chalicelib.destinations import Destination
from chalicelib.errors import RequestValidationError
from chalicelib.events import RelayEvent
from chalicelib.retries import RetryPolicy

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["destination", "initial_contact_id", "from", "to", "archive", "x"]), JSON))
def test_any_body_is_a_request_or_a_list_of_problems(body: dict[str, Any]) -> None:
    try:
        request = parse_request(body)
    except RequestValidationError as exc:
        problems = exc.problems
        request = None
    if request is None:
        assert problems
        return
    assert (request.initial_contact_id is None) != (request.start is None)


def test_a_range_is_read_in_utc_whatever_its_offset() -> None:
    request = parse_request({"destination": "crm", "from": "2026-11-22T01:00:00+02:00", "to": "2026-11-22T00:00:00Z"})
    assert request.start == datetime(2026, 11, 21, 23, tzinfo=UTC)
    assert request.end is not None
    assert iso(request.end) == "2026-11-22T00:00:00.000Z"


@given(st.text(max_size=80))
def test_any_queue_message_is_a_replay_ticket_or_not_one_never_an_error(text: str) -> None:
    ticket = ReplayTicket.of(text)
    assert ticket is None or ReplayTicket.of(ticket.to_json()) == ticket


def test_a_ticket_round_trips_and_retry_tickets_are_not_replay_tickets() -> None:
    ticket = ReplayTicket("0123456789abcdef0123456789abcdef", 400)
    assert ReplayTicket.of(ticket.to_json()) == ticket
    assert ReplayTicket.of(json.dumps({"v": 1, "destination": "crm", "webhook_id": "msg_1"})) is None
    assert ReplayTicket.of(json.dumps({"replay": "0123456789abcdef0123456789abcdef", "offset": -1})) is None


def test_a_date_partitioned_archive_is_listed_one_prefix_per_day_of_the_range() -> None:
    target = ArchiveTarget(bucket="lake", key_template=DATE_TEMPLATE)
    start, end = datetime(2026, 11, 22, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC)
    assert day_prefixes(target, start, end) == [
        "dt=2026-11-22/initial_contact_id=",
        "dt=2026-11-23/initial_contact_id=",
    ]
    parts = ArchiveTarget(bucket="lake", key_template="chat/{year}/{month}/{day}/{type}/{initial_contact_id}/{item_id}")
    assert day_prefixes(parts, start, datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC)) == [
        "chat/2026/11/22/",
        "chat/2026/11/23/",
    ]


def test_a_session_keyed_archive_cannot_be_listed_by_day() -> None:
    start, end = datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC)
    assert day_prefixes(ArchiveTarget(bucket="archive", key_template=SESSION_TEMPLATE), start, end) is None
    late_date = ArchiveTarget(bucket="archive", key_template="{initial_contact_id}/{date}/{item_id}")
    assert day_prefixes(late_date, start, end) is None


TEMPLATES = (SESSION_TEMPLATE, DATE_TEMPLATE, "x/{date}/{initial_contact_id}/{date}-{item_id}")
IDS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20)


@pytest.mark.parametrize("template", TEMPLATES)
@given(session=IDS, item_id=IDS)
def test_a_key_reads_back_into_its_session_and_time(template: str, session: str, item_id: str) -> None:
    event = RelayEvent(
        type="chat.message",
        timestamp="2026-11-22T23:59:59.125Z",
        data={"initial_contact_id": session, "item_id": item_id, "contact_id": session},
        webhook_id="msg_1",
    )
    key = archive_key(ArchiveTarget(bucket="b", key_template=template), event)
    match = key_pattern(template).match(key)
    assert match is not None
    assert match["initial_contact_id"] == archive_key(ArchiveTarget("b", "{initial_contact_id}"), event)
    if "{absolute_time}" in template:
        assert match["absolute_time"] == "2026-11-22T23:59:59.125Z"


def result(ok: bool, status: int | None, **fields: Any) -> DeliveryResult:
    return DeliveryResult(
        destination="crm",
        webhook_id="msg_1",
        event_type="chat.message",
        ok=ok,
        status=status,
        error=None if ok else "failed",
        latency_ms=1.0,
        retryable=fields.pop("retryable", True),
        retry_after_seconds=None,
        disable_endpoint=False,
        **fields,
    )


def test_each_delivery_counts_as_what_the_relay_made_of_it() -> None:
    destination = Destination(name="crm", url="https://crm.example.com/", retry_policy=RetryPolicy((0.0, 5.0)))
    strict = Destination(
        name="crm",
        url="https://crm.example.com/",
        retry_policy=RetryPolicy((0.0, 5.0), retry_client_errors=False),
    )
    assert outcome_of(result(True, 204), destination) == "delivered"
    assert outcome_of(result(False, 503), destination) == "retrying"
    assert outcome_of(result(False, None, held="deferred"), destination) == "retrying"
    assert outcome_of(result(False, 410, held="parked"), destination) == "parked"
    assert outcome_of(result(False, 404), strict) == "failed"
    assert outcome_of(result(False, None, retryable=False), destination) == "failed"
