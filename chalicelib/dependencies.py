"""The relay's collaborators, built once per container on first use from the settings and the AWS clients.

Handlers ask here; tests call :func:`reset` after changing the environment or the clients. Each factory imports
what it builds, so that a handler's module loads only what that handler uses, on its first use: a Lambda
container wakes faster (``make bench``'s wake figures; ``tests/unit/test_wake.py`` keeps them from regressing).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from chalicelib import clients
from chalicelib.errors import SettingsError
from chalicelib.settings import get_settings

if TYPE_CHECKING:
    from chalicelib.adapters.attachment_files import AttachmentFiles
    from chalicelib.adapters.client_tokens import ClientTokenLedger
    from chalicelib.adapters.connect import ConnectGateway
    from chalicelib.adapters.connect_transcripts import ArchiveSessions
    from chalicelib.adapters.deliveries_table import DeliveriesTable
    from chalicelib.adapters.failed_invocations import FailedInvocations
    from chalicelib.adapters.quarantine import Quarantine
    from chalicelib.adapters.retry_queue import RetryQueue
    from chalicelib.archive_replay import ArchiveReplays
    from chalicelib.attachment_links import AttachmentLinks
    from chalicelib.aws_delivery import AwsDelivery
    from chalicelib.contact_event_service import ContactEventService
    from chalicelib.contact_starts import ContactStarts
    from chalicelib.delivery import Fanout
    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.destinations import RelayConfig
    from chalicelib.health import EndpointHealth
    from chalicelib.reconciliation_service import ReconciliationService
    from chalicelib.redrive import Redrive
    from chalicelib.relay import Relay
    from chalicelib.streaming import StreamingStarter
    from chalicelib.transcript_scan import TranscriptScan
    from chalicelib.transcript_service import TranscriptService
    from chalicelib.two_way_chats import TwoWayChats


@cache
def streaming_starter() -> StreamingStarter:
    """Starts and stops streams (event path and routes: Connect calls with the full retry budget)."""
    from chalicelib.adapters.streams_table import StreamsTable
    from chalicelib.streaming import StreamingStarter

    settings = get_settings()
    return StreamingStarter(
        connect_gateway(),
        StreamsTable(clients.dynamodb(), settings.streams_table_name, ttl_days=settings.streams_ttl_days),
        topic_arn=settings.streaming_topic_arn,
    )


@cache
def flow_streaming_starter() -> StreamingStarter:
    """The same, for the contact flow's synchronous call, which must answer within its few seconds."""
    from chalicelib.adapters.connect import ConnectGateway
    from chalicelib.adapters.streams_table import StreamsTable
    from chalicelib.streaming import StreamingStarter

    settings = get_settings()
    return StreamingStarter(
        ConnectGateway(clients.connect_for_flow()),
        StreamsTable(clients.dynamodb_for_flow(), settings.streams_table_name, ttl_days=settings.streams_ttl_days),
        topic_arn=settings.streaming_topic_arn,
    )


@cache
def connect_gateway() -> ConnectGateway:
    """Amazon Connect."""
    from chalicelib.adapters.connect import ConnectGateway

    return ConnectGateway(clients.connect())


@cache
def client_token_ledger() -> ClientTokenLedger:
    """Which Idempotency-Keys the contact routes have already used (kept in the streams table)."""
    from chalicelib.adapters.client_tokens import ClientTokenLedger

    return ClientTokenLedger(clients.dynamodb(), get_settings().streams_table_name)


@cache
def contact_event_service() -> ContactEventService:
    """Starts streaming the new chats contact events announce; the starter and the quarantine are made on first use."""
    from chalicelib.contact_event_service import ContactEventService

    return ContactEventService(get_settings().allowed_instance_ids, streams=streaming_starter, quarantine=quarantine)


@cache
def contact_starts() -> ContactStarts:
    """Starts the calls and chats front ends ask for; each collaborator is made when a request first needs it."""
    from chalicelib.contact_starts import ContactStarts

    return ContactStarts(
        get_settings(),
        connect=connect_gateway,
        keys=client_token_ledger,
        streams=streaming_starter,
        announcer=relay,
        connections=two_way_chats,
    )


@cache
def two_way_chats() -> TwoWayChats:
    """The customer's side of the chats the relay holds a participant connection for."""
    from chalicelib.adapters.chat_connections import ChatConnections
    from chalicelib.adapters.participant import ParticipantGateway
    from chalicelib.two_way_chats import TwoWayChats

    settings = get_settings()
    if settings.participant_token_key_id is None:
        raise SettingsError("PARTICIPANT_TOKEN_KEY_ID must be set for the relay to hold participant connections")
    return TwoWayChats(
        ParticipantGateway(clients.connectparticipant()),
        ChatConnections(
            clients.dynamodb(), clients.kms(), settings.streams_table_name, settings.participant_token_key_id
        ),
        attachment_files(),
    )


@cache
def attachment_files() -> AttachmentFiles:
    """Attachment bytes over Connect's pre-signed URLs (one pool for the container's life)."""
    from chalicelib.adapters.attachment_files import AttachmentFiles

    return AttachmentFiles()


@cache
def attachment_links() -> AttachmentLinks | None:
    """Copies of two-way chats' attachments and links to them; None when the stage holds no connections."""
    from chalicelib.adapters.attachment_store import AttachmentStore
    from chalicelib.attachment_links import AttachmentLinks

    settings = get_settings()
    if settings.participant_token_key_id is None:
        return None
    return AttachmentLinks(
        two_way_chats(),
        attachment_files(),
        AttachmentStore(
            clients.s3(),
            settings.quarantine_bucket,
            settings.attachments_prefix,
            link_seconds=settings.attachment_link_seconds,
        ),
    )


@cache
def quarantine() -> Quarantine:
    """Where unreadable items and undelivered events are kept."""
    from chalicelib.adapters.quarantine import Quarantine

    settings = get_settings()
    return Quarantine(clients.s3(), settings.quarantine_bucket, settings.quarantine_prefix)


def destinations() -> RelayConfig:
    """The destinations file of the stage (re-read only when it changes)."""
    from chalicelib.destinations import relay_config

    settings = get_settings()
    return relay_config(settings.relay_config_file, development_switches=settings.development_switches)


@cache
def fanout() -> Fanout:
    """Concurrent webhook delivery over pooled keep-alive connections, kept for the container's life."""
    from chalicelib.adapters.webhooks import WebhookSender
    from chalicelib.delivery import Fanout

    return Fanout(WebhookSender())


@cache
def endpoint_health() -> EndpointHealth:
    """Each destination's health (disabled, breaker, rate), cached per container for ``HEALTH_CACHE_SECONDS``."""
    from chalicelib.adapters.health_table import HealthTable
    from chalicelib.health import EndpointHealth, HealthPolicy

    settings = get_settings()
    policy = HealthPolicy(
        disable_after_seconds=settings.disable_after_hours * 3600.0,
        breaker_failures=settings.breaker_failures,
        breaker_cooldown_seconds=float(settings.breaker_cooldown_seconds),
        cache_seconds=float(settings.health_cache_seconds),
    )
    return EndpointHealth(HealthTable(clients.dynamodb_for_health(), settings.health_table_name), policy)


@cache
def delivery_ledger() -> DeliveriesTable | None:
    """Which (destination, webhook-id) pairs were answered 2xx; None when DELIVERIES_TABLE_NAME is unset."""
    from chalicelib.adapters.deliveries_table import DeliveriesTable

    settings = get_settings()
    if settings.deliveries_table_name is None:
        return None
    return DeliveriesTable(
        clients.dynamodb_for_health(),
        settings.deliveries_table_name,
        ttl_seconds=settings.deliveries_ttl_days * 86_400.0,
    )


@cache
def aws_delivery() -> AwsDelivery:
    """Writes to the destinations of the AWS kinds; its writers are made on first use."""
    from chalicelib.aws_delivery import AwsDelivery

    return AwsDelivery(s3=clients.s3, sqs=clients.sqs, events=clients.events, kinesis=clients.kinesis)


def transcript_archive() -> ArchiveTarget | None:
    """The archive transcripts are assembled from: the S3 destination TRANSCRIPT_ARCHIVE names."""
    from chalicelib.destination_kinds import ArchiveTarget

    name = get_settings().transcript_archive
    target = next((d.target for d in destinations().destinations if d.name == name), None)
    return target if isinstance(target, ArchiveTarget) else None


@cache
def transcript_service() -> TranscriptService | None:
    """Assembles transcripts, or None when the stage has no transcript queue (TRANSCRIPT_QUEUE_URL)."""
    from chalicelib.adapters.sessions_table import SessionsTable
    from chalicelib.adapters.transcript_queue import TranscriptQueue
    from chalicelib.transcript_service import TranscriptService, TranscriptTiming

    settings = get_settings()
    if settings.transcript_queue_url is None:
        return None
    return TranscriptService(
        aws_delivery().archive,
        transcript_archive,
        TranscriptQueue(clients.sqs(), settings.transcript_queue_url),
        relay(),
        TranscriptTiming(
            grace_seconds=settings.transcript_grace_seconds,
            recheck_seconds=settings.transcript_recheck_seconds,
            link_seconds=settings.transcript_link_seconds,
            idle_seconds=settings.session_idle_seconds,
        ),
        sessions=None
        if settings.sessions_table_name is None
        else SessionsTable(clients.dynamodb(), settings.sessions_table_name),
    )


def reconciliation_archive() -> ArchiveSessions | None:
    """The archive reconciliation compares with and completes: the one transcripts are assembled from."""
    from chalicelib.adapters.connect_transcripts import ArchiveSessions

    target = transcript_archive()
    return None if target is None else ArchiveSessions(aws_delivery().archive, target)


@cache
def reconciliation_service() -> ReconciliationService | None:
    """Reconciles ended chats with Connect's transcripts, or None when the stage has no queue for it."""
    from chalicelib.adapters.connect_transcripts import ConnectTranscriptObjects, ReconciliationQueue
    from chalicelib.reconciliation_service import ReconciliationPolicy, ReconciliationService

    settings = get_settings()
    if settings.reconcile_queue_url is None:
        return None
    return ReconciliationService(
        objects=ConnectTranscriptObjects(clients.s3()),
        archive=reconciliation_archive,
        queue=ReconciliationQueue(clients.sqs(), settings.reconcile_queue_url),
        relay=relay(),
        quarantine=quarantine(),
        policy=ReconciliationPolicy(
            settings.transcript_locations,
            delay_seconds=settings.reconcile_delay_seconds,
            deliver=settings.reconcile_deliver,
        ),
        transcripts=transcript_service(),
    )


@cache
def transcript_scan() -> TranscriptScan | None:
    """The scheduled scan of the watched transcript locations, or None unless RECONCILE_SCAN=on."""
    from chalicelib.adapters.connect_transcripts import ConnectTranscriptObjects, ScanWatermarks
    from chalicelib.transcript_scan import TranscriptScan

    settings = get_settings()
    service = reconciliation_service()
    if not settings.reconcile_scan or service is None:
        return None
    return TranscriptScan(
        listing=ConnectTranscriptObjects(clients.s3()),
        watermarks=ScanWatermarks(clients.ssm(), settings.scan_watermark_parameter),
        notices=service,
        locations=settings.transcript_locations,
    )


@cache
def relay() -> Relay:
    """Publishes events to the destinations."""
    from chalicelib.adapters.secrets import SecretResolver
    from chalicelib.relay import Relay

    return Relay(
        destinations,
        SecretResolver(ssm=clients.ssm, secretsmanager=clients.secretsmanager),
        fanout(),
        quarantine(),
        endpoint_health(),
        aws=aws_delivery(),
        retry_queue=retry_queue(),
        ledger=delivery_ledger(),
    )


@cache
def retry_queue() -> RetryQueue:
    """The SQS queue failed deliveries wait in for their next attempt."""
    from chalicelib.adapters.retry_queue import RetryQueue

    return RetryQueue(clients.sqs(), get_settings().retry_queue_url, quarantine())


@cache
def redrive() -> Redrive:
    """Puts kept deliveries back on the retry queue."""
    from chalicelib.redrive import Redrive

    return Redrive(quarantine(), retry_queue())


@cache
def archive_replays() -> ArchiveReplays:
    """Replays archived events to a destination (the route starts them, the retry queue's consumer does the work)."""
    from chalicelib.adapters.replay_store import ReplayQueue, ReplayStore
    from chalicelib.archive_replay import ArchiveReplays

    settings = get_settings()
    return ArchiveReplays(
        store=ReplayStore(
            clients.dynamodb(),
            settings.health_table_name,
            clients.s3(),
            settings.quarantine_bucket,
            settings.quarantine_prefix,
        ),
        queue=ReplayQueue(clients.sqs(), settings.retry_queue_url),
        archive=aws_delivery().archive,
        relay=relay(),
        config=destinations,
        default_archive=settings.transcript_archive,
    )


def failed_invocations(queue_url: str | None = None) -> FailedInvocations:
    """The stage's failed-invocations queue (``queue_url``, or found by the name infra/ gives it), reprocessed into
    the stage's own functions only (the operator's command; no function uses it)."""
    from chalicelib.adapters.failed_invocations import FailedInvocations

    prefix = f"connect-chat-relay-{get_settings().stage}"
    url = queue_url or clients.sqs().get_queue_url(QueueName=f"{prefix}-failed-invocations")["QueueUrl"]
    return FailedInvocations(clients.sqs(), clients.lambda_(), url, prefix)


def reset() -> None:
    """Forget every collaborator, the settings and the clients."""
    for factory in (
        streaming_starter,
        flow_streaming_starter,
        connect_gateway,
        client_token_ledger,
        contact_event_service,
        contact_starts,
        two_way_chats,
        attachment_files,
        attachment_links,
        quarantine,
        endpoint_health,
        delivery_ledger,
        aws_delivery,
        transcript_service,
        reconciliation_service,
        transcript_scan,
        relay,
        retry_queue,
        redrive,
        archive_replays,
    ):
        factory.cache_clear()
    get_settings.cache_clear()
    clients.reset()
