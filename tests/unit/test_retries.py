"""The retry schedule, Standard Webhooks' status rules, and the retry ticket's round trip."""

# ruff: noqa: S311 - seeded generators make the jitter reproducible; nothing here is secret

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.delivery import DeliveryResult
from chalicelib.destinations import RelayConfigError, parse_relay_config
from chalicelib.events import RelayEvent
from chalicelib.retries import (
    DEFAULT_RETRY_POLICY,
    Attempt,
    RetryPolicy,
    RetryTicket,
    RetryTicketInvalidError,
    Verdict,
    first_ticket,
    verdict,
    wait_before,
)

EVENT = RelayEvent(
    type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"content": "hi"}, webhook_id="msg_1"
)


def answered(status: int | None, *, retry_after: int | None = None, refused: bool = False) -> DeliveryResult:
    if status is None:
        return DeliveryResult.unsent(EVENT, "hook", "connection failed", retryable=not refused)
    return DeliveryResult(
        destination="hook",
        webhook_id="msg_1",
        event_type="chat.message",
        ok=200 <= status < 300,
        status=status,
        error=None,
        latency_ms=1.0,
        retryable=status >= 500 or status in {408, 425, 429},
        retry_after_seconds=retry_after,
        disable_endpoint=status == 410,
    )


def test_the_default_schedule_is_svix_s_eight_attempts_over_about_27_6_hours() -> None:
    assert DEFAULT_RETRY_POLICY.schedule == (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert round(sum(DEFAULT_RETRY_POLICY.schedule) / 3600, 1) == 27.6


@given(seed=st.integers(), attempt=st.integers(min_value=2, max_value=8))
def test_each_wait_is_jittered_within_20_percent(seed: int, attempt: int) -> None:
    wait = wait_before(attempt, DEFAULT_RETRY_POLICY, answered(500), random.Random(seed))
    nominal = DEFAULT_RETRY_POLICY.schedule[attempt - 1]
    assert nominal * 0.8 <= wait <= min(nominal * 1.2, DEFAULT_RETRY_POLICY.longest_wait)


@pytest.mark.parametrize(
    ("status", "retry_client_errors", "expected"),
    [
        (200, True, Verdict.DELIVERED),
        (204, True, Verdict.DELIVERED),
        (301, True, Verdict.RETRY),
        (302, False, Verdict.RETRY),
        (400, True, Verdict.RETRY),
        (404, False, Verdict.REJECTED),
        (408, False, Verdict.RETRY),
        (410, True, Verdict.GONE),
        (429, False, Verdict.RETRY),
        (500, False, Verdict.RETRY),
        (503, True, Verdict.RETRY),
        (None, True, Verdict.RETRY),
    ],
)
def test_standard_webhooks_status_rules(status: int | None, retry_client_errors: bool, expected: Verdict) -> None:
    policy = RetryPolicy(retry_client_errors=retry_client_errors)
    assert verdict(answered(status), 1, policy) is expected


def test_what_the_relay_refuses_to_send_is_not_retried() -> None:
    assert verdict(answered(None, refused=True), 1, DEFAULT_RETRY_POLICY) is Verdict.REJECTED


def test_the_last_attempt_failing_exhausts_the_delivery() -> None:
    assert verdict(answered(500), 7, DEFAULT_RETRY_POLICY) is Verdict.RETRY
    assert verdict(answered(500), 8, DEFAULT_RETRY_POLICY) is Verdict.EXHAUSTED


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retry_after_is_honoured_up_to_the_schedule_s_longest_wait(status: int) -> None:
    policy = RetryPolicy(schedule=(0, 5, 600))
    rng = random.Random(1)
    assert wait_before(2, policy, answered(status, retry_after=120), rng) == 120
    assert wait_before(2, policy, answered(status, retry_after=10**6), rng) == 600


def test_retry_after_of_other_statuses_is_ignored() -> None:
    policy = RetryPolicy(schedule=(0, 5, 600))
    assert wait_before(2, policy, answered(500, retry_after=120), random.Random(1)) <= 6


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(data=st.dictionaries(st.text(alphabet=st.characters(codec="utf-8")), json_values, max_size=6))
def test_a_ticket_carries_the_event_s_body_byte_for_byte(data: dict[str, object]) -> None:
    event = RelayEvent(type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data=data, webhook_id="msg_x")
    try:
        body = event.body
    except UnicodeEncodeError:
        return  # a lone surrogate in a value: such an event never reaches the fan-out
    ticket = first_ticket("hook", event, Attempt(1, 1.0, 503, "HTTP 503", 2.0), 10.0)
    message = ticket.to_json()
    assert message.isascii()
    again = RetryTicket.from_json(message)
    assert again.event is not None
    assert again.event.body == body
    assert again.attempts == ticket.attempts


@pytest.mark.parametrize(
    "message",
    ["", "[]", '{"v": 2}', '{"v": 1, "destination": "a"}', '{"v":1,"destination":"a","webhook_id":"b","not_before":1}'],
)
def test_an_unreadable_ticket_is_refused(message: str) -> None:
    with pytest.raises(RetryTicketInvalidError):
        RetryTicket.from_json(message)


def destination(**fields: object) -> dict[str, object]:
    return {"name": "hook", "url": "https://hook.example.com/", "secrets": ["ssm:/x"], **fields}


def test_a_destination_sets_its_own_schedule_and_client_error_rule() -> None:
    config = parse_relay_config(
        {"version": 1, "destinations": [destination(retry_schedule=[0, 1, 2.5], retry_client_errors=False)]},
        source="test",
    )
    (hook,) = config.destinations
    assert hook.retry_policy == RetryPolicy(schedule=(0, 1, 2.5), retry_client_errors=False)


@pytest.mark.parametrize("schedule", [[], [5, 10], [0, -1], [0, "5"], [0, True], [0] * 21, [0, 10**7], "0,5"])
def test_an_invalid_schedule_is_refused(schedule: object) -> None:
    with pytest.raises(RelayConfigError, match="retry_schedule"):
        parse_relay_config({"version": 1, "destinations": [destination(retry_schedule=schedule)]}, source="test")
