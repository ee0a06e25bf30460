"""Amazon Connect contact events, read whatever their key casing, and the decision to start streaming.

Pure logic: no AWS call, no environment. AWS's own documents spell the same keys several ways
(``contactId`` / ``ContactId``, ``instanceArn`` / ``InstanceArn`` / ``instanceARN``, ``CHAT`` / ``Chat``), so every
read goes through :func:`_pick`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

INSTANCE_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:connect:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):instance/(?P<id>[A-Za-z0-9-]{1,100})"
    r"(/.*)?\Z"
)
# Segments created by a transfer or a disconnect flow stream on the session's existing stream.
FOLLOW_ON_METHODS = frozenset({"TRANSFER", "QUEUE_TRANSFER", "DISCONNECT"})
MAX_CONTACT_ID = 256


class SkipReason(StrEnum):
    """Why a contact event starts no stream. Each is a metric dimension; none is an error."""

    NOT_A_CONTACT_EVENT = "NotAContactEvent"
    NOT_INITIATED = "NotInitiated"
    NOT_CHAT = "NotChat"
    FOLLOW_ON_SEGMENT = "FollowOnSegment"
    INSTANCE_NOT_ALLOWED = "InstanceNotAllowed"
    MALFORMED = "Malformed"


@dataclass(frozen=True)
class ContactEvent:
    """The fields of a contact event the relay uses, normalised."""

    event_id: str
    event_type: str
    channel: str
    contact_id: str
    initial_contact_id: str
    instance_id: str
    region: str
    initiation_method: str


@dataclass(frozen=True)
class StreamingDecision:
    """Start streaming for ``event`` or skip it, with the reason and a detail for the log line."""

    event: ContactEvent | None
    skip: SkipReason | None = None
    detail: str = ""


def _pick(detail: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = detail.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def instance_id_from_arn(arn: str) -> tuple[str, str] | None:
    """``(instance id, region)`` from an instance or contact ARN, or None when it is not one."""
    match = INSTANCE_ARN.match(arn)
    return (match.group("id"), match.group("region")) if match else None


def read_contact_event(event: Mapping[str, Any]) -> ContactEvent:
    """Normalise an EventBridge contact event; raise ValueError naming what is missing or malformed."""
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise ValueError("the event has no detail object")
    contact_id = _pick(detail, "contactId", "ContactId")
    if not contact_id:
        raise ValueError("detail has no contactId")
    initial = _pick(detail, "initialContactId", "InitialContactId") or contact_id
    if len(contact_id) > MAX_CONTACT_ID or len(initial) > MAX_CONTACT_ID:
        raise ValueError(f"a contact id is longer than {MAX_CONTACT_ID} characters")
    arn = _pick(detail, "instanceArn", "InstanceArn", "instanceARN", "InstanceARN")
    if not arn:
        resources = event.get("resources")
        arns = [r for r in resources if isinstance(r, str)] if isinstance(resources, list) else []
        arn = next((r for r in arns if "/contact/" not in r), arns[0] if arns else "")
    parsed = instance_id_from_arn(arn)
    if parsed is None:
        raise ValueError("detail has no valid instanceArn")
    event_id = event.get("id")
    return ContactEvent(
        event_id=event_id if isinstance(event_id, str) else "",
        event_type=_pick(detail, "eventType", "EventType").upper(),
        channel=_pick(detail, "channel", "Channel").upper(),
        contact_id=contact_id,
        initial_contact_id=initial,
        instance_id=parsed[0],
        region=parsed[1],
        initiation_method=_pick(detail, "initiationMethod", "InitiationMethod").upper(),
    )


def decide(event: Mapping[str, Any], *, allowed_instance_ids: frozenset[str]) -> StreamingDecision:
    """Whether a contact event should start streaming for its chat session."""
    if event.get("source") != "aws.connect":
        return StreamingDecision(None, SkipReason.NOT_A_CONTACT_EVENT, f"source {event.get('source')!r}")
    try:
        contact = read_contact_event(event)
    except ValueError as exc:
        return StreamingDecision(None, SkipReason.MALFORMED, str(exc))
    if contact.event_type != "INITIATED":
        return StreamingDecision(contact, SkipReason.NOT_INITIATED, contact.event_type or "no eventType")
    if contact.channel != "CHAT":
        return StreamingDecision(contact, SkipReason.NOT_CHAT, contact.channel or "no channel")
    if contact.initiation_method in FOLLOW_ON_METHODS:
        return StreamingDecision(contact, SkipReason.FOLLOW_ON_SEGMENT, contact.initiation_method)
    if contact.instance_id not in allowed_instance_ids:
        return StreamingDecision(contact, SkipReason.INSTANCE_NOT_ALLOWED, contact.instance_id)
    return StreamingDecision(contact)
