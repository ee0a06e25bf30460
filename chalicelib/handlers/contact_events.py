"""Contact events from EventBridge: start streaming for every new chat."""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint, CloudWatchEvent

from chalicelib import dependencies
from chalicelib.observability import observed
from chalicelib.settings import DEFAULT_DETAIL_TYPE, deploy_time

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


@contact_events.on_cw_event(EVENT_PATTERN, name="on_contact_event")
@observed
def on_contact_event(event: CloudWatchEvent) -> None:
    """Start streaming a new chat to the relay's topic; skip everything else quietly."""
    dependencies.contact_event_service().handle(event.to_dict(), event_id=event.event_id)
