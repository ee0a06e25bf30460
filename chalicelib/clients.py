"""AWS clients, created once per container and only when first used.

They are made the ordinary way, so ``AWS_ENDPOINT_URL`` and ``AWS_ENDPOINT_URL_<SERVICE>`` point them at local
stand-ins with no code change. Everything else in the relay receives a client; nothing else calls boto3.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import boto3
from botocore.config import Config

from chalicelib.budget import refuse_attempt_past_deadline, refuse_write_past_deadline

if TYPE_CHECKING:
    from mypy_boto3_connect import ConnectClient
    from mypy_boto3_connectparticipant import ConnectParticipantClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

ClientT = TypeVar("ClientT", bound=Any)


def _config(
    *, attempts: int, connect_timeout: int, read_timeout: int, mode: Literal["standard", "adaptive"] = "standard"
) -> Config:
    return Config(
        retries={"mode": mode, "max_attempts": attempts},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        user_agent_extra="connect-chat-relay",
    )


# Connect throttles at a few TPS: adaptive mode backs off client-side as well as retrying 429s and 5xx.
_CONNECT_CONFIG = _config(attempts=4, connect_timeout=2, read_timeout=5, mode="adaptive")
# The contact flow waits at most 8 s for its Lambda: two quick attempts per call, never the full backoff, and no
# attempt once the invocation's budget is spent (chalicelib.budget).
_CONNECT_FOR_FLOW_CONFIG = _config(attempts=2, connect_timeout=1, read_timeout=2)
# Destination health and the delivery ledger are asked on the delivery path: a DynamoDB outage may cost it a few
# seconds, never the default client's three attempts of up to 12 s each.
_HEALTH_CONFIG = _config(attempts=2, connect_timeout=1, read_timeout=2)
_DEFAULT_CONFIG = _config(attempts=3, connect_timeout=2, read_timeout=10)
# EventBridge and Kinesis serve destinations only, whose writes end by the invocation's deadline: a stalled
# attempt gives up within seconds, so the next one (refused past the deadline) or the retry queue takes over.
_DESTINATION_CONFIG = _config(attempts=3, connect_timeout=1, read_timeout=3)


@cache
def connect() -> ConnectClient:
    """The Amazon Connect client."""
    return boto3.client("connect", config=_CONNECT_CONFIG)


@cache
def connect_for_flow() -> ConnectClient:
    """An Amazon Connect client with a budget that fits a contact flow's synchronous call."""
    client = boto3.client("connect", config=_CONNECT_FOR_FLOW_CONFIG)
    client.meta.events.register_first("before-send", refuse_attempt_past_deadline)
    return client


@cache
def connectparticipant() -> ConnectParticipantClient:
    """The Connect Participant Service client (its own endpoint: ``AWS_ENDPOINT_URL_CONNECTPARTICIPANT``).

    Its calls carry the participant's bearer token; the service ignores the role's signature.
    """
    return boto3.client("connectparticipant", config=_CONNECT_CONFIG)


@cache
def kms() -> KMSClient:
    """The KMS client (the participant connection's tokens are kept encrypted)."""
    return boto3.client("kms", config=_DEFAULT_CONFIG)


@cache
def dynamodb() -> DynamoDBClient:
    """The DynamoDB client."""
    return boto3.client("dynamodb", config=_DEFAULT_CONFIG)


@cache
def dynamodb_for_flow() -> DynamoDBClient:
    """A DynamoDB client with the contact flow's time budget."""
    client = boto3.client("dynamodb", config=_CONNECT_FOR_FLOW_CONFIG)
    client.meta.events.register_first("before-send", refuse_attempt_past_deadline)
    return client


@cache
def dynamodb_for_health() -> DynamoDBClient:
    """A DynamoDB client with a budget that fits the delivery path (destination health, the delivery ledger)."""
    return boto3.client("dynamodb", config=_HEALTH_CONFIG)


@cache
def s3() -> S3Client:
    """The S3 client."""
    # SigV4 for the attachment links it signs too (botocore may otherwise presign the legacy way).
    return _bounded(boto3.client("s3", config=_DEFAULT_CONFIG.merge(Config(signature_version="s3v4"))))


@cache
def sqs() -> SQSClient:
    """The SQS client (the retry queue, destinations of kind ``sqs``)."""
    return _bounded(boto3.client("sqs", config=_DEFAULT_CONFIG))


@cache
def events() -> EventBridgeClient:
    """The EventBridge client (destinations of kind ``eventbridge``)."""
    return _bounded(boto3.client("events", config=_DESTINATION_CONFIG))


@cache
def kinesis() -> KinesisClient:
    """The Kinesis client (destinations of kind ``kinesis``)."""
    return _bounded(boto3.client("kinesis", config=_DESTINATION_CONFIG))


@cache
def ssm() -> SSMClient:
    """The SSM client (webhook secrets kept as SecureString parameters)."""
    return boto3.client("ssm", config=_DEFAULT_CONFIG)


@cache
def secretsmanager() -> SecretsManagerClient:
    """The Secrets Manager client (webhook secrets kept as secrets)."""
    return boto3.client("secretsmanager", config=_DEFAULT_CONFIG)


def _bounded(client: ClientT) -> ClientT:
    """The client refuses attempts past the deadline of a thread writing to destinations (``budget.attempts_until``);
    other threads' calls are untouched."""
    client.meta.events.register_first("before-send", refuse_write_past_deadline)
    return client


@cache
def lambda_() -> LambdaClient:
    """The Lambda client (the operator's command that reprocesses failed invocations)."""
    return boto3.client("lambda", config=_DEFAULT_CONFIG)


def reset() -> None:
    """Forget every client (tests, and the demo when it repoints endpoints)."""
    for factory in (
        connect,
        connect_for_flow,
        connectparticipant,
        kms,
        dynamodb,
        dynamodb_for_flow,
        dynamodb_for_health,
        s3,
        sqs,
        events,
        kinesis,
        lambda_,
        ssm,
        secretsmanager,
    ):
        factory.cache_clear()
