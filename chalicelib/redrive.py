"""Redrive: put one destination's dead letters and undelivered copies back on the retry queue.

Each kept delivery becomes a fresh ticket (the whole schedule again, ``redriven`` counted up) and its S3 object
is deleted once SQS has taken it, so a redrive that stops half way resumes where it stopped when run again.
Undelivered copies written before the retry queue existed (no attempt log) are read the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from chalicelib.observability import count, logger
from chalicelib.retries import RetryTicket, event_from_envelope, now

if TYPE_CHECKING:
    from chalicelib.adapters.quarantine import Quarantine
    from chalicelib.adapters.retry_queue import RetryQueue

KINDS: Final = ("dead-letters", "undelivered")
BATCH: Final = 10


@dataclass
class RedriveSummary:
    """What a redrive did: tickets re-queued, objects left because SQS refused them, unreadable objects left."""

    requeued: int = 0
    refused: int = 0
    unreadable: int = 0
    complete: bool = True  # False when a limit stopped it: run it again to go on

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape of the route's answer and the command's summary."""
        return {
            "requeued": self.requeued,
            "refused": self.refused,
            "unreadable": self.unreadable,
            "complete": self.complete,
        }


class Redrive:
    """Re-queues a destination's kept deliveries."""

    def __init__(self, quarantine: Quarantine, retry_queue: RetryQueue) -> None:
        self._quarantine = quarantine
        self._retry_queue = retry_queue

    def run(
        self,
        destination: str,
        *,
        kinds: tuple[str, ...] = KINDS,
        limit: int | None = None,
        progress: Callable[[RedriveSummary], None] | None = None,
    ) -> RedriveSummary:
        """Re-queue up to ``limit`` kept deliveries of ``destination``; ``progress`` hears after every batch."""
        summary = RedriveSummary()
        batch: list[tuple[str, RetryTicket]] = []
        for key in self._keys(destination, kinds):
            if limit is not None and summary.requeued + summary.refused + len(batch) >= limit:
                summary.complete = False
                break
            try:
                batch.append((key, ticket_from_kept(self._quarantine.read(key), destination)))
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning("kept delivery unreadable; left in place", extra={"key": key, "error": str(exc)})
                summary.unreadable += 1
                continue
            if len(batch) == BATCH:
                self._send(batch, summary, progress)
                batch = []
        if batch:
            self._send(batch, summary, progress)
        count("DeliveryRedriven", summary.requeued)
        return summary

    def _keys(self, destination: str, kinds: tuple[str, ...]) -> Iterator[str]:
        for kind in kinds:
            yield from self._quarantine.keys(kind, destination)

    def _send(
        self,
        batch: list[tuple[str, RetryTicket]],
        summary: RedriveSummary,
        progress: Callable[[RedriveSummary], None] | None,
    ) -> None:
        refused = {id(ticket) for ticket in self._retry_queue.send([ticket for _, ticket in batch])}
        for key, ticket in batch:
            if id(ticket) in refused:
                summary.refused += 1
            else:
                self._quarantine.delete(key)
                summary.requeued += 1
        if progress is not None:
            progress(summary)


def ticket_from_kept(kept: Any, destination: str) -> RetryTicket:
    """A fresh ticket for a kept delivery (a dead letter, or an undelivered copy of either format)."""
    if not isinstance(kept, dict):
        raise ValueError("not an object")
    webhook_id = kept["webhook_id"]
    if not isinstance(webhook_id, str):
        raise ValueError("webhook_id must be a string")
    envelope = kept.get("event")
    event = event_from_envelope(envelope, webhook_id) if envelope is not None else None
    ref = kept.get("event_ref")
    if event is None and not isinstance(ref, str):
        raise ValueError("neither event nor event_ref")
    return RetryTicket(
        destination=destination,
        webhook_id=webhook_id,
        event=event,
        not_before=now(),
        event_ref=ref if event is None else None,
        redriven=int(kept.get("redriven", 0)) + 1,
        resend=kept.get("resend") is True,
    )
