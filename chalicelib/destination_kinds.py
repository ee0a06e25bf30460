"""Destinations that are not webhooks: the S3 archive, SQS queues, EventBridge buses and Kinesis streams.

A destination's ``kind`` (``webhook`` when omitted) decides which fields it takes besides the common filters
(``events``, ``audience``, ``roles``, ``instances``, ``include_typing``)::

    {"name": "archive", "kind": "s3", "bucket": "connect-chat-relay-prod-111122223333",
     "kms_key": "arn:aws:kms:us-east-1:111122223333:alias/connect-chat-relay-prod-archive"}
    {"name": "lake", "kind": "s3", "bucket": "my-lake", "layout": "date"}
    {"name": "queue", "kind": "sqs", "queue_arn": "arn:aws:sqs:us-east-1:111122223333:chat.fifo"}
    {"name": "bus", "kind": "eventbridge", "event_bus_arn": "arn:aws:events:us-east-1:111122223333:event-bus/chat",
     "source": "com.example.chat"}
    {"name": "stream", "kind": "kinesis", "stream_arn": "arn:aws:kinesis:us-east-1:111122223333:stream/chat"}

- ``s3``: ``bucket``; ``layout`` ``session`` (default: ``sessions/{initial_contact_id}/items/{absolute_time}_{item_id}
  .json``) or ``date`` (``dt={date}/initial_contact_id={initial_contact_id}/{absolute_time}_{item_id}.json``, for
  lakes), or a ``key_template`` of one's own naming ``{initial_contact_id}`` and ``{item_id}``; ``kms_key``: the
  KMS key (ARN or alias ARN) objects are encrypted with (SSE-KMS; the bucket's ``aws/s3`` key when omitted).
- ``sqs``: ``queue_arn``; a FIFO queue (``.fifo``) gets ``MessageGroupId`` = the initial contact id and
  ``MessageDeduplicationId`` = the ``webhook-id``.
- ``eventbridge``: ``event_bus_arn``; ``source`` (default ``connect-chat-relay``, never ``aws.…``).
- ``kinesis``: ``stream_arn``; the partition key is the initial contact id.
- ``sqs``, ``eventbridge`` and ``kinesis`` take a ``kms_key`` too: the key the queue, bus or stream is encrypted with
  (a customer-managed key), so that the relay is granted ``kms:GenerateDataKey`` and ``kms:Decrypt`` on it.

The ARNs name exactly what the relay writes to, so the IAM grants are rendered from them (``make policies``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Kind = Literal["webhook", "s3", "sqs", "eventbridge", "kinesis"]
KINDS: Final = ("webhook", "s3", "sqs", "eventbridge", "kinesis")
DEFAULT_SOURCE: Final = "connect-chat-relay"
SESSION_TEMPLATE: Final = "sessions/{initial_contact_id}/items/{absolute_time}_{item_id}.json"
DATE_TEMPLATE: Final = "dt={date}/initial_contact_id={initial_contact_id}/{absolute_time}_{item_id}.json"
LAYOUTS: Final = {"session": SESSION_TEMPLATE, "date": DATE_TEMPLATE}
# What a key template may name: the session, the item and its day (UTC, from its AbsoluteTime).
TEMPLATE_FIELDS: Final = frozenset(
    {
        "initial_contact_id",
        "contact_id",
        "item_id",
        "webhook_id",
        "type",
        "absolute_time",
        "date",
        "year",
        "month",
        "day",
    }
)

_ARN_HEAD = r"^arn:(?P<partition>aws[a-zA-Z-]*):{service}:(?P<region>[a-z]{{2}}(-[a-z]+)+-\d):(?P<account>\d{{12}}):"
_QUEUE_ARN = re.compile(_ARN_HEAD.format(service="sqs") + r"(?P<name>[A-Za-z0-9_-]{1,75}(\.fifo)?)\Z")
_BUS_ARN = re.compile(_ARN_HEAD.format(service="events") + r"event-bus/(?P<name>[A-Za-z0-9._/-]{1,256})\Z")
_STREAM_ARN = re.compile(_ARN_HEAD.format(service="kinesis") + r"stream/(?P<name>[A-Za-z0-9_.-]{1,128})\Z")
# The name keeps its "key/" or "alias/": IAM grants a key directly, an alias through a condition.
_KMS_ARN = re.compile(_ARN_HEAD.format(service="kms") + r"(?P<name>(key|alias)/[A-Za-z0-9/_-]{1,250})\Z")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}\Z")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Arn:
    """The parts of an ARN the relay needs: where the resource is and its name."""

    value: str
    partition: str
    region: str
    account: str
    name: str


@dataclass(frozen=True)
class ArchiveTarget:
    """An S3 archive: one object per event, under a key template; SSE-KMS."""

    bucket: str
    key_template: str = SESSION_TEMPLATE
    kms_key: Arn | None = None
    kind: Literal["s3"] = "s3"

    @property
    def key_prefix(self) -> str:
        """The literal start of every key (what IAM grants PutObject on)."""
        return self.key_template.split("{", 1)[0]


@dataclass(frozen=True)
class QueueTarget:
    """An SQS queue; FIFO when its name ends in ``.fifo``."""

    queue: Arn
    kms_key: Arn | None = None
    kind: Literal["sqs"] = "sqs"

    @property
    def fifo(self) -> bool:
        """FIFO queues take a group id and a deduplication id with every message."""
        return self.queue.name.endswith(".fifo")


@dataclass(frozen=True)
class BusTarget:
    """An EventBridge event bus and the ``source`` its events carry."""

    bus: Arn
    source: str = DEFAULT_SOURCE
    kms_key: Arn | None = None
    kind: Literal["eventbridge"] = "eventbridge"


@dataclass(frozen=True)
class StreamTarget:
    """A Kinesis data stream."""

    stream: Arn
    kms_key: Arn | None = None
    kind: Literal["kinesis"] = "kinesis"


AwsTarget = ArchiveTarget | QueueTarget | BusTarget | StreamTarget

# The fields each kind takes besides the common ones.
KIND_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "s3": frozenset({"bucket", "layout", "key_template", "kms_key"}),
    "sqs": frozenset({"queue_arn", "kms_key"}),
    "eventbridge": frozenset({"event_bus_arn", "source", "kms_key"}),
    "kinesis": frozenset({"stream_arn", "kms_key"}),
}


def parse_target(kind: str, entry: Mapping[str, Any], fault: Callable[[str, str], None]) -> AwsTarget | None:
    """The target of a non-webhook destination, or None after reporting each problem with ``fault``."""
    if kind == "s3":
        return _archive(entry, fault)
    key_ok, kms_key = _kms_key(entry, fault)
    if kind == "sqs":
        queue = _arn(entry.get("queue_arn"), "queue_arn", _QUEUE_ARN, "an SQS queue ARN", fault)
        return None if queue is None or not key_ok else QueueTarget(queue, kms_key)
    if kind == "eventbridge":
        bus = _arn(entry.get("event_bus_arn"), "event_bus_arn", _BUS_ARN, "an EventBridge event bus ARN", fault)
        source = entry.get("source", DEFAULT_SOURCE)
        if not isinstance(source, str) or not _SOURCE.match(source) or source.startswith("aws."):
            fault("source", "must be 1 to 256 letters, digits, '.', '_', '/' or '-', not starting with 'aws.'")
            return None
        return None if bus is None or not key_ok else BusTarget(bus, source, kms_key)
    stream = _arn(entry.get("stream_arn"), "stream_arn", _STREAM_ARN, "a Kinesis stream ARN", fault)
    return None if stream is None or not key_ok else StreamTarget(stream, kms_key)


def _kms_key(entry: Mapping[str, Any], fault: Callable[[str, str], None]) -> tuple[bool, Arn | None]:
    """The entry's ``kms_key`` (None when omitted), and whether it is valid."""
    if "kms_key" not in entry:
        return True, None
    key = _arn(entry["kms_key"], "kms_key", _KMS_ARN, "a KMS key ARN or alias ARN", fault)
    return key is not None, key


def _archive(entry: Mapping[str, Any], fault: Callable[[str, str], None]) -> ArchiveTarget | None:
    ok = True
    bucket = entry.get("bucket")
    if not isinstance(bucket, str) or not _BUCKET.match(bucket):
        fault("bucket", "must be an S3 bucket name")
        ok = False
    layout = entry.get("layout", "session")
    template = entry.get("key_template")
    if layout not in LAYOUTS:
        fault("layout", f"must be one of {', '.join(LAYOUTS)}")
        ok = False
    elif template is not None and "layout" in entry:
        fault("key_template", "and layout exclude each other")
        ok = False
    elif template is None:
        template = LAYOUTS[layout]
    elif not _valid_template(template):
        fault(
            "key_template",
            "must be a relative key naming {initial_contact_id} and {item_id}, with placeholders among "
            + ", ".join(sorted(TEMPLATE_FIELDS)),
        )
        ok = False
    key_ok, kms_key = _kms_key(entry, fault)
    if not ok or not key_ok:
        return None
    return ArchiveTarget(bucket=str(bucket), key_template=str(template), kms_key=kms_key)


def _valid_template(template: object) -> bool:
    if not isinstance(template, str) or not 0 < len(template) <= 512 or template.startswith("/"):
        return False
    names = set(_PLACEHOLDER.findall(template))
    stripped = _PLACEHOLDER.sub("", template)
    return names <= TEMPLATE_FIELDS and {"initial_contact_id", "item_id"} <= names and not set("{}") & set(stripped)


def _arn(
    value: object, field_name: str, pattern: re.Pattern[str], expected: str, fault: Callable[[str, str], None]
) -> Arn | None:
    match = pattern.match(value) if isinstance(value, str) else None
    if match is None:
        fault(field_name, f"must be {expected}")
        return None
    return Arn(str(value), match["partition"], match["region"], match["account"], match["name"])
