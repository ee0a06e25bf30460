"""Assembling a transcript (pure): one item per id, AbsoluteTime order with ties by arrival, every contact id of the
session, Connect's field names, and a Markdown rendition a person can read."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.transcripts import ArchivedEvent, assemble, session_events

SESSION = "session-1"


def archived(
    item_id: str,
    at: str,
    *,
    kind: str = "chat.message",
    contact_id: str = SESSION,
    role: str | None = "CUSTOMER",
    name: str | None = "Jane",
    content: str | None = "hi",
    arrival: str = "0",
    **data: Any,
) -> ArchivedEvent:
    envelope = {
        "type": kind,
        "timestamp": at,
        "version": 1,
        "data": {
            "item_id": item_id,
            "initial_contact_id": SESSION,
            "contact_id": contact_id,
            "instance_id": "instance-1",
            "participant": {"id": f"{role}-id" if role else None, "role": role, "display_name": name},
            "visibility": "ALL",
            "connect_type": "MESSAGE" if kind == "chat.message" else "EVENT",
            "content_type": "text/plain",
            "content": content,
            **data,
        },
    }
    return ArchivedEvent(envelope, (arrival, item_id))


def test_items_are_deduplicated_and_ordered_by_time_then_arrival_across_contacts_and_midnight() -> None:
    # Given items out of order, a duplicate, a tie in time, a transfer to a second contact, and midnight UTC
    events = [
        archived("c", "2026-11-23T00:00:01.000Z", contact_id="contact-2", role="AGENT", name="Sam", arrival="3"),
        archived("a", "2026-11-22T23:59:58.000Z", arrival="1"),
        archived("b2", "2026-11-22T23:59:59.000Z", arrival="5"),
        archived("b1", "2026-11-22T23:59:59.000Z", arrival="2"),
        archived("a", "2026-11-22T23:59:58.000Z", arrival="4", content="the duplicate"),
    ]
    # When the transcript is assembled
    transcript = assemble(SESSION, events, version=1)
    # Then each item appears once, in order, ties by arrival, and both contacts are in it
    document = transcript.document
    assert [item["Id"] for item in document["Transcript"]] == ["a", "b1", "b2", "c"]
    assert document["Transcript"][0]["Content"] == "hi"
    assert document["ContactIds"] == [SESSION, "contact-2"]
    assert document["InitialContactId"] == SESSION
    assert document["Version"] == "2019-08-26"
    assert document["Participants"] == [{"ParticipantId": "CUSTOMER-id"}, {"ParticipantId": "AGENT-id"}]
    assert set(document["Transcript"][3]) >= {
        "AbsoluteTime",
        "Content",
        "ContentType",
        "Id",
        "Type",
        "ParticipantId",
        "DisplayName",
        "ParticipantRole",
        "ContactId",
    }
    assert transcript.summary["message_counts"] == {"CUSTOMER": 3, "AGENT": 1}
    assert transcript.summary["duration_seconds"] == 3.0


def test_typing_and_receipts_are_left_out() -> None:
    events = [
        archived("t", "2026-11-22T10:00:00.000Z", kind="chat.typing"),
        archived("r", "2026-11-22T10:00:01.000Z", kind="chat.receipt"),
        archived("m", "2026-11-22T10:00:02.000Z"),
    ]
    assert [e.data["item_id"] for e in session_events(events)] == ["m"]


def test_markdown_shows_people_times_transfers_attachments_and_agent_only_notes() -> None:
    events = [
        archived("1", "2026-11-22T10:00:00.000Z", content="I need help"),
        archived("2", "2026-11-22T10:00:05.000Z", role="AGENT", name="Ann", content="private", visibility="AGENT"),
        archived(
            "3",
            "2026-11-22T10:00:06.000Z",
            kind="chat.attachment",
            content=None,
            attachments=[
                {"attachment_id": "x", "name": "receipt.pdf", "content_type": "application/pdf", "status": "APPROVED"}
            ],
        ),
        archived(
            "4", "2026-11-22T10:00:07.000Z", kind="chat.transfer.succeeded", role="SYSTEM", name=None, content=None
        ),
        archived("5", "2026-11-22T10:00:09.000Z", contact_id="contact-2", role="AGENT", name="Sam", content="Sam here"),
    ]
    markdown = assemble(SESSION, events, version=2).markdown
    assert "Jane (customer), Ann (agent)" in markdown
    assert "**10:00:00 Jane**:  \n> I need help" in markdown
    assert "**10:00:05 Ann** *(agent only)*:" in markdown
    assert "sent an attachment: receipt.pdf" in markdown
    assert "transfer succeeded" in markdown
    assert "*— continued on contact contact-2 —*" in markdown
    assert markdown.index("Sam here") > markdown.index("transfer succeeded")
    assert "Transcript version 2" in markdown
    attachment = assemble(SESSION, events, version=1).document["Transcript"][2]["Attachments"][0]
    assert attachment == {
        "AttachmentId": "x",
        "AttachmentName": "receipt.pdf",
        "ContentType": "application/pdf",
        "Status": "APPROVED",
    }


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdef"), st.integers(0, 5), st.integers(0, 100)),
        max_size=30,
    )
)
def test_any_order_and_any_duplicates_give_the_same_transcript(items: list[tuple[str, int, int]]) -> None:
    # Given any arrival of items (the same id always has the same time, as Connect sends it)
    events = [
        archived(item_id, f"2026-11-22T10:00:0{'abcdef'.index(item_id) % 3}.000Z", arrival=f"{arrival:03}")
        for item_id, _, arrival in items
    ]
    ids = [item["Id"] for item in assemble(SESSION, events, version=1).document["Transcript"]]
    # Then every item is there once, in time order
    assert sorted(ids) == sorted({item_id for item_id, _, _ in items})
    times = [f"{'abcdef'.index(i) % 3}" for i in ids]
    assert times == sorted(times)
