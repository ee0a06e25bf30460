"""A chat session's transcript, assembled from its archived events: Connect's JSON shape and a Markdown rendition.

Items arrive late, twice and out of order, and a transfer gives the rest of the chat a new contact id: assembly
keeps one item per id, orders by AbsoluteTime (ties by arrival), and spans every contact id of the session. The JSON
has the shape of Connect's own chat transcript (``Version``, ``InitialContactId``, ``Participants``, ``Transcript``
with Connect's item field names), plus the session's ``ContactIds`` and the relay's ``TranscriptVersion``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

CONNECT_TRANSCRIPT_VERSION: Final = "2019-08-26"
# Noise in a transcript: who is typing, and who has read what.
LEFT_OUT: Final = frozenset({"chat.typing", "chat.receipt"})
# Why an assembly is requested: ended, chat.ended came; recheck, the late check after an assembly; late, items came
# after the transcript was made (late on the stream, or recovered by reconciliation); sweep, the session was idle and
# its chat.ended never came. Here, not in the transcript service, so the assembler's handler reads requests without
# importing the service before its first event.
Reason = Literal["ended", "recheck", "late", "sweep"]
REASONS: Final = frozenset(get_args(Reason))
_ROLE_NAMES: Final = {"CUSTOMER": "customer", "AGENT": "agent", "SYSTEM": "system", "CUSTOM_BOT": "bot"}


@dataclass(frozen=True)
class ArchivedEvent:
    """An envelope read back from the archive; ``arrival`` orders events with the same AbsoluteTime."""

    envelope: Mapping[str, Any]
    arrival: tuple[str, str]

    @property
    def data(self) -> Mapping[str, Any]:
        """The envelope's ``data``."""
        value = self.envelope.get("data")
        return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class Transcript:
    """One assembled version of a session's transcript."""

    initial_contact_id: str
    version: int
    document: dict[str, Any]
    markdown: str
    summary: dict[str, Any]
    instance_id: str | None


def session_events(events: Sequence[ArchivedEvent]) -> list[ArchivedEvent]:
    """The events of a transcript: one per item id (the first to arrive), by AbsoluteTime then arrival."""
    kept: dict[str, ArchivedEvent] = {}
    for event in sorted(events, key=lambda e: e.arrival):
        if event.envelope.get("type") in LEFT_OUT:
            continue
        item_id = str(event.data.get("item_id") or "")
        if item_id and item_id not in kept:
            kept[item_id] = event
    return sorted(kept.values(), key=lambda e: (str(e.envelope.get("timestamp", "")), e.arrival))


def assemble(initial_contact_id: str, events: Sequence[ArchivedEvent], *, version: int) -> Transcript:
    """The transcript of a session from its archived events (any order, duplicates included)."""
    ordered = session_events(events)
    items = [_connect_item(event) for event in ordered]
    participants: dict[str, dict[str, Any]] = {}
    contact_ids: list[str] = []
    for event in ordered:
        data = event.data
        participant = data.get("participant") or {}
        participant_id = participant.get("id")
        if participant_id and participant_id not in participants:
            participants[participant_id] = {
                "id": participant_id,
                "role": participant.get("role"),
                "display_name": participant.get("display_name"),
            }
        contact_id = data.get("contact_id")
        if contact_id and contact_id not in contact_ids:
            contact_ids.append(contact_id)
    instance_id = next((str(e.data["instance_id"]) for e in ordered if e.data.get("instance_id")), None)
    document: dict[str, Any] = {
        "Version": CONNECT_TRANSCRIPT_VERSION,
        "InstanceId": instance_id,
        "InitialContactId": initial_contact_id,
        "ContactId": contact_ids[-1] if contact_ids else initial_contact_id,
        "ContactIds": contact_ids,
        "TranscriptVersion": version,
        "Participants": [{"ParticipantId": p} for p in participants],
        "Transcript": items,
    }
    summary = _summary(ordered, list(participants.values()), contact_ids)
    markdown = _markdown(initial_contact_id, ordered, summary, version)
    return Transcript(initial_contact_id, version, document, markdown, summary, instance_id)


def _connect_item(event: ArchivedEvent) -> dict[str, Any]:
    """An item under Connect's own field names, with the contact id it was sent on."""
    data = event.data
    participant = data.get("participant") or {}
    item: dict[str, Any] = {
        "AbsoluteTime": event.envelope.get("timestamp"),
        "Content": data.get("content"),
        "ContentType": data.get("content_type"),
        "Id": data.get("item_id"),
        "Type": data.get("connect_type"),
        "ParticipantId": participant.get("id"),
        "DisplayName": participant.get("display_name"),
        "ParticipantRole": participant.get("role"),
        "ContactId": data.get("contact_id"),
        "MessageVisibility": data.get("visibility", "ALL"),
    }
    attachments = data.get("attachments")
    if attachments:
        item["Attachments"] = [
            {
                "AttachmentId": a.get("attachment_id"),
                "AttachmentName": a.get("name"),
                "ContentType": a.get("content_type"),
                "Status": a.get("status"),
            }
            for a in attachments
        ]
    return {key: value for key, value in item.items() if value is not None}


def _summary(
    ordered: Sequence[ArchivedEvent], participants: list[dict[str, Any]], contact_ids: list[str]
) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for event in ordered:
        if event.envelope.get("type") == "chat.message":
            role = str((event.data.get("participant") or {}).get("role") or "UNKNOWN")
            counts[role] = counts.get(role, 0) + 1
    started = str(ordered[0].envelope.get("timestamp")) if ordered else None
    ended = str(ordered[-1].envelope.get("timestamp")) if ordered else None
    return {
        "participants": participants,
        "message_counts": counts,
        "items": len(ordered),
        "started_at": started,
        "ended_at": ended,
        "duration_seconds": _seconds_between(started, ended),
        "transfers": sum(event.envelope.get("type") == "chat.transfer.succeeded" for event in ordered),
        "contact_ids": contact_ids,
    }


def _seconds_between(started: str | None, ended: str | None) -> float | None:
    if started is None or ended is None:
        return None
    try:
        return (_instant(ended) - _instant(started)).total_seconds()
    except ValueError:
        return None


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _markdown(
    initial_contact_id: str, ordered: Sequence[ArchivedEvent], summary: Mapping[str, Any], version: int
) -> str:
    lines = [f"# Chat {initial_contact_id}", ""]
    people = ", ".join(
        f"{p.get('display_name') or p['id']} ({_ROLE_NAMES.get(str(p.get('role')), str(p.get('role')).lower())})"
        for p in summary["participants"]
    )
    lines += [
        f"- Participants: {people or 'none'}",
        f"- Started: {summary['started_at']}; ended: {summary['ended_at']}"
        + (f" ({summary['duration_seconds']:.0f} s)" if summary["duration_seconds"] is not None else ""),
        f"- Messages: {sum(summary['message_counts'].values())}; transfers: {summary['transfers']}",
        f"- Contacts: {' → '.join(summary['contact_ids'])}",
        f"- Transcript version {version}",
        "",
    ]
    contact = None
    for event in ordered:
        data = event.data
        if contact is not None and data.get("contact_id") and data.get("contact_id") != contact:
            lines += [f"*— continued on contact {data['contact_id']} —*", ""]
        contact = data.get("contact_id") or contact
        lines += [_markdown_line(event), ""]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_line(event: ArchivedEvent) -> str:
    data = event.data
    kind = str(event.envelope.get("type"))
    at = str(event.envelope.get("timestamp", ""))[11:19]
    participant = data.get("participant") or {}
    who = participant.get("display_name") or _ROLE_NAMES.get(str(participant.get("role")))
    note = " *(agent only)*" if data.get("visibility") == "AGENT" else ""
    if kind == "chat.message":
        content = str(data.get("content") or "").replace("\n", "  \n> ")
        return f"**{at} {who}**{note}:  \n> {content}"
    if kind == "chat.attachment":
        names = ", ".join(str(a.get("name")) for a in data.get("attachments") or [])
        return f"**{at} {who}**{note} sent an attachment: {names}"
    action = kind.removeprefix("chat.").replace("participant.", "").replace("_", " ").replace(".", " ")
    if who is None:
        return f"*{at} chat {action}*{note}"
    return f"*{at} {who}: {action}*{note}"
