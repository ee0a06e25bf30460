"""Reconciliation: Connect's transcript objects announced by EventBridge (or found by the scheduled scan), compared
after a delay on an SQS queue."""

from __future__ import annotations

from typing import Any, Final

from chalice.app import Blueprint, CloudWatchEvent, Rate, SQSEvent

from chalicelib.dependencies import reconciliation_service, transcript_scan
from chalicelib.errors import SettingsError
from chalicelib.handlers.unreadable import keep_unreadable, readable_requests
from chalicelib.observability import logger, observed
from chalicelib.reconciliation_service import PASSES, Pass
from chalicelib.settings import TRANSCRIPT_LOCATION, deploy_time

reconciliation = Blueprint(__name__)


def event_pattern(locations: str) -> dict[str, Any]:
    """The EventBridge rule: objects created in the watched transcript locations (``s3://bucket/prefix,...``)."""
    matches = [TRANSCRIPT_LOCATION.match(part.strip()) for part in locations.split(",")]
    wanted = [{"bucket": {"name": [m["bucket"]]}, "object": {"key": [{"prefix": m["prefix"]}]}} for m in matches if m]
    pattern: dict[str, Any] = {"source": ["aws.s3"], "detail-type": ["Object Created"]}
    if len(wanted) == 1:
        pattern["detail"] = wanted[0]
    else:
        pattern["$or"] = [{"detail": detail} for detail in wanted]
    return pattern


# Never deployed with an empty location list: the placeholder bucket matches no real object.
EVENT_PATTERN: Final = event_pattern(
    deploy_time("RECONCILE_TRANSCRIPT_LOCATIONS", "s3://connect-chat-relay-no-transcripts/none/")
)


@reconciliation.on_cw_event(EVENT_PATTERN, name="on_transcript_written")
@observed
def on_transcript_written(event: CloudWatchEvent) -> None:
    """Schedule the comparison of a transcript object Connect has just written."""
    service = reconciliation_service()
    detail = event.detail if isinstance(event.detail, dict) else {}
    bucket = (detail.get("bucket") or {}).get("name")
    key = (detail.get("object") or {}).get("key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        keep_unreadable(
            "reconciliation",
            record_id=event.event_id,
            reason="no bucket or key",
            record=event.to_dict(),
            metric="InvalidTranscriptNotice",
        )
        return
    if service is None:
        logger.warning("reconciliation is not configured (RECONCILE_QUEUE_URL)")
        return
    service.transcript_written(bucket, key)


@reconciliation.schedule(
    Rate(int(deploy_time("RECONCILE_SCAN_MINUTES", "15")), unit=Rate.MINUTES), name="scan_transcripts"
)
@observed
def scan_transcripts(event: CloudWatchEvent) -> None:
    """The fallback for a bucket without EventBridge notifications: queue what was written since the last scan."""
    scan = transcript_scan()
    if scan is None:
        return  # RECONCILE_SCAN is off: the EventBridge rule is the stage's only source.
    scan.run()


@reconciliation.on_sqs_message(
    queue=deploy_time("RECONCILE_QUEUE_NAME", "connect-chat-relay-reconciliation"),
    batch_size=1,
    name="reconcile_transcripts",
)
@observed
def reconcile_transcripts(event: SQSEvent) -> None:
    """Compare each requested transcript with the archive; a request that cannot be read is kept, not retried."""
    service = reconciliation_service()
    for request in readable_requests(
        event,
        _request,
        source="reconciliation",
        reason="unreadable reconciliation request",
        metric="InvalidReconciliationRequest",
    ):
        if service is None:
            # Raising keeps the request on the queue (and then its dead-letter queue) rather than dropping it.
            raise SettingsError("reconciliation is not configured (RECONCILE_QUEUE_URL) but a request is queued")
        service.compare(*request)


def _request(request: dict[str, Any]) -> tuple[str, str, Pass] | None:
    bucket, key, phase = request.get("bucket"), request.get("key"), request.get("phase")
    if not isinstance(bucket, str) or not isinstance(key, str) or phase not in PASSES:
        return None
    return bucket, key, "check" if phase == "check" else "confirm"
