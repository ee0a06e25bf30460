"""The relay's environment variables, declared once: each a field named as its variable, with its default, its
limits and the problem that names what it expects; the rules across variables in :meth:`Environment.cross_checks`.

Read by :func:`chalicelib.settings.load_settings` on first use, through
:func:`chalicelib.validation.read_environment`: a handler's module imports :mod:`chalicelib.settings` (for
``deploy_time``) but loads this description and the validation layer only with its first invocation (test_wake).
Annotations are evaluated at import (no ``from __future__ import annotations``): importing this module and reading
the dev stage's environment then cost 32 million instructions instead of 38.5 million (callgrind, compiled from
source as in Lambda).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from chalicelib.errors import FieldProblem
from chalicelib.settings import (
    CORS_ORIGIN,
    FLOW_NAME,
    INSTANCE_ID,
    KMS_KEY,
    MAX_DELAY_SECONDS,
    MAX_LINK_SECONDS,
    SNS_TOPIC_ARN,
    SQS_QUEUE_URL,
    TRANSCRIPT_LOCATION,
)
from chalicelib.validation import Rule


def _whole(low: int, high: int) -> Rule:
    """A whole number from ``low`` to ``high``."""
    return Rule(minimum=low, maximum=high, problem=f"is invalid (expected a whole number from {low} to {high})")


def _url(queue: str) -> Rule:
    """An SQS queue's url (only its scheme is checked)."""
    return Rule(pattern="^https?://", problem=f"is invalid (expected the {queue} queue's SQS url)")


def _not_set(expected: str) -> str:
    return f"is not set (expected {expected})"


_FLOWS = 'a JSON object of flow names to contact flow ids, e.g. {"support": "1111-..."}'
_INSTANCE_IDS = "a comma-separated list of Amazon Connect instance ids"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """The variables the relay reads, each a field named as its variable, with its default and its rule."""

    RELAY_STAGE: str = "dev"
    AWS_REGION: str | None = None
    AWS_DEFAULT_REGION: str | None = None
    STREAMING_TOPIC_ARN: Annotated[
        str,
        Rule(
            max_length=350,
            pattern=SNS_TOPIC_ARN.pattern,
            missing=_not_set("the ARN of a standard SNS topic"),
            problem="is invalid (expected an SNS topic ARN of at most 350 characters)",
        ),
    ]
    ALLOWED_INSTANCE_IDS: Annotated[
        tuple[Annotated[str, Rule(pattern=INSTANCE_ID.pattern)], ...],
        Rule(missing=_not_set(_INSTANCE_IDS), problem="has invalid ids (expected 1 to 100 letters, digits, -)"),
    ]
    STREAMS_TABLE_NAME: Annotated[str, Rule(missing=_not_set("the DynamoDB table that keeps streaming ids"))]
    STREAMS_TTL_DAYS: Annotated[int, _whole(1, 365)] = 8
    QUARANTINE_BUCKET: Annotated[str, Rule(missing=_not_set("the S3 bucket that keeps items the relay could not read"))]
    QUARANTINE_PREFIX: str = "quarantine/"
    HEALTH_TABLE_NAME: Annotated[
        str, Rule(missing=_not_set("the DynamoDB table of destination health and parked events"))
    ]
    DISABLE_AFTER_HOURS: Annotated[int, _whole(1, 720)] = 24
    BREAKER_FAILURES: Annotated[int, _whole(1, 1000)] = 5
    BREAKER_COOLDOWN_SECONDS: Annotated[int, _whole(1, 3600)] = 30
    HEALTH_CACHE_SECONDS: Annotated[int, _whole(0, 60)] = 5
    RETRY_QUEUE_URL: Annotated[
        str,
        Rule(
            pattern=SQS_QUEUE_URL.pattern,
            missing=_not_set("the URL of the SQS queue failed deliveries wait in"),
            problem="is invalid (expected an SQS queue URL, https://.../<account>/<name>)",
        ),
    ]
    DELIVERIES_TABLE_NAME: str | None = None
    # Above the longest retry schedule, so that a late retry or a redrive still finds a 2xx answer.
    DELIVERIES_TTL_DAYS: Annotated[int, _whole(1, 30)] = 3
    RELAY_CONFIG_FILE: str | None = None
    CONNECT_INSTANCE_ID: str | None = None
    CONTACT_FLOWS: Annotated[
        dict[Annotated[str, Rule(pattern=FLOW_NAME.pattern)], Annotated[str, Rule(min_length=1, max_length=500)]],
        Rule(problem=f"is invalid (expected {_FLOWS})"),
    ] = field(default_factory=dict)
    DEFAULT_CONTACT_FLOW: str | None = None
    CORS_ALLOWED_ORIGINS: Annotated[
        tuple[Annotated[str, Rule(pattern=CORS_ORIGIN.pattern)], ...],
        Rule(problem="has invalid origins (expected scheme://host[:port], comma-separated, no path)"),
    ] = ()
    TRANSCRIPT_QUEUE_URL: Annotated[str | None, _url("transcript")] = None
    TRANSCRIPT_ARCHIVE: str = "archive"
    TRANSCRIPT_GRACE_SECONDS: Annotated[int, _whole(0, 900)] = 60
    TRANSCRIPT_RECHECK_SECONDS: Annotated[int, _whole(0, 900)] = 900
    TRANSCRIPT_LINK_SECONDS: Annotated[int, _whole(60, 43200)] = 3600
    SESSIONS_TABLE_NAME: str | None = None
    SESSION_IDLE_SECONDS: Annotated[int, _whole(300, 7 * 24 * 3600)] = 3600
    ALLOW_DEVELOPMENT_SWITCHES_IN_PRODUCTION: Annotated[bool, Rule(problem="is invalid (expected true or false)")] = (
        False
    )
    PARTICIPANT_TOKEN_KEY_ID: Annotated[
        str | None,
        Rule(pattern=KMS_KEY.pattern, problem="is invalid (expected a KMS key ARN, alias ARN, alias or key id)"),
    ] = None
    ATTACHMENTS_PREFIX: str = "attachments/"
    ATTACHMENT_LINK_SECONDS: Annotated[int, _whole(60, MAX_LINK_SECONDS)] = 3600
    RECONCILE_QUEUE_URL: Annotated[str | None, _url("reconciliation")] = None
    RECONCILE_TRANSCRIPT_LOCATIONS: Annotated[
        tuple[Annotated[str, Rule(pattern=TRANSCRIPT_LOCATION.pattern)], ...],
        Rule(problem="is invalid (expected s3://bucket/prefix, comma-separated)"),
    ] = ()
    RECONCILE_DELAY_SECONDS: Annotated[int, _whole(0, MAX_DELAY_SECONDS)] = 120
    RECONCILE_DELIVERY: Annotated[
        Literal["deliver", "archive-only"], Rule(problem="is invalid (expected deliver or archive-only)")
    ] = "deliver"
    RECONCILE_SCAN: Annotated[Literal["on", "off"], Rule(problem="is invalid (expected on or off)")] = "off"

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Rules across variables: the region, the topic's kind and region, the contact routes' instance and flow,
        what reconciliation needs."""
        region = valid.get("AWS_REGION") or valid.get("AWS_DEFAULT_REGION")
        problems = (
            []
            if region
            else [FieldProblem("AWS_REGION", "is not set (Lambda sets it; locally set AWS_DEFAULT_REGION)")]
        )
        topic = SNS_TOPIC_ARN.match(valid.get("STREAMING_TOPIC_ARN", ""))
        if topic and topic["name"].endswith(".fifo"):
            problems.append(
                FieldProblem("STREAMING_TOPIC_ARN", "names a FIFO topic (Connect streams only to standard topics)")
            )
        elif topic and region and topic["region"] != region:
            problems.append(
                FieldProblem(
                    "STREAMING_TOPIC_ARN",
                    f"is in {topic['region']}, not in AWS_REGION (Connect requires the topic in the instance's region)",
                )
            )
        instance, flow = valid.get("CONNECT_INSTANCE_ID"), valid.get("DEFAULT_CONTACT_FLOW")
        if instance is not None and "ALLOWED_INSTANCE_IDS" in valid and instance not in valid["ALLOWED_INSTANCE_IDS"]:
            problems.append(FieldProblem("CONNECT_INSTANCE_ID", "is not among ALLOWED_INSTANCE_IDS"))
        if flow is not None and "CONTACT_FLOWS" in valid and flow not in valid["CONTACT_FLOWS"]:
            problems.append(FieldProblem("DEFAULT_CONTACT_FLOW", "is not a name in CONTACT_FLOWS"))
        queue = valid.get("RECONCILE_QUEUE_URL")
        if queue is not None and valid.get("RECONCILE_TRANSCRIPT_LOCATIONS") == ():
            problems.append(
                FieldProblem("RECONCILE_QUEUE_URL", "is set but RECONCILE_TRANSCRIPT_LOCATIONS names no location")
            )
        if valid.get("RECONCILE_SCAN") == "on" and "RECONCILE_QUEUE_URL" in valid and queue is None:
            problems.append(
                FieldProblem("RECONCILE_SCAN", "is on but RECONCILE_QUEUE_URL is not set (the scan queues onto it)")
            )
        return problems
