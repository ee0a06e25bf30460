"""The retry schedule, Standard Webhooks' status rules, and the retry ticket's round trip."""

# ruff: noqa: S311 - seeded generators make the jitter reproducible; nothing here is secret

from __future__ import annotations

import json
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
    deferral_wait,
    first_ticket,
    verdict,
    wait_before,
)

EVENT = RelayEvent(
    type="chat.message", timestamp="2026-11-22T10:00:00.000Z", data={"content": "hi"}, webhook_id="msg_1"
)


class NoJitter(random.Random):
    """A generator whose jitter is always nil, so that waits are the schedule's own steps."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0


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


class TestDeferrals:
    """A ticket put off by its destination's open breaker: how long it waits, and when it stops waiting."""

    START = 1_800_000_000.0
    COOLDOWN = 30.0

    def fresh(self) -> RetryTicket:
        return RetryTicket("hook", "msg_1", EVENT, 0.0)

    def test_a_ticket_keeps_its_deferrals_and_one_queued_before_them_reads_as_never_deferred(self) -> None:
        ticket = self.fresh().deferred(self.START + 30, self.START).deferred(self.START + 60, self.START + 30)
        again = RetryTicket.from_json(ticket.to_json())
        assert (again.deferrals, again.deferred_since, again.began) == (2, self.START, self.START)
        older = '{"v":1,"destination":"hook","webhook_id":"msg_1","not_before":1,"attempts":[],"event":%s}'
        old = RetryTicket.from_json(older % json.dumps(EVENT.envelope()))
        assert (old.deferrals, old.deferred_since, old.began) == (0, None, None)
        assert "deferrals" not in self.fresh().to_json()

    def test_the_first_deferral_waits_the_cooldown_and_each_next_one_a_schedule_step_further(self) -> None:
        # Given the default schedule and no jitter to blur the steps
        ticket, at, waits = self.fresh(), self.START, []
        for _ in range(6):
            wait = deferral_wait(ticket, DEFAULT_RETRY_POLICY, self.COOLDOWN, at, NoJitter())
            assert wait is not None
            waits.append(wait)
            ticket, at = ticket.deferred(at + wait, at), at + wait
        # Then the waits follow the schedule, never shorter than the breaker's cooldown
        assert waits == [30.0, 30.0, 300.0, 1800.0, 7200.0, 18000.0]
        assert ticket.attempted == 0

    def test_a_ticket_with_attempts_waits_the_step_it_is_on_and_counts_from_its_first_attempt(self) -> None:
        policy = RetryPolicy(schedule=(0, 10, 100, 1000))
        tried = first_ticket("hook", EVENT, Attempt(1, self.START, 503, "HTTP 503", 1.0), 0.0)
        tried = tried.after(Attempt(2, self.START + 10, 503, "HTTP 503", 1.0), 0.0)
        wait = deferral_wait(tried, policy, 1.0, self.START + 120, random.Random(3))
        assert wait is not None
        assert 80 <= wait <= 120  # the step before attempt 3: 100 s ±20 %
        assert tried.began == self.START
        horizon = self.START + policy.horizon
        assert deferral_wait(tried, policy, 1.0, horizon - 5, random.Random(3)) == pytest.approx(5)
        assert deferral_wait(tried, policy, 1.0, horizon, random.Random(3)) is None

    @given(seed=st.integers(), attempted=st.integers(0, 7), deferrals=st.integers(0, 30), cooldown=st.integers(1, 3600))
    def test_a_deferral_is_at_least_the_cooldown_at_most_the_longest_wait_and_never_past_the_horizon(
        self, seed: int, attempted: int, deferrals: int, cooldown: int
    ) -> None:
        attempts = tuple(Attempt(n, self.START, 503, None, 1.0) for n in range(1, attempted + 1))
        ticket = RetryTicket("hook", "msg_1", EVENT, 0.0, attempts, deferrals=deferrals, deferred_since=self.START)
        at = self.START + 3600
        left = self.START + DEFAULT_RETRY_POLICY.horizon - at
        wait = deferral_wait(ticket, DEFAULT_RETRY_POLICY, cooldown, at, random.Random(seed))
        assert wait is not None
        assert min(cooldown, left) <= wait <= min(max(cooldown, DEFAULT_RETRY_POLICY.longest_wait), left)

    @given(seed=st.integers())
    def test_a_destination_that_stays_down_dead_letters_each_ticket_after_a_bounded_number_of_bounces(
        self, seed: int
    ) -> None:
        # Given a ticket deferred at every turn (the breaker never closes), on the default schedule
        rng, ticket, at, bounces = random.Random(seed), self.fresh(), self.START, 0
        while (wait := deferral_wait(ticket, DEFAULT_RETRY_POLICY, self.COOLDOWN, at, rng)) is not None:
            ticket, at, bounces = ticket.deferred(at + wait, at), at + wait, bounces + 1
            assert bounces < 20
        # Then it is given up once the schedule's jittered span (33.1 h) has passed, after 9 or 10 bounces,
        # where a wait of one cooldown each time would have bounced 3,972 times by then, and forever after
        assert at == pytest.approx(self.START + DEFAULT_RETRY_POLICY.horizon)
        assert 9 <= bounces <= 10
