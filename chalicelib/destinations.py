"""Where the relay delivers events: webhook destinations, their filters and their signing secrets.

The relay config is one JSON file per stage (``chalicelib/config/destinations-<stage>.json``, or the file
``RELAY_CONFIG_FILE`` names). It is JSON only, not YAML: the standard library reads JSON, so the Lambda package
carries no YAML parser for one small file. Example::

    {
      "version": 1,
      "destinations": [
        {
          "name": "crm",
          "url": "https://crm.example.com/hooks/connect",
          "events": ["chat.message", "chat.participant.*", "chat.ended"],
          "audience": "agent",
          "roles": ["CUSTOMER"],
          "instances": ["11111111-2222-3333-4444-555555555555"],
          "include_typing": false,
          "timeout_seconds": 10,
          "secrets": ["ssm:/connect-chat-relay/prod/crm-secret"]
        }
      ]
    }

Per destination, only ``name``, ``url`` and ``secrets`` are required of a webhook (a destination of another
``kind``, an S3 archive, an SQS queue, an EventBridge bus or a Kinesis stream, takes the fields of
:mod:`chalicelib.destination_kinds` instead, and the same filters):

- ``events``: event types (``chat.message``) or prefix wildcards (``chat.participant.*``) from the catalogue in
  :mod:`chalicelib.events`; omitted means every type. ``chat.typing`` is sent only when listed by name or when
  ``include_typing`` is true: it is by far the noisiest event and few consumers want it.
- ``audience``: ``customer`` or ``agent`` keeps what that side of the chat sees, by AWS's visibility rule
  (visibility CUSTOMER/ALL and not sent by the CUSTOMER, resp. AGENT/ALL and not sent by the AGENT); ``all``
  (the default) keeps everything. ``roles`` keeps items sent by these participant roles. Events without a sender
  (``chat.ended``) and ``call.started`` pass both filters. An item whose visibility is unknown (its record
  said nothing) never reaches a ``customer`` or ``agent`` destination.
- ``instances``: Amazon Connect instance ids; omitted means every instance. An event without an instance id
  never reaches a destination that names instances.

What a filter cannot decide (see :meth:`Destination.undecided`) is not delivered there, but kept by the relay.
- ``timeout_seconds``: more than 0, at most 30; default 10.
- ``secrets``: 1 to 3 Standard Webhooks secrets (more than one during a rotation window, and every one signs),
  as references ``ssm:/parameter/name`` or ``secretsmanager:name-or-arn``. A literal ``whsec_<base64>`` is refused
  unless the destination or the file sets ``"allow_literal_secrets": true`` (local runs only). A reference whose
  name looks like a pasted secret (``whsec_...``, or base64 of a key's length mixing upper case, lower case and
  digits, as random keys do and names seldom do) is refused without being echoed: it would be sent to AWS as a
  name, then shown in every "secret unavailable" log line and quarantined failure.
- ``retry_schedule``: the waits before each attempt, in seconds, starting with 0 (the first attempt); default
  svix's ``[0, 5, 300, 1800, 7200, 18000, 36000, 36000]``, each wait jittered ±20 % (:mod:`chalicelib.retries`).
  ``retry_client_errors``: false makes a 4xx other than 408, 410, 425 and 429 permanent (default true: retried).
- ``allow_http``: permit an ``http://`` url (local receivers); ``allow_private_network``: permit private and
  loopback addresses (the SSRF filter refuses them otherwise; metadata, link-local and the Lambda runtime API
  stay refused).
- ``allow_http``, ``allow_private_network`` and ``allow_literal_secrets`` are development switches: a production
  stage refuses them unless its settings say otherwise (:attr:`chalicelib.settings.Settings.development_switches`).
- ``max_per_second``: at most this many deliveries a second (1 to 10,000), across every container; what goes
  above it waits in the retry path. Omitted: no limit.
- ``disable_after_hours``: disable the destination after it has failed without a success for this long (more
  than 0, at most 720); default ``DISABLE_AFTER_HOURS`` (24). An HTTP 410 disables it at once.

Every problem in a file is reported at once, each naming the destination and the field; no message ever
contains a secret value.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from chalicelib.destination_kinds import KIND_FIELDS, KINDS, AwsTarget, Kind, read_target
from chalicelib.errors import FieldProblem, RelayError
from chalicelib.events import EVENT_TYPES, RelayEvent
from chalicelib.observability import logger
from chalicelib.retries import DEFAULT_RETRY_POLICY, MAX_ATTEMPTS, MAX_WAIT_SECONDS, RetryPolicy
from chalicelib.settings import DEVELOPMENT_SWITCHES_OVERRIDE, INSTANCE_ID
from chalicelib.validation import Rule, read

CONFIG_VERSION = 1
MAX_TIMEOUT_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_SECRETS = 3
MAX_PER_SECOND = 10_000
MAX_DISABLE_AFTER_HOURS = 720
Role = Literal["AGENT", "CUSTOMER", "CUSTOM_BOT", "SUPERVISOR", "SYSTEM"]
PARTICIPANT_ROLES = frozenset(get_args(Role))
TYPING = "chat.typing"
CALL_STARTED = "call.started"
WHSEC_PREFIX = "whsec_"
# Why a filter cannot decide on an event (its data lacks what the filter reads).
UNKNOWN_INSTANCE = "the event has no instance id and the destination filters on instances"
UNKNOWN_VISIBILITY = "the event's visibility is unknown and the destination filters on audience"

Audience = Literal["customer", "agent", "all"]
SecretKind = Literal["ssm", "secretsmanager", "literal"]

_EVENT_SHAPE = re.compile(r"^[a-z*][a-z0-9_.*]{0,63}\Z")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_SSM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}\Z")
_SECRETSMANAGER_ID = re.compile(r"^[A-Za-z0-9/_+=.@:\-]{1,2048}\Z")
DEVELOPMENT_SWITCHES = ("allow_http", "allow_private_network", "allow_literal_secrets")
_SWITCH_REFUSED = (
    f"is a development switch, refused in a production stage unless {DEVELOPMENT_SWITCHES_OVERRIDE}=true is set"
)
_SECRET_SERVICES = {"ssm": "SSM Parameter Store (SecureString)", "secretsmanager": "Secrets Manager"}
_REFERENCE_FORMS = (
    '"ssm:<parameter name>", "secretsmanager:<name or ARN>" or, with allow_literal_secrets, "whsec_<base64>"'
)
# What each audience sees, as (visibilities shown, sender role hidden): AWS's rule for chat items.
_AUDIENCE_VIEW: dict[str, tuple[frozenset[str], str]] = {
    "customer": (frozenset({"CUSTOMER", "ALL"}), "CUSTOMER"),
    "agent": (frozenset({"AGENT", "ALL"}), "AGENT"),
}


class RelayConfigError(RelayError):
    """The relay config is unreadable or invalid; ``problems`` lists every fault, none with a secret value."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"invalid relay config {source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def looks_like_literal_secret(name: str) -> bool:
    """True when a reference's name is more likely a pasted secret than a name: ``whsec_...``, or base64 of 24 to
    64 bytes that mixes upper case, lower case and digits (random keys do; parameter and secret names seldom do)."""
    bare = name.lstrip("/")
    if bare.lower().startswith(WHSEC_PREFIX):
        return True
    mixed = any(c.isupper() for c in bare) and any(c.islower() for c in bare) and any(c.isdigit() for c in bare)
    return mixed and (is_webhook_secret(name) or is_webhook_secret(bare))


def is_webhook_secret(value: str) -> bool:
    """True when ``value`` is a Standard Webhooks secret: ``whsec_`` (optional) + base64 of 24 to 64 bytes."""
    encoded = value.removeprefix(WHSEC_PREFIX)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(raw) <= 64


@dataclass(frozen=True, repr=False)
class SecretRef:
    """Where a destination's signing secret lives; a literal's value never shows in ``repr`` or ``str``."""

    kind: SecretKind
    name: str

    def __str__(self) -> str:
        shown = WHSEC_PREFIX + "***" if self.kind == "literal" else self.name
        return f"{self.kind}:{shown}"

    def __repr__(self) -> str:
        return f"SecretRef({self})"


@dataclass(frozen=True)
class Destination:
    """One receiver and the events it asked for: a webhook, or (``target``) an AWS resource of another kind."""

    name: str
    url: str
    event_types: frozenset[str] | None = None
    include_typing: bool = False
    participant_roles: frozenset[str] | None = None
    audience: Audience = "all"
    instance_ids: frozenset[str] | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    secrets: tuple[SecretRef, ...] = ()
    allow_http: bool = False
    allow_private_network: bool = False
    max_per_second: int | None = None
    disable_after_seconds: float | None = None
    target: AwsTarget | None = None
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY
    # Precomputed once: accepts() runs for every event and every destination.
    _exact_types: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _type_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _typing: bool = field(init=False, repr=False, compare=False)
    _view: tuple[frozenset[str], str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = None if self.event_types is None else frozenset(t for t in self.event_types if not t.endswith("*"))
        prefixes = tuple(t[:-1] for t in self.event_types or () if t.endswith("*"))
        typing_matched = exact is None or TYPING in exact or TYPING.startswith(prefixes)
        object.__setattr__(self, "_exact_types", exact)
        object.__setattr__(self, "_type_prefixes", prefixes)
        object.__setattr__(
            self, "_typing", (exact is not None and TYPING in exact) or (self.include_typing and typing_matched)
        )
        object.__setattr__(self, "_view", _AUDIENCE_VIEW.get(self.audience))

    @property
    def kind(self) -> Kind:
        """``webhook``, or the kind of the AWS resource it writes to."""
        return "webhook" if self.target is None else self.target.kind

    def accepts(self, event: RelayEvent) -> bool:
        """Whether this destination wants ``event``: type, instance, sender role and audience filters.

        Fails closed: an event a filter cannot decide on (see :meth:`undecided`) is not accepted.
        """
        return self._verdict(event) is True

    def undecided(self, event: RelayEvent) -> str | None:
        """Why a filter of this destination cannot decide on ``event`` (no instance id, unknown visibility) while
        no other filter refuses it; None when the filters decide. Such an event must be kept, not dropped."""
        verdict = self._verdict(event)
        return verdict if isinstance(verdict, str) else None

    def _verdict(self, event: RelayEvent) -> bool | str:
        """True (wanted), False (refused by a filter), or why a filter cannot decide."""
        kind = event.type
        if kind == TYPING:
            if not self._typing:
                return False
        elif (
            self._exact_types is not None and kind not in self._exact_types and not kind.startswith(self._type_prefixes)
        ):
            return False
        data = event.data
        unknown: str | None = None
        if self.instance_ids is not None:
            instance_id = data.get("instance_id")
            if instance_id is None:
                unknown = UNKNOWN_INSTANCE
            elif instance_id not in self.instance_ids:
                return False
        if kind == CALL_STARTED or (self.participant_roles is None and self._view is None):
            return unknown or True
        role = (data.get("participant") or {}).get("role")
        # An event without a sender (chat.ended) passes the role filter, but never the visibility rule: an item
        # Connect marks AGENT-only stays away from customer-facing destinations whoever sent it.
        if role is not None and self.participant_roles is not None and role not in self.participant_roles:
            return False
        if self._view is None:
            return unknown or True
        visibilities, hidden_sender = self._view
        if role == hidden_sender:
            return False
        visibility = data.get("visibility")
        if visibility is None:
            return unknown or UNKNOWN_VISIBILITY
        return (unknown or True) if visibility in visibilities else False


@dataclass(frozen=True)
class RelayConfig:
    """The destinations of one stage, as validated from its config file."""

    destinations: tuple[Destination, ...]
    version: int = CONFIG_VERSION


def load_relay_config(path: Path, *, development_switches: bool = True) -> RelayConfig:
    """Read and validate a relay config file; :class:`RelayConfigError` lists every problem.

    ``development_switches`` false (a production stage) refuses ``allow_http``, ``allow_private_network`` and
    ``allow_literal_secrets``.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RelayConfigError(source, [f"cannot be read ({type(exc).__name__})"]) from exc
    try:
        raw = json.loads(text, object_pairs_hook=_refuse_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise RelayConfigError(source, [f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"]) from None
    except _DuplicateKeyError as exc:
        raise RelayConfigError(source, [f"repeats the key {exc.key!r} in one object"]) from None
    config = parse_relay_config(raw, source=source, development_switches=development_switches)
    logger.info("relay config loaded", extra={"source": source, "destinations": len(config.destinations)})
    return config


_cache: dict[tuple[Path, bool], tuple[tuple[int, int], RelayConfig]] = {}


def relay_config(path: Path, *, development_switches: bool = True) -> RelayConfig:
    """The config at ``path``, read on first use and again only when the file's mtime (or size) changes."""
    stat = path.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    key = (path, development_switches)
    cached = _cache.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    config = load_relay_config(path, development_switches=development_switches)
    _cache[key] = (stamp, config)
    return config


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of repeated keys silently; in a config file that hides a mistake.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


@dataclass(frozen=True, kw_only=True)
class _ConfigFile:
    """A config document; each of its destinations is read on its own, to be named in its problems."""

    version: Annotated[int, Rule(minimum=CONFIG_VERSION, maximum=CONFIG_VERSION, problem=f"must be {CONFIG_VERSION}")]
    allow_literal_secrets: bool = False
    destinations: Annotated[tuple[Any, ...], Rule(problem="must be a list of destination objects")]


@dataclass(frozen=True, kw_only=True)
class DestinationFilters:
    """What every kind of destination takes: its name and its filters (other kinds add :data:`KIND_FIELDS`)."""

    name: Annotated[
        str,
        Rule(
            pattern=_NAME.pattern,
            missing="is required",
            problem="must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
    ]
    kind: Kind = "webhook"
    events: Annotated[
        tuple[str, ...] | None,
        Rule(min_length=1, problem="must be a non-empty list of event types (omit it for every type)"),
    ] = None
    include_typing: bool = False
    audience: Audience = "all"
    roles: Annotated[
        tuple[Role, ...] | None,
        Rule(min_length=1, problem="must be a non-empty list of roles: " + ", ".join(sorted(PARTICIPANT_ROLES))),
    ] = None
    instances: Annotated[
        tuple[Annotated[str, Rule(pattern=INSTANCE_ID.pattern)], ...] | None,
        Rule(
            min_length=1,
            problem="must be a non-empty list of Amazon Connect instance ids (1 to 100 letters, digits, -)",
        ),
    ] = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """Each event type is in the catalogue; include_typing is for events that include chat.typing."""
        events = valid.get("events")
        problems = [
            FieldProblem("events", f"{_shown(pattern)} is not an event type or a 'prefix.*' wildcard of the catalogue")
            for pattern in events or ()
            if not _in_catalogue(pattern)
        ]
        if valid.get("include_typing") and events is not None and not _matches(TYPING, frozenset(events)):
            problems.append(FieldProblem("include_typing", f"is true but events does not include {TYPING}"))
        return problems


_RETRY_SCHEDULE = f"must be a list of 1 to {MAX_ATTEMPTS} waits in seconds (0 to {MAX_WAIT_SECONDS:g}), the first one 0"


@dataclass(frozen=True, kw_only=True)
class WebhookFields(DestinationFilters):
    """A webhook destination: its name and filters, where and how to POST, its signing secrets' references."""

    allow_http: bool = False
    url: Annotated[str, Rule(min_length=1, non_blank=True, missing="is required", problem="must be a non-empty string")]
    timeout_seconds: Annotated[
        float,
        Rule(
            exclusive_minimum=0,
            maximum=MAX_TIMEOUT_SECONDS,
            problem=f"must be a number of seconds more than 0 and at most {MAX_TIMEOUT_SECONDS:g}",
        ),
    ] = DEFAULT_TIMEOUT_SECONDS
    allow_private_network: bool = False
    allow_literal_secrets: bool = False
    # Any entries: each is checked by _secrets, whose messages never quote one (it may be a pasted secret).
    secrets: Annotated[
        tuple[Any, ...],
        Rule(
            min_length=1,
            max_length=MAX_SECRETS,
            missing="is required: every destination signs its webhooks",
            problem=f"must be a list of 1 to {MAX_SECRETS} secrets (more than one only while rotating)",
        ),
    ]
    max_per_second: Annotated[
        int | None,
        Rule(
            minimum=1,
            maximum=MAX_PER_SECOND,
            problem=f"must be a whole number of deliveries a second from 1 to {MAX_PER_SECOND:,}",
        ),
    ] = None
    disable_after_hours: Annotated[
        float | None,
        Rule(
            exclusive_minimum=0,
            maximum=MAX_DISABLE_AFTER_HOURS,
            problem=f"must be a number of hours more than 0 and at most {MAX_DISABLE_AFTER_HOURS}",
        ),
    ] = None
    retry_schedule: Annotated[
        tuple[Annotated[float, Rule(minimum=0, maximum=MAX_WAIT_SECONDS)], ...] | None,
        Rule(min_length=1, max_length=MAX_ATTEMPTS, problem=_RETRY_SCHEDULE),
    ] = None
    retry_client_errors: bool = True

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """The filters' rules, the url's, and a schedule's first wait is the first attempt's: 0."""
        problems = DestinationFilters.cross_checks(valid)
        if "url" in valid:
            problems += [
                FieldProblem("url", problem) for problem in _url_problems(valid["url"], valid.get("allow_http"))
            ]
        schedule = valid.get("retry_schedule")
        if schedule is not None and schedule[0] != 0:
            problems.append(FieldProblem("retry_schedule", _RETRY_SCHEDULE))
        return problems


# Problems are listed in the order of the fields (a rule across fields under the field it names), unknown first.
_FIELD_ORDER = {name: position for position, name in enumerate(["", *WebhookFields.__dataclass_fields__])}


def _in_field_order(problems: list[FieldProblem]) -> list[FieldProblem]:
    def position(problem: FieldProblem) -> int:
        if problem.problem == "unknown field":
            return 0
        return _FIELD_ORDER.get(re.split(r"[.\[]", problem.field, maxsplit=1)[0], len(_FIELD_ORDER))

    return sorted(problems, key=position)


def parse_relay_config(raw: object, *, source: str, development_switches: bool = True) -> RelayConfig:
    """Validate a decoded config document (pure); :class:`RelayConfigError` lists every problem.

    ``development_switches`` false refuses ``allow_http``, ``allow_private_network`` and ``allow_literal_secrets``.
    """
    if not isinstance(raw, Mapping):
        raise RelayConfigError(source, ["the document must be a JSON object"])
    found = read(_ConfigFile, raw)[1]
    allow_literal = raw.get("allow_literal_secrets") is True
    if allow_literal and not development_switches:
        found.append(FieldProblem("allow_literal_secrets", _SWITCH_REFUSED))
    order = list(_ConfigFile.__dataclass_fields__)
    found.sort(key=lambda p: 0 if p.problem == "unknown field" else 1 + order.index(p.field))
    expected = f" (expected {', '.join(sorted(order))})"
    problems = [f"{p.field}: {p.problem}" + expected * (p.problem == "unknown field") for p in found]
    entries = raw.get("destinations")
    destinations: list[Destination] = []
    if isinstance(entries, list):
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries):
            destination = _parse_destination(
                entry, index, seen, allow_literal, problems, development_switches=development_switches
            )
            if destination is not None:
                destinations.append(destination)
    if problems:
        raise RelayConfigError(source, problems)
    return RelayConfig(destinations=tuple(destinations), version=CONFIG_VERSION)


def _parse_destination(
    entry: object,
    index: int,
    seen: dict[str, int],
    allow_literal: bool,
    problems: list[str],
    *,
    development_switches: bool,
) -> Destination | None:
    if not isinstance(entry, Mapping):
        problems.append(f"destinations[{index}]: must be an object")
        return None
    name = entry.get("name")
    where = (
        f'destinations[{index}] ("{name}")' if isinstance(name, str) and _NAME.match(name) else f"destinations[{index}]"
    )
    kind = entry.get("kind", "webhook")
    if kind not in KINDS:
        problems.append(f"{where}.kind: must be one of {', '.join(KINDS)}")
        return None
    target: AwsTarget | None = None
    fields: DestinationFilters | None
    if kind == "webhook":
        fields, found = read(WebhookFields, entry)
    else:
        fields, found = read(DestinationFilters, {k: v for k, v in entry.items() if k not in KIND_FIELDS[kind]})
        target, target_problems = read_target(kind, entry)
        found += target_problems
    if isinstance(name, str) and _NAME.match(name):
        if name in seen:
            found.append(FieldProblem("name", f"repeats the name of destinations[{seen[name]}]"))
        else:
            seen[name] = index
    secrets: tuple[SecretRef, ...] = ()
    if kind == "webhook":
        if isinstance(entry.get("secrets"), list) and not any(p.field == "secrets" for p in found):
            literal_ok = allow_literal or entry.get("allow_literal_secrets") is True
            secrets = _secrets(entry["secrets"], literal_ok, found)
        if not development_switches:
            found += [
                FieldProblem(switch, _SWITCH_REFUSED) for switch in DEVELOPMENT_SWITCHES if entry.get(switch) is True
            ]
    problems += [f"{where}.{p.field}: {p.problem}" for p in _in_field_order(found)]
    if found or fields is None:
        return None
    filters = Destination(
        name=fields.name,
        url="",
        event_types=None if fields.events is None else frozenset(fields.events),
        include_typing=fields.include_typing,
        participant_roles=None if fields.roles is None else frozenset(fields.roles),
        audience=fields.audience,
        instance_ids=None if fields.instances is None else frozenset(fields.instances),
    )
    if not isinstance(fields, WebhookFields):
        return None if target is None else replace(filters, target=target)
    hours = fields.disable_after_hours
    return replace(
        filters,
        url=fields.url,
        timeout_seconds=float(fields.timeout_seconds),
        secrets=secrets,
        allow_http=fields.allow_http,
        allow_private_network=fields.allow_private_network,
        max_per_second=fields.max_per_second,
        disable_after_seconds=None if hours is None else float(hours) * 3600,
        retry_policy=RetryPolicy(
            schedule=DEFAULT_RETRY_POLICY.schedule
            if fields.retry_schedule is None
            else tuple(float(wait) for wait in fields.retry_schedule),
            retry_client_errors=fields.retry_client_errors,
        ),
    )


def _url_problems(value: str, allow_http: object) -> list[str]:
    # The url is never echoed: a receiver's url can carry a token in its path or query.
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        return ["is not a valid URL"]
    problems = []
    if parts.scheme not in (("https", "http") if allow_http is True else ("https",)):
        problems.append("must use https (http only with allow_http: true)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        problems.append("must not carry credentials (user:password@); signatures authenticate the relay")
    if not parts.hostname:
        problems.append("has no host")
    if parts.fragment:
        problems.append("must not have a #fragment (it is never sent)")
    return problems


def _matches(event_type: str, patterns: frozenset[str]) -> bool:
    return any(event_type == p or (p.endswith("*") and event_type.startswith(p[:-1])) for p in patterns)


def _shown(pattern: str) -> str:
    """A pattern quoted when it has an event type's shape; anything else (a pasted URL, say) is not echoed."""
    return repr(pattern) if _EVENT_SHAPE.match(pattern) else "an entry"


def _in_catalogue(pattern: str) -> bool:
    if pattern.endswith(".*"):
        return any(t.startswith(pattern[:-1]) for t in EVENT_TYPES)
    return "*" not in pattern and pattern in EVENT_TYPES


def _secrets(value: list[Any], literal_ok: bool, found: list[FieldProblem]) -> tuple[SecretRef, ...]:
    """The references of a list of 1 to 3 entries; each entry's problem is added to ``found``."""

    def fault(where: str, problem: str) -> None:
        found.append(FieldProblem(where, problem))

    positions: dict[SecretRef, int] = {}
    for position, item in enumerate(value):
        # No message here may quote ``item``: a misformatted entry is most likely a pasted secret.
        ref = _secret_ref(item)
        where = f"secrets[{position}]"
        kind, _, name = item.partition(":") if isinstance(item, str) else ("", "", "")
        if kind in _SECRET_SERVICES and looks_like_literal_secret(name):
            fault(
                where,
                f'looks like a secret value pasted after "{kind}:", not a name: keep the value in '
                f"{_SECRET_SERVICES[kind]} and put its name here",
            )
        elif ref is None:
            fault(where, f"must be {_REFERENCE_FORMS}")
        elif ref.kind == "literal" and not literal_ok:
            fault(
                where, "is a literal secret, refused unless allow_literal_secrets is true (use ssm: or secretsmanager:)"
            )
        elif ref in positions:
            fault(where, f"repeats secrets[{positions[ref]}]")
        else:
            positions[ref] = position
    return tuple(positions)


def _secret_ref(item: object) -> SecretRef | None:
    if not isinstance(item, str):
        return None
    kind, _, name = item.partition(":")
    if kind == "ssm" and _SSM_NAME.match(name):
        return SecretRef("ssm", name)
    if kind == "secretsmanager" and _SECRETSMANAGER_ID.match(name):
        return SecretRef("secretsmanager", name)
    if item.startswith(WHSEC_PREFIX) and is_webhook_secret(item):
        return SecretRef("literal", item)
    return None
