"""`make demo`: the whole relay, end to end, on emulated AWS with no account.

moto serves SNS, SQS, DynamoDB, S3 and KMS on 127.0.0.1 and an emulated Connect serves its streaming calls and the
Participant Service; the relay's clients reach them through ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_CONNECT`` and
``AWS_ENDPOINT_URL_CONNECTPARTICIPANT``, as they would reach AWS.
A scripted chat flows through the real handlers (contact flow, contact events, the chat stream) to webhook
receivers on 127.0.0.1, one of which verifies every signature with the ``standardwebhooks`` package.
Writes ``.relay-demo/deliveries.jsonl`` (every delivery each receiver got) and ``.relay-demo/config.json``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from scripts.local_aws import ACCOUNT

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".relay-demo"
REGION = "us-east-1"
STAGE_CONFIG = json.loads((ROOT / ".chalice" / "config.json").read_text())
STAGE_ENV: dict[str, str] = STAGE_CONFIG["stages"]["dev"]["environment_variables"]
INSTANCE_ID = STAGE_ENV["CONNECT_INSTANCE_ID"]
INSTANCE_ARN = f"arn:aws:connect:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID}"
# Where the dev stage watches for Connect's chat transcripts: s3://bucket/prefix.
TRANSCRIPT_BUCKET, _, TRANSCRIPT_PREFIX = (
    STAGE_ENV["RECONCILE_TRANSCRIPT_LOCATIONS"].removeprefix("s3://").partition("/")
)
FIFO_QUEUE, ROUTED_QUEUE, BUS, STREAM = "demo-chat-events.fifo", "demo-bus-target", "demo-chat", "demo-chat"
BOLD, DIM, GREEN, RED, YELLOW, CYAN, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[33m", "\033[36m", "\033[0m")
    if sys.stdout.isatty()
    else ("",) * 7
)


def new_secret() -> str:
    """A fresh local signing secret (never printed)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def say(text: str = "") -> None:
    print(text, flush=True)


class World:
    """Emulated AWS, emulated Connect, webhook receivers, and the relay's environment pointed at them."""

    def __init__(self) -> None:
        os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT
        from moto.server import ThreadedMotoServer

        from scripts.emulated_connect import EmulatedConnect
        from scripts.receivers import Answer, Receiver

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.connect = EmulatedConnect(REGION)
        connect_url = self.connect.start()
        self.receivers = {
            name: Receiver().start()
            for name in ("crm", "agent-assist", "archive", "analytics", "channel-bridge", "backfill", "ticketing")
        }
        self.statuses = dict.fromkeys(self.receivers, 204)
        self.statuses["analytics"] = 503  # a destination that is down: its events wait in the retry queue
        self.statuses["ticketing"] = 410  # a retired endpoint: disabled at once, its events parked
        for name, status in self.statuses.items():
            self.receivers[name].answer("/hook", Answer(status=status))
        self.secrets = {name: [new_secret()] for name in self.receivers}
        self.secrets["archive"].append(new_secret())  # a rotation window: signed with both
        self.log = (OUT / "relay.log").open("w")
        os.environ.update(
            {
                **STAGE_ENV,
                "AWS_ACCESS_KEY_ID": "demo",
                "AWS_SECRET_ACCESS_KEY": "demo",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                "AWS_ENDPOINT_URL_CONNECT": connect_url,
                "AWS_ENDPOINT_URL_CONNECTPARTICIPANT": connect_url,
                "RELAY_CONFIG_FILE": str(OUT / "config.json"),
                # The demo assembles the transcript at once rather than after the grace period, and once.
                "TRANSCRIPT_ARCHIVE": "s3-archive",
                "TRANSCRIPT_GRACE_SECONDS": "0",
                "TRANSCRIPT_RECHECK_SECONDS": "0",
                # Reconciliation compares at once: the demo's stream has no items still on their way.
                "RECONCILE_DELAY_SECONDS": "0",
            }
        )
        os.environ.pop("AWS_PROFILE", None)
        self.moto_url, self.connect_url = os.environ["AWS_ENDPOINT_URL"], connect_url
        self._write_config()
        self._create_infrastructure()

    def _write_config(self, *, backfill: bool = False) -> None:
        def hook(name: str, **filters: Any) -> dict[str, Any]:
            return {
                "name": name,
                "url": self.receivers[name].url("/hook"),
                "secrets": self.secrets[name],
                "allow_http": True,
                "allow_private_network": True,
                "timeout_seconds": 5,
                **filters,
            }

        config = {
            "version": 1,
            "allow_literal_secrets": True,
            "destinations": [
                hook(
                    "crm",
                    events=["chat.message", "chat.attachment", "chat.participant.*", "chat.ended", "call.started"],
                ),
                hook("agent-assist", events=["chat.message"], audience="agent", roles=["CUSTOMER"]),
                hook("archive", include_typing=True),
                # The retry schedule compressed for the demo: 1 s, then 2 s, instead of 5 s, 5 min, ...
                hook("analytics", events=["chat.ended"], retry_schedule=[0, 1, 2]),
                # A channel's inbound half: what the agent says to the customer, answered through /chats routes.
                hook("channel-bridge", events=["chat.message", "chat.attachment"], audience="customer"),
                # Answers 410 Gone until it is moved back: disabled, its messages parked, then re-enabled.
                hook("ticketing", events=["chat.message"], roles=["CUSTOMER"]),
                {"name": "s3-archive", "kind": "s3", "bucket": STAGE_ENV["QUARANTINE_BUCKET"]},
                {"name": "queue", "kind": "sqs", "queue_arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{FIFO_QUEUE}"},
                {
                    "name": "bus",
                    "kind": "eventbridge",
                    "event_bus_arn": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{BUS}",
                    "source": "com.example.chat",
                },
                {
                    "name": "stream",
                    "kind": "kinesis",
                    "stream_arn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}",
                },
                # A consumer that joins after the chat: it gets the session's history by replay (part 9).
                *([hook("backfill")] if backfill else []),
            ],
        }
        (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    def _create_infrastructure(self) -> None:
        import boto3

        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        self.topic_arn = sns.create_topic(Name="connect-chat-relay-dev-stream")["TopicArn"]
        if self.topic_arn != STAGE_ENV["STREAMING_TOPIC_ARN"]:
            raise RuntimeError(f"emulated topic {self.topic_arn} is not the dev stage's STREAMING_TOPIC_ARN")
        # SNS invokes Lambda asynchronously; here an SQS subscription holds what SNS would hand to Lambda.
        self.queue_url = sqs.create_queue(QueueName="demo-lambda-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)
        boto3.client("dynamodb").create_table(
            TableName=STAGE_ENV["STREAMS_TABLE_NAME"],
            KeySchema=[{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "initial_contact_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("dynamodb").create_table(
            TableName=STAGE_ENV["HEALTH_TABLE_NAME"],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("dynamodb").create_table(
            TableName=STAGE_ENV["DELIVERIES_TABLE_NAME"],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        from chalicelib.adapters.sessions_table import table_definition

        boto3.client("dynamodb").create_table(**table_definition(STAGE_ENV["SESSIONS_TABLE_NAME"]))
        boto3.client("s3").create_bucket(Bucket=STAGE_ENV["QUARANTINE_BUCKET"])
        kms = boto3.client("kms")
        key_id = kms.create_key(Description="participant tokens")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=STAGE_ENV["PARTICIPANT_TOKEN_KEY_ID"], TargetKeyId=key_id)
        self.transcript_queue_url = sqs.create_queue(QueueName=STAGE_ENV["TRANSCRIPT_QUEUE_NAME"])["QueueUrl"]
        self.reconcile_queue_url = sqs.create_queue(QueueName=STAGE_ENV["RECONCILE_QUEUE_NAME"])["QueueUrl"]
        boto3.client("s3").create_bucket(Bucket=TRANSCRIPT_BUCKET)
        self.connect.transcript_storage = (TRANSCRIPT_BUCKET, TRANSCRIPT_PREFIX)
        self.fifo_url = sqs.create_queue(QueueName=FIFO_QUEUE, Attributes={"FifoQueue": "true"})["QueueUrl"]
        self.routed_url = sqs.create_queue(QueueName=ROUTED_QUEUE)["QueueUrl"]
        events = boto3.client("events")
        events.create_event_bus(Name=BUS)
        events.put_rule(Name="chat", EventBusName=BUS, EventPattern=json.dumps({"source": ["com.example.chat"]}))
        routed = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{ROUTED_QUEUE}"
        events.put_targets(Rule="chat", EventBusName=BUS, Targets=[{"Id": "routed", "Arn": routed}])
        boto3.client("kinesis").create_stream(StreamName=STREAM, ShardCount=1)
        self.retry_queue_url = sqs.create_queue(QueueName=STAGE_ENV["RETRY_QUEUE_URL"].rsplit("/", 1)[-1])["QueueUrl"]

    def close(self) -> None:
        for receiver in self.receivers.values():
            receiver.stop()
        self.connect.stop()
        self.moto.stop()
        self.log.close()


class Demo:
    """The scripted session and its live view."""

    def __init__(self, world: World) -> None:
        from chalice.test import Client

        from app import app
        from chalicelib.observability import logger

        self.world = world
        logger.registered_handler.setStream(world.log)  # type: ignore[attr-defined]
        self.client = Client(app, stage_name="dev", project_dir=str(ROOT))
        self.client.__enter__()
        self.seen: dict[str, int] = dict.fromkeys(world.receivers, 0)
        self.late_chat = ""
        self.records: list[dict[str, Any]] = []

    def invoke(self, function: str, event: Any) -> Any:
        """Invoke a Lambda function of the relay; its log lines and metrics go to .relay-demo/relay.log."""
        with contextlib.redirect_stdout(self.world.log):
            return self.client.lambda_.invoke(function, event).payload

    def contact_event(
        self, contact_id: str, *, channel: str = "CHAT", method: str = "API", initial: str | None = None
    ) -> None:
        detail = {
            "eventType": "INITIATED",
            "contactId": contact_id,
            "initialContactId": initial or contact_id,
            "channel": channel,
            "instanceArn": INSTANCE_ARN,
            "initiationMethod": method,
        }
        if initial:
            detail["previousContactId"] = initial
        event = {
            "version": "0",
            "id": f"demo-{contact_id[:8]}-{method.lower()}",
            "detail-type": "Amazon Connect Contact Event",
            "source": "aws.connect",
            "account": ACCOUNT,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": REGION,
            "resources": [f"{INSTANCE_ARN}/contact/{contact_id}", INSTANCE_ARN],
            "detail": detail,
        }
        self.invoke("on_contact_event", event)

    def pump(self) -> int:
        """Hand what SNS published to the chat stream function, as Lambda's SNS trigger would."""
        import boto3

        sqs = boto3.client("sqs")
        handled = 0
        while True:
            messages = sqs.receive_message(QueueUrl=self.world.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return handled
            for message in messages:
                self.invoke("on_chat_message", lambda_sns_event(json.loads(message["Body"])))
                sqs.delete_message(QueueUrl=self.world.queue_url, ReceiptHandle=message["ReceiptHandle"])
                handled += 1

    def pump_retries(self, *, seconds: float) -> int:
        """Hand the retry queue's tickets to retry_deliveries for ``seconds``, as Lambda's SQS trigger would."""
        import boto3

        from scripts.chaos import sqs_lambda_event

        sqs = boto3.client("sqs")
        handled = 0
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            messages = sqs.receive_message(
                QueueUrl=self.world.retry_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            ).get("Messages", [])
            if not messages:
                continue
            answer = self.invoke("retry_deliveries", sqs_lambda_event(messages))
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] not in failed:
                    sqs.delete_message(QueueUrl=self.world.retry_queue_url, ReceiptHandle=message["ReceiptHandle"])
            handled += len(messages)
        return handled

    def deliveries(self) -> str:
        """What each receiver got since the last look, one short mark per receiver."""
        marks = []
        for name, receiver in self.world.receivers.items():
            new = receiver.requests[self.seen[name] :]
            for request in new:
                verified = self._verify(name, request)
                body = json.loads(request.body)
                self.records.append(
                    {"receiver": name, "headers": request.headers, "body": body, "signature_verified": verified}
                )
                status = self.world.statuses[name]
                colour = GREEN if verified and status < 300 else RED
                # Two or three items at one look (a read receipt and a reply): each mark says which it was.
                which = f" {body.get('type', '?')}" if 1 < len(new) <= 3 else ""
                marks.append(f"{colour}{name} {status}{' ✓sig' if verified else ' ✗sig'}{which}{RESET}")
            self.seen[name] = len(receiver.requests)
        return "  ".join(marks) if marks else f"{DIM}(no destination asked for it){RESET}"

    def _verify(self, name: str, request: Any) -> bool:
        from standardwebhooks import Webhook

        try:
            for secret in self.world.secrets[name]:
                Webhook(secret).verify(request.body, request.headers)
        except Exception:
            return False
        return True

    def item(self, label: str, item: dict[str, Any], *, visibility: str = "ALL") -> None:
        published = self.world.connect.publish(item, visibility=visibility)
        if not published:
            say(f"  {DIM}{label:<44}{RESET} {YELLOW}not published: streaming was not on yet{RESET}")
            return
        self.pump()
        say(f"  {label:<44} → {self.deliveries()}")

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def lambda_sns_event(envelope: dict[str, Any]) -> dict[str, Any]:
    """The Lambda SNS record for an SNS envelope taken from an SQS subscription."""
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": envelope["TopicArn"] + ":demo",
                "Sns": {
                    "Type": envelope["Type"],
                    "MessageId": envelope["MessageId"],
                    "TopicArn": envelope["TopicArn"],
                    "Subject": envelope.get("Subject"),
                    "Message": envelope["Message"],
                    "Timestamp": envelope["Timestamp"],
                    "SignatureVersion": envelope.get("SignatureVersion", "1"),
                    "Signature": envelope.get("Signature", "EXAMPLE"),
                    "SigningCertUrl": envelope.get("SigningCertURL", ""),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL", ""),
                    "MessageAttributes": envelope.get("MessageAttributes", {}),
                },
            }
        ]
    }


EVENT = "application/vnd.amazonaws.connect.event."
CUSTOMER = ("cust-0001", "CUSTOMER", "Jane")
FLOW = ("sys-0001", "SYSTEM", "SYSTEM_MESSAGE")
AGENT = ("agent-0001", "AGENT", "Sam")
BILLING = ("agent-0002", "AGENT", "Ana")
# (label, participant, Connect Type, ContentType, Content, extra fields, visibility) before the transfer ...
BEFORE_TRANSFER: list[tuple[str, Any, str, str, str | None, dict[str, Any], str]] = [
    ("Jane joined", CUSTOMER, "EVENT", EVENT + "participant.joined", None, {}, "ALL"),
    ('Flow: "Thanks for contacting us"', FLOW, "MESSAGE", "text/plain", "Thanks for contacting us.", {}, "ALL"),
    ('Jane: "My invoice is wrong"', CUSTOMER, "MESSAGE", "text/plain", "My October invoice is wrong.", {}, "ALL"),
    ("Sam joined", AGENT, "EVENT", EVENT + "participant.joined", None, {}, "ALL"),
    ("Jane is typing…", CUSTOMER, "EVENT", EVENT + "typing", None, {}, "ALL"),
    (
        "Jane sends invoice.pdf",
        CUSTOMER,
        "ATTACHMENT",
        "application/pdf",
        None,
        {
            "Attachments": [
                {
                    "AttachmentId": "att-0001",
                    "AttachmentName": "invoice.pdf",
                    "ContentType": "application/pdf",
                    "Status": "APPROVED",
                }
            ]
        },
        "ALL",
    ),
    ('Sam (agents only): "billing bug"', AGENT, "MESSAGE", "text/plain", "Looks like a billing bug.", {}, "AGENT"),
    ('Sam: "Transferring you to billing"', AGENT, "MESSAGE", "text/plain", "Transferring you to billing.", {}, "ALL"),
    ("transfer succeeded", AGENT, "EVENT", EVENT + "transfer.succeeded", None, {}, "ALL"),
]
# ... and after it, on the new contact segment.
AFTER_TRANSFER: list[tuple[str, Any, str, str, str | None, dict[str, Any], str]] = [
    ("Ana joined", BILLING, "EVENT", EVENT + "participant.joined", None, {}, "ALL"),
    ("Ana: **markdown** reply", BILLING, "MESSAGE", "text/markdown", "I've **corrected** your invoice.", {}, "ALL"),
    ('Jane: "Thank you!"', CUSTOMER, "MESSAGE", "text/plain", "Thank you!", {}, "ALL"),
    ("chat ended", None, "EVENT", EVENT + "chat.ended", None, {}, "ALL"),
]


def start_streaming(demo: Demo) -> str:
    """Part 1: the flow, contact events, duplicates, a voice contact, a late start. Returns the chat's id."""
    from scripts.emulated_connect import chat_item

    world = demo.world
    say(f"{BOLD}1. Streaming starts for every chat{RESET}")
    chat = world.connect.open_chat(INSTANCE_ID)
    say(f"  customer Jane opens a chat: contact {chat}")
    contact = {"ContactId": chat, "InitialContactId": chat, "Channel": "CHAT", "InstanceARN": INSTANCE_ARN}
    answer = demo.invoke(
        "start_streaming_from_flow",
        {"Name": "ContactFlowEvent", "Details": {"ContactData": contact, "Parameters": {}}},
    )
    say(f"  contact flow → start_streaming_from_flow → {CYAN}{answer}{RESET}")
    demo.contact_event(chat)
    say(f"  EventBridge INITIATED (seconds later)     → {DIM}skipped: already streaming, Connect not called{RESET}")
    demo.contact_event(chat)
    say(f"  EventBridge delivers it again             → {DIM}skipped: already streaming{RESET}")
    voice = world.connect.open_chat(INSTANCE_ID)
    demo.contact_event(voice, channel="VOICE", method="INBOUND")
    say(f"  a voice contact                           → {DIM}skipped: not a chat{RESET}")
    late = world.connect.open_chat(INSTANCE_ID)
    greeting = chat_item(late, type_="MESSAGE", content_type="text/plain", content="Hi!", participant=FLOW)
    demo.item("a second chat's greeting, before any start", greeting)
    demo.contact_event(late)
    demo.late_chat = late
    say(f"  second chat's INITIATED event             → {CYAN}streaming started by the event{RESET}")
    starts = [c for c in world.connect.calls if c[0] == "start_contact_streaming"]
    say(f"  Connect saw {len(starts)} StartContactStreaming calls for 4 contact events and 1 flow call")
    return chat


def converse(demo: Demo, chat: str) -> None:
    """Part 2: the scripted conversation, with a transfer to a second agent."""
    from scripts.emulated_connect import chat_item

    say(f"\n{BOLD}2. The conversation, fanned out{RESET}")
    say(f"  {DIM}crm: messages, attachments, participants, end · agent-assist: what customers say{RESET}")
    say(f"  {DIM}archive: everything, typing too (2 secrets: a rotation) · analytics: chat end (down: 503){RESET}")
    say(f"  {DIM}channel-bridge: what the customer sees · ticketing: customers' messages (410 Gone: parked){RESET}")
    segment = chat
    for script in (BEFORE_TRANSFER, AFTER_TRANSFER):
        for label, who, type_, content_type, content, extra, visibility in script:
            item = chat_item(
                chat,
                contact_id=segment,
                type_=type_,
                content_type=content_type,
                content=content,
                participant=who,
                **extra,
            )
            demo.item(label, item, visibility=visibility)
        if segment == chat:
            segment = demo.world.connect.open_chat(INSTANCE_ID)
            demo.world.connect.chats[segment].topics = demo.world.connect.chats[chat].topics
            demo.contact_event(segment, method="TRANSFER", initial=chat)
            say(f"  {DIM}new segment {segment[:8]}… INITIATED (TRANSFER) → skipped: on the session's stream{RESET}")


def keep_bad_input(demo: Demo) -> None:
    """Part 3: an item the relay cannot read, and what it kept."""
    import boto3

    say(f"\n{BOLD}3. Nothing is lost{RESET}")
    boto3.client("sns").publish(TopicArn=demo.world.topic_arn, Message="{not json")
    demo.pump()
    s3 = boto3.client("s3")
    bucket = STAGE_ENV["QUARANTINE_BUCKET"]
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=STAGE_ENV["QUARANTINE_PREFIX"]).get("Contents", []):
        kept = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        why = kept.get("reason") or kept.get("error")
        say(f"  kept s3://{bucket}/{obj['Key']}\n    {DIM}because: {why}{RESET}")


def keep_and_transcribe(demo: Demo, chat: str) -> None:
    """Part 4: the archive, the other AWS kinds, and the transcript assembled once the chat ended."""
    import boto3

    world = demo.world
    say(f"\n{BOLD}4. Archived, streamed to AWS, transcribed{RESET}")
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    bucket = STAGE_ENV["QUARANTINE_BUCKET"]
    archived = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"sessions/{chat}/"):
        for obj in page.get("Contents", []):
            mirror = OUT / "archive" / obj["Key"]
            mirror.parent.mkdir(parents=True, exist_ok=True)
            mirror.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            archived += 1
    say(f"  s3-archive: {archived} items under s3://{bucket}/sessions/{chat[:8]}…/ (mirrored in {OUT.name}/archive/)")
    fifo = sqs.get_queue_attributes(QueueUrl=world.fifo_url, AttributeNames=["ApproximateNumberOfMessages"])
    routed = sqs.get_queue_attributes(QueueUrl=world.routed_url, AttributeNames=["ApproximateNumberOfMessages"])
    kinesis = boto3.client("kinesis")
    shard = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    say(
        f"  queue (FIFO, grouped by session): {fifo['Attributes']['ApproximateNumberOfMessages']} messages · "
        f"bus → rule → queue: {routed['Attributes']['ApproximateNumberOfMessages']} events · "
        f"stream: {len(records)} records"
    )
    assemble_requested(demo)
    say(f"  chat.ended → transcript queue → assemble_transcripts → {demo.deliveries()}")
    if copy_transcript(chat):
        say(f"\n{DIM}{'-' * 100}{RESET}")
        say((OUT / "transcripts" / f"{chat}.md").read_text())
        say(f"{DIM}{'-' * 100}{RESET}")


def assemble_requested(demo: Demo) -> None:
    """The transcript queue hands its requests to assemble_transcripts (the demo's grace period is 0)."""
    import boto3

    sqs = boto3.client("sqs")
    url = demo.world.transcript_queue_url
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            event = demo.client.events.generate_sqs_event(
                message_bodies=[message["Body"]], queue_name=STAGE_ENV["TRANSCRIPT_QUEUE_NAME"]
            )
            demo.invoke("assemble_transcripts", event)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def copy_transcript(chat: str) -> bool:
    """Copy the session's latest transcript version (JSON and Markdown) to .relay-demo/transcripts/."""
    import boto3

    s3, bucket = boto3.client("s3"), STAGE_ENV["QUARANTINE_BUCKET"]
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"transcripts/{chat}/").get("Contents", [])
    latest = max((obj["Key"] for obj in listing if obj["Key"].endswith(".json")), default=None)
    if latest is None:
        say(f"  {RED}no transcript was kept for {chat}{RESET}")
        return False
    (OUT / "transcripts").mkdir(exist_ok=True)
    for suffix in (".json", ".md"):
        body = s3.get_object(Bucket=bucket, Key=latest.removesuffix(".json") + suffix)["Body"].read()
        (OUT / "transcripts" / f"{chat}{suffix}").write_bytes(body)
    say(f"  kept s3://{bucket}/{latest} and .md; copies in {OUT.name}/transcripts/{chat}.json and .md")
    return True


def start_contacts(demo: Demo) -> None:
    """Part 4: a web call and a chat started through the relay's own routes."""
    from scripts.emulated_connect import chat_item

    say(f"\n{BOLD}5. Contacts started by the relay{RESET}")
    headers = {"Content-Type": "application/json", "Idempotency-Key": "demo-call-0001"}
    call = {"display_name": "Jane", "allowed_capabilities": {"customer": {"video": "SEND"}}, "flow": "support"}
    with contextlib.redirect_stdout(demo.world.log):
        answer = demo.client.http.post("/webrtc-contacts", headers=headers, body=json.dumps(call))
    meeting = answer.json_body["ConnectionData"]["Meeting"]
    say(
        f"  POST /webrtc-contacts → {answer.status_code}: contact {answer.json_body['ContactId'][:8]}…, "
        f"meeting {meeting['MeetingId'][:8]}… in {meeting['MediaRegion']} (Meeting + Attendee go to the Chime SDK)"
    )
    say(f"  call.started                                 → {demo.deliveries()}")
    with contextlib.redirect_stdout(demo.world.log):
        again = demo.client.http.post("/webrtc-contacts", headers=headers, body=json.dumps(call))
    replayed = again.headers.get("Idempotent-Replayed", "false")
    same = "same contact" if again.json_body["ContactId"] == answer.json_body["ContactId"] else "ANOTHER contact"
    say(f"  the same Idempotency-Key again → {again.status_code}, {same}, Idempotent-Replayed: {replayed}")
    with contextlib.redirect_stdout(demo.world.log):
        invalid = demo.client.http.post(
            "/webrtc-contacts", headers={"Content-Type": "application/json"}, body=json.dumps({"display_name": ""})
        )
    fields = ", ".join(f["field"] for f in invalid.json_body["fields"])
    say(f"  an empty display name → {invalid.status_code} ({fields})")
    with contextlib.redirect_stdout(demo.world.log):
        chat = demo.client.http.post(
            "/chat-contacts",
            headers={"Content-Type": "application/json"},
            body=json.dumps(
                {"display_name": "Lee", "initial_message": {"content_type": "text/plain", "content": "Hi"}}
            ),
        )
    contact = chat.json_body["ContactId"]
    say(f"  POST /chat-contacts → {chat.status_code}: contact {contact[:8]}… streams from its first item")
    demo.contact_event(contact)
    say(f"  its INITIATED event                          → {DIM}skipped: already streaming{RESET}")
    greeting = chat_item(contact, type_="MESSAGE", content_type="text/plain", content="Hello Lee!", participant=FLOW)
    demo.item('Flow greets Lee: "Hello Lee!"', greeting)


LABEL_PNG = b"\x89PNG\r\n\x1a\n" + b"shipping label #4521"
# What the agent says, and how the customer answers it through the channel.
AGENT_AND_CUSTOMER: list[tuple[str, str, str]] = [
    ("Hi Kim, I'm Sam. How can I help?", "message", "My parcel hasn't arrived yet."),
    ("Could you send a photo of the shipping label?", "attachment", "label.png"),
    ("Thanks! A new parcel is on its way.", "message", "Great, thank you!"),
]


class ChannelBridge:
    """A channel integration's inbound half written on the relay: its webhook receives what the agent says, and it
    answers for the customer only through the relay's ``/chats`` routes (here, as an SMS or WhatsApp bridge would)."""

    def __init__(self, demo: Demo, receiver: str) -> None:
        self.demo = demo
        self.receiver = receiver
        self.read = 0

    def agent_messages(self, chat: str) -> list[dict[str, Any]]:
        """The agent's messages in a chat that reached the bridge's webhook since it last looked, signed."""
        got = [record for record in self.demo.records if record["receiver"] == self.receiver]
        new, self.read = got[self.read :], len(got)
        return [
            record["body"]
            for record in new
            if record["signature_verified"]
            and record["body"]["type"] == "chat.message"
            and record["body"]["data"]["participant"]["role"] == "AGENT"
            and record["body"]["data"]["initial_contact_id"] == chat
        ]

    def post(self, path: str, body: dict[str, Any], **headers: str) -> Any:
        with contextlib.redirect_stdout(self.demo.world.log):
            return self.demo.client.http.post(
                path, headers={"Content-Type": "application/json", **headers}, body=json.dumps(body)
            )

    def answer(self, chat: str, message: dict[str, Any], kind: str, reply: str) -> str:
        """Mark the agent's message read, then reply; returns what the bridge did."""
        self.post(f"/chats/{chat}/events", {"type": "read", "message_id": message["data"]["item_id"]})
        if kind == "attachment":
            encoded = base64.b64encode(LABEL_PNG).decode()
            sent = self.post(
                f"/chats/{chat}/attachments", {"name": reply, "content_type": "image/png", "content_base64": encoded}
            )
            return f"POST /chats/…/attachments {reply} → {sent.status_code}"
        key = {"Idempotency-Key": "demo-reply-" + message["data"]["item_id"]}
        sent = self.post(f"/chats/{chat}/messages", {"content": reply}, **key)
        again = self.post(f"/chats/{chat}/messages", {"content": reply}, **key)
        same = "one message" if again.json_body["item_id"] == sent.json_body["item_id"] else "TWO messages"
        return f'POST /chats/…/messages "{reply}" → {sent.status_code} (resent with its key: {same})'


def two_way_chat(demo: Demo) -> None:
    """Part 5: a two-way chat; the customer's side is written only through the relay's routes."""
    import urllib3

    from scripts.emulated_connect import chat_item

    say(f"\n{BOLD}6. A two-way chat: a channel bridge answers through the relay{RESET}")
    bridge = ChannelBridge(demo, "channel-bridge")
    started = bridge.post(
        "/chat-contacts",
        {"display_name": "Kim", "participant_connection": True},
        **{"Idempotency-Key": "demo-two-way-0001"},
    )
    chat = started.json_body["ContactId"]
    held = "connection held by the relay" if started.json_body.get("ConnectionHeldByRelay") else "NO CONNECTION"
    say(f"  POST /chat-contacts (participant_connection) → {started.status_code}: contact {chat[:8]}…, {held}")
    demo.item(
        "Sam joined", chat_item(chat, type_="EVENT", content_type=EVENT + "participant.joined", participant=AGENT)
    )
    for agent_says, kind, reply in AGENT_AND_CUSTOMER:
        said = chat_item(chat, type_="MESSAGE", content_type="text/plain", content=agent_says, participant=AGENT)
        demo.item(f'Sam: "{agent_says}"', said)
        for message in bridge.agent_messages(chat):
            did = bridge.answer(chat, message, kind, reply)
            demo.pump()
            say(f"    {CYAN}bridge{RESET} {did}\n      streams back → {demo.deliveries()}")
    copies = [
        attachment["archive"]
        for record in demo.records
        if record["receiver"] == "crm" and record["body"]["type"] == "chat.attachment"
        for attachment in record["body"]["data"]["attachments"]
        if "archive" in attachment and record["body"]["data"]["initial_contact_id"] == chat
    ]
    for archive in copies:
        fetched = urllib3.request("GET", archive["url"]).data if archive["status"] == "copied" else b""
        same = "the bytes the bridge sent" if fetched == LABEL_PNG else "NOT the bytes sent"
        say(f"  crm's chat.attachment links the relay's copy ({archive['status']}): {len(fetched)} bytes, {same}")
    with contextlib.redirect_stdout(demo.world.log):
        transcript = demo.client.http.get(f"/chats/{chat}/transcript").json_body["items"]
        left = demo.client.http.delete(f"/chats/{chat}")
    customer = [item for item in transcript if item.get("ParticipantRole") == "CUSTOMER"]
    # The script publishes only Sam's items: every one of Kim's came through the relay's routes.
    say(
        f"  GET /chats/…/transcript → {len(transcript)} items in order; Kim's {len(customer)} (messages, receipts, "
        "the label) were all written through the relay's routes"
    )
    demo.pump()
    say(f"  DELETE /chats/… → {left.status_code} {left.json_body['status']}; Kim left → {demo.deliveries()}")


def retry_when_back(demo: Demo) -> None:
    """Part 5: the destination that was down comes back and gets its events from the retry queue."""
    from scripts.receivers import Answer

    say(f"\n{BOLD}7. Down, then back: the retry queue{RESET}")
    say(f"  {DIM}analytics answered 503: its chat.ended waits in the SQS retry queue (schedule compressed){RESET}")
    demo.world.statuses["analytics"] = 204
    demo.world.receivers["analytics"].answer("/hook", Answer(status=204))
    demo.deliveries()
    handled = demo.pump_retries(seconds=3)
    say(f"  analytics is back; retry_deliveries took {handled} ticket(s) → {demo.deliveries()}")


def gone_then_enabled(demo: Demo) -> None:
    """Part 8: the destination that answered 410 was disabled and its events parked; re-enabling replays them."""
    import boto3

    from scripts.receivers import Answer

    world = demo.world
    say(f"\n{BOLD}8. Gone, then re-enabled: parked events replayed in order{RESET}")
    table = boto3.client("dynamodb")
    health = table.get_item(
        TableName=STAGE_ENV["HEALTH_TABLE_NAME"], Key={"pk": {"S": "destination#ticketing"}, "sk": {"S": "health"}}
    )["Item"]
    parked = table.query(
        TableName=STAGE_ENV["HEALTH_TABLE_NAME"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :parked)",
        ExpressionAttributeValues={":pk": {"S": "destination#ticketing"}, ":parked": {"S": "parked#"}},
    )["Items"]
    say(
        f"  ticketing answered 410 Gone to its first event: {health['status']['S']} "
        f"({health.get('disabled_reason', {}).get('S', '')}); {len(parked)} events parked, in order, none lost"
    )
    world.statuses["ticketing"] = 204
    world.receivers["ticketing"].answer("/hook", Answer(status=204))
    with contextlib.redirect_stdout(world.log):
        enabled = demo.client.http.post("/destinations/ticketing/enable")
    seen = demo.seen["ticketing"]
    marks = demo.deliveries()
    say(f"  the endpoint is back; POST /destinations/ticketing/enable → {enabled.status_code} {enabled.json_body}")
    for request in world.receivers["ticketing"].requests[seen:]:
        body = json.loads(request.body)
        webhook_id = request.headers["webhook-id"]
        say(f'    {GREEN}replayed{RESET} {body["type"]} "{body["data"]["content"]}" {DIM}{webhook_id}{RESET}')
    say(f"  {DIM}{marks}{RESET}")


def run(demo: Demo) -> None:
    """The whole scripted session."""
    chat = start_streaming(demo)
    converse(demo, chat)
    keep_bad_input(demo)
    keep_and_transcribe(demo, chat)
    start_contacts(demo)
    two_way_chat(demo)
    retry_when_back(demo)
    gone_then_enabled(demo)
    reconcile(demo, chat)
    replay(demo, chat)


def reconcile(demo: Demo, chat: str) -> None:
    """Part 5: both chats end; Connect writes their transcripts; reconciliation recovers the late chat's greeting."""
    import boto3

    world = demo.world
    say(f"\n{BOLD}9. Reconciliation with Connect's own transcripts{RESET}")
    keys = [key for session in (chat, demo.late_chat) for key in world.connect.end_chat(session)]
    say(f"  both chats end: Connect writes {len(keys)} transcripts to s3://{TRANSCRIPT_BUCKET}/{TRANSCRIPT_PREFIX}")
    for key in keys:
        demo.invoke("on_transcript_written", object_created(key))
    sqs = boto3.client("sqs")
    while messages := sqs.receive_message(QueueUrl=world.reconcile_queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        for message in messages:
            event = demo.client.events.generate_sqs_event(
                message_bodies=[message["Body"]], queue_name=STAGE_ENV["RECONCILE_QUEUE_NAME"]
            )
            demo.invoke("reconcile_transcripts", event)
            sqs.delete_message(QueueUrl=world.reconcile_queue_url, ReceiptHandle=message["ReceiptHandle"])
    say(f"  EventBridge Object Created → reconcile_transcripts → {demo.deliveries()}")
    reports = [
        json.loads(request.body)
        for request in world.receivers["archive"].requests
        if json.loads(request.body)["type"] == "chat.transcript.reconciled"
    ]
    # Who got each recovered item: crm takes everything; the channel bridge what the customer sees (a flow's
    # greeting before any agent is visible to all, though Connect's transcript does not say so).
    recovered: dict[str, list[str]] = {}
    for name, receiver in world.receivers.items():
        for request in receiver.requests:
            envelope = json.loads(request.body)
            if envelope["data"].get("recovered") is True:
                said = f'{envelope["type"]} "{envelope["data"]["content"]}"'
                recovered.setdefault(said, []).append(name)
    sessions: dict[str, dict[str, Any]] = {}
    for report in reports:
        data = report["data"]
        session = sessions.setdefault(
            data["initial_contact_id"],
            {
                "initial_contact_id": data["initial_contact_id"],
                "streamed": 0,
                "recovered": 0,
                "only_in_stream": 0,
                "recovered_item_ids": [],
            },
        )
        for name in ("streamed", "recovered", "only_in_stream"):
            session[name] += data["counts"][name]
        session["recovered_item_ids"] += data["recovered_item_ids"]
    (OUT / "reconciliation.json").write_text(json.dumps(list(sessions.values()), indent=2) + "\n")
    for session in sessions.values():
        say(
            f"  {session['initial_contact_id']}: streamed {session['streamed']}, recovered {session['recovered']},"
            f" only in the stream {session['only_in_stream']}"
        )
    for said, names in recovered.items():
        say(f"  {GREEN}recovered{RESET} {said} → {', '.join(names)}, marked recovered")
    say(f"  per session: {OUT.name}/reconciliation.json")
    assemble_requested(demo)
    say(f"  recovered items → transcript queue → assemble_transcripts → {demo.deliveries()}")
    if copy_transcript(demo.late_chat):
        say((OUT / "transcripts" / f"{demo.late_chat}.md").read_text())


def replay(demo: Demo, chat: str) -> None:
    """Part 9: a consumer that joins after the chat gets the session again from the archive, original ids."""
    world = demo.world
    say(f"\n{BOLD}10. Replay: a late consumer gets the session from the archive{RESET}")
    world._write_config(backfill=True)
    say(f"  {DIM}backfill joins the destinations file after the chat has ended{RESET}")
    body = json.dumps({"destination": "backfill", "initial_contact_id": chat})
    with contextlib.redirect_stdout(world.log):
        answer = demo.client.http.post("/replays", headers={"Content-Type": "application/json"}, body=body)
    state = answer.json_body
    say(f"  POST /replays {{destination: backfill, session {chat[:8]}…}} → {answer.status_code} {state['status']}")
    for _ in range(30):
        demo.pump_retries(seconds=0.5)
        with contextlib.redirect_stdout(world.log):
            state = demo.client.http.get(f"/replays/{state['replay_id']}").json_body
        if state["status"] in ("completed", "failed"):
            break
    say(f"  retry_deliveries: list the archive, then send in AbsoluteTime order → {demo.deliveries()}")
    replayed = world.receivers["backfill"].requests
    live = {(request.headers["webhook-id"], request.body) for request in world.receivers["archive"].requests}
    same_ids = all((request.headers["webhook-id"], request.body) in live for request in replayed)
    times = [json.loads(request.body)["timestamp"] for request in replayed]
    say(
        f"  GET /replays/{state['replay_id'][:8]}… → {state['status']}: found {state['found']}, "
        f"delivered {state['delivered']}, retrying {state['retrying']}, failed {state['failed']}, "
        f"skipped {state['skipped']}"
    )
    say(
        f"  each with the webhook-id and body archive got live: {'yes' if same_ids else 'NO'} · "
        f"AbsoluteTime order: {'yes' if times == sorted(times) else 'NO'} · signed afresh"
    )
    (OUT / "replay.json").write_text(json.dumps(state, indent=2) + "\n")


def object_created(key: str) -> dict[str, Any]:
    """The EventBridge event S3 sends when Connect writes a transcript (the bucket's EventBridge switch is on)."""
    return {
        "version": "0",
        "id": f"demo-{abs(hash(key)) % 10**8:08d}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [f"arn:aws:s3:::{TRANSCRIPT_BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": TRANSCRIPT_BUCKET},
            "object": {"key": key},
            "reason": "PutObject",
        },
    }


def metric_totals(log: Path) -> str:
    """The relay's metrics (CloudWatch EMF lines in its log), summed."""
    totals: dict[str, float] = {}
    for line in log.read_text().splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name = metric["Name"] + (f"[{blob['reason']}]" if "reason" in blob else "")
                values = blob[metric["Name"]]
                totals[name] = totals.get(name, 0) + (sum(values) if isinstance(values, list) else values)
    wanted = ("Streaming", "Delivery", "Invalid")
    return ", ".join(f"{k}={v:g}" for k, v in sorted(totals.items()) if k.startswith(wanted) and "Latency" not in k)


def main() -> int:
    started = time.monotonic()
    # Chalice's local mode authorises every request and says so; the demo knows.
    warnings.filterwarnings("ignore", message=".*is not a supported in local mode")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    sys.path.insert(0, str(ROOT))
    say(f"{BOLD}connect-chat-relay demo{RESET} {DIM}(emulated AWS, no account){RESET}")
    world = World()
    say(f"  moto (SNS, SQS, DynamoDB, S3, KMS, EventBridge, Kinesis) at {world.moto_url}")
    say(f"  emulated Connect at {world.connect_url}")
    for name, receiver in world.receivers.items():
        say(f"  receiver {name:<13} {receiver.url('/hook')}")
    say()
    demo = Demo(world)
    try:
        run(demo)
    finally:
        demo.close()
        world.close()
    with (OUT / "deliveries.jsonl").open("w") as out:
        for record in demo.records:
            out.write(json.dumps(record) + "\n")
    verified = sum(r["signature_verified"] for r in demo.records)
    say(f"\n{BOLD}Summary{RESET}")
    for name in world.receivers:
        got = [r for r in demo.records if r["receiver"] == name]
        say(f"  {name:<15} {len(got):>2} deliveries, {sum(r['signature_verified'] for r in got)} signatures verified")
    say(f"  {len(demo.records)} deliveries in all, {verified} verified")
    say(f"  every delivery: {OUT.name}/deliveries.jsonl · the relay's own log: {OUT.name}/relay.log")
    say(f"  relay metrics: {metric_totals(OUT / 'relay.log')}")
    say(f"  finished in {time.monotonic() - started:.1f} s")
    ok = verified == len(demo.records) and len(demo.records) > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
