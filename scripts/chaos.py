"""`make chaos`: durable delivery under injected faults, on loopback against moto server.

Chat items go through the real ``on_chat_message`` and the retry queue through the real ``retry_deliveries``,
both called as Lambda calls them (an event and a context whose remaining time counts down). Around them:

- receivers on 127.0.0.1 that fail at random: 500s, answers later than the timeout, dropped connections, answers
  trickled a byte at a time, 429 with Retry-After; one answers 410 Gone; one is down (connections refused) for a
  long window and then comes back;
- the relay interrupted at random: an exception in the middle of a fan-out (after the requests went out, before
  any result was settled), an invocation with little time left (a fan-out or a retry batch cut short), and retry
  batches whose invocation dies before its answer (the whole batch comes back);
- AWS failing at random (one moto server per service, two for DynamoDB, each in a process of its own): botocore
  ``before-send`` hooks on the relay's own SQS, S3 and DynamoDB clients answer throttling and 5xx instead of moto,
  which botocore retries and, when every retry fails, the relay survives;
- Lambda's side played faithfully: a failed invocation of ``on_chat_message`` is retried twice, then lands in the
  on-failure queue, which the operator replays at the end; SQS redelivers what a batch did not settle after its
  visibility timeout; the operator redrives S3's undelivered copies (written when SQS failed too).

The retry schedule is compressed by ``--factor`` (default 3000: svix's 27.6 hours become about 33 seconds).
It ends with ``chaos: sent=N destinations=M delivered=D parked=P dead=X lost=L duplicate_ids=K``, where delivered
counts distinct (destination, webhook-id) pairs a receiver answered 2xx, dead the other pairs kept as dead letters,
parked the pairs endpoint health parked for a disabled destination (the one answering 410), lost what is none of
these; exit status 1 when lost is not 0 (or a signature failed to verify).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from scripts.local_aws import ACCOUNT

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".chaos"
STAGE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
STAGE_ENV: dict[str, str] = {
    **STAGE_CONFIG["environment_variables"],
    **STAGE_CONFIG["stages"]["dev"]["environment_variables"],
}
REGION = "us-east-1"
DEFAULT_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
TIMEOUT_SECONDS = 0.4
EMPTY_POLL_PAUSE = 0.2
SECRET = "whsec_" + "Y2hhb3MtcnVuLXNpZ25pbmcta2V5LTAxMjM0NTY3ODk="  # a throwaway key for loopback only


def cpu_seconds(pid: int | None = None) -> float:
    """User and system CPU seconds of a process (this one by default), from /proc where there is one."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sqs_lambda_event(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The event Lambda's SQS event source mapping hands a function, for messages from ReceiveMessage."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {},
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "awsRegion": REGION,
            }
            for message in messages
        ]
    }


class Context:
    """A Lambda context whose remaining time counts down from ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self._ends_at = time.monotonic() + seconds
        self.aws_request_id = f"chaos-{random.getrandbits(32):08x}"
        self.function_name = "chaos"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends_at - time.monotonic()) * 1000))


# ---------------------------------------------------------------------------------------------------------------
# Receivers


@dataclass
class Behaviour:
    """How a receiver misbehaves: the chance of each fault per request."""

    error_500: float = 0.0
    late: float = 0.0  # answers after the relay's timeout
    drop: float = 0.0  # closes the connection without an answer
    trickle: float = 0.0  # trickles the start of an answer a byte at a time, past the timeout, then hangs up
    throttle: float = 0.0  # 429 with Retry-After: 1
    gone: bool = False  # 410 to everything
    outage: tuple[float, float] | None = None  # seconds after the start: refused connections in between


@dataclass
class Ledger:
    """What one receiver saw: every 2xx (destination, webhook-id), duplicates, bad signatures."""

    delivered: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ChaosReceiver:
    """A webhook receiver on 127.0.0.1 that misbehaves as its ``Behaviour`` says."""

    def __init__(self, name: str, behaviour: Behaviour, rng: random.Random, started: float) -> None:
        from standardwebhooks import Webhook

        self.name = name
        self.behaviour = behaviour
        self.ledger = Ledger()
        self._rng = rng
        self._started = started
        self._verifier = Webhook(SECRET)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.listening = False

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def in_outage(self) -> bool:
        window = self.behaviour.outage
        elapsed = time.monotonic() - self._started
        return window is not None and window[0] <= elapsed < window[1]

    def start(self) -> None:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        server.handle_error = lambda *_: None  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.listening = True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.listening = False

    def tick(self) -> None:
        """Close the listener while the outage lasts (connections refused), open it again after."""
        if self.in_outage() and self.listening:
            self.stop()
        elif not self.in_outage() and not self.listening:
            self.start()

    def choose(self) -> str:
        b = self.behaviour
        if b.gone:
            return "gone"
        roll = self._rng.random()
        for kind, chance in (
            ("500", b.error_500),
            ("late", b.late),
            ("drop", b.drop),
            ("trickle", b.trickle),
            ("throttle", b.throttle),
        ):
            if roll < chance:
                return kind
            roll -= chance
        return "ok"

    def record(self, headers: dict[str, str], body: bytes) -> None:
        try:
            self._verifier.verify(body, headers)
            verified = True
        except Exception:
            verified = False
        with self.ledger.lock:
            self.ledger.delivered[headers.get("webhook-id", "")] += 1
            self.ledger.bad_signatures += not verified


def _handler_for(receiver: ChaosReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 5

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.ledger.lock:
                receiver.ledger.requests += 1
            kind = "drop" if receiver.in_outage() else receiver.choose()
            if kind == "drop":
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)
                return
            if kind == "trickle":
                # The answer's first bytes a quarter of the timeout apart, for twice the timeout, then a hang-up.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    for byte in b"HTTP/1.1":
                        time.sleep(TIMEOUT_SECONDS / 4)
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                return
            if kind == "late":
                time.sleep(TIMEOUT_SECONDS * 2)
            status, extra = {
                "gone": (410, {}),
                "500": (500, {}),
                "throttle": (429, {"Retry-After": "1"}),
            }.get(kind, (204, {}))
            if status == 204:
                # Counted when answered: a 2xx the relay timed out on (late) still reached the receiver.
                receiver.record({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


# ---------------------------------------------------------------------------------------------------------------
# Faults in the relay and in AWS


@dataclass
class Faults:
    """The chances of each injected fault, and what was injected."""

    crash_in_fanout: float = 0.03
    short_invocation: float = 0.1
    batch_dies: float = 0.03
    aws: float = 0.08
    injected: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def roll(self, kind: str, chance: float) -> bool:
        if random.random() < chance:
            with self.lock:
                self.injected[kind] += 1
            return True
        return False


def _uncounted(name: str, value: float = 1, **dimensions: str) -> None:
    """``observability.count`` for the chaos run: nothing is published."""


class RawBody:
    """What botocore reads an injected answer's body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def relay_clients() -> tuple[tuple[str, Any], ...]:
    """The relay's own AWS clients the run hooks into, each with its service's name."""
    from chalicelib import clients

    return (
        ("sqs", clients.sqs()),
        ("s3", clients.s3()),
        ("dynamodb", clients.dynamodb()),
        ("dynamodb", clients.dynamodb_for_health()),
    )


def inject_aws_faults(faults: Faults) -> None:
    """Throttling and 5xx answered in moto's place on the relay's own clients, before anything is sent."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    answers = {
        "sqs": [
            (400, b'{"__type":"com.amazonaws.sqs#ThrottlingException","message":"Rate exceeded"}'),
            (500, b'{"__type":"com.amazonaws.sqs#InternalError","message":"injected"}'),
        ],
        "dynamodb": [
            (400, b'{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}'),
            (500, b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}'),
        ],
        "s3": [
            (503, b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"),
            (500, b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"),
        ],
    }
    for service, client in relay_clients():

        def fail(request: Any, service: str = service, **_: Any) -> AWSResponse | None:
            if not faults.roll(f"aws:{service}", faults.aws):
                return None
            status, body = random.choice(answers[service])
            content_type = "application/xml" if service == "s3" else "application/x-amz-json-1.0"
            headers = HTTPHeaders.from_dict({"Content-Type": content_type})
            return AWSResponse(request.url, status, headers, RawBody(body))

        client.meta.events.register_first(f"before-send.{service}", fail)


def count_aws_calls(calls: Counter[str], lock: threading.Lock) -> None:
    """Count the relay's AWS calls by service and operation (a call botocore retries counts once)."""
    for _, client in relay_clients():

        def counted(model: Any, **_: Any) -> None:
            with lock:
                calls[f"{model.service_model.endpoint_prefix}:{model.name}"] += 1

        client.meta.events.register("before-call", counted)


def route_health_table(client: Any, endpoints: Mapping[str, str]) -> None:
    """Send a DynamoDB client's requests for the health table to a moto server of its own.

    One moto server spent 104 to 123 s of CPU on a full run's DynamoDB calls, in one interpreter, while the relay
    waited on it; the health table (state, breaker, parked events) takes about four fifths of that, the delivery
    ledger and the sessions the rest. The relay reaches every table through one client, as it reaches DynamoDB; a
    request is routed by the table it names (a transaction names only the health table)."""
    marker = f'"TableName": "{STAGE_ENV["HEALTH_TABLE_NAME"]}"'.encode()
    endpoint, health_endpoint = endpoints["dynamodb"], endpoints["dynamodb-health"]

    def route(request: Any, **_: Any) -> None:
        if isinstance(request.body, bytes) and marker in request.body:
            request.url = request.url.replace(endpoint, health_endpoint, 1)

    client.meta.events.register("before-send.dynamodb", route)


class FanoutCrash(RuntimeError):
    """Injected: the invocation dies in the middle of a fan-out."""


def chaotic_fanout(faults: Faults) -> Any:
    """The relay's fan-out with a sender that, at random, raises after its requests went out."""
    from chalicelib.adapters.webhooks import WebhookSender
    from chalicelib.delivery import Fanout

    class ChaoticSender(WebhookSender):
        def send_all(self, posts: Any, executor: Any, *, deadline: float | None = None) -> Any:
            sent = super().send_all(posts, executor, deadline=deadline)
            if faults.roll("crash_in_fanout", faults.crash_in_fanout):
                raise FanoutCrash("injected: the invocation died in the middle of a fan-out")
            return sent

    return Fanout(ChaoticSender())


# ---------------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Plan:
    items: int
    factor: float
    outage: tuple[float, float]
    hot_workers: int
    retry_workers: int
    budget_seconds: float


def chat_record(index: int, run_id: str) -> dict[str, Any]:
    item = {
        "AbsoluteTime": "2026-11-22T10:00:00.000Z",
        "Content": f"chaos item {index}",
        "ContentType": "text/plain",
        "Id": f"{run_id}-{index:06d}",
        "Type": "MESSAGE",
        "ParticipantId": "chaos-customer",
        "DisplayName": "Chaos",
        "ParticipantRole": "CUSTOMER",
        "InitialContactId": f"{run_id}-contact-{index % 50:03d}",
        "ContactId": f"{run_id}-contact-{index % 50:03d}",
    }
    attributes = {
        "InitialContactId": item["InitialContactId"],
        "MessageVisibility": "ALL",
        "Type": "MESSAGE",
        "ContentType": "text/plain",
        "InstanceId": STAGE_ENV["ALLOWED_INSTANCE_IDS"].split(",")[0],
        "ParticipantRole": "CUSTOMER",
    }
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": STAGE_ENV["STREAMING_TOPIC_ARN"] + ":chaos",
                "Sns": {
                    "Type": "Notification",
                    "MessageId": f"sns-{run_id}-{index:06d}",
                    "TopicArn": STAGE_ENV["STREAMING_TOPIC_ARN"],
                    "Subject": None,
                    "Message": json.dumps(item),
                    "Timestamp": "2026-11-22T10:00:00.000Z",
                    "MessageAttributes": {k: {"Type": "String", "Value": v} for k, v in attributes.items()},
                },
            }
        ]
    }


class Run:
    """One chaos run: moto server, receivers, the relay's handlers, the faults, and the final count."""

    def __init__(self, plan: Plan, seed: int) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        random.seed(seed)
        self.faults = Faults()
        self.started = time.monotonic()
        self.stop = threading.Event()
        self.failed_invocations: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.lambda_retries = 0
        self.batches = 0
        self.aws_calls: Counter[str] = Counter()
        OUT.mkdir(exist_ok=True)
        self.receivers: dict[str, ChaosReceiver] = {}
        self.moto = self._start_moto()
        try:
            self.receivers = self._start_receivers()
            self._configure()
        except BaseException:
            self.close()  # a run that cannot start leaves no server behind
            raise

    def _start_moto(self) -> dict[str, subprocess.Popen[bytes]]:
        """One moto server per service, and a second for DynamoDB's health table, each a process of its own: moto's
        CPU is then neither the relay's (nor its GIL), and SQS does not wait behind S3."""
        servers: dict[str, subprocess.Popen[bytes]] = {}
        self.endpoints = {}
        for service in ("sqs", "s3", "dynamodb", "dynamodb-health"):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            servers[service] = subprocess.Popen(  # noqa: S603 - moto's server, from this virtualenv
                [sys.executable, "-m", "scripts.moto_service", "-H", "127.0.0.1", "-p", str(port)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT},
            )
            self.endpoints[service] = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
                time.sleep(0.1)
        return servers

    def _start_receivers(self) -> dict[str, ChaosReceiver]:
        plan = self.plan
        behaviours = {
            "flaky": Behaviour(error_500=0.25, late=0.05),
            "slowpoke": Behaviour(late=0.1, trickle=0.05, error_500=0.05),
            "dropper": Behaviour(drop=0.2, error_500=0.05),
            "throttled": Behaviour(throttle=0.25, error_500=0.05),
            "outage": Behaviour(outage=plan.outage, error_500=0.02),
            "gone": Behaviour(gone=True),
        }
        receivers = {
            name: ChaosReceiver(name, behaviour, random.Random(self.rng.random()), self.started)
            for name, behaviour in behaviours.items()
        }
        for receiver in receivers.values():
            receiver.tick() if receiver.behaviour.outage else receiver.start()
        return receivers

    def _configure(self) -> None:
        schedule = [round(wait / self.plan.factor, 4) for wait in DEFAULT_SCHEDULE]
        config = {
            "version": 1,
            "allow_literal_secrets": True,
            "destinations": [
                {
                    "name": name,
                    "url": receiver.url(),
                    "secrets": [SECRET],
                    "allow_http": True,
                    "allow_private_network": True,
                    "timeout_seconds": TIMEOUT_SECONDS,
                    "retry_schedule": schedule,
                }
                for name, receiver in self.receivers.items()
            ],
        }
        (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        os.environ.update(
            {
                **STAGE_ENV,
                "AWS_ACCESS_KEY_ID": "chaos",
                "AWS_SECRET_ACCESS_KEY": "chaos",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": self.endpoints["sqs"],
                "AWS_ENDPOINT_URL_SQS": self.endpoints["sqs"],
                "AWS_ENDPOINT_URL_S3": self.endpoints["s3"],
                "AWS_ENDPOINT_URL_DYNAMODB": self.endpoints["dynamodb"],
                "RELAY_CONFIG_FILE": str(OUT / "config.json"),
                "POWERTOOLS_METRICS_DISABLED": "true",
                # Endpoint health's breaker compressed like the schedule: it may stay open for 1 s, not 30.
                "BREAKER_COOLDOWN_SECONDS": "1",
                "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        os.environ.pop("AWS_ENDPOINT_URL_CONNECT", None)
        import boto3
        from botocore.config import Config

        from chalicelib import clients

        # Lambda runs each invocation in a container of its own, with its own connections; here the hot path's and
        # the retry consumers' invocations share one process's clients, whose pools of 10 would drop and reopen a
        # connection on most calls (a cost no container pays).
        pool = Config(max_pool_connections=self.plan.hot_workers + self.plan.retry_workers)
        clients._DEFAULT_CONFIG = clients._DEFAULT_CONFIG.merge(pool)
        clients._HEALTH_CONFIG = clients._HEALTH_CONFIG.merge(pool)
        clients.reset()
        self.dynamodb = boto3.client("dynamodb")
        route_health_table(self.dynamodb, self.endpoints)

        self.sqs = boto3.client("sqs")  # Lambda's event source mapping: AWS's side, not the relay's
        self.s3 = boto3.client("s3")
        self.queue_url = self.sqs.create_queue(
            QueueName=STAGE_ENV["RETRY_QUEUE_URL"].rsplit("/", 1)[-1],
            Attributes={"VisibilityTimeout": "2"},  # compressed like the schedule
        )["QueueUrl"]
        self.s3.create_bucket(Bucket=STAGE_ENV["QUARANTINE_BUCKET"])
        from chalicelib.adapters.sessions_table import table_definition

        self.dynamodb.create_table(**table_definition(STAGE_ENV["SESSIONS_TABLE_NAME"]))
        self.dynamodb.create_table(
            TableName=STAGE_ENV["HEALTH_TABLE_NAME"],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        self.dynamodb.create_table(
            TableName=STAGE_ENV["DELIVERIES_TABLE_NAME"],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

        from chalicelib import observability

        # Metrics are EMF log lines, thousands of them, unread here: silenced before the relay's modules bind them.
        observability.flush = observability.discard
        observability.count = _uncounted
        observability.logger.setLevel("CRITICAL")
        from chalicelib import dependencies

        dependencies.reset()
        chaotic = chaotic_fanout(self.faults)
        dependencies.fanout = lambda: chaotic  # type: ignore[assignment]
        for service, client in relay_clients():
            if service == "dynamodb":
                route_health_table(client, self.endpoints)
        inject_aws_faults(self.faults)
        count_aws_calls(self.aws_calls, self.lock)

    # -- Lambda's side -------------------------------------------------------------------------------------------

    def _context(self) -> Context:
        if self.faults.roll("short_invocation", self.faults.short_invocation):
            return Context(self.rng.uniform(0.2, 1.5))
        return Context(60)

    def invoke_chat(self, event: dict[str, Any]) -> None:
        """An asynchronous invocation: retried twice, then the on-failure queue."""
        from chalicelib.handlers.chat_stream import on_chat_message

        for attempt in range(3):
            try:
                on_chat_message(event, self._context())
                return
            except Exception:
                if attempt < 2:
                    with self.lock:
                        self.lambda_retries += 1
                    time.sleep(0.2)
        with self.lock:
            self.failed_invocations.append(event)

    def hot_path(self, events: list[dict[str, Any]]) -> None:
        while not self.stop.is_set():
            with self.lock:
                if not events:
                    return
                event = events.pop()
            self.invoke_chat(event)

    def retry_consumer(self) -> None:
        from chalicelib.handlers.retries import retry_deliveries

        while not self.stop.is_set():
            # Short polls and a pause when empty, where Lambda's poller long-polls: moto answers a long poll by
            # scanning the whole queue again each time any message is sent, holding the lock senders need.
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=2
                ).get("Messages", [])
            except Exception:  # noqa: S112 - moto is being stopped at the end of the run
                continue
            if not messages:
                time.sleep(EMPTY_POLL_PAUSE)
                continue
            with self.lock:
                self.batches += 1
            try:
                answer = retry_deliveries(sqs_lambda_event(messages), self._context())
            except Exception:  # noqa: S112 - as Lambda: the whole batch comes back after its visibility timeout
                continue
            if self.faults.roll("batch_dies", self.faults.batch_dies):
                continue  # the invocation died before answering: SQS redelivers the whole batch
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            entries: list[Any] = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)
                if m["MessageId"] not in failed
            ]
            if entries:
                with contextlib.suppress(Exception):
                    self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)

    def outage_ticker(self) -> None:
        while not self.stop.is_set():
            for receiver in self.receivers.values():
                if receiver.behaviour.outage:
                    receiver.tick()
            time.sleep(0.1)

    # -- the operator's side -------------------------------------------------------------------------------------

    def operator(self) -> tuple[int, int]:
        """Replay the on-failure queue, and redrive S3's undelivered copies back onto the retry queue."""
        from chalicelib import dependencies
        from chalicelib.redrive import Redrive

        with self.lock:
            replays, self.failed_invocations = self.failed_invocations, []
        for event in replays:
            self.invoke_chat(event)
        redrive = Redrive(dependencies.quarantine(), dependencies.retry_queue())
        redriven = 0
        for name in [*self.receivers, "_"]:
            with contextlib.suppress(Exception):
                redriven += redrive.run(name, kinds=("undelivered",)).requeued
        return len(replays), redriven

    # -- counting ------------------------------------------------------------------------------------------------

    def queue_empty(self) -> bool:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return all(int(value) == 0 for value in attributes.values())

    def kept(self, kind: str) -> set[tuple[str, str]]:
        pairs = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=STAGE_ENV["QUARANTINE_BUCKET"], Prefix=f"quarantine/{kind}/"):
            for item in page.get("Contents", []):
                parts = item["Key"].split("/")
                pairs.add((parts[2], parts[-1].removesuffix(".json")))
        return pairs

    def parked(self) -> set[tuple[str, str]]:
        """(destination, webhook-id) pairs endpoint health parked for a disabled destination."""
        pairs = set()
        for name in self.receivers:
            paginator = self.dynamodb.get_paginator("query")
            for page in paginator.paginate(
                TableName=STAGE_ENV["HEALTH_TABLE_NAME"],
                KeyConditionExpression="pk = :pk AND begins_with(sk, :parked)",
                ExpressionAttributeValues={":pk": {"S": f"destination#{name}"}, ":parked": {"S": "parked#"}},
                ProjectionExpression="sk",
            ):
                pairs |= {(name, item["sk"]["S"].rsplit("#", 1)[-1]) for item in page.get("Items", [])}
        return pairs

    def delivered(self) -> set[tuple[str, str]]:
        return {(name, wid) for name, r in self.receivers.items() for wid in list(r.ledger.delivered)}

    def execute(self) -> int:
        from chalicelib.events import webhook_id_for

        run_id = f"{self.rng.getrandbits(32):08x}"
        events = [chat_record(i, run_id) for i in range(self.plan.items)]
        ids = [webhook_id_for(json.loads(e["Records"][0]["Sns"]["Message"])["Id"]) for e in events]
        expected = {(name, wid) for name in self.receivers for wid in ids}
        events.reverse()
        threads = [threading.Thread(target=self.outage_ticker, daemon=True)]
        threads += [threading.Thread(target=self.hot_path, args=(events,)) for _ in range(self.plan.hot_workers)]
        threads += [threading.Thread(target=self.retry_consumer, daemon=True) for _ in range(self.plan.retry_workers)]
        for thread in threads:
            thread.start()
        for thread in threads[1 : 1 + self.plan.hot_workers]:
            thread.join()
        sent_at = time.monotonic() - self.started
        print(f"chaos: {self.plan.items} items through on_chat_message in {sent_at:.1f} s", flush=True)
        replayed = redriven = 0
        settled_at = None
        while time.monotonic() - self.started < self.plan.budget_seconds:
            time.sleep(1.0)
            r, d = self.operator()
            replayed, redriven = replayed + r, redriven + d
            # The queue first: counting what is accounted for reads every parked event and lists every dead letter,
            # work for the moto servers the retries still waiting on the queue need.
            if self.queue_empty() and expected <= self.delivered() | self.kept("dead-letters") | self.parked():
                settled_at = time.monotonic() - self.started
                break
        self.stop.set()
        # The count waits for the retry batches under way: a pair one of them is delivering is neither lost nor
        # delivered until its answer comes.
        for thread in threads[1 + self.plan.hot_workers :]:
            thread.join(timeout=10)
        delivered = self.delivered() & expected
        parked = (self.parked() & expected) - delivered
        dead = (self.kept("dead-letters") & expected) - delivered - parked
        lost = len(expected) - len(delivered) - len(parked) - len(dead)
        if lost:
            missing = sorted(expected - delivered - parked - dead)[:5]
            print(f"chaos: unsettled, e.g. {missing}; queue empty: {self.queue_empty()}", flush=True)
            print(f"chaos: undelivered copies: {len(self.kept('undelivered'))}", flush=True)
        duplicates = sum(1 for r in self.receivers.values() for wid, seen in r.ledger.delivered.items() if seen > 1)
        bad = sum(r.ledger.bad_signatures for r in self.receivers.values())
        requests = sum(r.ledger.requests for r in self.receivers.values())
        injected = ", ".join(f"{k}={v}" for k, v in sorted(self.faults.injected.items()))
        print(
            f"chaos: factor={self.plan.factor:g} requests={requests} retry_batches={self.batches} "
            f"lambda_retries={self.lambda_retries} on_failure_replayed={replayed} s3_redriven={redriven} "
            f"bad_signatures={bad} settled_in={f'{settled_at:.1f} s' if settled_at else 'NOT SETTLED'}",
            flush=True,
        )
        print(f"chaos: injected {injected}", flush=True)
        cpu = {"relay": cpu_seconds(), **{name: cpu_seconds(server.pid) for name, server in self.moto.items()}}
        print(
            f"chaos: cpu seconds {' '.join(f'{k}={v:.1f}' for k, v in cpu.items())} total={sum(cpu.values()):.1f} "
            f"({sum(cpu.values()) / self.plan.items * 1000:.0f} ms an item; the relay's includes the receivers')",
            flush=True,
        )
        calls = ", ".join(f"{k}={v / self.plan.items:.2f}" for k, v in sorted(self.aws_calls.items()))
        print(f"chaos: the relay's AWS calls an item: {calls}", flush=True)
        for name, receiver in self.receivers.items():
            got = sum(1 for wid in receiver.ledger.delivered if (name, wid) in expected)
            parked_here = sum(1 for p in parked if p[0] == name)
            dead_here = sum(1 for p in dead if p[0] == name)
            print(f"chaos:   {name:<10} delivered={got} parked={parked_here} dead={dead_here}", flush=True)
        print(
            f"chaos: sent={self.plan.items} destinations={len(self.receivers)} delivered={len(delivered)} "
            f"parked={len(parked)} dead={len(dead)} lost={lost} duplicate_ids={duplicates}",
            flush=True,
        )
        return 0 if lost == 0 and bad == 0 else 1

    def close(self) -> None:
        self.stop.set()
        for receiver in self.receivers.values():
            receiver.stop()
        for server in self.moto.values():
            server.terminate()
        for server in self.moto.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--factor", type=float, default=3000.0, help="schedule compression (27.6 h / factor)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--budget", type=float, default=170.0, help="seconds before giving up")
    args = parser.parse_args(argv)
    total = sum(DEFAULT_SCHEDULE) / args.factor
    plan = Plan(
        items=args.items,
        factor=args.factor,
        # Down from early on for about a third of the compressed schedule, then back.
        outage=(2.0, 2.0 + max(5.0, total / 3)),
        hot_workers=32,  # Lambda's concurrency: SNS invokes on_chat_message once per item, in parallel
        retry_workers=6,
        budget_seconds=args.budget,
    )
    print(f"chaos: seed={args.seed} items={args.items} schedule 27.6 h / {args.factor:g} = {total:.0f} s", flush=True)
    sys.path.insert(0, str(ROOT))
    # A run stopped from outside (a test's timeout, kill) still stops its moto servers and receivers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(plan, args.seed)
    try:
        return run.execute()
    finally:
        run.close()


if __name__ == "__main__":
    sys.exit(main())
