"""`make bench` (reconciliation part): comparing a 1,000-item chat's transcript with its archive, time and memory.

The relay's work (parse Connect's object through the stream's item parser, compare with the archived envelopes,
build the recovered events) beside a baseline measured in the same run: ``json.loads`` of the same object and a
set difference of the item ids, the least any comparison must do. Targets are reported, never asserted.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import answer_help

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"
ITEMS = 1_000
LOST = 50
ROUNDS = 5
SESSION = "bench-session"


def transcript(count: int) -> bytes:
    """A Connect transcript object of ``count`` messages, in Connect's shape."""
    items = [
        {
            "AbsoluteTime": f"2026-11-22T10:{n // 60 % 60:02}:{n % 60:02}.{n % 1000:03}Z",
            "Content": f"message number {n} " * 4,
            "ContentType": "text/plain",
            "Id": f"item-{n:05}",
            "Type": "MESSAGE",
            "ParticipantId": f"p-{n % 2}",
            "DisplayName": ("Customer", "Sam")[n % 2],
            "ParticipantRole": ("CUSTOMER", "AGENT")[n % 2],
        }
        for n in range(count)
    ]
    document = {
        "Version": "2019-08-26",
        "AWSAccountId": "111122223333",
        "InstanceId": "bench-instance",
        "InitialContactId": SESSION,
        "ContactId": SESSION,
        "Participants": [{"ParticipantId": "p-0"}, {"ParticipantId": "p-1"}],
        "Transcript": items,
    }
    return json.dumps(document).encode()


def measured(work: Callable[[], object]) -> tuple[float, float]:
    """(median milliseconds over ``ROUNDS``, peak traced KiB of one run)."""
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        work()
        timings.append((time.perf_counter() - started) * 1000)
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()
    return statistics.median(timings), peak


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from chalicelib.events import event_from_chat_item
    from chalicelib.reconciliation import parse_connect_transcript, reconcile

    body = transcript(ITEMS)
    parsed = parse_connect_transcript(body)
    archived: list[dict[str, Any]] = [event_from_chat_item(item).envelope() for item in parsed.items[LOST:]]

    def relay() -> object:
        return reconcile(SESSION, [parse_connect_transcript(body)], archived)

    def baseline() -> object:
        ids = {entry["Id"] for entry in json.loads(body)["Transcript"]}
        return ids - {envelope["data"]["item_id"] for envelope in archived}

    result = reconcile(SESSION, [parsed], archived)
    assert len(result.recovered) == LOST
    relay_ms, relay_kib = measured(relay)
    base_ms, base_kib = measured(baseline)
    print(
        f"reconcile {ITEMS} items ({LOST} lost): relay {relay_ms:7.1f} ms {relay_kib:8.0f} KiB peak"
        f"   json.loads + set difference {base_ms:6.1f} ms {base_kib:7.0f} KiB"
        f"   ratio {relay_ms / base_ms:.1f}x time, {relay_kib / base_kib:.1f}x memory"
    )
    results = {
        "items": ITEMS,
        "lost": LOST,
        "relay_ms": relay_ms,
        "relay_peak_kib": relay_kib,
        "baseline_ms": base_ms,
        "baseline_peak_kib": base_kib,
        "time_ratio": relay_ms / base_ms,
        "memory_ratio": relay_kib / base_kib,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "reconciliation.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    answer_help(__doc__)
    sys.exit(main())
