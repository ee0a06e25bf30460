"""`make bench`: the relay's speed, each figure against a baseline measured in the same run, on loopback.

Receivers are real HTTP servers on 127.0.0.1 (lean asyncio ones, in a process of their own).

1. Throughput through ``on_chat_message`` (the real Lambda entry point, middleware included) with 1 and with 10
   destinations, against two baselines. The naive one: sequential ``requests.post`` per destination with a new
   connection each time, which is what the public samples do. Target: at least 3x it with 10 destinations. The
   competent one: ``standardwebhooks`` signing and a thread pool over keep-alive urllib3 pools, one POST per
   destination, which is what a careful engineer writes with well-known libraries. Target: at least 1x it with
   10 destinations.
2. Fan-out wall time to 10 destinations that each answer after 100 ms, as a ratio to one such destination.
   Target: at most 1.3.
3. Time per event to 10 destinations that each answer after 20 to 80 ms (closer to real networks, where
   concurrency matters more than CPU per request), against both baselines.
4. The relay's time per delivery (sign, headers, pooled POST, result) against a bare pooled urllib3 POST of the
   same body to the same receiver. Target: at most 1.25.
5. The retry path: deliveries per second through ``retry_deliveries`` (the real entry point, tickets in batches
   of ten as SQS hands them over, each read, gated, signed afresh, posted and settled), against the competent
   baseline's deliveries per second to the same receiver. Reported, no target.
6. The delivery ledger's cost: throughput through ``on_chat_message`` to 10 destinations with the ledger (one
   BatchGetItem before the fan-out, one BatchWriteItem after, against moto in the same process) and without it
   (``DELIVERIES_TABLE_NAME`` unset), interleaved. Reported, no target.

Figures 1 to 4 run the relay without the delivery ledger: the baselines keep no such bookkeeping, and moto, in
the bench's own process, spends on each ledger call milliseconds of the CPU the relay and the baselines share,
where DynamoDB costs a Lambda a network round trip and little CPU. What the ledger costs here is figure 6.

Every round sends items the relay has not seen (fresh item ids, so fresh webhook-ids): a repeated item would be
skipped by the delivery ledger, and the round would measure no deliveries.

Targets are reported, never asserted: CI does not fail on them. Results go to .bench/results.json.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import answer_help

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".bench"
ITEMS = int(os.environ.get("BENCH_ITEMS", "200"))
FANOUT_ROUNDS = int(os.environ.get("BENCH_FANOUT_ROUNDS", "10"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "1000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def sns_event(index: int) -> dict[str, Any]:
    """A customer's message as the relay's SNS subscription receives it."""
    item = {
        "AbsoluteTime": "2026-11-22T10:00:00.000Z",
        "Content": f"Message {index}: " + "my order has not arrived yet, can you help? " * 4,
        "ContentType": "text/plain",
        "Id": f"bench-item-{index:08d}",
        "Type": "MESSAGE",
        "ParticipantId": "cust-0001",
        "DisplayName": "Jane",
        "ParticipantRole": "CUSTOMER",
        "InitialContactId": "a1b2c3d4-0000-4000-8000-000000000001",
        "ContactId": "a1b2c3d4-0000-4000-8000-000000000001",
    }
    attributes = {
        "InitialContactId": item["InitialContactId"],
        "ContactId": item["ContactId"],
        "ParticipantRole": "CUSTOMER",
        "InstanceId": "12345678-1234-1234-1234-123456789012",
        "AccountId": "111122223333",
        "Type": "MESSAGE",
        "ContentType": "text/plain",
        "MessageVisibility": "ALL",
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": "arn:aws:sns:us-east-1:111122223333:connect-chat-relay-dev-stream:bench",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"bench-{index:08d}",
                    "TopicArn": "arn:aws:sns:us-east-1:111122223333:connect-chat-relay-dev-stream",
                    "Subject": None,
                    "Message": json.dumps(item, separators=(",", ":")),
                    "Timestamp": "2026-11-22T10:00:00.010Z",
                    "SignatureVersion": "1",
                    "Signature": "EXAMPLE",
                    "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
                    "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
                    "MessageAttributes": {k: {"Type": "String", "Value": v} for k, v in attributes.items()},
                },
            }
        ]
    }


def fresh(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same items under ids never sent before: the delivery ledger would skip an item already delivered."""
    run = next(_ROUND)
    copies = []
    for event in events:
        record = event["Records"][0]["Sns"]
        item = json.loads(record["Message"])
        item["Id"] = f"{item['Id']}-r{run}"
        copies.append({**event, "Records": [{**event["Records"][0], "Sns": {**record, "Message": json.dumps(item)}}]})
    return copies


_ROUND = itertools.count()


@contextlib.contextmanager
def relay_environment(urls: list[str], *, ledger: bool = True) -> Iterator[None]:
    """The dev stage's settings, and a destinations file naming ``urls``; ``ledger`` False unsets
    DELIVERIES_TABLE_NAME (no bookkeeping of 2xx answers)."""
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    env = {**config["environment_variables"], **config["stages"]["dev"]["environment_variables"]}
    OUT.mkdir(exist_ok=True)
    path = OUT / f"destinations-{len(urls)}.json"
    destinations = [
        {"name": f"d{i}", "url": url, "secrets": [secret()], "allow_http": True, "allow_private_network": True}
        for i, url in enumerate(urls)
    ]
    path.write_text(json.dumps({"version": 1, "allow_literal_secrets": True, "destinations": destinations}))
    saved = dict(os.environ)
    os.environ.update(
        {
            **env,
            "RELAY_CONFIG_FILE": str(path),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "DELIVERIES_TABLE_NAME": env["DELIVERIES_TABLE_NAME"] if ledger else "",
        }
    )
    from moto import mock_aws

    from chalicelib import clients, dependencies
    from chalicelib.adapters.sessions_table import table_definition

    dependencies.reset()
    try:
        # Destination health reads its table (once per destination and cache period), the delivery ledger its own
        # (once per event, and one write): moto, in-process.
        with mock_aws():
            # The stream function records each session's items (the sweep's and late items' bookkeeping).
            clients.dynamodb().create_table(**table_definition(env["SESSIONS_TABLE_NAME"]))
            clients.dynamodb().create_table(
                TableName=env["HEALTH_TABLE_NAME"],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            clients.dynamodb().create_table(
                TableName=env["DELIVERIES_TABLE_NAME"],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        dependencies.reset()


def relay_handler() -> Callable[[dict[str, Any]], Any]:
    from app import app

    handler = app.handler_map["on_chat_message"]
    return lambda event: handler(event, None)


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


Deliver = Callable[[dict[str, Any]], object]


def naive_baseline(urls: list[str]) -> Deliver:
    """Sequential ``requests.post`` per destination, a new connection each time: what the public samples do."""
    import requests

    def deliver(event: dict[str, Any]) -> object:
        record = event["Records"][0]["Sns"]
        body = json.dumps({"type": "chat.message", "data": json.loads(record["Message"])})
        for url in urls:
            requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=10)
        return None

    return deliver


@contextlib.contextmanager
def competent_baseline(urls: list[str]) -> Iterator[Deliver]:
    """Standard Webhooks signing and a thread pool over keep-alive urllib3 pools, one POST per destination."""
    import urllib3
    from standardwebhooks import Webhook

    hooks = [Webhook(secret()) for _ in urls]
    pools = urllib3.PoolManager(num_pools=len(urls) + 1, maxsize=4, retries=False)
    timeout = urllib3.Timeout(connect=5.0, read=10.0)

    def post(url: str, hook: Webhook, webhook_id: str, sent_at: datetime, body: str) -> int:
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": hook.sign(webhook_id, sent_at, body),
        }
        return pools.request("POST", url, body=body, headers=headers, redirect=False, timeout=timeout).status

    with ThreadPoolExecutor(max_workers=16) as executor:

        def deliver(event: dict[str, Any]) -> object:
            record = event["Records"][0]["Sns"]
            item = json.loads(record["Message"])
            envelope = {"type": "chat.message", "timestamp": item["AbsoluteTime"], "data": item}
            body = json.dumps(envelope, separators=(",", ":"))
            webhook_id, sent_at = f"msg_{record['MessageId']}", datetime.now(UTC)
            posts = [
                executor.submit(post, url, hook, webhook_id, sent_at, body)
                for url, hook in zip(urls, hooks, strict=True)
            ]
            return [future.result() for future in posts]

        yield deliver
    pools.clear()


def items_per_second(deliver: Deliver, events: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for event in events:
        deliver(event)
    return per_second(len(events), time.perf_counter() - started)


def median_ms(deliver: Deliver, events: list[dict[str, Any]]) -> float:
    times = []
    for event in events:
        started = time.perf_counter()
        deliver(event)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def compare(
    urls: list[str], events: list[dict[str, Any]], measure: Callable[[Deliver, list[dict[str, Any]]], float]
) -> tuple[float, float, float]:
    """``measure`` of the relay, the naive and the competent baseline, to the same receivers.

    Rounds alternate between the three and each figure is the median round, so a burst of load elsewhere on the
    machine lands on all of them rather than on one.
    """
    relay_rounds, naive_rounds, competent_rounds = [], [], []
    with (
        relay_environment(urls, ledger=False),
        contextlib.redirect_stdout(io.StringIO()),
        competent_baseline(urls) as competent,
    ):
        handle = relay_handler()
        naive = naive_baseline(urls)
        for deliver in (handle, naive, competent):
            deliver(events[0])  # warm: the container's first invocation builds its clients and pools
        for _ in range(ROUNDS):
            relay_rounds.append(measure(handle, fresh(events)))
            naive_rounds.append(measure(naive, events))
            competent_rounds.append(measure(competent, events))
    return statistics.median(relay_rounds), statistics.median(naive_rounds), statistics.median(competent_rounds)


def fanout_ratio(slow_urls: list[str], events: list[dict[str, Any]]) -> tuple[float, float]:
    """Median invocation time (ms) with 10 and with 1 destination that each answer after 100 ms."""

    def relay_ms(urls: list[str]) -> float:
        with relay_environment(urls, ledger=False), contextlib.redirect_stdout(io.StringIO()):
            handle = relay_handler()
            handle(events[0])
            return median_ms(handle, fresh(events[1 : FANOUT_ROUNDS + 1]))

    return relay_ms(slow_urls), relay_ms(slow_urls[:1])


def per_delivery(url: str) -> tuple[float, float]:
    """Median µs per delivery: the relay's Fanout to one destination, and a bare pooled urllib3 POST."""
    import urllib3

    from chalicelib.adapters.webhooks import WebhookSender
    from chalicelib.delivery import Fanout
    from chalicelib.destinations import Destination
    from chalicelib.events import RelayEvent

    event = RelayEvent(
        type="chat.message",
        timestamp="2026-11-22T10:00:00.000Z",
        data={"content": "x" * 900, "item_id": "bench"},
        webhook_id="msg_bench",
    )
    body = event.body
    destination = Destination(name="d", url=url, allow_http=True, allow_private_network=True)
    key = [secret()]
    fanout = Fanout(WebhookSender())
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    headers = {"content-type": "application/json"}
    relay_times: list[float] = []
    bare_times: list[float] = []
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(50):  # warm both paths' connections
            fanout.deliver(event, [(destination, key)])
            pool.request("POST", url, body=body, headers=headers, redirect=False)
        # Interleaved, so both see the same machine load.
        for _ in range(DELIVERIES):
            started = time.perf_counter()
            fanout.deliver(event, [(destination, key)])
            relay_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            pool.request("POST", url, body=body, headers=headers, redirect=False)
            bare_times.append(time.perf_counter() - started)
    fanout.close()
    return statistics.median(relay_times) * 1e6, statistics.median(bare_times) * 1e6


def retry_path(urls: list[str], events: list[dict[str, Any]]) -> tuple[float, float]:
    """Deliveries per second through retry_deliveries, and the competent baseline's, to the same receiver."""
    from chalicelib.chat_items import parse_sns_record
    from chalicelib.events import event_from_chat_item
    from chalicelib.retries import Attempt, first_ticket

    class Context:
        aws_request_id = "bench"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 60_000

    def batches_of(round_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        tickets = []
        for event in round_events:
            relay_event = event_from_chat_item(parse_sns_record(event["Records"][0]["Sns"]))
            attempt = Attempt(1, time.time(), 503, "HTTP 503", 1.0)
            tickets.append(first_ticket("d0", relay_event, attempt, 0.0).to_json())
        return [
            {"Records": [{"messageId": f"m-{i}", "receiptHandle": "r", "body": body} for i, body in enumerate(chunk)]}
            for chunk in (tickets[start : start + 10] for start in range(0, len(tickets), 10))
        ]

    retry_rounds, competent_rounds = [], []
    with relay_environment(urls), contextlib.redirect_stdout(io.StringIO()), competent_baseline(urls) as competent:
        from app import app

        handler = app.handler_map["retry_deliveries"]
        handler(batches_of(fresh(events[:10]))[0], Context())  # warm
        competent(events[0])
        for _ in range(ROUNDS):
            batches = batches_of(fresh(events))
            started = time.perf_counter()
            for batch in batches:
                handler(batch, Context())
            retry_rounds.append(per_second(len(events), time.perf_counter() - started))
            competent_rounds.append(items_per_second(competent, events))
    return statistics.median(retry_rounds), statistics.median(competent_rounds)


def ledger_cost(urls: list[str], events: list[dict[str, Any]]) -> tuple[float, float]:
    """Items per second through on_chat_message to ``urls`` with the delivery ledger and without it, interleaved
    rounds of items never sent before, each figure the median round."""
    with_rounds: list[float] = []
    without_rounds: list[float] = []
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(ROUNDS):
            for ledger, rounds in ((True, with_rounds), (False, without_rounds)):
                with relay_environment(urls, ledger=ledger):
                    handle = relay_handler()
                    handle(fresh(events[:1])[0])  # warm: clients, pools, the first ledger call
                    rounds.append(items_per_second(handle, fresh(events)))
    return statistics.median(with_rounds), statistics.median(without_rounds)


@contextlib.contextmanager
def receiver_processes(processes: int, per_process: int, delay: str) -> Iterator[list[str]]:
    """Receivers in processes of their own, so they do not share the relay's interpreter lock."""
    import subprocess

    children = [
        subprocess.Popen(
            [sys.executable, "-m", "scripts.receivers", str(per_process), delay, "600"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    try:
        urls: list[str] = []
        for child in children:
            assert child.stdout is not None
            urls.extend(json.loads(child.stdout.readline()))
        yield urls
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=30)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    events = [sns_event(i) for i in range(ITEMS)]
    with (
        receiver_processes(processes=1, per_process=10, delay="0") as fast_urls,
        receiver_processes(processes=1, per_process=10, delay="0.1") as slow_urls,
        receiver_processes(processes=1, per_process=10, delay="0.02:0.08") as spread_urls,
    ):
        print(f"connect-chat-relay bench: {ITEMS} items, loopback receivers, {os.cpu_count()} cores", flush=True)
        print("(throughput, fan-out and 20-80 ms: the relay without its delivery ledger, priced on its own below)")
        relay1, naive1, competent1 = compare(fast_urls[:1], events, items_per_second)
        print(
            f"throughput, 1 destination:    relay {relay1:6.0f} items/s   naive {naive1:6.0f} items/s"
            f" x{relay1 / naive1:.2f}"
            f"   competent {competent1:6.0f} items/s x{relay1 / competent1:.2f}"
        )
        relay10, naive10, competent10 = compare(fast_urls, events, items_per_second)
        naive_ratio, competent_ratio = relay10 / naive10, relay10 / competent10
        print(
            f"throughput, 10 destinations:  relay {relay10:6.0f} items/s   naive {naive10:6.0f} items/s"
            f" x{naive_ratio:.2f} (target >= 3)   competent {competent10:6.0f} items/s x{competent_ratio:.2f}"
            " (target >= 1)"
        )
        ten_ms, one_ms = fanout_ratio(slow_urls, events)
        fan_ratio = ten_ms / one_ms
        print(
            f"fan-out to 100 ms receivers:  10 destinations {ten_ms:6.1f} ms   1 destination {one_ms:6.1f} ms"
            f"   ratio {fan_ratio:.2f} (target <= 1.3)"
        )
        spread_events = events[: FANOUT_ROUNDS + 1]
        relay_spread, naive_spread, competent_spread = compare(spread_urls, spread_events, median_ms)
        print(
            f"10 receivers, 20-80 ms:       relay {relay_spread:6.1f} ms/event   naive {naive_spread:6.1f} ms/event"
            f"   competent {competent_spread:6.1f} ms/event   ratio to competent {relay_spread / competent_spread:.2f}"
        )
        retry_rate, competent_rate = retry_path(fast_urls[:1], events)
        print(
            f"retry path, 1 destination:    retry_deliveries {retry_rate:6.0f} deliveries/s"
            f"   competent {competent_rate:6.0f} deliveries/s   ratio {retry_rate / competent_rate:.2f}"
        )
        with_ledger, without_ledger = ledger_cost(fast_urls, events)
        ledger_ms = (1 / with_ledger - 1 / without_ledger) * 1000
        print(
            f"delivery ledger, 10 dest.:    with {with_ledger:6.0f} items/s   without {without_ledger:6.0f} items/s"
            f"   ratio {with_ledger / without_ledger:.2f}   {ledger_ms:+.2f} ms/event (moto in-process)"
        )
        relay_us, bare_us = per_delivery(fast_urls[0])
        delivery_ratio = relay_us / bare_us
        print(
            f"per delivery:                 relay {relay_us:6.0f} µs   bare pooled POST {bare_us:6.0f} µs"
            f"   ratio {delivery_ratio:.2f} (target <= 1.25)"
        )
    results = {
        "items": ITEMS,
        "throughput_1": {
            "relay_items_per_s": relay1,
            "naive_items_per_s": naive1,
            "competent_items_per_s": competent1,
        },
        "throughput_10": {
            "relay_items_per_s": relay10,
            "naive_items_per_s": naive10,
            "competent_items_per_s": competent10,
            "ratio_to_naive": naive_ratio,
            "ratio_to_competent": competent_ratio,
            "target": ">= 3 x naive, >= 1 x competent",
        },
        "fanout_100ms": {"ten_ms": ten_ms, "one_ms": one_ms, "ratio": fan_ratio, "target": "<= 1.3"},
        "receivers_20_80ms": {"relay_ms": relay_spread, "naive_ms": naive_spread, "competent_ms": competent_spread},
        "retry_path": {
            "retry_deliveries_per_s": retry_rate,
            "competent_deliveries_per_s": competent_rate,
            "ratio": retry_rate / competent_rate,
        },
        "delivery_ledger_10": {
            "with_items_per_s": with_ledger,
            "without_items_per_s": without_ledger,
            "ratio": with_ledger / without_ledger,
            "ms_per_event": ledger_ms,
        },
        "per_delivery": {"relay_us": relay_us, "bare_pooled_us": bare_us, "ratio": delivery_ratio, "target": "<= 1.25"},
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    met = sum([naive_ratio >= 3, competent_ratio >= 1, fan_ratio <= 1.3, delivery_ratio <= 1.25])
    print(
        f"summary: 10-destination throughput x{naive_ratio:.2f} of naive, x{competent_ratio:.2f} of competent, "
        f"fan-out ratio {fan_ratio:.2f}, per-delivery ratio {delivery_ratio:.2f}; {met}/4 targets met"
    )
    return 0


if __name__ == "__main__":
    answer_help(__doc__)
    sys.exit(main())
