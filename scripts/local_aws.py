"""Emulated AWS for ``chalice local``: moto and the emulated Connect on 127.0.0.1, with the dev stage's resources.

``chalice local`` serves the relay's routes on your machine but calls AWS as in Lambda. Run this in one terminal;
it prints the environment that points the relay at it, and serves until Ctrl-C::

    .venv/bin/python -m scripts.local_aws
    # then, in another terminal: paste the printed "export ..." line, and
    .venv/bin/chalice local --stage dev --port 8001

Connect answers as the emulated one does (``scripts/emulated_connect.py``): a web call's meeting is not a real
Amazon Chime meeting, so a browser can place a call but not join it (the web-call example's local mode).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

# The one emulated account: the demo, the chaos run and the tests import it from here.
ACCOUNT = "111122223333"
REGION = "us-east-1"
PROJECT = Path(__file__).resolve().parent.parent


def dev_stage_environment() -> dict[str, str]:
    """The dev stage's environment variables, as ``.chalice/config.json`` gives them to ``chalice local``."""
    config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
    return {**config["environment_variables"], **config["stages"]["dev"]["environment_variables"]}


def start() -> tuple[dict[str, str], Any, Any]:
    """Start moto and the emulated Connect (and Participant Service), create the dev stage's tables, bucket, topic
    and participant-token key; returns the variables that point the relay at them, and the two servers."""
    os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT
    import boto3
    from moto.server import ThreadedMotoServer

    from scripts.emulated_connect import EmulatedConnect

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    connect = EmulatedConnect(REGION)
    connect_url = connect.start()
    environment = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ENDPOINT_URL_CONNECT": connect_url,
        "AWS_ENDPOINT_URL_CONNECTPARTICIPANT": connect_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    stage = dev_stage_environment()
    os.environ.update(environment)  # this process's own clients, the same way the relay's find them
    boto3.client("dynamodb").create_table(
        TableName=stage["STREAMS_TABLE_NAME"],
        KeySchema=[{"AttributeName": "initial_contact_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "initial_contact_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("dynamodb").create_table(
        TableName=stage["HEALTH_TABLE_NAME"],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("dynamodb").create_table(
        TableName=stage["DELIVERIES_TABLE_NAME"],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    from chalicelib.adapters.sessions_table import table_definition

    boto3.client("dynamodb").create_table(**table_definition(stage["SESSIONS_TABLE_NAME"]))
    boto3.client("s3").create_bucket(Bucket=stage["QUARANTINE_BUCKET"])
    boto3.client("sns").create_topic(Name=stage["STREAMING_TOPIC_ARN"].rsplit(":", 1)[1])
    kms = boto3.client("kms")
    key_id = kms.create_key(Description="participant tokens")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=stage["PARTICIPANT_TOKEN_KEY_ID"], TargetKeyId=key_id)
    return environment, moto, connect


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted."""
    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0]).parse_args(argv)
    environment, moto, connect = start()
    print("Emulated AWS for chalice local is up. In the terminal where you run chalice local:\n")
    print("export " + " ".join(f"{name}={value}" for name, value in environment.items()), flush=True)
    print("\nCtrl-C stops it.", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        connect.stop()
        moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
