"""The IAM grants of the destinations, for each stage's policy files (``make render`` writes them).

Every function that publishes events gets exactly the writes its stage's destinations file names: PutObject on each
archive's key prefix (and GenerateDataKey on its KMS key), SendMessage on each queue, PutEvents on each bus,
PutRecords on each stream, and GenerateDataKey + Decrypt on the KMS key a queue, bus or stream names, as the
statements whose ``Sid`` starts with ``Destinations``, after the statements of the function's template in
``infra/policies/``. ``tests/unit/test_deployment.py`` checks that the committed policies are rendered.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from chalicelib.adapters.archive import TRANSCRIPTS_PREFIX
from chalicelib.destination_kinds import ArchiveTarget, Arn, BusTarget, QueueTarget, StreamTarget
from chalicelib.destinations import RelayConfig

PROJECT = Path(__file__).parent.parent
CHALICE = PROJECT / ".chalice"
CONFIG_DIR = PROJECT / "chalicelib" / "config"
# The functions whose code calls Relay.publish or Relay.deliver_to.
PUBLISHING_FUNCTIONS = (
    "on_chat_message",
    "api_handler",
    "assemble_transcripts",
    "reconcile_transcripts",
    "retry_deliveries",
)
# The function that reads the transcript archive and keeps transcripts beside it.
TRANSCRIPT_FUNCTION = "assemble_transcripts"
# The function that reads the archive's sessions to compare them with Connect's transcripts.
RECONCILIATION_FUNCTION = "reconcile_transcripts"
# The function that does the replays' work (their tickets wait on the retry queue): it lists and reads every archive.
REPLAY_FUNCTION = "retry_deliveries"
SID_PREFIX = "Destinations"


def destination_statements(config: RelayConfig) -> list[dict[str, Any]]:
    """The least-privilege statements for writing to every destination of ``config``."""
    archives: set[str] = set()
    queues: set[str] = set()
    buses: set[str] = set()
    streams: set[str] = set()
    # An archive's key encrypts what the relay writes (GenerateDataKey); a queue's, bus's or stream's key is the
    # resource's own, which its writers need both actions on.
    archive_keys: list[Arn] = []
    resource_keys: list[Arn] = []
    for destination in config.destinations:
        target = destination.target
        if target is None:
            continue
        if isinstance(target, ArchiveTarget):
            archives.add(f"arn:aws:s3:::{target.bucket}/{target.key_prefix}*")
        elif isinstance(target, QueueTarget):
            queues.add(target.queue.value)
        elif isinstance(target, BusTarget):
            buses.add(target.bus.value)
        elif isinstance(target, StreamTarget):
            streams.add(target.stream.value)
        if target.kms_key is not None:
            (archive_keys if isinstance(target, ArchiveTarget) else resource_keys).append(target.kms_key)
    statements = [
        _statement("DestinationsArchives", ["s3:PutObject"], archives),
        _statement("DestinationsQueues", ["sqs:GetQueueUrl", "sqs:SendMessage"], queues),
        _statement("DestinationsBuses", ["events:PutEvents"], buses),
        _statement("DestinationsStreams", ["kinesis:PutRecords"], streams),
    ]
    statements += _key_statements("DestinationsArchiveKey", ["kms:GenerateDataKey"], archive_keys)
    statements += _key_statements("DestinationsResourceKey", ["kms:Decrypt", "kms:GenerateDataKey"], resource_keys)
    return [statement for statement in statements if statement["Resource"]]


def _key_statements(sid: str, actions: list[str], keys: list[Arn]) -> list[dict[str, Any]]:
    """``actions`` on exactly ``keys``: a key named by its ARN directly, a key named by its alias through a
    ``kms:ResourceAliases`` condition (the key's own id is not in the destinations file)."""
    direct = {key.value for key in keys if not key.name.startswith("alias/")}
    aliases: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        if key.name.startswith("alias/"):
            aliases[f"arn:{key.partition}:kms:{key.region}:{key.account}:key/*"].add(key.name)
    statements = [_statement(f"{sid}s", actions, direct)]
    for index, (resource, names) in enumerate(sorted(aliases.items())):
        statement = _statement(f"{sid}Aliases{index or ''}", actions, {resource})
        statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(names)}}
        statements.append(statement)
    return statements


def transcript_statements(config: RelayConfig, archive_name: str) -> list[dict[str, Any]]:
    """Reading the named archive's sessions, keeping transcripts beside them, and the archive key's use."""
    target = next((d.target for d in config.destinations if d.name == archive_name), None)
    if not isinstance(target, ArchiveTarget):
        return []
    bucket = f"arn:aws:s3:::{target.bucket}"
    sessions, transcripts = f"{target.key_prefix}*", f"{TRANSCRIPTS_PREFIX}*"
    listing = _statement("DestinationsTranscriptsList", ["s3:ListBucket"], {bucket})
    listing["Condition"] = {"StringLike": {"s3:prefix": [sessions, transcripts]}}
    statements = [
        listing,
        _statement(
            "DestinationsTranscriptsRead", ["s3:GetObject"], {f"{bucket}/{sessions}", f"{bucket}/{transcripts}"}
        ),
        _statement("DestinationsTranscriptsWrite", ["s3:PutObject"], {f"{bucket}/{transcripts}"}),
    ]
    key = target.kms_key
    if key is not None:
        use = ["kms:Decrypt", "kms:GenerateDataKey"]
        if key.name.startswith("alias/"):
            statement = _statement(
                "DestinationsTranscriptsKey", use, {f"arn:{key.partition}:kms:{key.region}:{key.account}:key/*"}
            )
            statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [key.name]}}
        else:
            statement = _statement("DestinationsTranscriptsKey", use, {key.value})
        statements.append(statement)
    return statements


def archive_read_statements(config: RelayConfig, archive_name: str) -> list[dict[str, Any]]:
    """Reading the named archive's sessions (listing and objects), and decrypting them."""
    target = next((d.target for d in config.destinations if d.name == archive_name), None)
    if not isinstance(target, ArchiveTarget):
        return []
    bucket = f"arn:aws:s3:::{target.bucket}"
    listing = _statement("DestinationsSessionsList", ["s3:ListBucket"], {bucket})
    listing["Condition"] = {"StringLike": {"s3:prefix": [f"{target.key_prefix}*"]}}
    statements = [listing, _statement("DestinationsSessionsRead", ["s3:GetObject"], {f"{bucket}/{target.key_prefix}*"})]
    key = target.kms_key
    if key is not None and key.name.startswith("alias/"):
        statement = _statement(
            "DestinationsSessionsKey", ["kms:Decrypt"], {f"arn:{key.partition}:kms:{key.region}:{key.account}:key/*"}
        )
        statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [key.name]}}
        statements.append(statement)
    elif key is not None:
        statements.append(_statement("DestinationsSessionsKey", ["kms:Decrypt"], {key.value}))
    return statements


def replay_statements(config: RelayConfig) -> list[dict[str, Any]]:
    """Listing and reading every archive (its key prefix only), and decrypting it: what replays read."""
    listings: dict[str, set[str]] = defaultdict(set)
    objects: set[str] = set()
    keys: set[str] = set()
    aliases: dict[str, set[str]] = defaultdict(set)
    for destination in config.destinations:
        target = destination.target
        if not isinstance(target, ArchiveTarget):
            continue
        listings[f"arn:aws:s3:::{target.bucket}"].add(f"{target.key_prefix}*")
        objects.add(f"arn:aws:s3:::{target.bucket}/{target.key_prefix}*")
        key = target.kms_key
        if key is not None and key.name.startswith("alias/"):
            aliases[f"arn:{key.partition}:kms:{key.region}:{key.account}:key/*"].add(key.name)
        elif key is not None:
            keys.add(key.value)
    statements = []
    for index, (bucket, prefixes) in enumerate(sorted(listings.items())):
        listing = _statement(f"DestinationsReplayList{index or ''}", ["s3:ListBucket"], {bucket})
        listing["Condition"] = {"StringLike": {"s3:prefix": sorted(prefixes)}}
        statements.append(listing)
    statements += [
        _statement("DestinationsReplayRead", ["s3:GetObject"], objects),
        _statement("DestinationsReplayKeys", ["kms:Decrypt"], keys),
    ]
    for index, (resource, names) in enumerate(sorted(aliases.items())):
        statement = _statement(f"DestinationsReplayKeyAliases{index or ''}", ["kms:Decrypt"], {resource})
        statement["Condition"] = {"ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(names)}}
        statements.append(statement)
    return [statement for statement in statements if statement["Resource"]]


def _statement(sid: str, actions: list[str], resources: set[str]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": sorted(resources)}


def grants_of(function: str, config: RelayConfig, environment: dict[str, str]) -> list[dict[str, Any]]:
    """The ``Destinations`` statements of ``function``'s policy (none for a function that does not publish)."""
    if function not in PUBLISHING_FUNCTIONS:
        return []
    statements = destination_statements(config)
    archive = environment.get("TRANSCRIPT_ARCHIVE", "archive")
    if function == TRANSCRIPT_FUNCTION:
        statements += transcript_statements(config, archive)
    if function == RECONCILIATION_FUNCTION:
        statements += archive_read_statements(config, archive)
    if function == REPLAY_FUNCTION:
        statements += replay_statements(config)
    return statements


def rendered(stage: str, function: str) -> tuple[Path, str]:
    """The policy file of ``function`` in ``stage`` and what it should contain."""
    from scripts.render import render_stage

    chalice_config = json.loads((CHALICE / "config.json").read_text())
    path = CHALICE / chalice_config["stages"][stage]["lambda_functions"][function]["iam_policy_file"]
    return path, render_stage(stage)[path]
