"""A two-way chat in the README's local mode: ``scripts.local_aws`` (moto, the emulated Connect and its Participant
Service), then ``chalice local --stage dev``, spoken to over real HTTP."""

from __future__ import annotations

import pytest

from tests.integration.test_web_call_example import chalice_local, local_aws, post

pytestmark = pytest.mark.integration
__all__ = ["chalice_local", "local_aws"]  # the fixtures this module uses


def test_a_two_way_chat_runs_under_chalice_local(chalice_local: str) -> None:
    json_body = {"Content-Type": "application/json"}
    status, _, chat = post(
        f"{chalice_local}/chat-contacts", {"display_name": "Kim", "participant_connection": True}, json_body
    )
    assert (status, chat["ConnectionHeldByRelay"]) == (201, True)

    status, _, sent = post(f"{chalice_local}/chats/{chat['ContactId']}/messages", {"content": "Hello"}, json_body)

    assert status == 201
    assert sent["item_id"]
