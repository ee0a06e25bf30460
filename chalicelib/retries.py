"""Retrying deliveries: the schedule, what each answer means (Standard Webhooks' rules), and the retry ticket.

A delivery that does not get a 2xx is retried from the SQS retry queue, outside the invocation that tried it.
The default schedule is svix's: immediately (the first attempt, on the hot path), then 5 s, 5 min, 30 min, 2 h,
5 h, 10 h and 10 h, each wait with ±20 % jitter: 8 attempts over about 27.6 hours. SQS delays a message by at
most 15 minutes, so a longer wait hops through the queue: the ticket carries a not-before time, and a ticket
that arrives early is sent back with the delay that is left (at most 15 minutes a hop).

Status rules: 2xx delivered; 3xx a failure, never followed; 410 Gone is permanent and says to disable the
endpoint; 429, 502, 503 and 504 honour ``Retry-After``, bounded by the schedule's longest wait; other 4xx are
retried, or permanent where the destination sets ``retry_client_errors: false``; no answer (refused, timed out)
is retried, except what the relay refuses to send (plain http, an internal address), which retrying cannot fix.

Deferrals: while a destination's circuit breaker is open its tickets are put off without spending an attempt
(:func:`deferral_wait`): each deferral waits the schedule step the ticket is on, one step further each time, never
less than the breaker's cooldown; a ticket still deferred once its schedule's span (jitter included) has passed
since it began is dead-lettered. A rate limit's deferral is not one of these: it waits a second, uncounted.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Final

from chalicelib.errors import RelayError
from chalicelib.events import RelayEvent

if TYPE_CHECKING:
    from chalicelib.delivery import DeliveryResult

# Waits before each attempt, in seconds: the first attempt is the hot path's own.
DEFAULT_SCHEDULE: Final = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
JITTER: Final = 0.2
MAX_ATTEMPTS: Final = 20
MAX_WAIT_SECONDS: Final = 7 * 24 * 3600.0
SQS_MAX_DELAY_SECONDS: Final = 900
BACKOFF_STATUSES: Final = frozenset({429, 502, 503, 504})
# Client errors that say "not now" rather than "never": retried whatever the destination says of other 4xx.
TRANSIENT_CLIENT_STATUSES: Final = frozenset({408, 425, 429})
TICKET_VERSION: Final = 1
MAX_ERROR_CHARS: Final = 200


@dataclass(frozen=True)
class RetryPolicy:
    """How one destination is retried: the waits before each attempt, and whether other 4xx are worth retrying."""

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    retry_client_errors: bool = True

    @property
    def attempts(self) -> int:
        """How many attempts in all, the first one included."""
        return len(self.schedule)

    @property
    def longest_wait(self) -> float:
        """The longest wait of the schedule: ``Retry-After`` never pushes a retry past it."""
        return max(self.schedule)

    @property
    def horizon(self) -> float:
        """Seconds from a delivery's first try to the latest its last attempt could come (every wait jittered
        up): a ticket deferred past it is dead-lettered."""
        return sum(self.schedule) * (1 + JITTER)


DEFAULT_RETRY_POLICY: Final = RetryPolicy()


class Verdict(Enum):
    """What one attempt comes to."""

    DELIVERED = "delivered"
    RETRY = "retry"
    EXHAUSTED = "exhausted"  # the last attempt failed
    GONE = "gone"  # 410: permanent, and the endpoint is to be disabled
    REJECTED = "rejected"  # permanent: a 4xx the destination does not retry, or a request the relay refuses


@dataclass(frozen=True)
class Attempt:
    """One attempt, as the dead letter's log shows it: when, what came back, a short reason and the start of the
    receiver's answer."""

    number: int
    at: float
    status: int | None
    error: str | None
    latency_ms: float
    excerpt: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the ticket and the dead letter."""
        return {
            "attempt": self.number,
            "at": round(self.at, 3),
            "status": self.status,
            "error": self.error,
            "latency_ms": round(self.latency_ms, 1),
            "excerpt": self.excerpt,
        }

    @classmethod
    def of(cls, number: int, result: DeliveryResult, at: float) -> Attempt:
        """The record of ``result``, the ``number``-th attempt."""
        error = result.error[:MAX_ERROR_CHARS] if result.error else None
        return cls(number, at, result.status, error, result.latency_ms, result.excerpt)


def verdict(result: DeliveryResult, attempt: int, policy: RetryPolicy) -> Verdict:
    """What the ``attempt``-th attempt (1 for the hot path's) came to, by Standard Webhooks' rules."""
    if result.ok:
        return Verdict.DELIVERED
    status = result.status
    if status == 410:
        return Verdict.GONE
    if status is None:
        if not result.retryable:
            return Verdict.REJECTED
    elif 400 <= status < 500 and status not in TRANSIENT_CLIENT_STATUSES and not policy.retry_client_errors:
        return Verdict.REJECTED
    return Verdict.RETRY if attempt < policy.attempts else Verdict.EXHAUSTED


def wait_before(attempt: int, policy: RetryPolicy, result: DeliveryResult, rng: random.Random) -> float:
    """Seconds to wait before attempt number ``attempt`` (2 or more) after ``result``; jittered ±20 %."""
    wait = policy.schedule[attempt - 1] * (1 + rng.uniform(-JITTER, JITTER))
    if result.status in BACKOFF_STATUSES and result.retry_after_seconds is not None:
        wait = max(wait, float(result.retry_after_seconds))
    return min(wait, policy.longest_wait)


def deferral_wait(
    ticket: RetryTicket, policy: RetryPolicy, cooldown: float, at: float, rng: random.Random
) -> float | None:
    """Seconds to put ``ticket`` off at ``at`` while its destination's breaker stays open ``cooldown`` seconds
    more; None when the ticket is to be dead-lettered: the schedule's horizon has passed since it began.

    The wait is the schedule step the ticket is on (attempts and deferrals so far), jittered and at most the
    schedule's longest wait, but never shorter than the cooldown (sooner, only the probe could go), and never past
    the horizon. A destination that stays down thus costs each ticket one trip per schedule step, not one per
    cooldown, and a bounded number in all.
    """
    began = ticket.began if ticket.began is not None else at
    left = began + policy.horizon - at
    if left <= 0:
        return None
    step = policy.schedule[min(ticket.attempted + ticket.deferrals, policy.attempts - 1)]
    wait = max(min(step * (1 + rng.uniform(-JITTER, JITTER)), policy.longest_wait), cooldown)
    return min(wait, left)


class RetryTicketInvalidError(RelayError):
    """A retry queue message the relay cannot read (kept in the quarantine, never retried blindly)."""


@dataclass(frozen=True)
class RetryTicket:
    """A delivery waiting for its next attempt: the destination, the event, the attempts so far, and when next.

    ``event`` is None when the event's body was too large for a queue message and sits in S3 at ``event_ref``.
    ``resend``: an explicit re-send (a replay), delivered whatever the delivery ledger says.
    ``deferrals``: how many times it was put off by its destination's open breaker (no attempt spent), the first
    time at ``deferred_since``. Both are left out of the message when there were none, so a ticket queued before
    they existed reads as never deferred.
    """

    destination: str
    webhook_id: str
    event: RelayEvent | None
    not_before: float
    attempts: tuple[Attempt, ...] = ()
    event_ref: str | None = None
    redriven: int = 0
    resend: bool = False
    deferrals: int = 0
    deferred_since: float | None = None

    @property
    def attempted(self) -> int:
        """How many attempts were made."""
        return len(self.attempts)

    @property
    def began(self) -> float | None:
        """When the delivery was first tried: its first attempt, or its first deferral if it was never attempted."""
        return self.attempts[0].at if self.attempts else self.deferred_since

    def to_json(self, *, by_reference: str | None = None) -> str:
        """The queue message: ASCII JSON (SQS refuses some characters a body may hold)."""
        doc: dict[str, Any] = {
            "v": TICKET_VERSION,
            "destination": self.destination,
            "webhook_id": self.webhook_id,
            "not_before": round(self.not_before, 3),
            "attempts": [a.as_dict() for a in self.attempts],
        }
        if self.redriven:
            doc["redriven"] = self.redriven
        if self.resend:
            doc["resend"] = True
        if self.deferrals:
            doc["deferrals"] = self.deferrals
            if self.deferred_since is not None:
                doc["deferred_since"] = round(self.deferred_since, 3)
        ref = by_reference or self.event_ref
        if ref is not None:
            doc["event_ref"] = ref
        elif self.event is not None:
            doc["event"] = self.event.envelope()
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> RetryTicket:
        """Read a queue message; :class:`RetryTicketInvalidError` if it is not a ticket."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("v") != TICKET_VERSION:
                raise ValueError("not a version 1 ticket")
            destination = doc["destination"]
            webhook_id = doc["webhook_id"]
            if not isinstance(destination, str) or not isinstance(webhook_id, str):
                raise ValueError("destination and webhook_id must be strings")
            envelope = doc.get("event")
            event = event_from_envelope(envelope, webhook_id) if envelope is not None else None
            ref = doc.get("event_ref")
            if event is None and not isinstance(ref, str):
                raise ValueError("neither event nor event_ref")
            attempts = tuple(
                Attempt(
                    int(a["attempt"]),
                    float(a["at"]),
                    a.get("status"),
                    a.get("error"),
                    float(a["latency_ms"]),
                    a.get("excerpt"),
                )
                for a in doc.get("attempts", [])
            )
            since = doc.get("deferred_since")
            return cls(
                destination=destination,
                webhook_id=webhook_id,
                event=event,
                not_before=float(doc["not_before"]),
                attempts=attempts,
                event_ref=ref if isinstance(ref, str) else None,
                redriven=int(doc.get("redriven", 0)),
                resend=doc.get("resend") is True,
                deferrals=int(doc.get("deferrals", 0)),
                deferred_since=None if since is None else float(since),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RetryTicketInvalidError(f"unreadable retry ticket: {type(exc).__name__}: {exc}"[:300]) from None

    def later(self, not_before: float) -> RetryTicket:
        """The same attempt, put off until ``not_before`` (a destination whose rate is spent), uncounted."""
        return replace(self, not_before=not_before)

    def deferred(self, not_before: float, at: float) -> RetryTicket:
        """The same attempt, put off at ``at`` until ``not_before`` by an open breaker: counted as a deferral."""
        since = self.deferred_since if self.deferred_since is not None else at
        return replace(self, not_before=not_before, deferrals=self.deferrals + 1, deferred_since=since)

    def after(self, attempt: Attempt, not_before: float) -> RetryTicket:
        """The ticket for the next attempt."""
        return replace(self, not_before=not_before, attempts=(*self.attempts, attempt))


def event_from_envelope(envelope: Any, webhook_id: str) -> RelayEvent:
    """The event whose ``envelope()`` is ``envelope``: the same body, byte for byte, as its first attempt."""
    if not isinstance(envelope, dict):
        raise ValueError("event must be an object")
    kind, timestamp, data = envelope.get("type"), envelope.get("timestamp"), envelope.get("data")
    if not isinstance(kind, str) or not isinstance(timestamp, str) or not isinstance(data, dict):
        raise ValueError("event needs type, timestamp and data")
    return RelayEvent(type=kind, timestamp=timestamp, data=data, webhook_id=webhook_id)


def first_ticket(
    destination: str, event: RelayEvent, attempt: Attempt, not_before: float, *, resend: bool = False
) -> RetryTicket:
    """The ticket of a delivery whose first attempt failed."""
    return RetryTicket(destination, event.webhook_id, event, not_before, (attempt,), resend=resend)


def now() -> float:
    """Wall-clock seconds: not-before times cross containers, so they cannot be monotonic readings."""
    return time.time()
