"""The settings: read from the environment, every problem named in one message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
        ({"STREAMS_TTL_DAYS": "zero"}, "STREAMS_TTL_DAYS='zero' is invalid"),
        ({"STREAMS_TTL_DAYS": "0"}, "from 1 to 365"),
        ({"CONNECT_INSTANCE_ID": "another"}, "CONNECT_INSTANCE_ID is not among"),
        ({"DISABLE_AFTER_HOURS": "0"}, "DISABLE_AFTER_HOURS='0' is invalid"),
        ({"BREAKER_FAILURES": "many"}, "BREAKER_FAILURES='many' is invalid"),
        ({"BREAKER_COOLDOWN_SECONDS": "3601"}, "from 1 to 3600"),
        ({"HEALTH_CACHE_SECONDS": "-1"}, "from 0 to 60"),
        ({"DELIVERIES_TTL_DAYS": "0"}, "DELIVERIES_TTL_DAYS='0' is invalid"),
        ({"DELIVERIES_TTL_DAYS": "31"}, "from 1 to 30"),
        ({"CONTACT_FLOWS": "{nope"}, "CONTACT_FLOWS is not JSON"),
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
    with pytest.raises(SettingsError, match="ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION='yes' is invalid"):
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
