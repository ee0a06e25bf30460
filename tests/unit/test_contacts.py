"""The contact requests' validation over untrusted bodies: any JSON a client sends becomes a Connect request or
a list of field problems, never another exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.contacts import ContactStart, chat_start, webrtc_start
from chalicelib.errors import RequestValidationError
from chalicelib.settings import load_settings
from tests.conftest import dev_stage_environment

SETTINGS = load_settings({**dev_stage_environment(), "AWS_REGION": "us-east-1"})

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=20), children, max_size=4),
    max_leaves=25,
)
FIELDS = [
    "display_name",
    "attributes",
    "allowed_capabilities",
    "references",
    "description",
    "related_contact_id",
    "flow",
    "initial_message",
    "supported_content_types",
    "chat_duration_minutes",
    "persistent_chat",
    "surprise",
]
bodies = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8)
keys = st.none() | st.text(max_size=600)


def outcome(build: Any, body: dict[str, Any], key: str | None) -> ContactStart | RequestValidationError:
    try:
        return build(body, key, SETTINGS)  # type: ignore[no-any-return]
    except RequestValidationError as exc:
        return exc


@settings(max_examples=300)
@given(body=bodies, key=keys)
def test_any_webrtc_body_is_a_request_or_a_list_of_problems(body: dict[str, Any], key: str | None) -> None:
    result = outcome(webrtc_start, body, key)
    if isinstance(result, RequestValidationError):
        assert result.problems
        assert all(problem.field and problem.problem for problem in result.problems)
    else:
        assert result.request["InstanceId"] == SETTINGS.connect_instance_id
        assert result.request["ContactFlowId"] in SETTINGS.contact_flows.values()


@settings(max_examples=300)
@given(body=bodies, key=keys)
def test_any_chat_body_is_a_request_or_a_list_of_problems(body: dict[str, Any], key: str | None) -> None:
    result = outcome(chat_start, body, key)
    if isinstance(result, RequestValidationError):
        assert result.problems
    else:
        assert result.request["ChatStreamingConfiguration"] == {"StreamingEndpointArn": SETTINGS.streaming_topic_arn}


@given(name=st.text(min_size=1, max_size=256).filter(str.strip))
def test_a_display_name_alone_is_enough(name: str) -> None:
    assert webrtc_start({"display_name": name}, None, SETTINGS).request["ParticipantDetails"] == {"DisplayName": name}
