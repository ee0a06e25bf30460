"""Contact events from EventBridge: start streaming for every new chat."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, CloudWatchEvent

from chalicelib.contact_event_reader import SkipReason, decide
from chalicelib.dependencies import quarantine, streaming_starter
from chalicelib.errors import (
    ConnectContactNotFoundError,
    ConnectError,
    ConnectRequestRejectedError,
    ConnectStreamingLimitError,
    StreamingStartInProgressError,
    StreamingStoppedError,
)
from chalicelib.observability import contact_keys, count, count_streaming_start, logger, observed
from chalicelib.settings import DEFAULT_DETAIL_TYPE, deploy_time, get_settings

contact_events = Blueprint(__name__)


_CHAT = [{"equals-ignore-case": "CHAT"}]
# AWS documents both camelCase and PascalCase details; one rule matches either.
EVENT_PATTERN: dict[str, Any] = {
    "source": ["aws.connect"],
    "detail-type": [deploy_time("CONTACT_EVENT_DETAIL_TYPE", DEFAULT_DETAIL_TYPE)],
    "$or": [
        {"detail": {"eventType": ["INITIATED"], "channel": _CHAT}},
        {"detail": {"EventType": ["INITIATED"], "Channel": _CHAT}},
    ],
}
# Connect's answers that mean "this chat cannot stream" rather than "try again".
_FINAL = (ConnectContactNotFoundError, ConnectRequestRejectedError, ConnectStreamingLimitError)


@contact_events.on_cw_event(EVENT_PATTERN, name="on_contact_event")
@observed
def on_contact_event(event: CloudWatchEvent) -> None:
    """Start streaming a new chat to the relay's topic; skip everything else quietly."""
    raw = event.to_dict()
    settings = get_settings()
    decision = decide(raw, allowed_instance_ids=settings.allowed_instance_ids)
    contact = decision.event
    with contact_keys(
        initial_contact_id=contact.initial_contact_id if contact else None,
        contact_id=contact.contact_id if contact else None,
    ):
        if contact is None or decision.skip is not None:
            reason = decision.skip or "Unknown"
            log = logger.warning if reason in {"Malformed", "InstanceNotAllowed"} else logger.debug
            log(
                "contact event skipped", extra={"reason": reason, "detail": decision.detail, "event_id": event.event_id}
            )
            count("StreamingSkipped", reason=str(reason))
            if reason == SkipReason.MALFORMED:
                # Lambda would not retry it, and nothing is dropped silently: keep it, as it came, with the reason.
                quarantine().keep_invalid(
                    source="contact-events", record_id=event.event_id, reason=decision.detail, record=raw
                )
            return
        try:
            outcome = streaming_starter().start(
                instance_id=contact.instance_id, initial_contact_id=contact.initial_contact_id, started_by="event"
            )
        except StreamingStartInProgressError:
            # Another path (the flow, a route) holds the chat's claim and is calling Connect. Lambda's retry, a
            # minute on, finds the stream kept, or the claim lapsed (its holder failed) and starts it then.
            logger.warning(
                "another start of the chat is in progress; Lambda will retry", extra={"event_id": event.event_id}
            )
            count("StreamingStartDeferred", reason="StartInProgress")
            raise
        except StreamingStoppedError:
            logger.info("streaming was stopped for the chat; the event does not restart it")
            count("StreamingSkipped", reason="Stopped")
            return
        except _FINAL as exc:
            logger.warning(
                "Connect refused to stream the chat",
                extra={"code": exc.code, "reason": exc.reason, "event_id": event.event_id},
            )
            count("StreamingStartFailed", reason=exc.code)
            return
        except ConnectError as exc:
            # Throttling and Connect's own failures after botocore's retries: Lambda's asynchronous retries and the
            # on-failure destination take over.
            logger.error(
                "streaming start failed", extra={"code": exc.code, "reason": exc.reason, "event_id": event.event_id}
            )
            count("StreamingStartFailed", reason=exc.code)
            raise
        logger.info(
            "chat already streaming" if outcome.already_streaming else "streaming started",
            extra={"streaming_id": outcome.streaming_id},
        )
        count_streaming_start(already_streaming=outcome.already_streaming)
