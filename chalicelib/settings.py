"""The one typed view of the relay's environment, read lazily and validated with clear errors.

``.chalice/config.json`` sets these per stage. Nothing here runs at import: the first invocation that needs the
settings calls :func:`get_settings`, and a missing or invalid value fails it with one message naming every
variable at fault and what it expects, never quoting a value (one may hold a secret or a URL). The variables are
declared once, in :mod:`chalicelib.environment`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from chalicelib.errors import SettingsError

SNS_TOPIC_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:sns:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):(?P<name>[\w-]{1,256}(\.fifo)?)\Z"
)
INSTANCE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}\Z")
FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
# A KMS key by ARN, alias ARN, alias name or id.
KMS_KEY = re.compile(
    r"^(arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,100}|alias/[A-Za-z0-9/_-]{1,250})"
    r"|alias/[A-Za-z0-9/_-]{1,250}|[A-Za-z0-9-]{1,100})\Z"
)
# S3 keeps a pre-signed link valid at most 7 days.
MAX_LINK_SECONDS = 604_800
# A browser's Origin: scheme, host and optional port; never a path, a wildcard or "null". Any case (ASCII only):
# origins are kept lower-cased.
CORS_ORIGIN = re.compile(r"(?ai)^https?://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?\Z")
SQS_QUEUE_URL = re.compile(r"^https?://[A-Za-z0-9.:-]{1,255}/\d{12}/[A-Za-z0-9_-]{1,80}\Z")
DEFAULT_DETAIL_TYPE = "Amazon Connect Contact Event"
# Stages where the destinations' development switches (allow_http, allow_private_network, allow_literal_secrets)
# are refused, unless the override below is "true".
PRODUCTION_STAGES = frozenset({"prod", "production"})
DEVELOPMENT_SWITCHES_OVERRIDE = "ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION"
PACKAGE_CONFIG_DIR = Path(__file__).parent / "config"
# Where Connect writes an instance's chat transcripts: s3://bucket/prefix.
TRANSCRIPT_LOCATION = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>[^,\s]*)\Z")
# SQS delays a message at most 15 minutes.
MAX_DELAY_SECONDS = 900


@dataclass(frozen=True)
class TranscriptLocation:
    """Where one instance's chat transcripts are written: a bucket and a key prefix."""

    bucket: str
    prefix: str

    def holds(self, bucket: str, key: str) -> bool:
        """Whether the object ``bucket``/``key`` is in this location."""
        return bucket == self.bucket and key.startswith(self.prefix)


@dataclass(frozen=True)
class Settings:
    """Everything the relay reads from its environment, validated (the variables: :mod:`chalicelib.environment`
    and the README)."""

    stage: str
    region: str
    streaming_topic_arn: str
    allowed_instance_ids: frozenset[str]
    streams_table_name: str
    streams_ttl_days: int
    quarantine_bucket: str
    quarantine_prefix: str
    relay_config_file: Path
    health_table_name: str
    disable_after_hours: int
    breaker_failures: int
    breaker_cooldown_seconds: int
    health_cache_seconds: int
    # The delivery ledger's table; None: no bookkeeping of 2xx answers (a redelivery delivers again).
    deliveries_table_name: str | None
    deliveries_ttl_days: int
    connect_instance_id: str | None
    contact_flows: Mapping[str, str]
    default_flow: str | None
    cors_allowed_origins: tuple[str, ...]
    transcript_queue_url: str | None
    transcript_archive: str
    transcript_grace_seconds: int
    transcript_recheck_seconds: int
    transcript_link_seconds: int
    sessions_table_name: str | None
    session_idle_seconds: int
    # Whether destinations may use allow_http, allow_private_network and allow_literal_secrets.
    development_switches: bool
    participant_token_key_id: str | None
    attachments_prefix: str
    attachment_link_seconds: int
    reconcile_queue_url: str | None
    transcript_locations: tuple[TranscriptLocation, ...]
    reconcile_delay_seconds: int
    reconcile_deliver: bool
    reconcile_scan: bool
    retry_queue_url: str

    @property
    def scan_watermark_parameter(self) -> str:
        """The SSM parameter the scheduled transcript scan keeps its watermarks in."""
        return scan_watermark_parameter(self.stage)


def scan_watermark_parameter(stage: str) -> str:
    """The SSM parameter of ``stage``'s transcript scan watermarks (its policy names exactly this one)."""
    return f"/connect-chat-relay/{stage}/reconciliation/scan-watermark"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build and validate :class:`Settings` from a mapping of environment variables."""
    # On first use: a handler's module imports this one at import, for deploy_time.
    from chalicelib.environment import Environment  # noqa: PLC0415
    from chalicelib.validation import read_environment  # noqa: PLC0415

    env, problems = read_environment(Environment, environ)
    if env is None:
        raise SettingsError("invalid relay settings: " + "; ".join(f"{p.field} {p.problem}" for p in problems))
    locations = (TRANSCRIPT_LOCATION.match(location) for location in env.RECONCILE_TRANSCRIPT_LOCATIONS)
    config_file = env.RELAY_CONFIG_FILE or PACKAGE_CONFIG_DIR / f"destinations-{env.RELAY_STAGE}.json"
    return Settings(
        stage=env.RELAY_STAGE,
        # One of the two is set (a cross check).
        region=env.AWS_REGION or env.AWS_DEFAULT_REGION or "",
        streaming_topic_arn=env.STREAMING_TOPIC_ARN,
        allowed_instance_ids=frozenset(env.ALLOWED_INSTANCE_IDS),
        streams_table_name=env.STREAMS_TABLE_NAME,
        streams_ttl_days=env.STREAMS_TTL_DAYS,
        quarantine_bucket=env.QUARANTINE_BUCKET,
        quarantine_prefix=env.QUARANTINE_PREFIX,
        relay_config_file=Path(config_file),
        health_table_name=env.HEALTH_TABLE_NAME,
        disable_after_hours=env.DISABLE_AFTER_HOURS,
        breaker_failures=env.BREAKER_FAILURES,
        breaker_cooldown_seconds=env.BREAKER_COOLDOWN_SECONDS,
        health_cache_seconds=env.HEALTH_CACHE_SECONDS,
        deliveries_table_name=env.DELIVERIES_TABLE_NAME,
        deliveries_ttl_days=env.DELIVERIES_TTL_DAYS,
        connect_instance_id=env.CONNECT_INSTANCE_ID,
        contact_flows=env.CONTACT_FLOWS,
        default_flow=env.DEFAULT_CONTACT_FLOW or next(iter(env.CONTACT_FLOWS), None),
        cors_allowed_origins=tuple(dict.fromkeys(origin.lower() for origin in env.CORS_ALLOWED_ORIGINS)),
        transcript_queue_url=env.TRANSCRIPT_QUEUE_URL,
        transcript_archive=env.TRANSCRIPT_ARCHIVE,
        transcript_grace_seconds=env.TRANSCRIPT_GRACE_SECONDS,
        transcript_recheck_seconds=env.TRANSCRIPT_RECHECK_SECONDS,
        transcript_link_seconds=env.TRANSCRIPT_LINK_SECONDS,
        sessions_table_name=env.SESSIONS_TABLE_NAME,
        session_idle_seconds=env.SESSION_IDLE_SECONDS,
        development_switches=env.RELAY_STAGE not in PRODUCTION_STAGES or env.ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION,
        participant_token_key_id=env.PARTICIPANT_TOKEN_KEY_ID,
        attachments_prefix=env.ATTACHMENTS_PREFIX,
        attachment_link_seconds=env.ATTACHMENT_LINK_SECONDS,
        reconcile_queue_url=env.RECONCILE_QUEUE_URL,
        transcript_locations=tuple(TranscriptLocation(m["bucket"], m["prefix"]) for m in locations if m),
        reconcile_delay_seconds=env.RECONCILE_DELAY_SECONDS,
        reconcile_deliver=env.RECONCILE_DELIVERY == "deliver",
        reconcile_scan=env.RECONCILE_SCAN == "on",
        retry_queue_url=env.RETRY_QUEUE_URL,
    )


@cache
def get_settings() -> Settings:
    """The settings of this container, read on first use."""
    return load_settings(os.environ)


def retry_queue_name() -> str:
    """The retry queue's name, for the ``retry_deliveries`` subscription (read at import, like ``deploy_time``)."""
    return deploy_time("RETRY_QUEUE_URL", "connect-chat-relay-retries").rsplit("/", 1)[-1]


def deploy_time(name: str, default: str) -> str:
    """A value that shapes the deployment itself (an event pattern, a topic subscription).

    Read at import, because Chalice reads decorators at package time; the Chalice CLI sets the stage's
    environment variables before it imports ``app.py``. Never validated here: a bad value shows at deploy.
    """
    return os.environ.get(name, "").strip() or default
