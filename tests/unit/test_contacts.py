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


# A value that must never come back in a problem: a signing secret, a URL with credentials, a lone surrogate.
PLANTED = ["whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "https://user:password@hooks.example.com/in?token=t0k3n", "x\ud800y"]
planted_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.sampled_from(PLANTED),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=3),
    max_leaves=15,
)
# Shapes close to valid, so the planted value reaches the nested checks too.
near_valid = st.fixed_dictionaries(
    {"display_name": st.sampled_from(["Ana", *PLANTED])},
    optional={
        "attributes": st.dictionaries(st.sampled_from(["k", "bad key", *PLANTED]), planted_values, max_size=2),
        "references": st.dictionaries(
            st.sampled_from(["r", ""]),
            st.fixed_dictionaries(
                {"type": st.sampled_from(["URL", "NUMBER", "DATE", "EMAIL", "ATTACHMENT", *PLANTED])},
                optional={"value": planted_values},
            ),
            max_size=2,
        ),
        "allowed_capabilities": st.dictionaries(
            st.sampled_from(["customer", "agent"]), st.dictionaries(st.sampled_from(["video"]), planted_values)
        ),
        "initial_message": st.fixed_dictionaries(
            {"content_type": st.sampled_from(["text/plain", *PLANTED]), "content": planted_values}
        ),
        "supported_content_types": st.lists(st.sampled_from(["text/plain", *PLANTED]), max_size=3),
        "persistent_chat": st.fixed_dictionaries(
            {"source_contact_id": planted_values, "rehydration_type": planted_values}
        ),
        "flow": planted_values,
        "description": planted_values,
        "related_contact_id": planted_values,
        "chat_duration_minutes": planted_values,
    },
)


@settings(max_examples=300)
@given(body=near_valid | st.dictionaries(st.sampled_from(FIELDS), planted_values, max_size=6), key=keys)
def test_a_refused_value_is_never_echoed(body: dict[str, Any], key: str | None) -> None:
    # Given any body (secrets, URLs and lone surrogates planted in its values), When either start reads it
    for build in (webrtc_start, chat_start):
        result = outcome(build, body, key)
        if isinstance(result, RequestValidationError):
            # Then each problem names its field (a key the client chose may be part of it), and no problem's text
            # carries a value the client sent
            assert result.problems
            for problem in result.problems:
                assert problem.field
                assert problem.problem
                assert not any(planted in problem.problem for planted in PLANTED)
