"""`make demo` itself: the whole relay on emulated AWS, run as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.integration


def test_the_demo_runs_end_to_end_and_every_signature_verifies() -> None:
    # Given a clean environment with no AWS account, When the demo runs, Then it succeeds, every receiver's
    # deliveries verify, and what it promises to write is there.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [sys.executable, "-m", "scripts.demo"],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    receivers = {d["receiver"] for d in deliveries}
    assert receivers == {"crm", "agent-assist", "archive", "analytics", "channel-bridge", "backfill", "ticketing"}
    assert all(d["signature_verified"] for d in deliveries)
    assert {d["body"]["type"] for d in deliveries} >= {"chat.message", "chat.ended", "chat.attachment", "call.started"}
    assert all("webhook-signature" in d["headers"] for d in deliveries)
    config = json.loads((PROJECT / ".relay-demo" / "config.json").read_text())
    assert len(config["destinations"]) == 11  # backfill joined for the replay
    chat = next(d["body"]["data"]["initial_contact_id"] for d in deliveries if d["body"]["type"] == "chat.ended")
    transcript = json.loads((PROJECT / ".relay-demo" / "transcripts" / f"{chat}.json").read_text())
    said = [item.get("Content") for item in transcript["Transcript"]]
    # The whole scripted conversation, in order, the part after the transfer included
    assert said.index("My October invoice is wrong.") < said.index("I've **corrected** your invoice.")
    assert said.index("I've **corrected** your invoice.") < said.index("Thank you!")
    assert len(transcript["ContactIds"]) == 2
    assert "Thank you!" in done.stdout
    assert any((PROJECT / ".relay-demo" / "archive" / "sessions" / chat / "items").iterdir())
    for secret in (s for d in config["destinations"] for s in d.get("secrets", [])):
        assert secret not in done.stdout
    assert "Idempotent-Replayed: true" in done.stdout
    assert "quarantine/invalid/" in done.stdout
    assert "POST /destinations/ticketing/enable → 200" in done.stdout


def test_the_demos_two_way_chat_answers_through_the_routes_and_links_the_attachment() -> None:
    # Given the demo's output (the test above ran it), Then the bridge's replies streamed back as the customer's
    # messages, and its attachment reached the crm with a link to the relay's copy, which served the same bytes.
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    two_way = {d["body"]["data"]["initial_contact_id"] for d in deliveries if d["receiver"] == "channel-bridge"}
    replies = [
        d["body"]["data"]["content"]
        for d in deliveries
        if d["receiver"] == "crm"
        and d["body"]["type"] == "chat.message"
        and d["body"]["data"]["participant"]["role"] == "CUSTOMER"
        and d["body"]["data"]["participant"]["display_name"] == "Kim"
    ]
    assert replies == ["My parcel hasn't arrived yet.", "Great, thank you!"]
    [attachment] = [
        a
        for d in deliveries
        if d["receiver"] == "crm" and d["body"]["type"] == "chat.attachment"
        for a in d["body"]["data"]["attachments"]
        if "archive" in a
    ]
    assert attachment["archive"]["status"] == "copied"
    assert attachment["archive"]["url"].startswith("http://127.0.0.1:")
    assert two_way


def test_the_demos_late_chat_gets_its_lost_greeting_back_marked_recovered() -> None:
    # Given the demo's second chat, whose stream started after its greeting, When both chats end and Connect writes
    # their transcripts, Then reconciliation delivers the greeting to crm with its live webhook-id, marked recovered,
    # reconciliation.json says so per session, and the session's final transcript has it.
    test_the_demo_runs_end_to_end_and_every_signature_verifies()
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    [greeting] = [d for d in deliveries if d["receiver"] == "crm" and d["body"]["data"].get("recovered") is True]
    assert greeting["body"]["data"]["content"] == "Hi!"
    assert greeting["signature_verified"]
    # The channel bridge (audience customer) gets it too: a flow's message before any agent is visible to all
    [bridged] = [d for d in deliveries if d["receiver"] == "channel-bridge" and d["body"]["data"].get("recovered")]
    assert bridged["headers"]["webhook-id"] == greeting["headers"]["webhook-id"]
    sessions = json.loads((PROJECT / ".relay-demo" / "reconciliation.json").read_text())
    late = next(s for s in sessions if s["initial_contact_id"] == greeting["body"]["data"]["initial_contact_id"])
    assert late["recovered"] == 1
    assert late["recovered_item_ids"] == [greeting["body"]["data"]["item_id"]]
    assert all(set(s) >= {"initial_contact_id", "streamed", "recovered", "only_in_stream"} for s in sessions)
    others = [s for s in sessions if s is not late]
    assert others
    assert all(s["recovered"] == 0 for s in others)
    # And the session's transcript was assembled again: the greeting is in it, recovered, first
    chat = late["initial_contact_id"]
    document = json.loads((PROJECT / ".relay-demo" / "transcripts" / f"{chat}.json").read_text())
    assert next((item["Id"], item.get("Content")) for item in document["Transcript"]) == (
        late["recovered_item_ids"][0],
        "Hi!",
    )
    assert "> Hi!" in (PROJECT / ".relay-demo" / "transcripts" / f"{chat}.md").read_text()


def test_the_demos_replay_sends_the_session_again_with_its_original_ids_in_order() -> None:
    # Given the demo's output (the first test ran it), Then the session replayed to backfill from the archive: each
    # event with the webhook-id and body the archive receiver got live, in AbsoluteTime order, all verified.
    if not (PROJECT / ".relay-demo" / "replay.json").exists():
        test_the_demo_runs_end_to_end_and_every_signature_verifies()
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    replayed = [d for d in deliveries if d["receiver"] == "backfill"]
    live = {(d["headers"]["webhook-id"], json.dumps(d["body"])) for d in deliveries if d["receiver"] == "archive"}
    assert replayed
    assert all((d["headers"]["webhook-id"], json.dumps(d["body"])) in live for d in replayed)
    assert all(d["signature_verified"] for d in replayed)
    times = [d["body"]["timestamp"] for d in replayed]
    assert times == sorted(times)
    state = json.loads((PROJECT / ".relay-demo" / "replay.json").read_text())
    assert state["status"] == "completed"
    assert state["found"] == state["delivered"] == len(replayed)
    assert {d["body"]["data"]["initial_contact_id"] for d in replayed} == {state["initial_contact_id"]}


def test_the_demos_gone_destination_is_disabled_and_its_parked_events_replayed_in_order_when_enabled() -> None:
    # Given the demo's output (the first test ran it): ticketing answered 410 to its first event, was disabled,
    # and every later event it wanted was parked; When it is re-enabled, Then every event it wanted arrives once,
    # in the order the chats said them, the one it answered 410 to first, each signature verified.
    if not (PROJECT / ".relay-demo" / "replay.json").exists():
        test_the_demo_runs_end_to_end_and_every_signature_verifies()
    deliveries = [json.loads(line) for line in (PROJECT / ".relay-demo" / "deliveries.jsonl").read_text().splitlines()]
    first, *replayed = [d for d in deliveries if d["receiver"] == "ticketing"]
    wanted = [
        d["headers"]["webhook-id"]
        for d in deliveries
        if d["receiver"] == "crm"
        and d["body"]["type"] == "chat.message"
        and d["body"]["data"]["participant"]["role"] == "CUSTOMER"
    ]
    assert len(wanted) >= 4
    assert [d["headers"]["webhook-id"] for d in replayed] == wanted
    assert replayed[0]["headers"]["webhook-id"] == first["headers"]["webhook-id"]
    assert all(d["signature_verified"] for d in replayed)
