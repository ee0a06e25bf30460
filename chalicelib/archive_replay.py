"""Replaying the archive: a session's archived events, or a time range's, sent again to one destination.

``POST /replays`` validates the request, records the replay (``queued``) and puts a replay ticket on the retry
queue; ``retry_deliveries`` does the work, so the route answers at once whatever the replay's size:

1. the first ticket lists the archive (one session's prefix, or each day's prefix of a date-partitioned archive),
   orders the keys by AbsoluteTime (ties by arrival), keeps that list in S3 and marks the replay ``running``;
2. each following ticket re-delivers up to :data:`CHUNK_EVENTS` events from its offset, within the invocation's
   time, through :meth:`Relay.redeliver` (the destination's filters, health gate, signing afresh with the
   ORIGINAL ``webhook-id``; a failure becomes a retry ticket like any failed delivery), puts the ticket for the
   next offset on the queue, then records the offset and the counts with a conditional write. A ticket whose
   offset is not the recorded one is stale (SQS delivered it twice) and is dropped: a crash redoes at most one
   chunk (deliveries are at least once; consumers deduplicate on ``webhook-id``).

A replay is an explicit re-send: it delivers whatever any earlier delivery of the same ``webhook-id`` came to.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Final, Literal
from urllib.parse import unquote

from chalicelib.adapters.archive import ArchiveLayoutError, session_prefix
from chalicelib.destination_kinds import ArchiveTarget
from chalicelib.errors import FieldProblem, RelayError, RequestValidationError
from chalicelib.observability import count, logger
from chalicelib.relay import DestinationUnknownError
from chalicelib.retries import Verdict, verdict
from chalicelib.validation import Rule, parse

if TYPE_CHECKING:
    from chalicelib.adapters.archive import Archive, ArchivedKey
    from chalicelib.adapters.replay_store import ReplayQueue, ReplayStore
    from chalicelib.delivery import DeliveryResult
    from chalicelib.destinations import Destination, RelayConfig
    from chalicelib.events import RelayEvent
    from chalicelib.relay import Relay

# A time range spans at most this long: one S3 listing per day.
MAX_RANGE: Final = timedelta(days=31)
# A replay holds at most this many items (its key list is one S3 object); narrow the range for more.
MAX_ITEMS: Final = 100_000
# Events one ticket re-delivers at most, and the most time it leaves unused at its end (a slow delivery started
# late is cut short by the invocation's deadline, and then retried like any failed delivery).
CHUNK_EVENTS: Final = 200
CHUNK_MARGIN_SECONDS: Final = 5.0
# How long a replay's record is kept after its last change (DynamoDB TTL).
RECORD_SECONDS: Final = 30 * 24 * 3600
DATE_FIELDS: Final = frozenset({"date", "year", "month", "day"})
REPLAY_ID: Final = re.compile(r"^[0-9a-f]{32}\Z")
_PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)\}")

Status = Literal["queued", "running", "completed", "failed"]
Outcome = Literal["delivered", "retrying", "parked", "failed", "skipped"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("delivered", "retrying", "parked", "failed", "skipped")


class ReplayNotFoundError(RelayError):
    """No replay has this id (or its record has expired)."""


class ReplayDestinationUnknownError(RelayError):
    """The replay names a destination that is not configured."""


class ReplayArchiveUnavailableError(RelayError):
    """No archive can serve the replay: none configured, or its key layout cannot be listed for this selection."""


@dataclass(frozen=True)
class ReplayRequest:
    """What to replay (a session, or a time range ``[start, end)``), to which destination, from which archive."""

    destination: str
    initial_contact_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    archive: str | None = None


_TIME: Final = "must be an ISO 8601 time with its offset, e.g. 2026-11-22T10:00:00Z"


@dataclass(frozen=True, kw_only=True)
class ReplayBody:
    """The body of ``POST /replays``."""

    schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A session (initial_contact_id) or a time range (from, to), not both; one destination.",
        "oneOf": [
            {"required": ["initial_contact_id"], "not": {"anyOf": [{"required": ["from"]}, {"required": ["to"]}]}},
            {"required": ["from", "to"], "not": {"required": ["initial_contact_id"]}},
        ],
    }
    destination: Annotated[
        str,
        Rule(
            min_length=1,
            max_length=64,
            description="The destination to re-deliver to (any kind).",
            problem="required: a destination's name",
        ),
    ]
    initial_contact_id: Annotated[
        str | None,
        Rule(
            pattern="^[A-Za-z0-9-]{1,100}$",
            description="The session to replay: every contact id of it, every day.",
            problem="must be a contact id (1 to 100 letters, digits, -)",
        ),
    ] = None
    start: Annotated[
        str | None,
        Rule(
            name="from",
            max_length=40,
            format="date-time",
            description="The range's start (included), with its offset; events by AbsoluteTime.",
            problem=_TIME,
        ),
    ] = None
    end: Annotated[
        str | None,
        Rule(
            name="to",
            max_length=40,
            format="date-time",
            description="The range's end (excluded), at most 31 days after from.",
            problem=_TIME,
        ),
    ] = None
    archive: Annotated[
        str | None,
        Rule(
            min_length=1,
            max_length=64,
            description="The s3 destination to read; by default the transcripts' archive when it can be listed for "
            "the selection, else the first s3 destination that can.",
            problem="must be the name of a destination of kind s3",
        ),
    ] = None

    @staticmethod
    def cross_checks(valid: Mapping[str, Any]) -> list[FieldProblem]:
        """A session or a range, not both; a range's ends are instants in order, at most 31 days apart."""
        if "initial_contact_id" not in valid:
            return []  # a session was given, and its own problem is listed
        ranged = any(key not in valid or valid[key] is not None for key in ("from", "to"))
        if valid["initial_contact_id"] is not None:
            return [FieldProblem("initial_contact_id", "give a session or a time range (from, to), not both")] * ranged
        if not ranged:
            return [FieldProblem("initial_contact_id", "required: a session's initial contact id, or from and to")]
        ends = {key: _parse_time(valid[key] or "") for key in ("from", "to") if key in valid}
        problems = [FieldProblem(key, _TIME) for key, moment in ends.items() if moment is None]
        start, end = ends.get("from"), ends.get("to")
        if start is not None and end is not None and end <= start:
            problems.append(FieldProblem("to", "must be after from"))
        elif start is not None and end is not None and end - start > MAX_RANGE:
            problems.append(FieldProblem("to", f"a range spans at most {MAX_RANGE.days} days"))
        return problems


def parse_request(body: Mapping[str, Any]) -> ReplayRequest:
    """The request in ``body``; :class:`RequestValidationError` listing every problem at once."""
    request = parse(ReplayBody, body)
    return ReplayRequest(
        destination=request.destination,
        initial_contact_id=request.initial_contact_id,
        start=_parse_time(request.start) if request.start is not None else None,
        end=_parse_time(request.end) if request.end is not None else None,
        archive=request.archive,
    )


def iso(moment: datetime) -> str:
    """A time as Connect writes AbsoluteTime: UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


@dataclass(frozen=True)
class ReplayTicket:
    """A replay's next step on the retry queue: list the archive (``offset`` None), or deliver from ``offset``."""

    replay_id: str
    offset: int | None = None

    def to_json(self) -> str:
        """The queue message."""
        return json.dumps({"replay": self.replay_id, "offset": self.offset}, separators=(",", ":"))

    @classmethod
    def of(cls, text: str) -> ReplayTicket | None:
        """The replay ticket in a queue message, or None when it is not one (a retry ticket, or unreadable)."""
        if not text.startswith('{"replay":'):
            return None  # every retry ticket: no second parse on the retry path
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        if not isinstance(doc, dict) or set(doc) != {"replay", "offset"}:
            return None
        replay_id, offset = doc["replay"], doc["offset"]
        if not isinstance(replay_id, str) or not REPLAY_ID.match(replay_id):
            return None
        if offset is not None and (isinstance(offset, bool) or not isinstance(offset, int) or offset < 0):
            return None
        return cls(replay_id, offset)


@dataclass(frozen=True)
class Tally:
    """What became of the events a replay sent so far."""

    delivered: int = 0
    retrying: int = 0
    parked: int = 0
    failed: int = 0
    skipped: int = 0

    def add(self, outcome: Outcome) -> Tally:
        """This tally with one more ``outcome``."""
        return replace(self, **{outcome: getattr(self, outcome) + 1})

    def as_dict(self) -> dict[str, int]:
        """The counts by outcome."""
        return {outcome: getattr(self, outcome) for outcome in OUTCOMES}


@dataclass(frozen=True)
class ReplayState:
    """A replay as its record keeps it: what it replays, how far it got, and what became of each event."""

    replay_id: str
    destination: str
    archive: str
    created_at: float
    status: Status = "queued"
    initial_contact_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    found: int | None = None
    cursor: int = 0
    tally: Tally = field(default_factory=Tally)
    updated_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None

    @property
    def finished(self) -> bool:
        """Whether nothing more will happen to this replay."""
        return self.status in ("completed", "failed")

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape the routes answer (``ArchiveReplay`` in the OpenAPI document)."""

        def stamp(value: float | None) -> str | None:
            return None if value is None else iso(datetime.fromtimestamp(value, UTC))

        return {
            "replay_id": self.replay_id,
            "status": self.status,
            "destination": self.destination,
            "archive": self.archive,
            "initial_contact_id": self.initial_contact_id,
            "from": None if self.start is None else iso(self.start),
            "to": None if self.end is None else iso(self.end),
            "found": self.found,
            "sent": self.cursor,
            **self.tally.as_dict(),
            "created_at": stamp(self.created_at),
            "updated_at": stamp(self.updated_at or self.created_at),
            "finished_at": stamp(self.finished_at),
            "outcome": self.outcome,
        }


def session_prefix_of(target: ArchiveTarget, initial_contact_id: str) -> str | None:
    """The prefix holding one session's events, or None when the key template does not start with the session."""
    try:
        return session_prefix(target, initial_contact_id)
    except ArchiveLayoutError:
        return None


def day_prefixes(target: ArchiveTarget, start: datetime, end: datetime) -> list[str] | None:
    """One prefix per UTC day of ``[start, end)`` for a date-partitioned key template, or None when the template
    does not start with the date (only a listing of the whole archive could find the range)."""
    head = target.key_template.split("{initial_contact_id}", 1)[0]
    literal_end = min((m.start() for m in _PLACEHOLDER.finditer(head) if m[1] not in DATE_FIELDS), default=len(head))
    head = head[:literal_end]
    if not any(m[1] in DATE_FIELDS for m in _PLACEHOLDER.finditer(head)):
        return None
    prefixes = []
    day = start.date()
    while datetime(day.year, day.month, day.day, tzinfo=UTC) < end:
        text = day.isoformat()
        prefixes.append(
            head.format_map({"date": text, "year": text[:4], "month": text[5:7], "day": text[8:10]}).split("{")[0]
        )
        day += timedelta(days=1)
    return prefixes


def key_pattern(template: str) -> re.Pattern[str]:
    """A regex that reads a key written with ``template`` back into its (percent-encoded) fields."""
    parts, seen, last = [], set(), 0
    for match in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[last : match.start()]))
        name = match[1]
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]*?)")
        seen.add(name)
        last = match.end()
    parts.append(re.escape(template[last:]))
    return re.compile("^" + "".join(parts) + r"\Z")


class ArchiveReplays:
    """Starts replays, reports them, and does their work one ticket at a time."""

    def __init__(
        self,
        *,
        store: ReplayStore,
        queue: ReplayQueue,
        archive: Archive,
        relay: Relay,
        config: Callable[[], RelayConfig],
        default_archive: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._queue = queue
        self._archive = archive
        self._relay = relay
        self._config = config
        self._default_archive = default_archive
        self._clock = clock

    def start(self, request: ReplayRequest) -> ReplayState:
        """Record a replay and queue its first step; raises when the destination or a usable archive is missing."""
        destinations = {destination.name: destination for destination in self._config().destinations}
        if request.destination not in destinations:
            raise ReplayDestinationUnknownError(f"no destination is called {request.destination!r}")
        archive = self._choose_archive(request, destinations)
        state = ReplayState(
            replay_id=uuid.uuid4().hex,
            destination=request.destination,
            archive=archive,
            created_at=self._clock(),
            initial_contact_id=request.initial_contact_id,
            start=request.start,
            end=request.end,
        )
        self._store.create(state, expires_at=state.created_at + RECORD_SECONDS)
        try:
            self._queue.send(ReplayTicket(state.replay_id))
        except Exception:
            # Not left "queued" for ever: the caller is told to start it again.
            self._fail(state, "the retry queue did not take the replay; start it again")
            raise
        count("ReplayStarted")
        logger.info("replay queued", extra={"replay_id": state.replay_id, "destination": state.destination})
        return state

    def status(self, replay_id: str) -> ReplayState:
        """The replay's state as last recorded."""
        state = self._store.read(replay_id) if REPLAY_ID.match(replay_id) else None
        if state is None:
            raise ReplayNotFoundError("no replay has this id")
        return state

    def work(self, ticket: ReplayTicket, *, deadline: float | None) -> None:
        """Do one step of a replay; raises (so the ticket stays on the queue) only when S3, SQS or DynamoDB fail."""
        state = self._store.read(ticket.replay_id)
        if state is None or state.finished:
            logger.info("replay ticket for no running replay dropped", extra={"replay_id": ticket.replay_id})
            return
        if ticket.offset is None:
            if state.status == "queued":
                self._plan(state)
            return
        if ticket.offset != state.cursor or state.status != "running":
            logger.info("stale replay ticket dropped", extra={"replay_id": state.replay_id, "offset": ticket.offset})
            return
        self._send(state, deadline)

    def _choose_archive(self, request: ReplayRequest, destinations: Mapping[str, Destination]) -> str:
        if request.archive is not None:
            destination = destinations.get(request.archive)
            if destination is None or not isinstance(destination.target, ArchiveTarget):
                raise RequestValidationError([FieldProblem("archive", "no destination of kind s3 has this name")])
            if not self._readable(destination.target, request):
                raise ReplayArchiveUnavailableError(self._unsuitable(request.archive, request))
            return request.archive
        archives = [(name, d.target) for name, d in destinations.items() if isinstance(d.target, ArchiveTarget)]
        if not archives:
            raise ReplayArchiveUnavailableError(
                "no archive is configured: add a destination of kind s3 (the archive) to replay from it"
            )
        # The transcripts' archive first: it keeps every event by default.
        archives.sort(key=lambda pair: pair[0] != self._default_archive)
        for name, target in archives:
            if self._readable(target, request):
                return name
        if request.initial_contact_id is not None:
            raise ReplayArchiveUnavailableError(
                "no archive keeps its events by session: a session replay needs an s3 destination whose key "
                "template starts with {initial_contact_id} (layout session)"
            )
        raise ReplayArchiveUnavailableError(
            "no archive is partitioned by date: a time-range replay needs an s3 destination with layout date "
            "(or a key template starting with {date}); the session layout can only be replayed by session"
        )

    def _unsuitable(self, name: str, request: ReplayRequest) -> str:
        if request.initial_contact_id is not None:
            return f"the archive {name!r} is not kept by session (its key template does not start with the session)"
        return f"the archive {name!r} is not partitioned by date: replay it by session, or use a layout date archive"

    @staticmethod
    def _readable(target: ArchiveTarget, request: ReplayRequest) -> bool:
        if request.initial_contact_id is not None:
            return session_prefix_of(target, request.initial_contact_id) is not None
        window = _window(request.start, request.end)
        return window is not None and day_prefixes(target, *window) is not None

    def _target(self, state: ReplayState) -> ArchiveTarget | None:
        for destination in self._config().destinations:
            if destination.name == state.archive and isinstance(destination.target, ArchiveTarget):
                return destination.target
        return None

    def _plan(self, state: ReplayState) -> None:
        target = self._target(state)
        if target is None:
            self._fail(state, f"the archive {state.archive!r} is no longer configured")
            return
        keys = self._matching_keys(target, state)
        if keys is None:
            self._fail(state, f"more than {MAX_ITEMS} archived items match: replay a narrower range")
            return
        if not keys:
            self._store.planned(state.replay_id, found=0, finished_at=self._clock(), outcome=self._summary(Tally()))
            return
        self._store.keep_keys(state.replay_id, keys)
        self._queue.send(ReplayTicket(state.replay_id, 0))
        self._store.planned(state.replay_id, found=len(keys), finished_at=None, outcome=None)
        logger.info("replay planned", extra={"replay_id": state.replay_id, "found": len(keys)})

    def _matching_keys(self, target: ArchiveTarget, state: ReplayState) -> list[str] | None:
        """The keys of every matching event, in AbsoluteTime order (ties by arrival); None past MAX_ITEMS."""
        window = _window(state.start, state.end)
        if state.initial_contact_id is not None:
            prefixes = [session_prefix_of(target, state.initial_contact_id) or ""]
        else:
            prefixes = (day_prefixes(target, *window) if window else None) or []
        listed: list[ArchivedKey] = []
        for prefix in prefixes:
            for entry in self._archive.keys(target, prefix):
                listed.append(entry)
                if len(listed) > MAX_ITEMS:
                    return None
        pattern = key_pattern(target.key_template)
        ordered: list[tuple[datetime, str, str]] = []
        for entry in listed:
            fields = self._fields(target, pattern, entry.key)
            moment = _parse_time(fields.get("absolute_time", ""))
            if moment is None or not self._wanted(state, fields.get("initial_contact_id"), moment):
                continue
            ordered.append((moment, entry.arrived, entry.key))
        ordered.sort()
        return [key for _, _, key in ordered]

    def _fields(self, target: ArchiveTarget, pattern: re.Pattern[str], key: str) -> dict[str, str]:
        match = pattern.match(key)
        fields = {name: unquote(value) for name, value in (match.groupdict() if match else {}).items()}
        if "absolute_time" not in fields or "initial_contact_id" not in fields:
            # A template without the time in the key: the object says (one GET per item, at planning only).
            event = self._readable_event(target, key)
            if event is None:
                return {}
            fields = {"absolute_time": event.timestamp, "initial_contact_id": str(event.data.get("initial_contact_id"))}
        return fields

    def _readable_event(self, target: ArchiveTarget, key: str) -> RelayEvent | None:
        """The archived event, or None (logged) when it is gone or is not an event: nothing to send again."""
        try:
            event = self._archive.read_event(target, key)
        except (ValueError, UnicodeDecodeError) as exc:
            logger.warning("archived object unreadable; not replayed", extra={"key": key, "error": type(exc).__name__})
            return None
        if event is None:
            logger.warning("archived object gone; not replayed", extra={"key": key})
        return event

    @staticmethod
    def _wanted(state: ReplayState, session: str | None, moment: datetime) -> bool:
        if state.initial_contact_id is not None:
            # A template that does not end the session id with a literal also lists a longer id's items.
            return session == state.initial_contact_id
        window = _window(state.start, state.end)
        return window is not None and window[0] <= moment < window[1]

    def _send(self, state: ReplayState, deadline: float | None) -> None:
        keys = self._store.keys(state.replay_id)
        target = self._target(state)
        try:
            destination = self._relay.destination(state.destination)
        except DestinationUnknownError:
            self._fail(state, f"the destination {state.destination!r} is no longer configured")
            return
        if target is None:
            self._fail(state, f"the archive {state.archive!r} is no longer configured")
            return
        # No event is started in the last part of the step's time (``deadline`` already keeps the bookkeeping's
        # margin): a third of it, at most CHUNK_MARGIN_SECONDS, so even a short invocation makes progress.
        margin = 0.0 if deadline is None else min(CHUNK_MARGIN_SECONDS, (deadline - time.monotonic()) / 3)
        tally, position = Tally(), state.cursor
        end = min(len(keys), state.cursor + CHUNK_EVENTS)
        while position < end and (deadline is None or deadline - time.monotonic() > margin):
            event = self._readable_event(target, keys[position])
            tally = tally.add("skipped" if event is None else self._deliver(destination, event, deadline))
            position += 1
        done = position >= len(keys)
        if not done:
            self._queue.send(ReplayTicket(state.replay_id, position))
        total = _sum(state.tally, tally)
        finished = (self._clock(), self._summary(total)) if done else None
        if not self._store.advance(state.replay_id, state.cursor, position, tally, finished=finished):
            logger.warning("replay advanced by another ticket", extra={"replay_id": state.replay_id})
            return
        count("EventsReplayed", position - state.cursor)
        if done:
            logger.info("replay completed", extra={"replay_id": state.replay_id, **total.as_dict()})

    def _deliver(self, destination: Destination, event: RelayEvent, deadline: float | None) -> Outcome:
        if not destination.accepts(event):
            return "skipped"
        # An explicit re-send: the delivery ledger is not asked (the destination may have had it before).
        result = self._relay.redeliver(destination, event, deadline=deadline, resend=True)
        return outcome_of(result, destination)

    def _fail(self, state: ReplayState, reason: str) -> None:
        logger.warning("replay failed", extra={"replay_id": state.replay_id, "reason": reason})
        count("ReplayFailed")
        self._store.fail(state.replay_id, finished_at=self._clock(), outcome=reason)

    @staticmethod
    def _summary(tally: Tally) -> str:
        counts = ", ".join(f"{getattr(tally, name)} {name}" for name in OUTCOMES)
        return f"replayed: {counts}"


def outcome_of(result: DeliveryResult, destination: Destination) -> Outcome:
    """What one replayed delivery came to (its first attempt, settled by the relay like any other)."""
    if result.ok:
        return "delivered"
    if result.held == "parked":
        return "parked"
    if result.held is not None:  # deferred or paced: on the retry path without an attempt
        return "retrying"
    return "retrying" if verdict(result, 1, destination.retry_policy) is Verdict.RETRY else "failed"


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime] | None:
    return None if start is None or end is None else (start, end)


def _sum(first: Tally, second: Tally) -> Tally:
    return Tally(**{name: getattr(first, name) + getattr(second, name) for name in OUTCOMES})
