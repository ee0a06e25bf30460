"""Transcripts: the assembler the transcript queue feeds, once a chat's grace period (or recheck delay) is over, and
the sweep that closes sessions whose ``chat.ended`` never came."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, CloudWatchEvent, Rate, SQSEvent

from chalicelib.dependencies import transcript_service
from chalicelib.errors import SettingsError
from chalicelib.handlers.unreadable import readable_requests
from chalicelib.observability import contact_keys, observed
from chalicelib.settings import INSTANCE_ID, deploy_time
from chalicelib.transcripts import REASONS

transcripts = Blueprint(__name__)
# How often the sweep looks for idle sessions: one closes between SESSION_IDLE_SECONDS and that plus this.
SWEEP_MINUTES = 15


@transcripts.on_sqs_message(
    queue=deploy_time("TRANSCRIPT_QUEUE_NAME", "connect-chat-relay-transcripts"),
    batch_size=1,
    name="assemble_transcripts",
)
@observed
def assemble_transcripts(event: SQSEvent) -> None:
    """Assemble each requested session's transcript; a request that cannot be read is kept, not retried."""
    service = transcript_service()
    for initial_contact_id, reason in readable_requests(
        event, _request, source="transcripts", reason="unreadable request", metric="InvalidTranscriptRequest"
    ):
        with contact_keys(initial_contact_id=initial_contact_id, contact_id=None):
            if service is None:
                # Raising keeps the request on the queue (and then its dead-letter queue) rather than dropping it.
                raise SettingsError("transcripts are not configured (TRANSCRIPT_QUEUE_URL) but a request is queued")
            service.assemble(initial_contact_id, reason)


def _request(request: dict[str, Any]) -> tuple[str, Any] | None:
    initial_contact_id, reason = request.get("initial_contact_id"), request.get("reason")
    if not isinstance(initial_contact_id, str) or not INSTANCE_ID.match(initial_contact_id) or reason not in REASONS:
        return None
    return initial_contact_id, reason


@transcripts.schedule(Rate(SWEEP_MINUTES, unit=Rate.MINUTES), name="sweep_sessions")
@observed
def sweep_sessions(event: CloudWatchEvent) -> None:
    """Queue the assembly of every session idle for SESSION_IDLE_SECONDS whose ``chat.ended`` never came."""
    service = transcript_service()
    if service is None:
        # Failing keeps the schedule's invocation visible (its retries, then the on-failure queue).
        raise SettingsError("transcripts are not configured (TRANSCRIPT_QUEUE_URL) but the sweep runs")
    service.sweep()
