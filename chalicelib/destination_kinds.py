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
Each kind's fields are a typed dataclass (:class:`ArchiveFields` ...) read by :mod:`chalicelib.validation`, like the
webhooks' and the filters' in :mod:`chalicelib.destinations`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import Field, dataclass, fields
from typing import Annotated, Any, ClassVar, Final, Literal, Protocol, cast

from chalicelib.errors import FieldProblem
from chalicelib.validation import Rule, read

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
_SOURCE = re.compile(r"^(?!aws\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,255}\Z")
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

_KEY_PROBLEM: Final = "must be a KMS key ARN or alias ARN"
_TEMPLATE_PROBLEM: Final = (
    "must be a relative key naming {initial_contact_id} and {item_id}, with placeholders among "
    + ", ".join(sorted(TEMPLATE_FIELDS))
)
_KmsKey = Annotated[str | None, Rule(pattern=_KMS_ARN.pattern, problem=_KEY_PROBLEM)]


@dataclass(frozen=True, kw_only=True)
class ArchiveFields:
    """An ``s3`` destination's own fields."""

    bucket: Annotated[str, Rule(pattern=_BUCKET.pattern, problem="must be an S3 bucket name")]
    layout: Literal["session", "date"] | None = None
    key_template: Annotated[
        str | None, Rule(min_length=1, max_length=512, pattern="^[^/]", problem=_TEMPLATE_PROBLEM)
    ] = None
    kms_key: _KmsKey = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """A key template excludes a layout, and names the session and the item with known placeholders only."""
        template = valid.get("key_template")
        if template is None:
            return []
        if valid.get("layout") is not None:
            return [FieldProblem("key_template", "and layout exclude each other")]
        names = set(_PLACEHOLDER.findall(template))
        stray_brace = bool(set("{}") & set(_PLACEHOLDER.sub("", template)))
        if stray_brace or not names <= TEMPLATE_FIELDS or not {"initial_contact_id", "item_id"} <= names:
            return [FieldProblem("key_template", _TEMPLATE_PROBLEM)]
        return []

    def target(self) -> ArchiveTarget:
        """The archive these fields describe."""
        template = self.key_template or LAYOUTS[self.layout or "session"]
        return ArchiveTarget(bucket=self.bucket, key_template=template, kms_key=_key(self.kms_key))


@dataclass(frozen=True, kw_only=True)
class QueueFields:
    """An ``sqs`` destination's own fields."""

    queue_arn: Annotated[str, Rule(pattern=_QUEUE_ARN.pattern, problem="must be an SQS queue ARN")]
    kms_key: _KmsKey = None

    def target(self) -> QueueTarget:
        """The queue these fields describe."""
        return QueueTarget(_arn(_QUEUE_ARN, self.queue_arn), _key(self.kms_key))


@dataclass(frozen=True, kw_only=True)
class BusFields:
    """An ``eventbridge`` destination's own fields."""

    event_bus_arn: Annotated[str, Rule(pattern=_BUS_ARN.pattern, problem="must be an EventBridge event bus ARN")]
    source: Annotated[
        str,
        Rule(
            pattern=_SOURCE.pattern,
            problem="must be 1 to 256 letters, digits, '.', '_', '/' or '-', not starting with 'aws.'",
        ),
    ] = DEFAULT_SOURCE
    kms_key: _KmsKey = None

    def target(self) -> BusTarget:
        """The bus these fields describe."""
        return BusTarget(_arn(_BUS_ARN, self.event_bus_arn), self.source, _key(self.kms_key))


@dataclass(frozen=True, kw_only=True)
class StreamFields:
    """A ``kinesis`` destination's own fields."""

    stream_arn: Annotated[str, Rule(pattern=_STREAM_ARN.pattern, problem="must be a Kinesis stream ARN")]
    kms_key: _KmsKey = None

    def target(self) -> StreamTarget:
        """The stream these fields describe."""
        return StreamTarget(_arn(_STREAM_ARN, self.stream_arn), _key(self.kms_key))


class _TargetFields(Protocol):
    """A kind's fields: a dataclass that builds its target."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def target(self) -> AwsTarget:
        """The resource these fields describe."""
        ...


_KIND_TYPES: Final[Mapping[str, type[_TargetFields]]] = {
    "s3": ArchiveFields,
    "sqs": QueueFields,
    "eventbridge": BusFields,
    "kinesis": StreamFields,
}
# The fields each kind takes besides the common ones.
KIND_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    kind: frozenset(field.name for field in fields(cls)) for kind, cls in _KIND_TYPES.items()
}


def read_target(kind: str, entry: Mapping[str, Any]) -> tuple[AwsTarget | None, list[FieldProblem]]:
    """The target of a non-webhook destination from its kind's fields in ``entry``, or None and every problem."""
    found, problems = read(_KIND_TYPES[kind], {key: value for key, value in entry.items() if key in KIND_FIELDS[kind]})
    return (None if found is None else found.target()), problems


def _key(value: str | None) -> Arn | None:
    return None if value is None else _arn(_KMS_ARN, value)


def _arn(pattern: re.Pattern[str], value: str) -> Arn:
    """The parts of an ARN that its field's rule matched."""
    match = cast("re.Match[str]", pattern.match(value))
    return Arn(value, match["partition"], match["region"], match["account"], match["name"])
