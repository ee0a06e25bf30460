"""The settings: read from the environment, every problem named in one message."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.errors import SettingsError
from chalicelib.settings import TranscriptLocation, load_settings
from tests.conftest import INSTANCE_ID, PROJECT, TOPIC_ARN, dev_stage_environment


def env(**overrides: str) -> dict[str, str]:
    return {**dev_stage_environment(), "AWS_REGION": "us-east-1", **overrides}


def test_the_dev_stage_configuration_is_valid() -> None:
    settings = load_settings(env())
    assert settings.streaming_topic_arn == TOPIC_ARN
    assert settings.allowed_instance_ids == {INSTANCE_ID}
    assert settings.streams_ttl_days == 8
    assert settings.relay_config_file.name == "destinations-dev.json"
    assert settings.health_table_name == "connect-chat-relay-dev-destinations"
    assert (settings.disable_after_hours, settings.breaker_failures, settings.breaker_cooldown_seconds) == (24, 5, 30)
    assert settings.health_cache_seconds == 5


def test_every_missing_variable_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"AWS_REGION": "us-east-1"})
    message = str(raised.value)
    for name in (
        "STREAMING_TOPIC_ARN",
        "ALLOWED_INSTANCE_IDS",
        "STREAMS_TABLE_NAME",
        "QUARANTINE_BUCKET",
        "HEALTH_TABLE_NAME",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"STREAMING_TOPIC_ARN": "not-an-arn"}, "STREAMING_TOPIC_ARN is invalid"),
        ({"STREAMING_TOPIC_ARN": TOPIC_ARN + ".fifo"}, "FIFO"),
        ({"STREAMING_TOPIC_ARN": TOPIC_ARN.replace("us-east-1", "eu-west-1")}, "instance's region"),
        ({"STREAMING_TOPIC_ARN": TOPIC_ARN[:-5] + "x" * 340}, "at most 350"),
        ({"ALLOWED_INSTANCE_IDS": "good-id, bad id!"}, "ALLOWED_INSTANCE_IDS has invalid ids"),
        ({"ALLOWED_INSTANCE_IDS": " , "}, "ALLOWED_INSTANCE_IDS is not set"),
        ({"STREAMS_TTL_DAYS": "zero"}, "STREAMS_TTL_DAYS is invalid"),
        ({"STREAMS_TTL_DAYS": "0"}, "from 1 to 365"),
        ({"CONNECT_INSTANCE_ID": "another"}, "CONNECT_INSTANCE_ID is not among"),
        ({"DISABLE_AFTER_HOURS": "0"}, "DISABLE_AFTER_HOURS is invalid"),
        ({"BREAKER_FAILURES": "many"}, "BREAKER_FAILURES is invalid"),
        ({"BREAKER_COOLDOWN_SECONDS": "3601"}, "from 1 to 3600"),
        ({"HEALTH_CACHE_SECONDS": "-1"}, "from 0 to 60"),
        ({"DELIVERIES_TTL_DAYS": "0"}, "DELIVERIES_TTL_DAYS is invalid"),
        ({"DELIVERIES_TTL_DAYS": "31"}, "from 1 to 30"),
        ({"CONTACT_FLOWS": "{nope"}, "CONTACT_FLOWS is invalid"),
        ({"CONTACT_FLOWS": '{"Bad Name": "x"}'}, "CONTACT_FLOWS is invalid"),
        ({"CONTACT_FLOWS": '{"sales": "f-1"}', "DEFAULT_CONTACT_FLOW": "support"}, "DEFAULT_CONTACT_FLOW"),
    ],
)
def test_invalid_values_are_named(overrides: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(env(**overrides))


def test_flows_and_their_default() -> None:
    settings = load_settings(env(CONTACT_FLOWS='{"sales": "f-1", "support": "f-2"}', DEFAULT_CONTACT_FLOW=""))
    assert settings.contact_flows == {"sales": "f-1", "support": "f-2"}
    assert settings.default_flow == "sales"


def test_the_config_file_can_be_pointed_elsewhere(tmp_path: Path) -> None:
    target = tmp_path / "relay.json"
    assert load_settings(env(RELAY_CONFIG_FILE=str(target))).relay_config_file == target


@pytest.mark.parametrize(
    ("overrides", "allowed"),
    [
        ({"RELAY_STAGE": "dev"}, True),
        ({"RELAY_STAGE": "prod"}, False),
        ({"RELAY_STAGE": "production"}, False),
        ({"RELAY_STAGE": "prod", "ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION": "false"}, False),
        ({"RELAY_STAGE": "prod", "ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION": "true"}, True),
        ({"RELAY_STAGE": "prod", "ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION": "TRUE"}, True),
    ],
)
def test_issue7_item17_production_stages_refuse_development_switches_unless_overridden(
    overrides: dict[str, str], allowed: bool
) -> None:
    assert load_settings(env(**overrides)).development_switches is allowed


def test_the_development_switch_override_must_be_true_or_false() -> None:
    with pytest.raises(SettingsError, match="ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION is invalid"):
        load_settings(env(RELAY_STAGE="prod", ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION="yes"))


def test_the_relay_imports_without_any_setting() -> None:
    # Given an environment with no relay setting, When app.py is imported, Then nothing fails (read on first use).
    environ = {k: v for k, v in os.environ.items() if k not in dev_stage_environment()}
    subprocess.run([sys.executable, "-c", "import app"], cwd=PROJECT, env=environ, check=True, timeout=60)


def test_the_delivery_ledger_is_on_in_both_stages_and_off_without_a_table() -> None:
    settings = load_settings(env())
    assert (settings.deliveries_table_name, settings.deliveries_ttl_days) == ("connect-chat-relay-dev-deliveries", 3)
    assert load_settings(env(DELIVERIES_TABLE_NAME="")).deliveries_table_name is None


def test_reconciliation_is_off_unless_a_queue_is_named() -> None:
    settings = load_settings(env(RECONCILE_QUEUE_URL="", RECONCILE_TRANSCRIPT_LOCATIONS=""))
    assert settings.reconcile_queue_url is None
    assert settings.transcript_locations == ()


def test_reconciliation_settings() -> None:
    settings = load_settings(
        env(
            RECONCILE_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/111122223333/reconcile",
            RECONCILE_TRANSCRIPT_LOCATIONS="s3://connect-a/connect/a/ChatTranscripts/, s3://connect-b/",
            RECONCILE_DELAY_SECONDS="300",
            RECONCILE_DELIVERY="archive-only",
        )
    )
    assert settings.transcript_locations == (
        TranscriptLocation("connect-a", "connect/a/ChatTranscripts/"),
        TranscriptLocation("connect-b", ""),
    )
    assert (settings.reconcile_delay_seconds, settings.reconcile_deliver) == (300, False)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"RECONCILE_QUEUE_URL": "reconcile"}, "RECONCILE_QUEUE_URL is invalid"),
        (
            {"RECONCILE_QUEUE_URL": "https://sqs/q", "RECONCILE_TRANSCRIPT_LOCATIONS": ""},
            "RECONCILE_TRANSCRIPT_LOCATIONS names no location",
        ),
        ({"RECONCILE_TRANSCRIPT_LOCATIONS": "connect-a/prefix"}, "expected s3://bucket/prefix"),
        ({"RECONCILE_DELAY_SECONDS": "901"}, "RECONCILE_DELAY_SECONDS"),
        ({"RECONCILE_DELIVERY": "webhooks"}, "RECONCILE_DELIVERY"),
    ],
)
def test_invalid_reconciliation_settings_are_named(overrides: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected):
        load_settings(env(**overrides))


def test_every_invalid_variable_is_named_at_once_and_no_value_is_quoted() -> None:
    # Given an environment wrong in many variables at once, some holding a URL with a token or a secret
    url = "https://user:password@hooks.example.com/in?token=t0ken"
    overrides = {
        "STREAMING_TOPIC_ARN": url,
        "ALLOWED_INSTANCE_IDS": f"good-id,{SECRET}",
        "STREAMS_TTL_DAYS": SECRET,
        "RETRY_QUEUE_URL": url,
        "CONTACT_FLOWS": f'{{"{SECRET}": "f-1"}}',
        "DEFAULT_CONTACT_FLOW": SECRET,
        "CORS_ALLOWED_ORIGINS": url,
        "PARTICIPANT_TOKEN_KEY_ID": url,
        "RECONCILE_TRANSCRIPT_LOCATIONS": f"s3://connect-a/,{url}",
        "RECONCILE_SCAN": SECRET,
    }
    with pytest.raises(SettingsError) as raised:
        load_settings(env(**overrides))
    # Then each is named once, with what it expects, and neither the url nor the secret shows
    problems = str(raised.value).removeprefix("invalid relay settings: ").split("; ")
    assert [problem.split(" ", 1)[0] for problem in problems] == [
        "STREAMING_TOPIC_ARN",
        "ALLOWED_INSTANCE_IDS",
        "STREAMS_TTL_DAYS",
        "RETRY_QUEUE_URL",
        "CONTACT_FLOWS",
        "CORS_ALLOWED_ORIGINS",
        "PARTICIPANT_TOKEN_KEY_ID",
        "RECONCILE_TRANSCRIPT_LOCATIONS",
        "RECONCILE_SCAN",
    ]
    assert "t0ken" not in str(raised.value)
    assert "password" not in str(raised.value)
    assert SECRET.removeprefix("whsec_") not in str(raised.value)


def test_the_default_flow_and_the_relay_region_are_never_quoted() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(env(DEFAULT_CONTACT_FLOW=SECRET, AWS_REGION=SECRET, STREAMING_TOPIC_ARN=TOPIC_ARN))
    assert str(raised.value) == (
        "invalid relay settings: STREAMING_TOPIC_ARN is in us-east-1, not in AWS_REGION (Connect requires the topic "
        "in the instance's region); DEFAULT_CONTACT_FLOW is not a name in CONTACT_FLOWS"
    )


def test_words_are_read_in_any_case_and_blank_list_entries_are_dropped() -> None:
    settings = load_settings(
        env(
            RECONCILE_QUEUE_URL="https://sqs.us-east-1.amazonaws.com/111122223333/reconcile",
            RECONCILE_TRANSCRIPT_LOCATIONS=" , s3://connect-a/,, ",
            RECONCILE_SCAN="On",
            RECONCILE_DELIVERY="Archive-Only",
            ALLOWED_INSTANCE_IDS=f",{INSTANCE_ID},,{INSTANCE_ID}",
        )
    )
    assert (settings.reconcile_scan, settings.reconcile_deliver) == (True, False)
    assert settings.transcript_locations == (TranscriptLocation("connect-a", ""),)
    assert settings.allowed_instance_ids == {INSTANCE_ID}


SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
TOKEN = "tok3nFromTheQuery"
# Variables that never take a secret or a URL: each one planted with either is named.
STRICT = [
    *("STREAMING_TOPIC_ARN", "ALLOWED_INSTANCE_IDS", "STREAMS_TTL_DAYS", "DISABLE_AFTER_HOURS", "BREAKER_FAILURES"),
    *("BREAKER_COOLDOWN_SECONDS", "HEALTH_CACHE_SECONDS", "RETRY_QUEUE_URL", "DELIVERIES_TTL_DAYS", "CONTACT_FLOWS"),
    *("CORS_ALLOWED_ORIGINS", "TRANSCRIPT_GRACE_SECONDS", "TRANSCRIPT_RECHECK_SECONDS", "TRANSCRIPT_LINK_SECONDS"),
    *("SESSION_IDLE_SECONDS", "ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION", "PARTICIPANT_TOKEN_KEY_ID"),
    *("ATTACHMENT_LINK_SECONDS", "RECONCILE_TRANSCRIPT_LOCATIONS", "RECONCILE_DELAY_SECONDS", "RECONCILE_DELIVERY"),
    "RECONCILE_SCAN",
]
# Variables that may take any text (a name, a prefix, a queue's url): planted, they are read or refused unquoted.
LENIENT = [
    *("AWS_REGION", "STREAMS_TABLE_NAME", "QUARANTINE_BUCKET", "QUARANTINE_PREFIX", "HEALTH_TABLE_NAME"),
    *("DELIVERIES_TABLE_NAME", "CONNECT_INSTANCE_ID", "DEFAULT_CONTACT_FLOW", "TRANSCRIPT_QUEUE_URL"),
    *("TRANSCRIPT_ARCHIVE", "SESSIONS_TABLE_NAME", "ATTACHMENTS_PREFIX", "RECONCILE_QUEUE_URL", "RELAY_STAGE"),
]
secrets = st.binary(min_size=24, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
urls = st.sampled_from(["https", "http", "s3"]).map(lambda scheme: f"{scheme}://u:p@hooks.example.com/in?t={TOKEN}")
planted = secrets | urls
# Around a planted value: a list's other entries, a JSON object's key (or value: a flow id may be any text), text
# a lone surrogate breaks (os.environ holds one for each byte that is not UTF-8).
shapes = ["{}", "good-id,{}", '{{"{}": "f-1"}}', "{} ", "{}\udc80"]


@given(
    strict=st.dictionaries(st.sampled_from(STRICT), st.tuples(planted, st.sampled_from(shapes)), min_size=1),
    lenient=st.dictionaries(
        st.sampled_from(LENIENT), st.tuples(planted, st.sampled_from([*shapes, '{{"sales": "{}"}}']))
    ),
)
def test_planted_secrets_and_urls_are_named_by_their_variable_and_never_quoted(
    strict: dict[str, tuple[str, str]], lenient: dict[str, tuple[str, str]]
) -> None:
    # Given secrets and URLs with tokens planted in any variables, some alone, some among valid text
    overrides = {name: shape.format(value) for name, (value, shape) in {**strict, **lenient}.items()}
    # When the settings are read, Then they are refused
    with pytest.raises(SettingsError) as raised:
        load_settings(env(**overrides))
    message = str(raised.value)
    # naming every variable that cannot hold them
    named = {problem.split(" ", 1)[0] for problem in message.removeprefix("invalid relay settings: ").split("; ")}
    assert set(strict) <= named
    # and quoting none of them
    for value, _ in (*strict.values(), *lenient.values()):
        assert value.removeprefix("whsec_") not in message
    assert TOKEN not in message
