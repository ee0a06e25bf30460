"""The one typed view of the relay's environment, read lazily and validated with clear errors.

``.chalice/config.json`` sets these per stage. Nothing here runs at import: the first invocation that needs the
settings calls :func:`get_settings`, and a missing or invalid value fails it with one message naming every
variable at fault and what it expects.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from chalicelib.errors import SettingsError

SNS_TOPIC_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:sns:(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):(?P<name>[\w-]{1,256}(\.fifo)?)\Z"
)
INSTANCE_ID = re.compile(r"^[A-Za-z0-9-]{1,100}\Z")
FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
# A browser's Origin: scheme, host and optional port; never a path, a wildcard or "null".
# A KMS key by ARN, alias ARN, alias name or id.
KMS_KEY = re.compile(
    r"^(arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:\d{12}:(key/[A-Za-z0-9-]{1,100}|alias/[A-Za-z0-9/_-]{1,250})"
    r"|alias/[A-Za-z0-9/_-]{1,250}|[A-Za-z0-9-]{1,100})\Z"
)
# S3 keeps a pre-signed link valid at most 7 days.
MAX_LINK_SECONDS = 604_800
CORS_ORIGIN = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?\Z")
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
    """Everything the relay reads from its environment, validated."""

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
    disable_after_hours: int = 24
    breaker_failures: int = 5
    breaker_cooldown_seconds: int = 30
    health_cache_seconds: int = 5
    # The delivery ledger's table; None: no bookkeeping of 2xx answers (a redelivery delivers again).
    deliveries_table_name: str | None = None
    deliveries_ttl_days: int = 3
    connect_instance_id: str | None = None
    contact_flows: Mapping[str, str] = field(default_factory=dict)
    default_flow: str | None = None
    cors_allowed_origins: tuple[str, ...] = ()
    transcript_queue_url: str | None = None
    transcript_archive: str = "archive"
    transcript_grace_seconds: int = 60
    transcript_recheck_seconds: int = 900
    transcript_link_seconds: int = 3600
    sessions_table_name: str | None = None
    session_idle_seconds: int = 3600
    # Whether destinations may use allow_http, allow_private_network and allow_literal_secrets.
    development_switches: bool = True
    participant_token_key_id: str | None = None
    attachments_prefix: str = "attachments/"
    attachment_link_seconds: int = 3_600
    reconcile_queue_url: str | None = None
    transcript_locations: tuple[TranscriptLocation, ...] = ()
    reconcile_delay_seconds: int = 120
    reconcile_deliver: bool = True
    reconcile_scan: bool = False
    retry_queue_url: str = ""

    @property
    def scan_watermark_parameter(self) -> str:
        """The SSM parameter the scheduled transcript scan keeps its watermarks in."""
        return scan_watermark_parameter(self.stage)


def scan_watermark_parameter(stage: str) -> str:
    """The SSM parameter of ``stage``'s transcript scan watermarks (its policy names exactly this one)."""
    return f"/connect-chat-relay/{stage}/reconciliation/scan-watermark"


class _Reader:
    """Reads variables and collects every problem before failing once."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def required(self, name: str, expected: str) -> str:
        value = self.environ.get(name, "").strip()
        if not value:
            self.problems.append(f"{name} is not set (expected {expected})")
        return value

    def optional(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default).strip() or default

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.optional(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(f"{name}={raw!r} is invalid (expected a whole number from {low} to {high})")
            return default
        return value


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build and validate :class:`Settings` from a mapping of environment variables."""
    read = _Reader(environ)
    stage = read.optional("RELAY_STAGE", "dev")
    region = read.optional("AWS_REGION") or read.optional("AWS_DEFAULT_REGION")
    if not region:
        read.problems.append("AWS_REGION is not set (Lambda sets it; locally set AWS_DEFAULT_REGION)")

    topic = read.required("STREAMING_TOPIC_ARN", "the ARN of a standard SNS topic")
    if topic:
        match = SNS_TOPIC_ARN.match(topic)
        if len(topic) > 350 or not match:
            read.problems.append("STREAMING_TOPIC_ARN is invalid (expected an SNS topic ARN of at most 350 characters)")
        elif match.group("name").endswith(".fifo"):
            read.problems.append("STREAMING_TOPIC_ARN names a FIFO topic (Connect streams only to standard topics)")
        elif region and match.group("region") != region:
            read.problems.append(
                f"STREAMING_TOPIC_ARN is in {match.group('region')} but the relay runs in {region} "
                "(Connect requires the topic in the instance's region)"
            )

    ids_expected = "a comma-separated list of Amazon Connect instance ids"
    raw_ids = read.required("ALLOWED_INSTANCE_IDS", ids_expected)
    instance_ids = frozenset(part.strip() for part in raw_ids.split(",") if part.strip())
    if raw_ids and not instance_ids:
        read.problems.append(f"ALLOWED_INSTANCE_IDS is not set (expected {ids_expected})")
    bad_ids = sorted(i for i in instance_ids if not INSTANCE_ID.match(i))
    if bad_ids:
        read.problems.append(f"ALLOWED_INSTANCE_IDS has invalid ids {bad_ids} (expected 1 to 100 letters, digits, -)")

    table = read.required("STREAMS_TABLE_NAME", "the DynamoDB table that keeps streaming ids")
    ttl_days = read.integer("STREAMS_TTL_DAYS", 8, 1, 365)
    bucket = read.required("QUARANTINE_BUCKET", "the S3 bucket that keeps items the relay could not read")
    prefix = read.optional("QUARANTINE_PREFIX", "quarantine/")
    health_table, disable_after_hours, breaker_failures, breaker_cooldown, health_cache = _endpoint_health(read)
    retry_queue, ledger = _retry_queue_url(read), _delivery_ledger(read)
    config_file = Path(read.optional("RELAY_CONFIG_FILE", str(PACKAGE_CONFIG_DIR / f"destinations-{stage}.json")))

    connect_instance = read.optional("CONNECT_INSTANCE_ID") or None
    if connect_instance is not None and connect_instance not in instance_ids:
        read.problems.append("CONNECT_INSTANCE_ID is not among ALLOWED_INSTANCE_IDS")
    flows = _contact_flows(read)
    default_flow = read.optional("DEFAULT_CONTACT_FLOW") or (next(iter(flows)) if flows else None)
    if default_flow is not None and default_flow not in flows:
        read.problems.append(f"DEFAULT_CONTACT_FLOW={default_flow!r} is not a name in CONTACT_FLOWS")

    cors_origins = _cors_allowed_origins(read)

    transcripts = _transcripts(read)
    override = read.optional(DEVELOPMENT_SWITCHES_OVERRIDE, "false").lower()
    if override not in {"true", "false"}:
        read.problems.append(f"{DEVELOPMENT_SWITCHES_OVERRIDE}={override!r} is invalid (expected true or false)")

    token_key = read.optional("PARTICIPANT_TOKEN_KEY_ID") or None
    if token_key is not None and not KMS_KEY.match(token_key):
        read.problems.append("PARTICIPANT_TOKEN_KEY_ID is invalid (expected a KMS key ARN, alias ARN, alias or key id)")
    attachments_prefix = read.optional("ATTACHMENTS_PREFIX", "attachments/")
    link_seconds = read.integer("ATTACHMENT_LINK_SECONDS", 3_600, 60, MAX_LINK_SECONDS)
    reconciliation = _reconciliation(read)

    if read.problems:
        raise SettingsError("invalid relay settings: " + "; ".join(read.problems))
    return Settings(
        stage=stage,
        region=region,
        streaming_topic_arn=topic,
        allowed_instance_ids=instance_ids,
        streams_table_name=table,
        streams_ttl_days=ttl_days,
        quarantine_bucket=bucket,
        quarantine_prefix=prefix,
        relay_config_file=config_file,
        health_table_name=health_table,
        disable_after_hours=disable_after_hours,
        breaker_failures=breaker_failures,
        breaker_cooldown_seconds=breaker_cooldown,
        health_cache_seconds=health_cache,
        **ledger,
        connect_instance_id=connect_instance,
        contact_flows=flows,
        default_flow=default_flow,
        cors_allowed_origins=cors_origins,
        development_switches=stage not in PRODUCTION_STAGES or override == "true",
        participant_token_key_id=token_key,
        attachments_prefix=attachments_prefix,
        attachment_link_seconds=link_seconds,
        **transcripts,
        **reconciliation,
        retry_queue_url=retry_queue,
    )


def _reconciliation(read: _Reader) -> dict[str, Any]:
    queue = read.optional("RECONCILE_QUEUE_URL") or None
    if queue is not None and not queue.startswith(("https://", "http://")):
        read.problems.append("RECONCILE_QUEUE_URL is invalid (expected the reconciliation queue's SQS url)")
    locations = []
    for part in read.optional("RECONCILE_TRANSCRIPT_LOCATIONS").split(","):
        match = TRANSCRIPT_LOCATION.match(part.strip())
        if match:
            locations.append(TranscriptLocation(match["bucket"], match["prefix"]))
        elif part.strip():
            read.problems.append(
                f"RECONCILE_TRANSCRIPT_LOCATIONS has {part.strip()!r} (expected s3://bucket/prefix, comma-separated)"
            )
    if queue is not None and not locations:
        read.problems.append("RECONCILE_QUEUE_URL is set but RECONCILE_TRANSCRIPT_LOCATIONS names no location")
    delivery = read.optional("RECONCILE_DELIVERY", "deliver")
    if delivery not in {"deliver", "archive-only"}:
        read.problems.append(f"RECONCILE_DELIVERY={delivery!r} is invalid (expected deliver or archive-only)")
    scan = read.optional("RECONCILE_SCAN", "off").lower()
    if scan not in {"on", "off"}:
        read.problems.append(f"RECONCILE_SCAN={scan!r} is invalid (expected on or off)")
    elif scan == "on" and queue is None:
        read.problems.append("RECONCILE_SCAN is on but RECONCILE_QUEUE_URL is not set (the scan queues onto it)")
    return {
        "reconcile_scan": scan == "on",
        "reconcile_queue_url": queue,
        "transcript_locations": tuple(locations),
        "reconcile_delay_seconds": read.integer("RECONCILE_DELAY_SECONDS", 120, 0, MAX_DELAY_SECONDS),
        "reconcile_deliver": delivery != "archive-only",
    }


def _endpoint_health(read: _Reader) -> tuple[str, int, int, int, int]:
    """The health table, disable threshold (hours), breaker failures and cooldown, health cache (seconds)."""
    return (
        read.required("HEALTH_TABLE_NAME", "the DynamoDB table of destination health and parked events"),
        read.integer("DISABLE_AFTER_HOURS", 24, 1, 720),
        read.integer("BREAKER_FAILURES", 5, 1, 1000),
        read.integer("BREAKER_COOLDOWN_SECONDS", 30, 1, 3600),
        read.integer("HEALTH_CACHE_SECONDS", 5, 0, 60),
    )


def _delivery_ledger(read: _Reader) -> dict[str, Any]:
    """The table of 2xx answers (unset: no bookkeeping) and how long an answer is remembered (above the longest
    retry schedule, so that a late retry or a redrive still finds it)."""
    return {
        "deliveries_table_name": read.optional("DELIVERIES_TABLE_NAME") or None,
        "deliveries_ttl_days": read.integer("DELIVERIES_TTL_DAYS", 3, 1, 30),
    }


def _transcripts(read: _Reader) -> dict[str, Any]:
    queue = read.optional("TRANSCRIPT_QUEUE_URL") or None
    if queue is not None and not queue.startswith(("https://", "http://")):
        read.problems.append("TRANSCRIPT_QUEUE_URL is invalid (expected the transcript queue's SQS url)")
    return {
        "transcript_queue_url": queue,
        "transcript_archive": read.optional("TRANSCRIPT_ARCHIVE", "archive"),
        "transcript_grace_seconds": read.integer("TRANSCRIPT_GRACE_SECONDS", 60, 0, 900),
        "transcript_recheck_seconds": read.integer("TRANSCRIPT_RECHECK_SECONDS", 900, 0, 900),
        "transcript_link_seconds": read.integer("TRANSCRIPT_LINK_SECONDS", 3600, 60, 43200),
        "sessions_table_name": read.optional("SESSIONS_TABLE_NAME") or None,
        "session_idle_seconds": read.integer("SESSION_IDLE_SECONDS", 3600, 300, 7 * 24 * 3600),
    }


def _retry_queue_url(read: _Reader) -> str:
    url = read.required("RETRY_QUEUE_URL", "the URL of the SQS queue failed deliveries wait in")
    if url and not SQS_QUEUE_URL.match(url):
        read.problems.append("RETRY_QUEUE_URL is invalid (expected an SQS queue URL, https://.../<account>/<name>)")
    return url


def _contact_flows(read: _Reader) -> dict[str, str]:
    raw = read.optional("CONTACT_FLOWS", "{}")
    expected = 'a JSON object of flow names to contact flow ids, e.g. {"support": "1111-..."}'
    try:
        flows = json.loads(raw)
    except json.JSONDecodeError:
        read.problems.append(f"CONTACT_FLOWS is not JSON (expected {expected})")
        return {}
    if not isinstance(flows, dict) or not all(
        isinstance(k, str) and FLOW_NAME.match(k) and isinstance(v, str) and 0 < len(v) <= 500 for k, v in flows.items()
    ):
        read.problems.append(f"CONTACT_FLOWS is invalid (expected {expected})")
        return {}
    return flows


def _cors_allowed_origins(read: _Reader) -> tuple[str, ...]:
    raw = read.optional("CORS_ALLOWED_ORIGINS")
    origins = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    bad = [origin for origin in origins if not CORS_ORIGIN.match(origin)]
    if bad:
        read.problems.append(
            f"CORS_ALLOWED_ORIGINS has invalid origins {bad} (expected scheme://host[:port], comma-separated, no path)"
        )
        return ()
    return origins


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
