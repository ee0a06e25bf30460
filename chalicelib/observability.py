"""One Powertools Logger and one Metrics for every handler of the relay.

Both are made on first use (the first log line, or the first invocation's ``observed``), not at import:
``aws_lambda_powertools`` loads about 40 modules, 41 of the 228 million instructions that the chat stream's module
cost beside ``import boto3`` (callgrind; ``make bench``'s wake figures, ``tests/unit/test_wake.py`` keeps it out of
the import). ``observed`` makes them before the handler creates its first AWS client, so Powertools' user agent is
on every request as before. The Chalice middleware in ``app.py`` resets their state per invocation.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from aws_lambda_powertools import Logger, Metrics

P = ParamSpec("P")
R = TypeVar("R")

SERVICE = "connect-chat-relay"
NAMESPACE = "ConnectChatRelay"


@cache
def _logger() -> Logger:
    from aws_lambda_powertools import Logger  # noqa: PLC0415

    return Logger(service=SERVICE)


@cache
def _metrics() -> Metrics:
    from aws_lambda_powertools import Metrics  # noqa: PLC0415

    return Metrics(namespace=NAMESPACE, service=SERVICE)


class _OnFirstUse:
    """Stands for the Logger: each attribute is the Logger's own, the Logger made when the first one is read."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_logger(), name)


logger = cast("Logger", _OnFirstUse())
# Values recorded during an invocation, handed to Powertools at its end. Powertools 3.37's add_metric formats the
# metric's whole value list into a debug line on every call, so its cost grows with the invocation: measured on this
# 2-core machine (under load), 50 calls to one metric cost 78 us a call against 1.1 us for this list's append.
# Units by their CloudWatch names, which add_metric takes as MetricUnit's values.
_pending: list[tuple[str, Literal["Count", "Milliseconds"], float]] = []


def count(name: str, value: float = 1, **dimensions: str) -> None:
    """Add to a counter; with dimensions (``reason="..."``) it is flushed as a metric of its own."""
    if not dimensions:
        _pending.append((name, "Count", value))
        return
    from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: PLC0415

    with single_metric(
        name=name,
        unit=MetricUnit.Count,
        value=value,
        namespace=NAMESPACE,
        default_dimensions=_metrics().default_dimensions,
    ) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)


def count_streaming_start(*, already_streaming: bool) -> None:
    """StreamingStarted, or StreamingSkipped with reason AlreadyStreaming when the relay had started it before."""
    if already_streaming:
        count("StreamingSkipped", reason="AlreadyStreaming")
    else:
        count("StreamingStarted")


def milliseconds(name: str, value: float) -> None:
    """Record a latency in milliseconds."""
    _pending.append((name, "Milliseconds", value))


@contextmanager
def contact_keys(*, initial_contact_id: str | None, contact_id: str | None) -> Iterator[None]:
    """Every log line inside carries the contact's ids."""
    with logger.append_context_keys(initial_contact_id=initial_contact_id, contact_id=contact_id):
        yield


def flush() -> None:
    """Publish the invocation's metrics (as EMF log lines), if it recorded any."""
    recorded = list(_pending)
    _pending.clear()
    metrics = _metrics()
    for name, unit, value in recorded:
        metrics.add_metric(name=name, unit=unit, value=value)
    if metrics.metric_set:
        metrics.flush_metrics()


def discard() -> None:
    """Forget what was recorded and not yet published (tests start each case clean)."""
    _pending.clear()
    _metrics().clear_metrics()


def observed(handler: Callable[P, R]) -> Callable[P, R]:
    """Fresh log keys for each invocation, and its metrics published however it ends.

    On the handler itself rather than in Chalice middleware: Lambda loads an event handler from its blueprint's
    module, without ``app.py``, so the app's middleware never runs for it once deployed. Not Powertools'
    ``inject_lambda_context(clear_state=True)`` and ``log_metrics``: both wrap ``handler(event, context)``, and
    Chalice calls an event handler with its event object alone (the context is ``event.context``).
    """

    @functools.wraps(handler)
    def invocation(*args: P.args, **kwargs: P.kwargs) -> R:
        logger.clear_state()
        event: Any = args[0] if args else None
        context: Any = (
            args[1] if len(args) > 1 else getattr(event, "lambda_context", None) or getattr(event, "context", None)
        )
        request_id = getattr(context, "aws_request_id", None)
        if request_id:
            logger.append_keys(request_id=request_id)
        try:
            return handler(*args, **kwargs)
        finally:
            flush()

    return invocation
