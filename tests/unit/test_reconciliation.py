"""Reconciliation: Connect's transcript objects parse like the stream's items, the comparison recovers exactly what
the archive lacks (as the events the stream would have given), and no object at all makes the parser crash."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.chat_items import ChatItem
from chalicelib.events import event_from_chat_item, webhook_id_for
from chalicelib.reconciliation import (
    TRANSCRIPT_RECONCILED,
    ConnectTranscript,
    TranscriptUnreadableError,
    contact_id_from_key,
    parse_connect_transcript,
    reconcile,
    reconciled_event,
    recovered_event,
)
from tests.schemas import load_schema

FIXTURES = Path(__file__).parents[1] / "events" / "transcripts"
SESSION = "5e1a8e2d-7f0b-4a3e-9c61-0a1f2b3c4d5e"
GREETING = "7f1d2c3b-0002-4a5b-8c6d-000000000002"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def document(name: str = "chat-transcript.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(fixture(name))
    return loaded


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def streamed(transcript: ConnectTranscript, *, leave_out: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The envelopes the archive would hold had the stream delivered every item but ``leave_out``."""
    return [event_from_chat_item(item).envelope() for item in transcript.items if item.item_id not in leave_out]


def typing_envelope(item_id: str) -> dict[str, Any]:
    return {"type": "chat.typing", "data": {"item_id": item_id, "initial_contact_id": SESSION}}


class TestParse:
    def test_given_connects_transcript_then_every_item_parses_with_the_documents_contact_ids(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))

        assert transcript.initial_contact_id == SESSION
        assert transcript.contact_id == SESSION
        assert transcript.instance_id == "11111111-2222-4333-8444-555555555555"
        assert len(transcript.items) == 8
        assert transcript.unreadable == ()
        assert {item.contact_id for item in transcript.items} == {SESSION}
        assert {item.instance_id for item in transcript.items} == {transcript.instance_id}
        assert transcript.items[5].attachments[0].name == "receipt.pdf"

    def test_given_the_second_contact_of_a_transfer_then_items_keep_that_contact(self) -> None:
        transcript = parse_connect_transcript(fixture("transfer-second-contact.json"))

        assert transcript.initial_contact_id == SESSION
        assert {item.contact_id for item in transcript.items} == {"8c0d4f7a-2b1e-4c9d-a3f6-7e5b1c2d3e4f"}

    def test_given_no_initial_contact_id_then_the_contact_id_stands_in(self) -> None:
        body = document()
        del body["InitialContactId"]

        assert parse_connect_transcript(encoded(body)).initial_contact_id == SESSION

    def test_given_an_item_that_names_its_own_contact_then_it_keeps_it(self) -> None:
        body = document()
        body["Transcript"][0]["ContactId"] = "other-contact"

        assert parse_connect_transcript(encoded(body)).items[0].contact_id == "other-contact"

    def test_given_an_object_that_is_not_json_then_it_is_refused_with_a_reason(self) -> None:
        with pytest.raises(TranscriptUnreadableError) as refused:
            parse_connect_transcript(fixture("not-json.txt"))

        assert refused.value.reason == "object is not JSON in UTF-8"

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"Transcript": None}, "Transcript is missing"),
            ({"Transcript": {}}, "Transcript is not a list"),
            ({"InitialContactId": None, "ContactId": None}, "InitialContactId and ContactId are missing"),
            ({"ContactId": 7}, "ContactId is not a string"),
            ({"ContactId": "c" * 257}, "ContactId exceeds 256 characters"),
            ({"InstanceId": []}, "InstanceId is not a string"),
        ],
    )
    def test_given_a_document_without_what_a_transcript_needs_then_it_is_refused(
        self, change: dict[str, Any], reason: str
    ) -> None:
        body = {**document(), **change}

        with pytest.raises(TranscriptUnreadableError) as refused:
            parse_connect_transcript(encoded(body))

        assert refused.value.reason == reason

    @pytest.mark.parametrize("body", [b"[]", b"null", b"NaN", b'{"Transcript": [NaN]}', b"\xff\xfe"])
    def test_given_json_that_is_no_document_then_it_is_refused(self, body: bytes) -> None:
        with pytest.raises(TranscriptUnreadableError):
            parse_connect_transcript(body)

    def test_given_unusable_entries_then_they_are_listed_and_the_rest_parses(self) -> None:
        body = document()
        body["Transcript"][1] = "not an item"
        del body["Transcript"][2]["AbsoluteTime"]

        transcript = parse_connect_transcript(encoded(body))

        assert len(transcript.items) == 6
        assert [(u.index, u.item_id, u.reason) for u in transcript.unreadable] == [
            (1, None, "item is not an object"),
            (2, "7f1d2c3b-0003-4a5b-8c6d-000000000003", "AbsoluteTime is missing"),
        ]

    def test_given_an_item_with_an_unpaired_surrogate_then_it_is_unreadable_not_a_crash(self) -> None:
        body = fixture("chat-transcript.json").replace(b"Hi, my order", b"\\ud800 my order")

        transcript = parse_connect_transcript(body)

        assert [u.index for u in transcript.unreadable] == [2]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
item_fields = st.fixed_dictionaries(
    {},
    optional={
        key: st.text(max_size=30) | json_values
        for key in ("AbsoluteTime", "Id", "Type", "ContentType", "Content", "ParticipantRole", "ContactId")
    },
)
documents = st.fixed_dictionaries(
    {},
    optional={
        "InitialContactId": st.text(max_size=300) | json_values,
        "ContactId": st.text(max_size=300) | json_values,
        "InstanceId": st.text(max_size=40) | json_values,
        "Transcript": st.lists(item_fields | json_values, max_size=6) | json_values,
    },
)


class TestKey:
    """Connect names the object after the contact: ``<prefix>yyyy/mm/dd/<ContactId>_<yyyymmddThh:mm>_UTC.json``."""

    KEY = f"connect/relay-dev/ChatTranscripts/2024/03/20/{SESSION}_20240320T09:38_UTC.json"

    def test_given_connects_key_then_its_contact_id_is_read(self) -> None:
        recorded = json.loads((FIXTURES / "eventbridge-object-created.json").read_text())

        assert contact_id_from_key(recorded["detail"]["object"]["key"]) == SESSION
        assert contact_id_from_key(self.KEY) == SESSION

    @pytest.mark.parametrize(
        "key",
        [
            "connect/relay-dev/ChatTranscripts/2024/03/20/readme.json",
            f"connect/relay-dev/ChatTranscripts/2024/03/20/{SESSION}_20240320T09:38_UTC.json.tmp",
            f"connect/relay-dev/Analysis/Chat/2024/03/20/{SESSION}_analysis_2024-03-20T09:38:16Z.json",
            "",
        ],
    )
    def test_given_a_key_that_is_not_connects_name_then_it_names_no_contact(self, key: str) -> None:
        assert contact_id_from_key(key) is None

    def test_given_the_key_of_the_documents_contact_then_it_parses(self) -> None:
        assert parse_connect_transcript(fixture("chat-transcript.json"), key=self.KEY).contact_id == SESSION

    def test_given_the_initial_contacts_key_for_a_later_contacts_document_then_it_parses(self) -> None:
        transcript = parse_connect_transcript(fixture("transfer-second-contact.json"), key=self.KEY)

        assert transcript.contact_id == "8c0d4f7a-2b1e-4c9d-a3f6-7e5b1c2d3e4f"

    def test_given_a_key_naming_another_contact_then_the_object_is_refused(self) -> None:
        key = self.KEY.replace(SESSION, "0badc0de-0000-4000-8000-000000000000")

        with pytest.raises(TranscriptUnreadableError) as refused:
            parse_connect_transcript(fixture("chat-transcript.json"), key=key)

        assert refused.value.reason == "the object's key names a contact the document does not"

    def test_given_a_document_naming_no_contact_then_the_keys_contact_stands_in(self) -> None:
        body = {**document(), "InitialContactId": None, "ContactId": None}

        transcript = parse_connect_transcript(encoded(body), key=self.KEY)

        assert (transcript.initial_contact_id, transcript.contact_id) == (SESSION, SESSION)
        assert {item.contact_id for item in transcript.items} == {SESSION}


class TestVisibility:
    """Transcript items carry no MessageVisibility: it is decided only where Connect leaves no choice."""

    def visibilities(self, body: dict[str, Any]) -> dict[str, str | None]:
        return {item.item_id[-2:]: item.visibility for item in parse_connect_transcript(encoded(body)).items}

    def test_given_connects_transcript_then_sent_items_of_the_customer_and_the_flow_before_an_agent_are_all(
        self,
    ) -> None:
        assert self.visibilities(document()) == {
            "01": None,  # the customer joined: an event, undecided
            "02": "ALL",  # the flow's greeting, before any agent: no whisper can play yet
            "03": "ALL",  # the customer's message: the agent reads it
            "04": None,  # the agent joined: an event
            "05": None,  # the agent's message may be AGENT-only: undecided, never guessed
            "06": "ALL",  # the customer's attachment
            "07": None,
            "08": None,
        }

    def test_given_a_flow_message_once_an_agent_is_on_the_contact_then_it_stays_unknown(self) -> None:
        # A whisper flow plays when the agent joins and shows its messages to one side only.
        body = document()
        body["Transcript"][1]["AbsoluteTime"] = "2024-03-20T09:36:57.000Z"

        assert self.visibilities(body)["02"] is None

    def test_given_a_bot_message_in_a_chat_no_agent_joined_then_it_is_all(self) -> None:
        body = document()
        body["Transcript"] = [e for e in body["Transcript"] if e.get("ParticipantRole") != "AGENT"]
        body["Transcript"][1]["ParticipantRole"] = "CUSTOM_BOT"

        assert self.visibilities(body)["02"] == "ALL"

    def test_given_an_item_that_says_its_visibility_then_it_is_kept(self) -> None:
        body = document()
        body["Transcript"][2]["MessageVisibility"] = "AGENT"

        assert self.visibilities(body)["03"] == "AGENT"

    def test_given_a_supervisors_message_then_it_stays_unknown(self) -> None:
        body = document()
        body["Transcript"][1]["ParticipantRole"] = "SUPERVISOR"

        assert self.visibilities(body)["02"] is None


class TestParseUntrustedInput:
    @settings(max_examples=300, deadline=None)
    @given(body=st.binary(max_size=200))
    def test_any_bytes_parse_or_are_refused(self, body: bytes) -> None:
        with contextlib.suppress(TranscriptUnreadableError):
            parse_connect_transcript(body)

    @settings(max_examples=300, deadline=None)
    @given(body=documents)
    def test_any_document_parses_or_is_refused_and_no_entry_disappears(self, body: dict[str, Any]) -> None:
        try:
            transcript = parse_connect_transcript(encoded(body))
        except TranscriptUnreadableError:
            return
        assert len(transcript.items) + len(transcript.unreadable) == len(body["Transcript"])
        for item in transcript.items:
            assert isinstance(item, ChatItem)
            event_from_chat_item(item).body  # noqa: B018 - every parsed item makes a sendable event


class TestReconcile:
    def test_given_nothing_missing_then_nothing_is_recovered(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))

        result = reconcile(SESSION, [transcript], streamed(transcript))

        assert result.recovered == ()
        assert result.counts() == {"recorded": 8, "streamed": 8, "recovered": 0, "only_in_stream": 0, "unreadable": 0}

    def test_given_a_missing_greeting_then_it_is_the_streams_event_marked_recovered(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))
        greeting = next(item for item in transcript.items if item.item_id == GREETING)

        result = reconcile(SESSION, [transcript], streamed(transcript, leave_out=frozenset({GREETING})))

        [event] = result.recovered
        live = event_from_chat_item(greeting)
        assert event.webhook_id == live.webhook_id == webhook_id_for(GREETING)
        assert event.type == "chat.message"
        assert event.timestamp == live.timestamp
        assert event.data == {**live.data, "recovered": True}
        assert result.counts()["streamed"] == 7

    def test_given_several_missing_then_they_come_in_absolute_time_order(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))
        ids = [item.item_id for item in transcript.items]

        result = reconcile(SESSION, [transcript], streamed(transcript, leave_out=frozenset(ids[5:] + ids[:2])))

        assert [event.data["item_id"] for event in result.recovered] == ids[:2] + ids[5:]

    def test_given_a_transfer_then_both_contacts_items_count(self) -> None:
        first = parse_connect_transcript(fixture("transfer-first-contact.json"))
        second = parse_connect_transcript(fixture("transfer-second-contact.json"))
        lost = second.items[1].item_id

        result = reconcile(SESSION, [first, second], streamed(first) + streamed(second, leave_out=frozenset({lost})))

        assert [event.data["item_id"] for event in result.recovered] == [lost]
        assert result.recovered[0].data["contact_id"] == second.contact_id
        assert result.contact_ids == (first.contact_id, second.contact_id)
        assert result.recorded == 8

    def test_given_one_transcript_of_a_transfer_then_only_its_contacts_stream_counts(self) -> None:
        first = parse_connect_transcript(fixture("transfer-first-contact.json"))
        second = parse_connect_transcript(fixture("transfer-second-contact.json"))

        result = reconcile(SESSION, [second], streamed(first) + streamed(second))

        assert result.counts() == {"recorded": 4, "streamed": 4, "recovered": 0, "only_in_stream": 0, "unreadable": 0}

    def test_given_typing_only_in_the_stream_then_it_is_reported_not_recovered(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))

        result = reconcile(SESSION, [transcript], [*streamed(transcript), typing_envelope("typing-1")])

        assert result.only_in_stream == ("typing-1",)
        assert result.recovered == ()
        assert result.counts()["streamed"] == 9

    def test_given_items_recovered_earlier_then_a_second_run_recovers_nothing(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))
        first = reconcile(SESSION, [transcript], streamed(transcript, leave_out=frozenset({GREETING})))
        archive = streamed(transcript, leave_out=frozenset({GREETING})) + [e.envelope() for e in first.recovered]

        again = reconcile(SESSION, [transcript], archive)

        assert again.recovered == ()
        assert again.counts()["streamed"] == 7

    def test_given_archive_entries_without_item_ids_then_they_are_ignored(self) -> None:
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))
        others: list[dict[str, Any]] = [{"type": "chat.transcript.completed", "data": {}}, {"data": "x"}, {}]

        result = reconcile(SESSION, [transcript], [*streamed(transcript), *others])

        assert result.counts()["streamed"] == 8
        assert result.only_in_stream == ()


class TestReconciledEvent:
    def test_the_event_carries_the_counts_and_the_recovered_ids_and_matches_its_schema(self) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        transcript = parse_connect_transcript(fixture("chat-transcript.json"))
        result = reconcile(SESSION, [transcript], streamed(transcript, leave_out=frozenset({GREETING})))

        event = reconciled_event(result, timestamp="2024-03-20T09:40:00.000Z", run="run-1")

        assert event.type == TRANSCRIPT_RECONCILED
        assert event.data["counts"]["recovered"] == 1
        assert event.data["recovered_item_ids"] == [GREETING]
        assert event.webhook_id == reconciled_event(result, timestamp="x", run="run-1").webhook_id
        jsonschema.Draft202012Validator(
            load_schema(TRANSCRIPT_RECONCILED), format_checker=jsonschema.FormatChecker()
        ).validate(event.envelope())

    def test_recovered_event_keeps_the_live_webhook_id(self) -> None:
        item = parse_connect_transcript(fixture("chat-transcript.json")).items[0]

        assert recovered_event(item).webhook_id == event_from_chat_item(item).webhook_id
