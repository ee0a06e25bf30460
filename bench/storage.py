"""`make bench` (storage part): archive writes per second and the cost of assembling a 500-item transcript.

Against moto in this process, so the figures measure the relay's own overhead over the same S3 calls, each beside
a baseline measured in the same run: a bare ``put_object`` loop of the same bodies, and a bare ``get_object`` loop
plus ``json`` for the same 500 objects. Targets are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"
WRITES = 200
CHAT_ITEMS = 500
ROUNDS = 3
BUCKET = "bench-archive"
SESSION = "bench-session"


def envelope_events(count: int) -> list[Any]:
    from chalicelib.events import RelayEvent, webhook_id_for

    events = []
    for n in range(count):
        item_id = f"item-{n:05}"
        events.append(
            RelayEvent(
                type="chat.message",
                timestamp=f"2026-11-22T10:{n // 60 % 60:02}:{n % 60:02}.000Z",
                data={
                    "item_id": item_id,
                    "initial_contact_id": SESSION,
                    "contact_id": SESSION if n < count // 2 else "bench-transfer",
                    "related_contact_id": None,
                    "instance_id": "bench-instance",
                    "participant": {"id": f"p-{n % 2}", "role": ("CUSTOMER", "AGENT")[n % 2], "display_name": "X"},
                    "visibility": "ALL",
                    "connect_type": "MESSAGE",
                    "content_type": "text/plain",
                    "content": f"message number {n} " * 4,
                },
                webhook_id=webhook_id_for(item_id),
            )
        )
    return events


def best(measure: Any) -> float:
    """The median of ``ROUNDS`` timings of ``measure()`` (seconds)."""
    return statistics.median(_timed(measure) for _ in range(ROUNDS))


def _timed(measure: Any) -> float:
    started = time.perf_counter()
    measure()
    return time.perf_counter() - started


def main() -> int:
    sys.path.insert(0, str(ROOT))
    # moto in this process: throwaway credentials that no real AWS account accepts.
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    from moto import mock_aws

    from chalicelib import clients
    from chalicelib.adapters.archive import Archive, archive_key
    from chalicelib.destination_kinds import ArchiveTarget
    from chalicelib.transcripts import assemble

    with mock_aws():
        s3 = clients.s3()
        s3.create_bucket(Bucket=BUCKET)
        target = ArchiveTarget(bucket=BUCKET)
        archive = Archive(s3)
        events = envelope_events(WRITES)

        def relay_writes() -> None:
            for event in events:
                archive.write(target, event)

        def bare_writes() -> None:
            for event in events:
                s3.put_object(Bucket=BUCKET, Key=archive_key(target, event), Body=event.body)

        relay_write_s, bare_write_s = best(relay_writes), best(bare_writes)
        relay_wps, bare_wps = WRITES / relay_write_s, WRITES / bare_write_s
        print(
            f"archive writes (moto):        relay {relay_wps:6.0f} /s   bare put_object {bare_wps:6.0f} /s"
            f"   ratio {relay_wps / bare_wps:.2f} (target >= 0.8)"
        )

        keys = [archive_key(target, event) for event in events[:CHAT_ITEMS]]

        def relay_assembly() -> None:
            assemble(SESSION, archive.session_events(target, SESSION), version=1)

        def bare_reads() -> None:
            [json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys]

        archived = archive.session_events(target, SESSION)
        relay_read_s, bare_read_s = best(relay_assembly), best(bare_reads)
        pure_s = best(lambda: assemble(SESSION, archived, version=1))
        print(
            f"assembly of a {CHAT_ITEMS}-item chat:  relay {relay_read_s * 1000:6.0f} ms (read + assemble)"
            f"   bare sequential GETs {bare_read_s * 1000:6.0f} ms   ratio {relay_read_s / bare_read_s:.2f}"
            f" (target <= 1)   assembly alone {pure_s * 1000:.1f} ms"
        )
    results = {
        "archive_writes": {"relay_per_s": relay_wps, "bare_put_per_s": bare_wps, "ratio": relay_wps / bare_wps},
        "assembly_500": {
            "relay_ms": relay_read_s * 1000,
            "bare_gets_ms": bare_read_s * 1000,
            "ratio": relay_read_s / bare_read_s,
            "assembly_alone_ms": pure_s * 1000,
        },
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "storage.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
