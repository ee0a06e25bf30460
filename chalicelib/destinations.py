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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

from chalicelib.destination_kinds import KIND_FIELDS, KINDS, AwsTarget, Kind, parse_target
from chalicelib.errors import RelayError
from chalicelib.events import EVENT_TYPES, RelayEvent
from chalicelib.observability import logger
from chalicelib.retries import DEFAULT_RETRY_POLICY, MAX_ATTEMPTS, MAX_WAIT_SECONDS, RetryPolicy
from chalicelib.settings import DEVELOPMENT_SWITCHES_OVERRIDE, INSTANCE_ID

CONFIG_VERSION = 1
MAX_TIMEOUT_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_SECRETS = 3
MAX_PER_SECOND = 10_000
MAX_DISABLE_AFTER_HOURS = 720
PARTICIPANT_ROLES = frozenset({"AGENT", "CUSTOMER", "SYSTEM", "CUSTOM_BOT", "SUPERVISOR"})
AUDIENCES = ("customer", "agent", "all")
TYPING = "chat.typing"
CALL_STARTED = "call.started"
WHSEC_PREFIX = "whsec_"
# Why a filter cannot decide on an event (its data lacks what the filter reads).
UNKNOWN_INSTANCE = "the event has no instance id and the destination filters on instances"
UNKNOWN_VISIBILITY = "the event's visibility is unknown and the destination filters on audience"

Audience = Literal["customer", "agent", "all"]
SecretKind = Literal["ssm", "secretsmanager", "literal"]
# Records one problem with a field of the destination being parsed: (field, problem).
_Fault = Callable[[str, str], None]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_SSM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}\Z")
_SECRETSMANAGER_ID = re.compile(r"^[A-Za-z0-9/_+=.@:\-]{1,2048}\Z")
_TOP_FIELDS = frozenset({"version", "destinations", "allow_literal_secrets"})
# Every kind takes the name and the filters; webhooks take the rest, other kinds their own (destination_kinds).
_COMMON_FIELDS = frozenset({"name", "kind", "events", "audience", "roles", "instances", "include_typing"})
_DESTINATION_FIELDS = _COMMON_FIELDS | frozenset(
    {
        "url",
        "timeout_seconds",
        "secrets",
        "allow_http",
        "allow_private_network",
        "allow_literal_secrets",
        "max_per_second",
        "disable_after_hours",
        "retry_schedule",
        "retry_client_errors",
    }
)
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


def parse_relay_config(raw: object, *, source: str, development_switches: bool = True) -> RelayConfig:
    """Validate a decoded config document (pure); :class:`RelayConfigError` lists every problem.

    ``development_switches`` false refuses ``allow_http``, ``allow_private_network`` and ``allow_literal_secrets``.
    """
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise RelayConfigError(source, ["the document must be a JSON object"])
    for key in sorted(set(raw) - _TOP_FIELDS, key=str):
        problems.append(f"{key}: unknown field (expected {', '.join(sorted(_TOP_FIELDS))})")
    version = raw.get("version")
    if version != CONFIG_VERSION or isinstance(version, bool):
        problems.append(f"version: must be {CONFIG_VERSION}")
    allow_literal = _flag(raw, "allow_literal_secrets", "allow_literal_secrets", problems)
    if allow_literal and not development_switches:
        problems.append(f"allow_literal_secrets: {_SWITCH_REFUSED}")
    entries = raw.get("destinations")
    destinations: list[Destination] = []
    if not isinstance(entries, list):
        problems.append("destinations: must be a list of destination objects")
    else:
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
    before = len(problems)
    name = entry.get("name")
    where = (
        f'destinations[{index}] ("{name}")' if isinstance(name, str) and _NAME.match(name) else f"destinations[{index}]"
    )

    def fault(field_name: str, problem: str) -> None:
        problems.append(f"{where}.{field_name}: {problem}")

    kind = entry.get("kind", "webhook")
    if kind not in KINDS:
        fault("kind", f"must be one of {', '.join(KINDS)}")
        return None
    known = _DESTINATION_FIELDS if kind == "webhook" else _COMMON_FIELDS | KIND_FIELDS[kind]
    for key in sorted(set(entry) - known, key=str):
        fault(str(key), "unknown field")
    if name is None:
        fault("name", "is required")
    elif not isinstance(name, str) or not _NAME.match(name):
        fault("name", "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    elif name in seen:
        fault("name", f"repeats the name of destinations[{seen[name]}]")
    else:
        seen[name] = index

    event_types = _event_types(entry.get("events"), fault)
    include_typing = _flag(entry, "include_typing", f"{where}.include_typing", problems)
    if include_typing and event_types is not None and not _matches(TYPING, event_types):
        fault("include_typing", f"is true but events does not include {TYPING}")
    audience = entry.get("audience", "all")
    if audience not in AUDIENCES:
        fault("audience", f"must be one of {', '.join(AUDIENCES)}")
    roles = _string_set(
        entry.get("roles"),
        "roles",
        fault,
        PARTICIPANT_ROLES.__contains__,
        "roles: " + ", ".join(sorted(PARTICIPANT_ROLES)),
    )
    instances = _string_set(
        entry.get("instances"),
        "instances",
        fault,
        lambda i: INSTANCE_ID.match(i) is not None,
        "Amazon Connect instance ids (1 to 100 letters, digits, -)",
    )
    filters = Destination(
        name=cast(str, name),
        url="",
        event_types=event_types,
        include_typing=include_typing,
        participant_roles=roles,
        audience=cast(Audience, audience),
        instance_ids=instances,
    )
    if kind != "webhook":
        target = parse_target(kind, entry, fault)
        if len(problems) > before or target is None:
            return None
        return replace(filters, target=target)
    return _webhook(
        entry,
        filters,
        where=where,
        problems=problems,
        fault=fault,
        allow_literal=allow_literal,
        development_switches=development_switches,
        before=before,
    )


def _webhook(
    entry: Mapping[str, Any],
    filters: Destination,
    *,
    where: str,
    problems: list[str],
    fault: _Fault,
    allow_literal: bool,
    development_switches: bool,
    before: int,
) -> Destination | None:
    """The webhook fields of a destination whose name and filters are read (``before``: problems before it)."""
    allow_http = _flag(entry, "allow_http", f"{where}.allow_http", problems)
    url = _url(entry.get("url"), allow_http, fault)
    timeout = _timeout(entry.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS), fault)
    allow_private = _flag(entry, "allow_private_network", f"{where}.allow_private_network", problems)
    literal_ok = allow_literal or _flag(entry, "allow_literal_secrets", f"{where}.allow_literal_secrets", problems)
    secrets = _secrets(entry.get("secrets"), literal_ok, fault)
    if not development_switches:
        for switch in DEVELOPMENT_SWITCHES:
            if entry.get(switch) is True:
                fault(switch, _SWITCH_REFUSED)
    max_per_second = _max_per_second(entry.get("max_per_second"), fault)
    disable_after_hours = _disable_after_hours(entry.get("disable_after_hours"), fault)
    retry_policy = RetryPolicy(
        schedule=_retry_schedule(entry.get("retry_schedule"), fault),
        retry_client_errors=_flag(entry, "retry_client_errors", f"{where}.retry_client_errors", problems, True),
    )

    if len(problems) > before or url is None:
        return None
    return replace(
        filters,
        url=url,
        timeout_seconds=timeout,
        secrets=secrets,
        allow_http=allow_http,
        allow_private_network=allow_private,
        max_per_second=max_per_second,
        disable_after_seconds=None if disable_after_hours is None else disable_after_hours * 3600,
        retry_policy=retry_policy,
    )


def _flag(entry: Mapping[str, Any], key: str, where: str, problems: list[str], default: bool = False) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        problems.append(f"{where}: must be true or false")
        return False
    return value


def _url(value: object, allow_http: bool, fault: _Fault) -> str | None:
    if value is None:
        fault("url", "is required")
        return None
    # The url is never echoed: a receiver's url can carry a token in its path or query.
    if not isinstance(value, str) or not value.strip():
        fault("url", "must be a non-empty string")
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        fault("url", "is not a valid URL")
        return None
    schemes = ("https", "http") if allow_http else ("https",)
    ok = True
    if parts.scheme not in schemes:
        fault("url", "must use https (http only with allow_http: true)")
        ok = False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        fault("url", "must not carry credentials (user:password@); signatures authenticate the relay")
        ok = False
    if not parts.hostname:
        fault("url", "has no host")
        ok = False
    if parts.fragment:
        fault("url", "must not have a #fragment (it is never sent)")
        ok = False
    return value if ok else None


def _matches(event_type: str, patterns: frozenset[str]) -> bool:
    return any(event_type == p or (p.endswith("*") and event_type.startswith(p[:-1])) for p in patterns)


def _event_types(value: object, fault: _Fault) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        fault("events", "must be a non-empty list of event types (omit it for every type)")
        return None
    for pattern in value:
        if pattern.endswith(".*"):
            known = any(t.startswith(pattern[:-1]) for t in EVENT_TYPES)
        else:
            known = "*" not in pattern and pattern in EVENT_TYPES
        if not known:
            fault("events", f"{pattern!r} is not an event type or a 'prefix.*' wildcard of the catalogue")
    return frozenset(value)


def _string_set(
    value: object, key: str, fault: _Fault, valid: Callable[[str], bool], expected: str
) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and valid(v) for v in value):
        fault(key, f"must be a non-empty list of {expected}")
        return None
    return frozenset(value)


def _timeout(value: object, fault: _Fault) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_TIMEOUT_SECONDS:
        fault("timeout_seconds", f"must be a number of seconds more than 0 and at most {MAX_TIMEOUT_SECONDS:g}")
        return DEFAULT_TIMEOUT_SECONDS
    return float(value)


def _max_per_second(value: object, fault: _Fault) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_SECOND:
        fault("max_per_second", f"must be a whole number of deliveries a second from 1 to {MAX_PER_SECOND:,}")
        return None
    return value


def _disable_after_hours(value: object, fault: _Fault) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_DISABLE_AFTER_HOURS:
        fault("disable_after_hours", f"must be a number of hours more than 0 and at most {MAX_DISABLE_AFTER_HOURS}")
        return None
    return float(value)


def _retry_schedule(value: object, fault: _Fault) -> tuple[float, ...]:
    default = DEFAULT_RETRY_POLICY.schedule
    if value is None:
        return default
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= MAX_ATTEMPTS
        or any(isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w <= MAX_WAIT_SECONDS for w in value)
        or value[0] != 0
    ):
        fault(
            "retry_schedule",
            f"must be a list of 1 to {MAX_ATTEMPTS} waits in seconds (0 to {MAX_WAIT_SECONDS:g}), the first one 0",
        )
        return default
    return tuple(float(w) for w in value)


def _secrets(value: object, literal_ok: bool, fault: _Fault) -> tuple[SecretRef, ...]:
    if value is None:
        fault("secrets", "is required: every destination signs its webhooks")
        return ()
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SECRETS:
        fault("secrets", f"must be a list of 1 to {MAX_SECRETS} secrets (more than one only while rotating)")
        return ()
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
