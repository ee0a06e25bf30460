"""Reconciling ended chats against the transcripts Connect wrote: when, with what, and what to do with the gaps.

Connect's transcript object lands in the instance's bucket when a chat (or one contact of a transferred chat) ends.
EventBridge tells the relay (an "Object Created" rule on the watched bucket and prefix; the bucket's own
notification configuration is never touched), and the comparison waits ``delay_seconds`` on an SQS delay: the
stream's last items may still be on their way. A first comparison that finds gaps looks again after the same delay
before recovering anything, so an item that was merely late is never sent twice. Recovered items then go through
the relay's normal fan-out (durable retries included), or only into the archive; the session's transcript is then
assembled again (a new version, with them), and ``chat.transcript.reconciled`` reports the counts. An object that is
not a transcript is kept in the quarantine and reported, never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from chalicelib.errors import RelayError
from chalicelib.observability import count, logger
from chalicelib.reconciliation import (
    Reconciliation,
    TranscriptUnreadableError,
    parse_connect_transcript,
    reconcile,
    reconciled_event,
)
from chalicelib.settings import TranscriptLocation

if TYPE_CHECKING:
    from chalicelib.events import RelayEvent

Pass = Literal["check", "confirm"]
PASSES: Final = ("check", "confirm")
QUARANTINE_SOURCE: Final = "connect-transcripts"


class ArchiveUnavailableError(RelayError):
    """The archive to compare with is not configured, or could not keep a recovered event: the run is retried."""


@dataclass(frozen=True)
class ReconciliationPolicy:
    """What to watch, how long to wait before comparing, and whether recovered items go to every destination."""

    locations: tuple[TranscriptLocation, ...]
    delay_seconds: int = 120
    deliver: bool = True


class TranscriptObjects(Protocol):
    """Reads Connect's transcript objects."""

    def read(self, bucket: str, key: str) -> bytes:
        """The object's bytes."""
        ...


class ReconciliationQueue(Protocol):
    """Runs a comparison later."""

    def schedule(self, bucket: str, key: str, phase: Pass, *, delay_seconds: int) -> None:
        """Have the comparison of ``bucket``/``key`` run ``phase`` in ``delay_seconds``."""
        ...


class SessionArchive(Protocol):
    """The relay's archive, by session."""

    def envelopes(self, initial_contact_id: str) -> Sequence[Mapping[str, Any]]:
        """Every envelope archived for the session."""
        ...

    def keep(self, event: RelayEvent) -> None:
        """Archive ``event``; raises :class:`ArchiveUnavailableError` when it cannot."""
        ...


class Keeper(Protocol):
    """The quarantine: where what cannot be read is kept."""

    def keep_invalid(self, *, source: str, record_id: str | None, reason: str, record: Any) -> str:
        """Keep ``record`` with ``reason``; returns its key."""
        ...


class Publisher(Protocol):
    """The relay's fan-out."""

    def publish(self, event: RelayEvent) -> object:
        """Deliver ``event`` to every destination that wants it."""
        ...


class TranscriptRequests(Protocol):
    """The transcript assembler."""

    def reassemble(self, initial_contact_id: str) -> None:
        """Assemble a new version of the session's transcript: its archive gained items."""
        ...


class ReconciliationService:
    """Schedules, compares, recovers and reports."""

    def __init__(
        self,
        *,
        objects: TranscriptObjects,
        archive: Callable[[], SessionArchive | None],
        queue: ReconciliationQueue,
        relay: Publisher,
        quarantine: Keeper,
        policy: ReconciliationPolicy,
        transcripts: TranscriptRequests | None = None,
    ) -> None:
        self._objects = objects
        self._archive = archive
        self._queue = queue
        self._relay = relay
        self._quarantine = quarantine
        self._policy = policy
        self._transcripts = transcripts

    def transcript_written(self, bucket: str, key: str) -> bool:
        """A transcript object was written: compare it after the delay. False when it is not a watched one."""
        if not any(location.holds(bucket, key) for location in self._policy.locations):
            logger.info("object outside the watched transcript locations ignored", extra={"bucket": bucket})
            count("TranscriptIgnored")
            return False
        phase: Pass = "check" if self._policy.delay_seconds else "confirm"
        self._queue.schedule(bucket, key, phase, delay_seconds=self._policy.delay_seconds)
        return True

    def compare(self, bucket: str, key: str, phase: Pass, *, now: datetime | None = None) -> Reconciliation | None:
        """Compare one transcript with the archive; recover and report on the ``confirm`` pass (or a gapless check).

        Returns None when the object is not a transcript (kept in the quarantine) or when the comparison is to be
        repeated. Raises :class:`ArchiveUnavailableError` (the queue retries) when the archive cannot be read or
        written.
        """
        body = self._objects.read(bucket, key)
        try:
            transcript = parse_connect_transcript(body, key=key)
        except TranscriptUnreadableError as exc:
            kept = self._quarantine.keep_invalid(
                source=QUARANTINE_SOURCE,
                record_id=key[-64:],
                reason=exc.reason,
                record={"bucket": bucket, "key": key, "body": body.decode("utf-8", "backslashreplace")},
            )
            logger.warning("object is not a Connect transcript: kept", extra={"reason": exc.reason, "key": kept})
            count("TranscriptUnreadable")
            return None
        archive = self._archive()
        if archive is None:
            raise ArchiveUnavailableError(
                "no archive to reconcile against (TRANSCRIPT_ARCHIVE names no s3 destination)"
            )
        result = reconcile(
            transcript.initial_contact_id, [transcript], archive.envelopes(transcript.initial_contact_id)
        )
        if result.recovered and phase == "check":
            logger.info("gaps found: comparing again after the delay", extra={"missing": len(result.recovered)})
            self._queue.schedule(bucket, key, "confirm", delay_seconds=self._policy.delay_seconds)
            return None
        for event in result.recovered:
            if self._policy.deliver:
                self._relay.publish(event)
            else:
                archive.keep(event)
        if result.recovered and self._transcripts is not None:
            self._transcripts.reassemble(result.initial_contact_id)
        if result.unreadable:
            self._quarantine.keep_invalid(
                source=QUARANTINE_SOURCE,
                record_id=key[-64:],
                reason="transcript entries that are not chat items",
                record={"bucket": bucket, "key": key, "entries": [vars(entry) for entry in result.unreadable]},
            )
            count("TranscriptItemsUnreadable", len(result.unreadable))
        count("ItemsRecovered", len(result.recovered))
        count("SessionsReconciled")
        moment = now or datetime.now(UTC)
        timestamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        self._relay.publish(reconciled_event(result, timestamp=timestamp, run=f"{bucket}/{key}"))
        logger.info("session reconciled", extra={"initial_contact_id": result.initial_contact_id, **result.counts()})
        return result
