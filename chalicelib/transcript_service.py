"""Transcripts of ended chats: assembled from the archive after a grace period, kept beside it, announced.

When a chat ends the stream handler schedules its assembly after ``TRANSCRIPT_GRACE_SECONDS`` (an SQS delay:
items arrive late and out of order), and the assembly schedules one recheck later still: an item that arrived after
the transcript was made changes what the archive holds, so the recheck writes a new version and announces it. A
rerun that finds nothing new writes nothing, so SQS redeliveries are harmless.

Each version is kept as ``transcripts/<initial_contact_id>/v<NNNN>.json`` and ``.md`` in the archive's bucket,
SSE-KMS with the archive's key, and ``chat.transcript.completed`` goes through the fan-out with a pre-signed link
to the JSON and a summary, never the transcript itself.

With a sessions table (:class:`~chalicelib.adapters.sessions_table.SessionsTable`) the service also knows which
sessions are open: the hot path records each session's last item (at most once per ``TOUCH_SECONDS`` per
container), a scheduled sweep closes the sessions idle for ``idle_seconds`` whose ``chat.ended`` never came, and a
late item for a session whose transcript is made queues one re-assembly (the first late item claims it, the rest
ride along) after the grace period.

Why nothing is missed: every assembly marks the session before it reads the archive, and the hot path records an
item after archiving it, so an item either is read by the assembly or sees the mark and queues a re-assembly. The
hot path skips recording only an item of a session it recorded open less than ``TOUCH_SECONDS`` ago; such an item
precedes any assembly, because the window is at most the grace period and the idle time, and a late claim's
re-assembly waits the grace period too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.events import RelayEvent, webhook_id_for
from chalicelib.observability import count, logger
from chalicelib.transcripts import ArchivedEvent, Reason, Transcript, assemble, session_events

if TYPE_CHECKING:
    from chalicelib.adapters.archive import Archive
    from chalicelib.adapters.sessions_table import SessionsTable
    from chalicelib.adapters.transcript_queue import TranscriptQueue
    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.relay import Relay

TRANSCRIPT_COMPLETED = "chat.transcript.completed"
# An open session's item is recorded at most this often per container (a write per item would cost a write per item).
TOUCH_SECONDS: Final = 30.0
# Sessions a container remembers recording; past this it forgets them all (it then records each once more).
_TOUCHED_LIMIT: Final = 10_000
# A re-assembly claim whose request has not run after this long (grace period included) is taken as lost.
_CLAIM_LAPSE_SECONDS: Final = 900


@dataclass(frozen=True)
class TranscriptTiming:
    """How long to wait before assembling, before rechecking (0: never), and how long a link is valid."""

    grace_seconds: int = 60
    recheck_seconds: int = 900
    link_seconds: int = 3600
    idle_seconds: int = 3600


class TranscriptService:
    """Schedules, assembles, keeps and announces session transcripts."""

    def __init__(
        self,
        archive: Archive,
        target: Callable[[], ArchiveTarget | None],
        queue: TranscriptQueue,
        relay: Relay,
        timing: TranscriptTiming,
        *,
        sessions: SessionsTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._archive = archive
        self._target = target
        self._queue = queue
        self._relay = relay
        self._timing = timing
        self._sessions = sessions
        self._clock = clock
        # Sessions this container recorded open, and when (the hot path's debounce).
        self._touched: dict[str, float] = {}
        self._touch_seconds = min(TOUCH_SECONDS, timing.grace_seconds, timing.idle_seconds)

    def item_relayed(self, initial_contact_id: str, *, ended: bool) -> None:
        """The hot path relayed (and archived) an item of the session: schedule the assembly when it is the end;
        otherwise record it, at most once per ``TOUCH_SECONDS`` per container while the session is open."""
        if ended:
            self.chat_ended(initial_contact_id)
            return
        if self._sessions is None:
            return  # without the table an item's lateness is unknown: the recheck covers it
        now = self._clock()
        last = self._touched.get(initial_contact_id)
        if last is not None and now - last < self._touch_seconds:
            return
        try:
            late = self._recorded_late(initial_contact_id, now)
        except (BotoCoreError, ClientError) as exc:
            # The item itself is delivered: a failed record costs at most an early sweep or a late item noticed
            # only by the recheck, not a retried invocation that would deliver every item again.
            _record_failed(exc)
            return
        if late:
            self._reassemble(initial_contact_id, now)

    def reassemble(self, initial_contact_id: str) -> None:
        """Items reached the session's archive outside the stream (reconciliation recovered them from Connect's
        transcript): the late items' path. A session whose transcript is made gets the one claimed re-assembly after
        the grace period; one ended and not yet assembled gets nothing more (that assembly reads them). A session
        still open ends here: Connect writes a contact's transcript once it has ended, so its ``chat.ended`` was lost
        or is yet to come, and the assembly is scheduled as that ``chat.ended`` would (a later one makes a new
        version). Without a sessions table, or when the session's record cannot be written, the re-assembly is
        queued anyway: once per reconciled contact (a rerun recovers nothing, so it would never ask again), and an
        assembly that finds nothing new makes no version."""
        now = self._clock()
        if self._sessions is not None:
            try:
                if self._recorded_late(initial_contact_id, now):
                    self._reassemble(initial_contact_id, now)
                else:
                    self.chat_ended(initial_contact_id)
                return
            except (BotoCoreError, ClientError) as exc:
                _record_failed(exc)
        self._queue.schedule(initial_contact_id, "late", delay_seconds=self._timing.grace_seconds)
        count("TranscriptReassemblyQueued")

    def _recorded_late(self, initial_contact_id: str, now: float) -> bool:
        """Record an item of the session; True when the session is no longer open (ended, swept or assembled)."""
        assert self._sessions is not None  # noqa: S101 - only called with a sessions table
        if self._sessions.touch(initial_contact_id, _ms(now)):
            if len(self._touched) >= _TOUCHED_LIMIT:
                self._touched.clear()
            self._touched[initial_contact_id] = now
            return False
        self._touched.pop(initial_contact_id, None)
        return True

    def _reassemble(self, initial_contact_id: str, now: float) -> None:
        """The one re-assembly path for items that came after the session closed: the first since the last assembly
        started claims a re-assembly and queues it after the grace period; the others ride along."""
        assert self._sessions is not None  # noqa: S101 - only called with a sessions table
        claimed = _ms(now)
        lapse_ms = (self._timing.grace_seconds + _CLAIM_LAPSE_SECONDS) * 1000
        if not self._sessions.claim_reassembly(initial_contact_id, claimed, lapse_ms=lapse_ms):
            return  # not assembled yet (the assembly will read it), or a re-assembly is already queued
        try:
            self._queue.schedule(initial_contact_id, "late", delay_seconds=self._timing.grace_seconds)
        except Exception:
            self._sessions.release_reassembly(initial_contact_id, claimed)
            raise
        count("TranscriptReassemblyQueued")

    def chat_ended(self, initial_contact_id: str) -> None:
        """Assemble the session's transcript once the grace period has passed."""
        if self._sessions is not None:
            self._sessions.end(initial_contact_id, _ms(self._clock()))
            self._touched.pop(initial_contact_id, None)
        self._queue.schedule(initial_contact_id, "ended", delay_seconds=self._timing.grace_seconds)

    def sweep(self) -> int:
        """Close the sessions idle for ``idle_seconds`` whose ``chat.ended`` never came: each one's assembly is
        queued, then the session is closed (unless an item came meanwhile). Returns how many were queued."""
        if self._sessions is None:
            return 0
        now = self._clock()
        before = _ms(now - self._timing.idle_seconds)
        swept = 0
        for initial_contact_id in self._sessions.idle(before):
            # Queued first: a sweep that fails after this leaves the session open for the next sweep, and an
            # assembly asked for twice makes one version (the second finds nothing new).
            self._queue.schedule(initial_contact_id, "sweep", delay_seconds=0)
            self._sessions.close_idle(initial_contact_id, before, _ms(now))
            swept += 1
        if swept:
            count("SessionsSwept", swept)
            logger.info("idle sessions swept", extra={"sessions": swept})
        return swept

    def assemble(self, initial_contact_id: str, reason: Reason, *, now: datetime | None = None) -> Transcript | None:
        """Assemble, keep and announce a new version if the archive holds anything the last one lacks."""
        target = self._target()
        if target is None:
            logger.warning("no archive to assemble transcripts from", extra={"initial_contact_id": initial_contact_id})
            return None
        if self._sessions is not None:
            # Before reading: an item recorded after this mark sees it and queues a re-assembly.
            self._sessions.assembling(initial_contact_id, _ms(self._clock()))
        events = self._archive.session_events(target, initial_contact_id)
        ordered = session_events(events)
        if reason in ("ended", "sweep") and self._timing.recheck_seconds:
            self._queue.schedule(initial_contact_id, "recheck", delay_seconds=self._timing.recheck_seconds)
        if not ordered:
            logger.info("nothing archived for the session", extra={"initial_contact_id": initial_contact_id})
            return None
        fingerprint = _fingerprint(ordered)
        latest, latest_fingerprint, latest_closed_by = self._archive.latest_transcript(target, initial_contact_id)
        if fingerprint == latest_fingerprint:
            return None
        closed_by = _closed_by(reason, latest_closed_by)
        transcript = assemble(initial_contact_id, ordered, version=latest + 1)
        json_key, markdown_key = self._archive.keep_transcript(target, transcript, fingerprint, closed_by=closed_by)
        count("TranscriptAssembled")
        issued = now or datetime.now(UTC)
        expires = issued + timedelta(seconds=self._timing.link_seconds)
        event = RelayEvent(
            type=TRANSCRIPT_COMPLETED,
            timestamp=_rfc3339(issued),
            data={
                "initial_contact_id": initial_contact_id,
                "instance_id": transcript.instance_id,
                "version": transcript.version,
                "supersedes": latest or None,
                "reason": "late_items" if latest else ("idle_sweep" if reason == "sweep" else "chat_ended"),
                "closed_by": closed_by,
                "transcript": {
                    "url": self._archive.link(target, json_key, self._timing.link_seconds),
                    "markdown_url": self._archive.link(target, markdown_key, self._timing.link_seconds),
                    "expires_at": _rfc3339(expires),
                },
                "summary": transcript.summary,
            },
            webhook_id=webhook_id_for(f"transcript/{initial_contact_id}/{transcript.version}"),
        )
        self._relay.publish(event)
        return transcript


def _closed_by(reason: Reason, before: str | None) -> str:
    """What closed the session: its ``chat.ended`` (even one later than the sweep) or the sweep."""
    if reason == "ended":
        return "chat_ended"
    if reason == "sweep":
        return "sweep"
    return before or "chat_ended"


def _record_failed(exc: Exception) -> None:
    logger.warning("session record not written", extra={"error": type(exc).__name__})
    count("SessionRecordFailed")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _fingerprint(ordered: list[ArchivedEvent]) -> str:
    digest = hashlib.sha256()
    for event in ordered:
        digest.update(f"{event.data.get('item_id')}\0{event.envelope.get('timestamp')}\n".encode())
    return digest.hexdigest()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
