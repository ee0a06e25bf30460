"""Each Lambda function's module loads only what its handler needs before the first event (issue 13: small and
fast to wake).

Lambda imports the module its Handler names in a fresh interpreter before the first invocation; ``make bench``
(``bench/wake.py``) times that import against ``import boto3`` alone. What a handler uses only once an event
arrives (the relay and its webhook sender, the adapters, the archive, replays, two-way chats) is imported by the
factory in ``chalicelib.dependencies`` that builds it, on first use. These tests import each handler module in a
fresh interpreter, as Lambda does, and fail if one of the heavy modules below is loaded at import, so the saving
cannot silently regress when an import is added at the top of a module.

``urllib3`` is not on the list: ``import boto3`` loads it (botocore's HTTP session), and the handlers need boto3
before their first AWS call, so it is part of the baseline that the bench compares with.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app import app
from tests.conftest import PROJECT, dev_stage_environment

ADAPTERS = sorted(
    f"chalicelib.adapters.{path.stem}"
    for path in (PROJECT / "chalicelib" / "adapters").glob("*.py")
    if path.stem != "__init__"
)
# Loaded on first use only: webhook delivery (standardwebhooks, the sender, SSRF checks), the relay and what it
# builds, the destinations file, endpoint health, replays, contact events and starts, two-way chats, transcripts,
# reconciliation, Powertools (its Logger and Metrics are made on first use, its parameter providers read webhook
# secrets) and boto3's DynamoDB conditions; every adapter.
HEAVY = (
    "standardwebhooks",
    "aws_lambda_powertools",
    "aws_lambda_powertools.utilities.parameters",
    "boto3.dynamodb",
    "chalicelib.relay",
    "chalicelib.delivery",
    "chalicelib.signing",
    "chalicelib.ssrf",
    "chalicelib.destinations",
    "chalicelib.health",
    "chalicelib.aws_delivery",
    "chalicelib.archive_replay",
    "chalicelib.redrive",
    "chalicelib.two_way_chats",
    "chalicelib.attachment_links",
    "chalicelib.contact_event_service",
    "chalicelib.contact_starts",
    "chalicelib.transcript_service",
    "chalicelib.transcript_scan",
    "chalicelib.reconciliation_service",
    *ADAPTERS,
)
# What a module needs at import: constants its decorators or request types read, and, for the API function (``app``,
# every blueprint), what its routes' module-level names come from.
NEEDED_AT_IMPORT = {
    "chalicelib.handlers.reconciliation": {"chalicelib.reconciliation_service"},
    "app": {
        "chalicelib.reconciliation_service",
        "chalicelib.two_way_chats",
        "chalicelib.redrive",
    },
}


def handler_modules() -> list[str]:
    """The module of every function but the API's (``app``), as Lambda's Handler names it (``module.function``)."""
    handlers = [source.handler_string for source in app.event_sources]
    handlers += [function.handler_string for function in app.pure_lambda_functions]
    return sorted({handler.rsplit(".", 1)[0] for handler in handlers})


def route_modules() -> set[str]:
    """The modules of the API function's routes."""
    return {entry.view_function.__module__ for methods in app.routes.values() for entry in methods.values()}


def modules_after_import(module: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter (the dev stage's environment) after ``import <module>``."""
    script = f"import json, sys\nimport {module}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", **dev_stage_environment()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout))


def test_every_event_handler_module_is_checked() -> None:
    # Given the app's functions, when their modules are listed, then each event source's module is among them.
    assert set(handler_modules()) >= {
        "chalicelib.handlers.chat_stream",
        "chalicelib.handlers.contact_events",
        "chalicelib.handlers.flow",
        "chalicelib.handlers.retries",
    }
    assert set(NEEDED_AT_IMPORT) <= {*handler_modules(), "app"}
    assert set(HEAVY) >= {"chalicelib.adapters.webhooks", "chalicelib.adapters.secrets"}


@pytest.mark.parametrize("module", [*handler_modules(), "app"])
def test_handler_module_imports_nothing_heavy(module: str) -> None:
    # Given a fresh interpreter, as Lambda starts one, when it imports the handler's module,
    loaded = modules_after_import(module)

    # then boto3 is there (its clients are made on first use) and no heavy module is, nor, but for the API
    # function's, another function's module or a route's.
    assert "boto3" in loaded
    heavy = set(HEAVY) - NEEDED_AT_IMPORT.get(module, set())
    assert sorted(loaded & heavy) == []
    if module != "app":
        others = {*handler_modules(), *route_modules(), "chalicelib.handlers.http"} - {module}
        assert sorted(loaded & others) == []


def test_powertools_is_made_on_the_first_invocation_with_every_log_field_and_metric() -> None:
    # Given a fresh interpreter in which the relay's observability is imported, Powertools is not loaded yet;
    script = """
import json, sys
from chalicelib.observability import contact_keys, count, logger, observed
assert "aws_lambda_powertools" not in sys.modules

class Context:
    aws_request_id = "request-1"

@observed
def handler(event, context):
    with contact_keys(initial_contact_id="initial-1", contact_id="contact-1"):
        logger.warning("a line")
    count("ItemsDelivered")

handler({}, Context())
print(json.dumps(sorted(name for name in sys.modules if name.startswith("aws_lambda_powertools"))[:1]))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT,
        env={"PATH": "/usr/bin:/bin", **dev_stage_environment(), "POWERTOOLS_METRICS_DISABLED": "false"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    *lines, loaded = done.stdout.strip().splitlines()

    # when a handler is invoked, then its log line and its metric are what Powertools wrote before.
    assert json.loads(loaded) == ["aws_lambda_powertools"]
    log, emf = (json.loads(line) for line in lines)
    assert log["message"] == "a line"
    assert log["level"] == "WARNING"
    assert log["service"] == "connect-chat-relay"
    assert (log["request_id"], log["initial_contact_id"], log["contact_id"]) == ("request-1", "initial-1", "contact-1")
    assert emf["ItemsDelivered"] == [1.0]
    assert emf["service"] == "connect-chat-relay"
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ConnectChatRelay"
    assert emf["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "ItemsDelivered", "Unit": "Count"}]
