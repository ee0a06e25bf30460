"""Time budgets for callers that wait: the contact flow gives its Lambda function at most 8 seconds.

botocore has no per-call deadline (its timeouts are per socket read, fixed when a client is made, and a retry
starts them over), so a budget is kept two ways:

- :func:`run_within` runs the work in a thread of its own and waits no longer than what is left of the budget,
  so the caller answers in time whatever the work is doing;
- the clients of such callers refuse to start any attempt, a first try or a retry, once the budget of the
  thread making it is spent (:func:`refuse_attempt_past_deadline`, on botocore's ``before-send``), so work left
  behind at the deadline sends nothing more: no late write, no call the answer did not account for.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError

from chalicelib.errors import RelayError

T = TypeVar("T")

_thread_budget = threading.local()


class BudgetExhaustedError(RelayError):
    """The time budget ran out before the work finished."""


class AttemptPastDeadlineError(BotoCoreError):
    """A destination write's attempt was refused: the invocation's deadline had passed.

    A botocore error rather than a relay one on purpose: the writers already turn every botocore error of a call
    into a retryable failure of that call's events alone, which is exactly what this is.
    """

    fmt = "the invocation's deadline passed before this attempt"


@dataclass(frozen=True)
class Budget:
    """An absolute deadline on ``time.monotonic()``'s clock."""

    deadline: float

    @classmethod
    def of_invocation(cls, context: object, *, limit_seconds: float, margin_seconds: float) -> Budget:
        """What an invocation may spend: the caller's limit or Lambda's remaining time, whichever is smaller,
        less a margin for answering. A context without ``get_remaining_time_in_millis`` leaves the limit."""
        available = limit_seconds
        remaining_millis = getattr(context, "get_remaining_time_in_millis", None)
        if callable(remaining_millis):
            available = min(available, remaining_millis() / 1000)
        return cls(time.monotonic() + available - margin_seconds)

    def remaining(self) -> float:
        """Seconds left; zero or less once spent."""
        return self.deadline - time.monotonic()


def run_within(budget: Budget, work: Callable[[], T]) -> T:
    """``work()``'s result or exception, or :class:`BudgetExhaustedError` once the budget is spent.

    The work runs in a new thread (never a pooled one: a pool's worker could still be busy with the work
    abandoned by an earlier invocation) that carries the budget and the caller's context variables (log keys).
    """
    future: Future[T] = Future()
    context = contextvars.copy_context()

    def run() -> None:
        _thread_budget.deadline = budget.deadline
        try:
            future.set_result(context.run(work))
        except BaseException as exc:  # handed to the waiting caller, which re-raises it
            future.set_exception(exc)

    threading.Thread(target=run, name="budgeted-work", daemon=True).start()
    try:
        return future.result(timeout=max(0.0, budget.remaining()))
    except TimeoutError:
        if future.done():  # the work itself raised TimeoutError
            raise
        raise BudgetExhaustedError("the time budget ran out") from None


def refuse_attempt_past_deadline(**_: Any) -> None:
    """botocore ``before-send`` hook: no request leaves a thread whose budget is spent."""
    deadline = getattr(_thread_budget, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline:
        raise BudgetExhaustedError("the time budget ran out before this request")


@contextmanager
def attempts_until(deadline: float | None) -> Iterator[None]:
    """Within this block, this thread's requests on clients with :func:`refuse_write_past_deadline` start only
    before ``deadline`` (``time.monotonic()``; None: no limit)."""
    previous = getattr(_thread_budget, "deadline", None)
    _thread_budget.deadline = deadline
    try:
        yield
    finally:
        _thread_budget.deadline = previous


def refuse_write_past_deadline(**_: Any) -> None:
    """botocore ``before-send`` hook of the destination clients: no attempt, first or retry, starts past the
    thread's deadline; the writer reports the call's events as failed and they go to the retry queue."""
    deadline = getattr(_thread_budget, "deadline", None)
    if deadline is not None and time.monotonic() >= deadline:
        raise AttemptPastDeadlineError()
