"""`make bench` (storage part): archive writes per second and the cost of assembling a 500-item transcript.

Against moto in this process, so the figures measure the relay's own overhead over the same S3 calls, each beside
a baseline measured in the same run: a bare ``put_object`` loop of the same bodies, and for the 500-item chat two
baselines, a naive one (sequential ``get_object`` + ``json`` of the known keys) and a competent one (listing the
session's keys, then the same GETs from a thread pool of eight over the one client, as the archive reads). Each
set is timed in turns (the machine is shared). Targets are reported, never asserted. Where the archive write spends
its time beyond the bare loop is broken down: the relay's own work (key, metadata) against the extra headers S3
(moto) handles (metadata, SSE-KMS).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench import answer_help

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


def interleaved(*measures: Any) -> list[float]:
    """The median of ``ROUNDS`` timings of each measure, taken in turns, so that a change in the machine's load
    between them (the machine is shared) weighs on each alike."""
    timings: list[list[float]] = [[] for _ in measures]
    for _ in range(ROUNDS):
        for timing, measure in zip(timings, measures, strict=True):
            timing.append(_timed(measure))
    return [statistics.median(timing) for timing in timings]


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
    from chalicelib.adapters.archive import Archive, archive_key, object_metadata
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

        def headed_writes() -> None:
            # The bare loop with the relay's headers: what S3 does with metadata and SSE-KMS, not the relay.
            for event in events:
                s3.put_object(
                    Bucket=BUCKET,
                    Key=archive_key(target, event),
                    Body=event.body,
                    ContentType="application/json",
                    Metadata=object_metadata(event),
                    ServerSideEncryption="aws:kms",
                    BucketKeyEnabled=True,
                )

        def relay_own_work() -> None:
            for event in events:
                archive_key(target, event)
                object_metadata(event)

        relay_write_s, bare_write_s, headed_write_s = interleaved(relay_writes, bare_writes, headed_writes)
        own_s = best(relay_own_work)
        relay_wps, bare_wps = WRITES / relay_write_s, WRITES / bare_write_s
        print(
            f"archive writes (moto):        relay {relay_wps:6.0f} /s   bare put_object {bare_wps:6.0f} /s"
            f"   ratio {relay_wps / bare_wps:.2f} (target >= 0.8)"
        )
        per_write = (relay_write_s - bare_write_s) / WRITES * 1e6
        print(
            f"  where a write's {per_write:.0f} us over the bare loop go: the same put with the relay's headers"
            f" {(headed_write_s - bare_write_s) / WRITES * 1e6:.0f} us, key + metadata {own_s / WRITES * 1e6:.0f} us"
        )

        # The chat: CHAT_ITEMS items of one session (the write loop above kept fewer).
        chat = envelope_events(CHAT_ITEMS)
        for event in chat:
            archive.write(target, event)
        keys = [archive_key(target, event) for event in chat]

        def relay_assembly() -> None:
            assemble(SESSION, archive.session_events(target, SESSION), version=1)

        def bare_reads() -> None:
            [json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()) for key in keys]

        pool = ThreadPoolExecutor(max_workers=8)

        def pooled_reads() -> None:
            # What any reader of a session must do too: list its keys, then GET them from a pool.
            listed = [
                obj["Key"]
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"sessions/{SESSION}/")
                for obj in page.get("Contents", [])
            ]
            list(pool.map(lambda key: json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()), listed))

        archived = archive.session_events(target, SESSION)
        relay_read_s, bare_read_s, pooled_read_s = interleaved(relay_assembly, bare_reads, pooled_reads)
        pure_s = best(lambda: assemble(SESSION, archived, version=1))
        print(
            f"assembly of a {CHAT_ITEMS}-item chat:  relay {relay_read_s * 1000:6.0f} ms (list + read + assemble)"
            f"   naive sequential GETs {bare_read_s * 1000:6.0f} ms   ratio {relay_read_s / bare_read_s:.2f}"
            f" (target <= 1)"
        )
        print(
            f"  competent list + pooled GETs (8 threads) {pooled_read_s * 1000:6.0f} ms   ratio"
            f" {relay_read_s / pooled_read_s:.2f}   assembly alone {pure_s * 1000:.1f} ms"
        )
    results = {
        "archive_writes": {
            "relay_per_s": relay_wps,
            "bare_put_per_s": bare_wps,
            "ratio": relay_wps / bare_wps,
            "headers_us_per_write": (headed_write_s - bare_write_s) / WRITES * 1e6,
            "key_and_metadata_us_per_write": own_s / WRITES * 1e6,
        },
        "assembly_500": {
            "relay_ms": relay_read_s * 1000,
            "bare_gets_ms": bare_read_s * 1000,
            "ratio": relay_read_s / bare_read_s,
            "pooled_gets_ms": pooled_read_s * 1000,
            "ratio_to_pooled": relay_read_s / pooled_read_s,
            "assembly_alone_ms": pure_s * 1000,
        },
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "storage.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    answer_help(__doc__)
    sys.exit(main())
