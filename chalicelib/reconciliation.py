"""Reconciliation: what Connect recorded of a chat, against what the relay delivered of it.

Connect writes each ended chat's transcript to the instance's ``CHAT_TRANSCRIPTS`` storage, one JSON object per
contact (a transferred chat has several, linked by ``InitialContactId``), holding the same item objects as the
stream. Every item a transcript has and the archive lacks becomes the event the live stream would have produced,
with the same ``webhook-id`` (so a consumer that did get it deduplicates) and ``data.recovered: true``, in
AbsoluteTime order. Items only the stream has (typing, receipts) are reported, never touched.

Transcripts are untrusted input: :func:`parse_connect_transcript` raises :class:`TranscriptUnreadableError` and
nothing else, and an item it cannot use is reported with its reason, never dropped silently.

Connect names each object ``<prefix>yyyy/mm/dd/<ContactId>_<yyyymmddThh:mm>_UTC.json``: the key's contact id must
be one the document names (else the object is kept, not trusted), and stands in for a document that names none.

A transcript item carries no ``MessageVisibility`` (the stream has it only as an SNS attribute), so
:func:`transcript_visibility` decides it only where Connect leaves no choice, and leaves it unknown (the audience
filters then fail closed) everywhere else. The sources are in ``tests/events/transcripts/README.md``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final, NoReturn

from chalicelib.chat_items import ChatItem, ChatItemInvalidError, parse_sns_record
from chalicelib.contact_event_reader import MAX_CONTACT_ID
from chalicelib.errors import RelayError
from chalicelib.events import RelayEvent, event_from_chat_item, webhook_id_for
from chalicelib.strict_json import STRICT_JSON

TRANSCRIPT_RECONCILED: Final = "chat.transcript.reconciled"
# Connect's transcripts are far smaller; anything bigger is not one, and is kept rather than parsed.
MAX_TRANSCRIPT_BYTES: Final = 64 * 1024 * 1024
# The file name Connect gives a contact's transcript: <ContactId>_<yyyymmddThh:mm>_UTC.json.
_KEY_CONTACT_ID: Final = re.compile(r"(?:^|/)(?P<contact_id>[A-Za-z0-9-]{1,256})_[0-9]{8}T[0-9:]{4,8}_UTC\.json\Z")
# What a participant sends (SendMessage, attachments) is shown to the chat's other side: Connect has no
# visibility parameter for it. Events (joins, transfers) and whispers have no such rule.
_SENT: Final = frozenset({"MESSAGE", "ATTACHMENT"})
_FLOW_ROLES: Final = frozenset({"SYSTEM", "CUSTOM_BOT"})


class TranscriptUnreadableError(RelayError):
    """An object is not a Connect chat transcript; ``reason`` says why without echoing its content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UnreadableItem:
    """A transcript entry that is not a usable chat item: its position, its Id if it has one, and why."""

    index: int
    item_id: str | None
    reason: str


@dataclass(frozen=True)
class ConnectTranscript:
    """One contact's transcript as Connect wrote it, its items parsed exactly as the stream's are."""

    initial_contact_id: str
    contact_id: str
    instance_id: str | None
    items: tuple[ChatItem, ...]
    unreadable: tuple[UnreadableItem, ...]


@dataclass(frozen=True)
class Reconciliation:
    """The comparison of one session's transcripts with its archive."""

    initial_contact_id: str
    contact_ids: tuple[str, ...]
    instance_id: str | None
    recorded: int
    streamed: int
    recovered: tuple[RelayEvent, ...]
    only_in_stream: tuple[str, ...]
    unreadable: tuple[UnreadableItem, ...]

    def counts(self) -> dict[str, int]:
        """The figures ``chat.transcript.reconciled`` reports."""
        return {
            "recorded": self.recorded,
            "streamed": self.streamed,
            "recovered": len(self.recovered),
            "only_in_stream": len(self.only_in_stream),
            "unreadable": len(self.unreadable),
        }


def contact_id_from_key(key: str) -> str | None:
    """The contact id in the name Connect gives a transcript object, or None when the key is not such a name."""
    match = _KEY_CONTACT_ID.search(key)
    return match["contact_id"] if match else None


def parse_connect_transcript(body: bytes, *, key: str | None = None) -> ConnectTranscript:
    """Parse the bytes of one transcript object Connect wrote (at ``key``, when known).

    Raises :class:`TranscriptUnreadableError` when the object is not a transcript at all (not JSON, no contact id,
    no ``Transcript`` list, a key naming a contact the document does not); an entry of the list that is not a
    usable item is listed in ``unreadable``.
    """
    document = _load(body)
    contact_id = _contact_id(document, "ContactId")
    initial_contact_id = _contact_id(document, "InitialContactId") or contact_id
    keyed = contact_id_from_key(key) if key is not None else None
    if keyed is not None:
        if contact_id is None and initial_contact_id is None:
            contact_id = initial_contact_id = keyed
        elif keyed not in {contact_id, initial_contact_id}:
            _unreadable("the object's key names a contact the document does not")
    if initial_contact_id is None:
        _unreadable("InitialContactId and ContactId are missing")
    instance_id = document.get("InstanceId")
    if instance_id is not None and not isinstance(instance_id, str):
        _unreadable("InstanceId is not a string")
    entries = document.get("Transcript")
    if not isinstance(entries, list):
        _unreadable("Transcript is missing" if entries is None else "Transcript is not a list")
    defaults = {"InitialContactId": initial_contact_id, "ContactId": contact_id or initial_contact_id}
    if instance_id is not None:
        defaults["InstanceId"] = instance_id
    items: list[ChatItem] = []
    unreadable: list[UnreadableItem] = []
    for index, entry in enumerate(entries):
        try:
            items.append(_item(entry, defaults))
        except ChatItemInvalidError as exc:
            item_id = entry.get("Id") if isinstance(entry, dict) else None
            unreadable.append(UnreadableItem(index, item_id if isinstance(item_id, str) else None, exc.reason))
    return ConnectTranscript(
        initial_contact_id=initial_contact_id,
        contact_id=contact_id or initial_contact_id,
        instance_id=instance_id,
        items=transcript_visibility(items),
        unreadable=tuple(unreadable),
    )


def transcript_visibility(items: Sequence[ChatItem]) -> tuple[ChatItem, ...]:
    """One contact's transcript items, each with the visibility Connect must have given it, where there is one.

    A customer's message or attachment is shown to the agent: ALL. A flow's or bot's message before any agent is
    on the contact cannot be a whisper (whispers play when an agent joins): ALL. Anything else without a
    visibility stays unknown, so an audience-filtered destination keeps it undecided rather than guessing.
    """
    agent_times = [_instant(item.absolute_time) for item in items if item.participant_role == "AGENT"]
    first_agent = min(agent_times, default=None)
    return tuple(replace(item, visibility="ALL") if _shown_to_all(item, first_agent) else item for item in items)


def _shown_to_all(item: ChatItem, first_agent: datetime | None) -> bool:
    if item.visibility is not None or item.type not in _SENT:
        return False
    if item.participant_role == "CUSTOMER":
        return True
    return item.participant_role in _FLOW_ROLES and (first_agent is None or _instant(item.absolute_time) < first_agent)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def reconcile(
    initial_contact_id: str, transcripts: Sequence[ConnectTranscript], archived: Iterable[Mapping[str, Any]]
) -> Reconciliation:
    """Compare some of a session's transcripts (one per contact) with the envelopes archived for the session.

    A transcript covers its own contact only, so the streamed and only-in-stream figures count the archived events
    of the transcripts' contacts. An item counts as streamed when the archive holds an event with its id that was
    not itself recovered; an item recovered by an earlier run is archived too, so a rerun recovers nothing twice.
    """
    contacts = {t.contact_id for t in transcripts}
    archived_ids: set[str] = set()
    streamed_ids: set[str] = set()
    for envelope in archived:
        data = envelope.get("data")
        item_id = data.get("item_id") if isinstance(data, Mapping) else None
        if not isinstance(item_id, str) or not isinstance(data, Mapping):
            continue
        archived_ids.add(item_id)
        contact_id = data.get("contact_id")
        if data.get("recovered") is not True and (contact_id is None or contact_id in contacts):
            streamed_ids.add(item_id)
    recorded: dict[str, ChatItem] = {}
    for transcript in transcripts:
        for item in transcript.items:
            recorded.setdefault(item.item_id, item)
    missing = sorted(
        (item for item_id, item in recorded.items() if item_id not in archived_ids),
        key=lambda item: (item.absolute_time, item.item_id),
    )
    contact_ids = tuple(dict.fromkeys(t.contact_id for t in transcripts))
    instance_id = next((t.instance_id for t in transcripts if t.instance_id is not None), None)
    return Reconciliation(
        initial_contact_id=initial_contact_id,
        contact_ids=contact_ids,
        instance_id=instance_id,
        recorded=len(recorded),
        streamed=len(streamed_ids),
        recovered=tuple(recovered_event(item) for item in missing),
        only_in_stream=tuple(sorted(streamed_ids - recorded.keys())),
        unreadable=tuple(u for t in transcripts for u in t.unreadable),
    )


def recovered_event(item: ChatItem) -> RelayEvent:
    """The event the live stream would have given ``item`` (same type, data and webhook-id), marked recovered."""
    event = event_from_chat_item(item)
    return RelayEvent(event.type, event.timestamp, {**event.data, "recovered": True}, event.webhook_id)


def reconciled_event(reconciliation: Reconciliation, *, timestamp: str, run: str) -> RelayEvent:
    """``chat.transcript.reconciled``: the counts of one run; ``run`` makes its webhook-id (the same on a retry)."""
    return RelayEvent(
        type=TRANSCRIPT_RECONCILED,
        timestamp=timestamp,
        data={
            "initial_contact_id": reconciliation.initial_contact_id,
            "contact_ids": list(reconciliation.contact_ids),
            "instance_id": reconciliation.instance_id,
            "counts": reconciliation.counts(),
            "recovered_item_ids": [event.data["item_id"] for event in reconciliation.recovered],
        },
        webhook_id=webhook_id_for(f"reconciled/{reconciliation.initial_contact_id}/{run}"),
    )


def _unreadable(reason: str) -> NoReturn:
    raise TranscriptUnreadableError(reason) from None


def _load(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_TRANSCRIPT_BYTES:
        _unreadable(f"object exceeds {MAX_TRANSCRIPT_BYTES} bytes")
    try:
        document = STRICT_JSON.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        _unreadable("object is not JSON in UTF-8")
    if not isinstance(document, dict):
        _unreadable("object is not a JSON object")
    return document


def _contact_id(document: Mapping[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        _unreadable(f"{key} is not a string")
    if len(value) > MAX_CONTACT_ID:
        _unreadable(f"{key} exceeds {MAX_CONTACT_ID} characters")
    return value


def _item(entry: Any, defaults: Mapping[str, str]) -> ChatItem:
    """One transcript entry through the stream's own parser: the same checks, the same :class:`ChatItem`."""
    if not isinstance(entry, dict):
        raise ChatItemInvalidError("item is not an object")
    # The document names the contact and instance once; an item that names its own keeps it.
    body = dict(entry)
    for key, value in defaults.items():
        if body.get(key) is None:
            body[key] = value
    try:
        message = json.dumps(body, ensure_ascii=False, allow_nan=False)
    except (ValueError, RecursionError):
        raise ChatItemInvalidError("item cannot be serialised as JSON") from None
    return parse_sns_record({"Message": message, "MessageId": "transcript"})
