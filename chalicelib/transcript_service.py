"""Transcripts of ended chats: assembled from the archive after a grace period, kept beside it, announced.

When a chat ends the stream handler schedules its assembly after ``TRANSCRIPT_GRACE_SECONDS`` (an SQS delay:
items arrive late and out of order), and the assembly schedules one recheck later still: an item that arrived after
the transcript was made changes what the archive holds, so the recheck writes a new version and announces it. A
rerun that finds nothing new writes nothing, so SQS redeliveries are harmless.

Each version is kept as ``transcripts/<initial_contact_id>/v<NNNN>.json`` and ``.md`` in the archive's bucket,
SSE-KMS with the archive's key, and ``chat.transcript.completed`` goes through the fan-out with a pre-signed link
to the JSON and a summary, never the transcript itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from chalicelib.events import RelayEvent, webhook_id_for
from chalicelib.observability import count, logger
from chalicelib.transcripts import ArchivedEvent, Transcript, assemble, session_events

if TYPE_CHECKING:
    from chalicelib.adapters.archive import Archive
    from chalicelib.adapters.transcript_queue import TranscriptQueue
    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.relay import Relay

TRANSCRIPT_COMPLETED = "chat.transcript.completed"
Reason = Literal["ended", "recheck"]


@dataclass(frozen=True)
class TranscriptTiming:
    """How long to wait before assembling, before rechecking (0: never), and how long a link is valid."""

    grace_seconds: int = 60
    recheck_seconds: int = 900
    link_seconds: int = 3600


class TranscriptService:
    """Schedules, assembles, keeps and announces session transcripts."""

    def __init__(
        self,
        archive: Archive,
        target: Callable[[], ArchiveTarget | None],
        queue: TranscriptQueue,
        relay: Relay,
        timing: TranscriptTiming,
    ) -> None:
        self._archive = archive
        self._target = target
        self._queue = queue
        self._relay = relay
        self._timing = timing

    def chat_ended(self, initial_contact_id: str) -> None:
        """Assemble the session's transcript once the grace period has passed."""
        self._queue.schedule(initial_contact_id, "ended", delay_seconds=self._timing.grace_seconds)

    def reassemble(self, initial_contact_id: str) -> None:
        """The archive gained items after the chat ended (reconciliation recovered them): assemble a new version
        once the grace period has passed, as a recheck does."""
        self._queue.schedule(initial_contact_id, "recheck", delay_seconds=self._timing.grace_seconds)

    def assemble(self, initial_contact_id: str, reason: Reason, *, now: datetime | None = None) -> Transcript | None:
        """Assemble, keep and announce a new version if the archive holds anything the last one lacks."""
        target = self._target()
        if target is None:
            logger.warning("no archive to assemble transcripts from", extra={"initial_contact_id": initial_contact_id})
            return None
        events = self._archive.session_events(target, initial_contact_id)
        ordered = session_events(events)
        if reason == "ended" and self._timing.recheck_seconds:
            self._queue.schedule(initial_contact_id, "recheck", delay_seconds=self._timing.recheck_seconds)
        if not ordered:
            logger.info("nothing archived for the session", extra={"initial_contact_id": initial_contact_id})
            return None
        fingerprint = _fingerprint(ordered)
        latest, latest_fingerprint = self._archive.latest_transcript(target, initial_contact_id)
        if fingerprint == latest_fingerprint:
            return None
        transcript = assemble(initial_contact_id, ordered, version=latest + 1)
        json_key, markdown_key = self._archive.keep_transcript(target, transcript, fingerprint)
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
                "reason": "late_items" if latest else "chat_ended",
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


def _fingerprint(ordered: list[ArchivedEvent]) -> str:
    digest = hashlib.sha256()
    for event in ordered:
        digest.update(f"{event.data.get('item_id')}\0{event.envelope.get('timestamp')}\n".encode())
    return digest.hexdigest()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
