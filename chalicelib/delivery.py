"""Fan one event out to its webhook destinations, concurrently, and say what each delivery came to.

Concurrency comes from ``WebhookSender.send_all``: every POST is moved on from the calling thread over
non-blocking sockets as they become ready, so fast receivers cost no thread handoffs; the thread pool only takes
DNS lookups, which cannot be made without blocking.

Every destination receives the same body bytes with the same ``webhook-id`` and ``webhook-timestamp``; only the
signature differs, because each destination has its own secrets. One destination failing, slowly or with an
exception, never affects another. Metrics are recorded on the calling thread: Powertools Metrics is not
thread-safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from chalicelib import __version__
from chalicelib.adapters.webhooks import WebhookPost
from chalicelib.observability import count, logger, milliseconds
from chalicelib.retry_after import retry_after_seconds
from chalicelib.signing import sign

if TYPE_CHECKING:
    from chalicelib.adapters.webhooks import WebhookOutcome, WebhookSender
    from chalicelib.events import RelayEvent

USER_AGENT = f"connect-chat-relay/{__version__}"
# Besides every 5xx: the receiver timed out reading (408), is not ready for early data (425), or is throttling (429).
RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
# Why an undelivered event waits where it does (see DeliveryResult.held).
Held = Literal["parked", "deferred", "paced"]


class WebhookTarget(Protocol):
    """What delivery needs of a destination (``chalicelib.destinations.Destination`` satisfies it)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def allow_http(self) -> bool: ...
    @property
    def allow_private_network(self) -> bool: ...


@dataclass(frozen=True)
class DeliveryResult:
    """What delivering one event to one destination came to; ``error`` never holds a secret or the url.

    ``held``: ``parked`` (kept for a disabled destination until it is re-enabled, instead of the retry path),
    ``deferred`` (not attempted: handed to the retry path by the destination's open circuit breaker, or because it
    is disabled and cannot be parked) or ``paced`` (not attempted: the destination's rate is spent this second).
    ``already_delivered``: not sent, because the delivery ledger knows this destination answered 2xx for this
    ``webhook-id`` before (``ok`` is then true).
    """

    destination: str
    webhook_id: str
    event_type: str
    ok: bool
    status: int | None = None
    error: str | None = None
    latency_ms: float = 0.0
    retryable: bool = False
    retry_after_seconds: int | None = None
    disable_endpoint: bool = False
    held: Held | None = None
    excerpt: str | None = None  # the start of a failed answer's body
    already_delivered: bool = False

    @classmethod
    def unsent(
        cls, event: RelayEvent, destination: str, error: str | None, *, retryable: bool, latency_ms: float = 0.0
    ) -> DeliveryResult:
        """A delivery that got no answer from the receiver (refused, unreachable, or never sent)."""
        return cls(
            destination=destination,
            webhook_id=event.webhook_id,
            event_type=event.type,
            ok=False,
            error=error,
            latency_ms=latency_ms,
            retryable=retryable,
        )

    @classmethod
    def already(cls, event: RelayEvent, destination: str) -> DeliveryResult:
        """A delivery not made again: the destination answered 2xx for this ``webhook-id`` before."""
        return cls(
            destination=destination,
            webhook_id=event.webhook_id,
            event_type=event.type,
            ok=True,
            already_delivered=True,
        )

    @classmethod
    def written(cls, event: RelayEvent, destination: str, *, latency_ms: float) -> DeliveryResult:
        """A write the destination's service accepted (the AWS kinds have no HTTP status)."""
        return cls(
            destination=destination,
            webhook_id=event.webhook_id,
            event_type=event.type,
            ok=True,
            latency_ms=latency_ms,
        )


class Fanout:
    """Delivers events to webhook destinations; its bounded thread pool is created once and reused."""

    def __init__(self, sender: WebhookSender, max_workers: int = 16) -> None:
        self._sender = sender
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="webhook-delivery")

    def deliver(
        self,
        event: RelayEvent,
        targets: Sequence[tuple[WebhookTarget, Sequence[str]]],
        *,
        deadline: float | None = None,
        on_result: Callable[[DeliveryResult], None] | None = None,
    ) -> list[DeliveryResult]:
        """Deliver ``event`` to every target (a destination and its secrets); results in the targets' order.

        Each delivery ends within its destination's ``timeout_seconds`` from the start of the fan-out (lookup,
        connect, TLS, write and read included) and, if given, by ``deadline``, an absolute ``time.monotonic()``
        value (the invocation's own limit). ``on_result`` is called with each result as soon as the fan-out has
        it, so the caller can make a failure durable before the invocation can end.
        """
        if not targets:
            return []
        sent_at = int(time.time())
        timestamp = datetime.fromtimestamp(sent_at, UTC)
        body = event.body
        signed_text = body.decode("utf-8")
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.webhook_id,
            "webhook-timestamp": str(sent_at),
        }

        started = time.perf_counter()
        posts: list[WebhookPost | Exception] = []
        for target, secrets in targets:
            try:
                signature = sign(event.webhook_id, timestamp, signed_text, secrets)
            except Exception as exc:
                posts.append(exc)
                continue
            posts.append(
                WebhookPost(
                    target.url,
                    body,
                    {**headers, "webhook-signature": signature},
                    timeout_seconds=target.timeout_seconds,
                    allow_http=target.allow_http,
                    allow_private_network=target.allow_private_network,
                )
            )
        signed_at = time.perf_counter()
        to_send = [post for post in posts if isinstance(post, WebhookPost)]
        reports = iter(self._sender.send_all(to_send, self._executor, deadline=deadline))

        results = []
        for (target, _), post in zip(targets, posts, strict=True):
            outcome, finished = next(reports) if isinstance(post, WebhookPost) else (post, signed_at)
            latency_ms = (finished - started) * 1000
            if isinstance(outcome, Exception):
                # A bug or a bad secret, not the receiver's doing: retried later, with the traceback logged now.
                error = f"internal error: {type(outcome).__name__}"
                result = DeliveryResult.unsent(event, target.name, error, retryable=True, latency_ms=latency_ms)
                _record(result, outcome)
            else:
                result = _result(event, target, outcome, latency_ms)
                _record(result, None)
            results.append(result)
            if on_result is not None:
                on_result(result)
        # One data point per outcome and invocation: each metric call costs microseconds on the hot path.
        succeeded = sum(result.ok for result in results)
        if succeeded:
            count("DeliverySucceeded", succeeded)
        if succeeded < len(results):
            count("DeliveryFailed", len(results) - succeeded)
        return results

    def close(self) -> None:
        """Stop the worker threads once the deliveries under way have finished."""
        self._executor.shutdown(wait=True)


def _result(event: RelayEvent, target: WebhookTarget, outcome: WebhookOutcome, latency_ms: float) -> DeliveryResult:
    status = outcome.status
    if status is None:
        return DeliveryResult.unsent(
            event, target.name, outcome.error, retryable=not outcome.refused, latency_ms=latency_ms
        )
    ok = 200 <= status < 300
    retryable = not ok and (status >= 500 or status in RETRYABLE_CLIENT_STATUSES)
    return DeliveryResult(
        destination=target.name,
        webhook_id=event.webhook_id,
        event_type=event.type,
        ok=ok,
        status=status,
        error=None if ok else _status_error(status),
        latency_ms=latency_ms,
        retryable=retryable,
        retry_after_seconds=retry_after_seconds(outcome.retry_after) if retryable else None,
        disable_endpoint=status == 410,
        excerpt=None if ok else outcome.excerpt,
    )


def _status_error(status: int) -> str:
    if status == 410:
        return "HTTP 410 Gone: the receiver retired this endpoint"
    if 300 <= status < 400:
        return f"HTTP {status}: redirect not followed"
    return f"HTTP {status}"


def _record(result: DeliveryResult, exc: Exception | None) -> None:
    milliseconds("DeliveryLatency", result.latency_ms)
    if result.ok:
        return
    details: Mapping[str, object] = {
        "destination": result.destination,
        "webhook_id": result.webhook_id,
        "event_type": result.event_type,
        "status": result.status,
        "error": result.error,
        "retryable": result.retryable,
        "disable_endpoint": result.disable_endpoint,
    }
    logger.warning("webhook delivery failed", extra=details, exc_info=exc)
