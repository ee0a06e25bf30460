"""The relay's command line for operators, run with the stage's AWS credentials.

    python -m chalicelib.cli --stage prod enable NAME
    python -m chalicelib.cli --stage prod redrive NAME [--kind dead-letters|undelivered] [--limit N]
    python -m chalicelib.cli --stage prod replay NAME (--session ID | --from TIME --to TIME) [--archive S3_NAME]
    python -m chalicelib.cli --stage prod reprocess-failed [--queue-url URL] [--limit N]

``--stage`` takes the stage's settings from ``.chalice/config.json`` (variables already set win); without it the
environment must hold them, as in Lambda.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from chalicelib import dependencies
from chalicelib.adapters.failed_invocations import ReprocessSummary
from chalicelib.archive_replay import (
    ReplayArchiveUnavailableError,
    ReplayDestinationUnknownError,
    ReplayState,
    parse_request,
)
from chalicelib.errors import RequestValidationError
from chalicelib.health import HealthReplayBusyError, ReplayProgress
from chalicelib.redrive import KINDS, RedriveSummary
from chalicelib.relay import DestinationUnknownError, Relay

CONFIG_FILE = Path(__file__).parent.parent / ".chalice" / "config.json"
# Each call replays for this long, then gives its lease up and takes it again: a second operator waits less.
CALL_SECONDS = 60.0
# A replay that makes no progress (breaker open, rate spent) is tried again after this; given up after STALLS.
STALL_PAUSE_SECONDS = 1.0
STALLS = 30
BAR_WIDTH = 30
# How often the replay command reads the replay's progress.
POLL_SECONDS = 1.0


def main(argv: list[str] | None = None, out: TextIO = sys.stderr) -> int:
    """Run one command; the exit status is 0 on success."""
    parser = argparse.ArgumentParser(prog="python -m chalicelib.cli", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stage", help="take the stage's settings from .chalice/config.json")
    commands = parser.add_subparsers(dest="command", required=True)
    enable = commands.add_parser(
        "enable", help="re-enable a destination: replay its parked events in order, then enable it"
    )
    enable.add_argument("name", help="the destination's name")
    redrive = commands.add_parser(
        "redrive", help="put a destination's dead letters and undelivered copies back on the retry queue"
    )
    redrive.add_argument("name", help="the destination's name")
    redrive.add_argument("--kind", choices=KINDS, action="append", help="only this kind (repeatable); default both")
    redrive.add_argument("--limit", type=int, default=None, help="stop after this many (run again to go on)")
    replay = commands.add_parser(
        "replay",
        help="send a session's or a time range's archived events again to one destination, original webhook-ids",
    )
    replay.add_argument("name", help="the destination's name")
    replay.add_argument("--session", help="the session's initial contact id")
    replay.add_argument("--from", dest="start", help="the range's start, ISO 8601 with its offset (included)")
    replay.add_argument("--to", dest="end", help="the range's end (excluded); at most 31 days after --from")
    replay.add_argument(
        "--archive",
        help="the s3 destination to read (default: TRANSCRIPT_ARCHIVE's, else the first that can be listed so)",
    )
    replay.add_argument("--no-wait", action="store_true", help="queue it and print its id; do not follow it")
    reprocess = commands.add_parser(
        "reprocess-failed",
        help="invoke each event of the failed-invocations queue again (asynchronously) in the function that failed",
    )
    reprocess.add_argument("--queue-url", help="default: the stage's connect-chat-relay-<stage>-failed-invocations")
    reprocess.add_argument("--limit", type=int, default=None, help="stop after this many (run again to go on)")
    args = parser.parse_args(argv)
    if args.stage and not _stage_environment(args.stage):
        parser.error(f"--stage {args.stage}: no such stage in {CONFIG_FILE.name}")
    if args.command == "replay":
        body = {"destination": args.name, "initial_contact_id": args.session, "archive": args.archive}
        body |= {"from": args.start, "to": args.end} if args.start or args.end else {}
        return replay_archive({key: value for key, value in body.items() if value is not None}, not args.no_wait, out)
    if args.command == "reprocess-failed":
        return reprocess_failed(args.queue_url, args.limit, out)
    if args.command == "redrive":
        return redrive_destination(args.name, tuple(args.kind or KINDS), args.limit, out)
    return enable_destination(args.name, out)


def redrive_destination(name: str, kinds: tuple[str, ...], limit: int | None, out: TextIO) -> int:
    """Re-queue ``name``'s kept deliveries with a running count and a summary; resumable (run it again)."""

    def progress(summary: RedriveSummary) -> None:
        done = summary.requeued + summary.refused
        out.write(f"\r{name} [{'#' * min(BAR_WIDTH, done // 10):<{BAR_WIDTH}}] {summary.requeued} re-queued")
        out.flush()

    print(f"redrive {name}: {', '.join(kinds)}", file=out)
    summary = dependencies.redrive().run(name, kinds=kinds, limit=limit, progress=progress)
    print(
        f"\nrequeued={summary.requeued} refused={summary.refused} unreadable={summary.unreadable} "
        f"complete={'yes' if summary.complete else 'no (run again)'}",
        file=out,
    )
    return 0 if summary.refused == 0 and summary.unreadable == 0 else 1


def replay_archive(body: dict[str, str], wait: bool, out: TextIO) -> int:
    """Queue a replay on the stage's retry queue (its retry_deliveries does the work), then follow it with a
    progress bar until it has finished; the exit status is 0 when every event was delivered or is retrying."""
    replays = dependencies.archive_replays()
    try:
        state = replays.start(parse_request(body))
    except RequestValidationError as exc:
        for problem in exc.problems:
            print(f"error: {problem.field}: {problem.problem}", file=out)
        return 2
    except (ReplayDestinationUnknownError, ReplayArchiveUnavailableError) as exc:
        print(f"error: {exc}", file=out)
        return 2
    print(f"replay {state.replay_id} to {state.destination} from the archive {state.archive!r}: queued", file=out)
    if not wait:
        return 0
    while not state.finished:
        time.sleep(POLL_SECONDS)
        state = replays.status(state.replay_id)
        total = state.found or 0
        filled = BAR_WIDTH if total == 0 else BAR_WIDTH * state.cursor // total
        out.write(f"\r{state.destination} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {state.cursor}/{total} sent")
        out.flush()
    _replay_summary(state, out)
    return 0 if state.status == "completed" and state.tally.failed == 0 else 1


def _replay_summary(state: ReplayState, out: TextIO) -> None:
    counts = " ".join(f"{name}={value}" for name, value in state.tally.as_dict().items())
    print(f"\n{state.status}: found={state.found} {counts}", file=out)
    if state.outcome:
        print(state.outcome, file=out)


def reprocess_failed(queue_url: str | None, limit: int | None, out: TextIO) -> int:
    """Hand the failed invocations' events back to their functions, with a running count and a summary."""

    def progress(summary: ReprocessSummary) -> None:
        out.write(f"\rreprocess-failed: {summary.reprocessed} invoked again")
        out.flush()

    summary = dependencies.failed_invocations(queue_url).reprocess(limit=limit, progress=progress)
    print(
        f"\nreprocessed={summary.reprocessed} refused={summary.refused} unreadable={summary.unreadable} "
        f"other_functions={summary.foreign} complete={'yes' if summary.complete else 'no (run again)'}",
        file=out,
    )
    return 0 if summary.refused == summary.unreadable == summary.foreign == 0 else 1


def enable_destination(name: str, out: TextIO) -> int:
    """Replay ``name``'s parked events with a progress bar until it is enabled; resumable (run it again)."""
    relay = dependencies.relay()
    try:
        relay.destination(name)
    except DestinationUnknownError as exc:
        print(f"error: {exc}", file=out)
        return 2
    replayed, stalls = 0, 0
    while True:
        try:
            progress = _one_call(relay, name, replayed, out)
        except HealthReplayBusyError as exc:
            print(f"error: {exc}; try again when it has finished", file=out)
            return 3
        replayed += progress.replayed
        if progress.done:
            _bar(out, name, replayed, 0)
            print(f"\n{name}: enabled; {replayed} parked events replayed in order", file=out)
            return 0
        if progress.status == "disabled":
            print(f"\n{name}: disabled again during the replay; {progress.remaining} events stay parked", file=out)
            return 1
        stalls = 0 if progress.replayed else stalls + 1
        if stalls >= STALLS:
            print(f"\n{name}: not answering; {progress.remaining} events stay parked (run again to resume)", file=out)
            return 1
        if not progress.replayed:
            time.sleep(STALL_PAUSE_SECONDS)


def _one_call(relay: Relay, name: str, replayed_before: int, out: TextIO) -> ReplayProgress:
    deadline = time.monotonic() + CALL_SECONDS
    return relay.enable(
        name,
        time_left=lambda: deadline - time.monotonic(),
        on_replayed=lambda p: _bar(out, name, replayed_before + p.replayed, p.remaining),
    )


def _bar(out: TextIO, name: str, replayed: int, remaining: int) -> None:
    total = replayed + remaining
    filled = BAR_WIDTH if total == 0 else BAR_WIDTH * replayed // total
    out.write(f"\r{name} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {replayed}/{total} replayed")
    out.flush()


def _stage_environment(stage: str) -> bool:
    config = json.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    if stage not in config["stages"]:
        return False
    environment = {**config.get("environment_variables", {}), **config["stages"][stage]["environment_variables"]}
    for key, value in environment.items():
        os.environ.setdefault(key, value)
    dependencies.reset()
    return True


if __name__ == "__main__":
    sys.exit(main())
