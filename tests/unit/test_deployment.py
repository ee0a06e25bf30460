"""The deployment's configuration: a least-privilege policy file for every function of every stage."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app import app
from chalicelib.destination_kinds import ArchiveTarget
from chalicelib.destinations import parse_relay_config
from chalicelib.settings import scan_watermark_parameter
from scripts.local_aws import ACCOUNT
from scripts.render_policies import PUBLISHING_FUNCTIONS, destination_statements, rendered
from tests.conftest import PROJECT, REGION

CONFIG = json.loads((PROJECT / ".chalice" / "config.json").read_text())
STAGES = sorted(CONFIG["stages"])
ROUTE_VIEWS = {entry.view_name for methods in app.routes.values() for entry in methods.values()}
FUNCTIONS = ["api_handler", *sorted(name for name in app.handler_map if name not in ROUTE_VIEWS)]


def policy(stage: str, function: str) -> dict[str, Any]:
    name = CONFIG["stages"][stage]["lambda_functions"][function]["iam_policy_file"]
    return json.loads((PROJECT / ".chalice" / name).read_text())  # type: ignore[no-any-return]


def actions(document: dict[str, Any]) -> set[str]:
    return {action for statement in document["Statement"] for action in statement["Action"]}


def test_automatic_policies_are_off() -> None:
    assert CONFIG["autogen_policy"] is False


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_its_own_narrow_policy(stage: str, function: str) -> None:
    document = policy(stage, function)
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(action != "*" and not action.endswith(":*") for action in statement["Action"])
        # A KMS key named by its alias is granted on the account's keys, narrowed to that alias by a condition.
        aliases = statement.get("Condition", {}).get("ForAnyValue:StringEquals", {}).get("kms:ResourceAliases", [])
        narrowed = bool(aliases) and all(stage in alias for alias in aliases)
        assert all(
            resource != "*"
            and (stage in resource or "instance/" in resource or narrowed or _stage_key(statement, stage))
            for resource in statement["Resource"]
        )


def _stage_key(statement: dict[str, Any], stage: str) -> bool:
    """A KMS statement on keys is narrowed to the stage's key by its alias, and to the relay's own ciphertexts."""
    condition = statement.get("Condition", {})
    return all(resource.startswith("arn:aws:kms:") for resource in statement["Resource"]) and condition == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/connect-chat-relay-{stage}-participant-tokens"},
        "StringEquals": {"kms:EncryptionContext:purpose": "connect-chat-relay/participant-connection"},
    }


# Every function that delivers reads the 2xx answers before and records them after (chalicelib/ledger.py).
DELIVERY_LEDGER = {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"}


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_may_do_what_its_code_does_and_no_more(stage: str) -> None:
    logs = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert actions(policy(stage, "start_streaming_from_flow")) == logs | {
        "connect:StartContactStreaming",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    }
    assert actions(policy(stage, "on_contact_event")) == logs | {
        "connect:StartContactStreaming",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "s3:PutObject",
        "sqs:SendMessage",
    }
    assert actions(policy(stage, "on_chat_message")) == logs | DELIVERY_LEDGER | {
        "s3:PutObject",
        "kms:GenerateDataKey",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        "sqs:SendMessage",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        # Attachments of two-way chats: the held connection (renewed if expired), the copy and its signed link.
        "kms:Encrypt",
        "kms:Decrypt",
        "s3:GetObject",
    }
    assert actions(policy(stage, "assemble_transcripts")) == logs | DELIVERY_LEDGER | {
        "s3:ListBucket",
        "s3:GetObject",
        "s3:PutObject",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        # Publishing chat.transcript.completed passes the destinations' health gate.
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    assert actions(policy(stage, "on_transcript_written")) == logs | {"s3:PutObject", "sqs:SendMessage"}
    assert actions(policy(stage, "scan_transcripts")) == logs | {
        # Listing the watched prefixes, the scan's watermark, and queueing what it finds.
        "s3:ListBucket",
        "ssm:GetParameter",
        "ssm:PutParameter",
        "sqs:SendMessage",
    }
    assert actions(policy(stage, "sweep_sessions")) == logs | {
        # The open-sessions index queried, each idle session closed, its assembly queued; failures kept.
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "sqs:SendMessage",
    }
    assert actions(policy(stage, "reconcile_transcripts")) == logs | DELIVERY_LEDGER | {
        # Connect's transcript (read only) and the archive's sessions, SSE-KMS.
        "s3:GetObject",
        "s3:ListBucket",
        "kms:Decrypt",
        # The quarantine, and recovered events written to the archive destination.
        "s3:PutObject",
        "kms:GenerateDataKey",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    assert actions(policy(stage, "api_handler")) == logs | DELIVERY_LEDGER | {
        "connect:StartContactStreaming",
        "connect:StopContactStreaming",
        "connect:StartChatContact",
        "connect:StartWebRTCContact",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "s3:PutObject",
        "kms:GenerateDataKey",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        # Two-way chats: the participant connection's tokens (the Participant Service itself takes no IAM action:
        # its calls carry the participant's bearer token).
        "kms:Encrypt",
        "kms:Decrypt",
        "sqs:SendMessage",
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    assert actions(policy(stage, "retry_deliveries")) == logs | DELIVERY_LEDGER | {
        # Retries write to the AWS kinds too: the archive's key, as rendered from the destinations file.
        "kms:GenerateDataKey",
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:SendMessage",
        "s3:PutObject",
        "s3:GetObject",
        "ssm:GetParameter",
        "secretsmanager:GetSecretValue",
        # Replays' steps wait on the retry queue: listing and reading the archives, SSE-KMS.
        "s3:ListBucket",
        "kms:Decrypt",
    }


def statements_on(document: dict[str, Any], resource: str) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        if resource in statement["Resource"]
        for action in statement["Action"]
    }


@pytest.mark.parametrize("stage", STAGES)
def test_destination_health_grants_exactly_its_calls_on_its_table_only(stage: str) -> None:
    table = f"arn:aws:dynamodb:us-east-1:111122223333:table/connect-chat-relay-{stage}-destinations"
    # gate: GetItem, UpdateItem (probe, rate window); record: UpdateItem; park: a transaction of Update + Put.
    assert statements_on(policy(stage, "on_chat_message"), table) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }
    # Retries ask the same gate and record the same outcomes.
    assert statements_on(policy(stage, "retry_deliveries"), table) == statements_on(
        policy(stage, "on_chat_message"), table
    )
    # The same for call.started, and re-enabling: Query the parked events, Delete each one replayed.
    assert statements_on(policy(stage, "api_handler"), table) == {
        "dynamodb:GetItem",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:DeleteItem",
    }
    for function in ("start_streaming_from_flow", "on_contact_event"):
        assert statements_on(policy(stage, function), table) == set()
    environment = CONFIG["stages"][stage]["environment_variables"]
    assert table.endswith(environment["HEALTH_TABLE_NAME"])


@pytest.mark.parametrize("stage", STAGES)
def test_the_delivery_ledger_is_granted_on_its_own_table_only(stage: str) -> None:
    table = f"arn:aws:dynamodb:us-east-1:111122223333:table/connect-chat-relay-{stage}-deliveries"
    for function in FUNCTIONS:
        granted = statements_on(policy(stage, function), table)
        delivers = function in {
            "on_chat_message",
            "retry_deliveries",
            "api_handler",
            "assemble_transcripts",
            "reconcile_transcripts",
        }
        assert granted == (DELIVERY_LEDGER if delivers else set()), function
        for statement in policy(stage, function)["Statement"]:
            if set(statement["Action"]) & DELIVERY_LEDGER:
                assert statement["Resource"] == [table]
    assert table.endswith(CONFIG["stages"][stage]["environment_variables"]["DELIVERIES_TABLE_NAME"])


@pytest.mark.parametrize("stage", STAGES)
def test_the_sessions_table_is_updated_by_the_functions_that_record_sessions_and_queried_by_the_sweep(
    stage: str,
) -> None:
    table = f"arn:aws:dynamodb:us-east-1:111122223333:table/connect-chat-relay-{stage}-sessions"
    index = f"{table}/index/open-sessions"
    for function in FUNCTIONS:
        # The stream records items, assemblies mark the session, reconciliation's recovered items take the late
        # items' path, the sweep closes idle sessions.
        records = function in {"on_chat_message", "assemble_transcripts", "reconcile_transcripts", "sweep_sessions"}
        assert statements_on(policy(stage, function), table) == ({"dynamodb:UpdateItem"} if records else set())
        assert statements_on(policy(stage, function), index) == (
            {"dynamodb:Query"} if function == "sweep_sessions" else set()
        )
    assert table.endswith(CONFIG["stages"][stage]["environment_variables"]["SESSIONS_TABLE_NAME"])


@pytest.mark.parametrize("stage", STAGES)
def test_attachment_copies_are_read_and_written_only_under_their_prefix(stage: str) -> None:
    for statement in policy(stage, "on_chat_message")["Statement"]:
        if "s3:GetObject" in statement["Action"]:
            assert statement["Resource"] == [f"arn:aws:s3:::connect-chat-relay-{stage}-111122223333/attachments/*"]
    # The held connection: read, and written back when it is renewed; nothing else on the streams table.
    streams = f"arn:aws:dynamodb:us-east-1:111122223333:table/connect-chat-relay-{stage}-streams"
    assert statements_on(policy(stage, "on_chat_message"), streams) == {"dynamodb:GetItem", "dynamodb:PutItem"}


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("function", PUBLISHING_FUNCTIONS)
def test_the_destinations_grants_are_rendered_from_the_destinations_file(stage: str, function: str) -> None:
    # The committed policy is what `make policies` renders from the stage's destinations file.
    path, text = rendered(stage, function)
    assert path.read_text() == text


def test_grants_name_exactly_the_resources_of_the_destinations() -> None:
    config = parse_relay_config(
        {
            "version": 1,
            "destinations": [
                {
                    "name": "a",
                    "kind": "s3",
                    "bucket": "lake-bucket",
                    "layout": "date",
                    "kms_key": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                },
                {"name": "q", "kind": "sqs", "queue_arn": "arn:aws:sqs:us-east-1:111122223333:chat.fifo"},
                {
                    "name": "b",
                    "kind": "eventbridge",
                    "event_bus_arn": "arn:aws:events:us-east-1:111122223333:event-bus/c",
                },
                {"name": "s", "kind": "kinesis", "stream_arn": "arn:aws:kinesis:us-east-1:111122223333:stream/c"},
                {"name": "w", "url": "https://hooks.example.com/", "secrets": ["ssm:/s"]},
            ],
        },
        source="test",
    )
    assert {s["Sid"]: (s["Action"], s["Resource"]) for s in destination_statements(config)} == {
        "DestinationsArchives": (["s3:PutObject"], ["arn:aws:s3:::lake-bucket/dt=*"]),
        "DestinationsArchiveKeys": (
            ["kms:GenerateDataKey"],
            ["arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"],
        ),
        "DestinationsQueues": (
            ["sqs:GetQueueUrl", "sqs:SendMessage"],
            ["arn:aws:sqs:us-east-1:111122223333:chat.fifo"],
        ),
        "DestinationsBuses": (["events:PutEvents"], ["arn:aws:events:us-east-1:111122223333:event-bus/c"]),
        "DestinationsStreams": (["kinesis:PutRecords"], ["arn:aws:kinesis:us-east-1:111122223333:stream/c"]),
    }


@pytest.mark.parametrize("stage", STAGES)
def test_connects_transcripts_are_read_only_and_only_under_the_watched_prefixes(stage: str) -> None:
    environment = CONFIG["stages"][stage]["environment_variables"]
    watched = {
        f"arn:aws:s3:::{location.removeprefix('s3://')}*"
        for location in environment["RECONCILE_TRANSCRIPT_LOCATIONS"].split(",")
    }
    for function in FUNCTIONS:
        for statement in policy(stage, function)["Statement"]:
            on_connect = {resource for resource in statement["Resource"] if resource in watched}
            if on_connect:
                assert function == "reconcile_transcripts"
                assert statement["Action"] == ["s3:GetObject"]
    granted = {
        resource
        for statement in policy(stage, "reconcile_transcripts")["Statement"]
        if statement["Action"] == ["s3:GetObject"]
        for resource in statement["Resource"]
    }
    assert watched <= granted


@pytest.mark.parametrize("stage", STAGES)
def test_replays_list_and_read_only_the_archives_prefixes(stage: str) -> None:
    source = PROJECT / "chalicelib" / "config" / f"destinations-{stage}.json"
    config = parse_relay_config(json.loads(source.read_text()), source=str(source))
    archives = [d.target for d in config.destinations if isinstance(d.target, ArchiveTarget)]
    assert archives, "both stages ship an archive"
    document = policy(stage, "retry_deliveries")
    listing = [s for s in document["Statement"] if "s3:ListBucket" in s["Action"]]
    assert [(s["Action"], s["Resource"], s["Condition"]) for s in listing] == [
        (
            ["s3:ListBucket"],
            [f"arn:aws:s3:::{target.bucket}"],
            {"StringLike": {"s3:prefix": [f"{target.key_prefix}*"]}},
        )
        for target in archives
    ]
    read = {r for s in document["Statement"] if s.get("Sid") == "DestinationsReplayRead" for r in s["Resource"]}
    assert read == {f"arn:aws:s3:::{target.bucket}/{target.key_prefix}*" for target in archives}
    decrypt = [s for s in document["Statement"] if "kms:Decrypt" in s["Action"]]
    assert all(s["Action"] == ["kms:Decrypt"] for s in decrypt)


@pytest.mark.parametrize("stage", STAGES)
def test_the_scan_lists_only_the_watched_prefixes_and_writes_only_its_watermark(stage: str) -> None:
    environment = CONFIG["stages"][stage]["environment_variables"]
    locations = [
        loc.removeprefix("s3://").partition("/") for loc in environment["RECONCILE_TRANSCRIPT_LOCATIONS"].split(",")
    ]
    statements = {s["Sid"]: s for s in policy(stage, "scan_transcripts")["Statement"]}
    listing = statements["ConnectTranscriptsList"]
    assert listing["Resource"] == sorted({f"arn:aws:s3:::{bucket}" for bucket, _, _ in locations})
    assert listing["Condition"] == {"StringLike": {"s3:prefix": [f"{prefix}*" for _, _, prefix in locations]}}
    parameter = scan_watermark_parameter(stage)
    assert [s["Resource"] for s in statements.values() if any(a.startswith("ssm:") for a in s["Action"])] == [
        [f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{parameter}"]
    ]


@pytest.mark.parametrize("stage", STAGES)
def test_reconciliation_may_ask_for_the_transcript_again_on_the_transcript_queue_only(stage: str) -> None:
    # Recovered items make a new transcript version: reconcile_transcripts queues the request, never assembles.
    url = CONFIG["stages"][stage]["environment_variables"]["TRANSCRIPT_QUEUE_URL"]
    region, account, name = url.removeprefix("https://sqs.").replace(".amazonaws.com", "").split("/")
    queue = f"arn:aws:sqs:{region}:{account}:{name}"
    granted = [s for s in policy(stage, "reconcile_transcripts")["Statement"] if queue in s["Resource"]]
    assert [(s["Action"], s["Resource"]) for s in granted] == [(["sqs:SendMessage"], [queue])]


def test_the_retry_queue_s_consumer_reports_partial_batch_failures_in_the_packaged_template() -> None:
    # Chalice cannot say it; `make package` merges infra/on-failure.json into the event source it generates.
    merge = json.loads((PROJECT / "infra" / "on-failure.json").read_text())
    events = merge["Resources"]["RetryDeliveries"]["Properties"]["Events"]
    assert events["RetryDeliveriesSqsEventSource"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "retry_deliveries" in app.handler_map


def test_the_keys_of_encrypted_queues_buses_and_streams_are_granted_exactly() -> None:
    key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    config = parse_relay_config(
        {
            "version": 1,
            "destinations": [
                {
                    "name": "q",
                    "kind": "sqs",
                    "queue_arn": "arn:aws:sqs:us-east-1:111122223333:chat",
                    "kms_key": key,
                },
                {
                    "name": "b",
                    "kind": "eventbridge",
                    "event_bus_arn": "arn:aws:events:us-east-1:111122223333:event-bus/c",
                    "kms_key": "arn:aws:kms:us-east-1:111122223333:alias/bus-key",
                },
                {
                    "name": "s",
                    "kind": "kinesis",
                    "stream_arn": "arn:aws:kinesis:us-east-1:111122223333:stream/c",
                    "kms_key": "arn:aws:kms:us-east-1:111122223333:alias/stream-key",
                },
                {"name": "plain", "kind": "kinesis", "stream_arn": "arn:aws:kinesis:us-east-1:111122223333:stream/d"},
            ],
        },
        source="test",
    )
    keys = {s["Sid"]: s for s in destination_statements(config) if s["Sid"].startswith("DestinationsResourceKey")}
    assert {sid: (s["Action"], s["Resource"]) for sid, s in keys.items()} == {
        "DestinationsResourceKeys": (["kms:Decrypt", "kms:GenerateDataKey"], [key]),
        "DestinationsResourceKeyAliases": (
            ["kms:Decrypt", "kms:GenerateDataKey"],
            ["arn:aws:kms:us-east-1:111122223333:key/*"],
        ),
    }
    assert keys["DestinationsResourceKeyAliases"]["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": ["alias/bus-key", "alias/stream-key"]}
    }
    # No key is granted for the archive kind's actions when no archive names one.
    assert not [s for s in destination_statements(config) if s["Sid"].startswith("DestinationsArchiveKey")]
