"""Two-way chats, pure parts: the request builders against Connect's limits (hypothesis over any body), the
mapping of the Participant Service's errors, the settings, and who a caller is."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from chalice.app import Request
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters.participant import participant_error
from chalicelib.contacts import chat_start
from chalicelib.errors import (
    ChatConflictError,
    ChatConnectionExpiredError,
    ChatRejectedError,
    ChatThrottledError,
    ChatUnavailableError,
    RequestValidationError,
    SettingsError,
)
from chalicelib.handlers.http import principal_of
from chalicelib.settings import load_settings
from chalicelib.two_way_chats import (
    MAX_ATTACHMENT_BYTES,
    attachment_request,
    derived_client_token,
    event_request,
    message_request,
)
from tests.conftest import dev_stage_environment

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
BODIES = st.dictionaries(
    st.sampled_from(["content", "content_type", "type", "message_id", "name", "size_bytes", "content_base64", "x"]),
    JSON_VALUES,
    max_size=5,
)


@pytest.mark.parametrize("build", [message_request, event_request, attachment_request])
@given(body=BODIES)
def test_any_body_is_a_request_or_a_list_of_problems(build: Any, body: dict[str, Any]) -> None:
    problems = None
    try:
        build(body)
    except RequestValidationError as exc:
        problems = exc.problems
    assert problems is None or problems


def test_a_message_defaults_to_plain_text() -> None:
    assert message_request({"content": "hi"}).content_type == "text/plain"


def test_receipts_carry_the_message_id_as_connect_expects() -> None:
    event = event_request({"type": "delivered", "message_id": 'm"1'})
    assert event.content_type == "application/vnd.amazonaws.connect.event.message.delivered"
    assert event.content == '{"messageId":"m\\"1"}'
    assert event_request({"type": "typing"}).content is None


def test_an_attachment_at_connects_limit_is_accepted_and_one_byte_more_is_not() -> None:
    body = {"name": "clip.MOV", "content_type": "video/quicktime"}
    assert attachment_request({**body, "size_bytes": MAX_ATTACHMENT_BYTES}).size_bytes == MAX_ATTACHMENT_BYTES
    with pytest.raises(RequestValidationError):
        attachment_request({**body, "size_bytes": MAX_ATTACHMENT_BYTES + 1})


def test_a_one_step_attachment_measures_its_bytes() -> None:
    attachment = attachment_request(
        {"name": "a.csv", "content_type": "text/csv", "content_base64": base64.b64encode(b"a,b\n").decode()}
    )
    assert (attachment.size_bytes, attachment.content) == (4, b"a,b\n")


def test_a_size_that_is_a_boolean_is_refused() -> None:
    with pytest.raises(RequestValidationError):
        attachment_request({"name": "a.txt", "content_type": "text/plain", "size_bytes": True})


def test_derived_client_tokens_are_stable_per_key_and_purpose() -> None:
    assert derived_client_token("complete", "k") == derived_client_token("complete", "k")
    assert derived_client_token("complete", "k") != derived_client_token("complete", "j")
    assert derived_client_token("complete", None) != derived_client_token("complete", None)


def test_a_two_way_start_without_a_key_is_refused_before_connect_is_called() -> None:
    environment = {**dev_stage_environment(), "AWS_REGION": "us-east-1"}
    del environment["PARTICIPANT_TOKEN_KEY_ID"]
    with pytest.raises(SettingsError, match="PARTICIPANT_TOKEN_KEY_ID"):
        chat_start({"display_name": "Ana", "participant_connection": True}, None, load_settings(environment))


def _client_error(code: str, status: int, headers: dict[str, str] | None = None) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "Connect's own words"},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers or {}},
    }
    return ClientError(response, "SendMessage")


@pytest.mark.parametrize(
    ("code", "status", "kind", "answer"),
    [
        ("AccessDeniedException", 403, ChatConnectionExpiredError, 410),
        ("ValidationException", 400, ChatRejectedError, 400),
        ("ConflictException", 409, ChatConflictError, 409),
        ("ServiceQuotaExceededException", 402, ChatConflictError, 409),
        ("ThrottlingException", 429, ChatThrottledError, 429),
        ("InternalServerException", 500, ChatUnavailableError, 502),
        ("SomethingNew", 503, ChatUnavailableError, 502),
    ],
)
def test_participant_errors_map_to_the_relays_words(code: str, status: int, kind: type, answer: int) -> None:
    error = participant_error(_client_error(code, status))
    assert type(error) is kind
    assert error.http_status == answer
    assert error.connect_code == code
    assert "Connect's own words" not in error.message


def test_throttling_keeps_retry_after() -> None:
    error = participant_error(_client_error("ThrottlingException", 429, {"retry-after": "7"}))
    assert error.retry_after == 7


def test_an_unreachable_service_is_unavailable() -> None:
    error = participant_error(EndpointConnectionError(endpoint_url="https://participant.connect.example"))
    assert isinstance(error, ChatUnavailableError)
    assert "example" not in error.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PARTICIPANT_TOKEN_KEY_ID", "not a key!"),
        ("ATTACHMENT_LINK_SECONDS", "59"),
        ("ATTACHMENT_LINK_SECONDS", "604801"),
    ],
)
def test_two_way_settings_fail_clearly(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({**dev_stage_environment(), "AWS_REGION": "us-east-1", name: value})


@pytest.mark.parametrize(
    "key",
    [
        "alias/connect-chat-relay-dev-participant-tokens",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:us-east-1:111122223333:alias/connect-chat-relay-prod-participant-tokens",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
)
def test_a_key_may_be_named_any_way_kms_accepts(key: str) -> None:
    environment = {**dev_stage_environment(), "AWS_REGION": "us-east-1", "PARTICIPANT_TOKEN_KEY_ID": key}
    assert load_settings(environment).participant_token_key_id == key


@pytest.mark.parametrize(
    ("context", "principal"),
    [
        ({"authorizer": {"claims": {"sub": "u-1"}}, "identity": {"sourceIp": "1.2.3.4"}}, "cognito:u-1"),
        ({"identity": {"apiKeyId": "k-1", "userArn": None}}, "apikey:k-1"),
        ({"identity": {"userArn": "arn:aws:iam::111122223333:role/x"}}, "iam:arn:aws:iam::111122223333:role/x"),
        ({"identity": {"sourceIp": "127.0.0.1"}}, "anonymous"),
        ({}, "anonymous"),
    ],
)
def test_the_principal_is_who_api_gateway_authorised(context: dict[str, Any], principal: str) -> None:
    event = {
        "requestContext": {**context, "httpMethod": "POST", "resourcePath": "/chats/{contact_id}/messages"},
        "headers": {},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "body": None,
        "isBase64Encoded": False,
    }
    request = Request(event)
    assert principal_of(request) == principal


PLANTED = ["whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "https://user:password@hooks.example.com/in?token=t0k3n", "x\ud800y"]
PLANTED_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10) | st.sampled_from(PLANTED),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=8,
)
BODY_FIELDS = st.sampled_from(["content", "content_type", "type", "message_id", "name", "size_bytes", "content_base64"])


@pytest.mark.parametrize("build", [message_request, event_request, attachment_request])
@given(body=st.dictionaries(BODY_FIELDS, PLANTED_VALUES, max_size=5))
def test_a_refused_value_is_never_echoed(build: Any, body: dict[str, Any]) -> None:
    # Given any body with secrets, URLs and lone surrogates planted in its values, When it is refused
    try:
        build(body)
    except RequestValidationError as exc:
        problems = exc.problems
    else:
        return
    # Then no problem's text carries one of them
    assert not [p for p in problems for planted in PLANTED if planted in p.problem]
