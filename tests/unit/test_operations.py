"""Operating the relay: the alarms and the dashboard of ``infra/relay-monitoring.yaml`` cover every metric the code
emits, every queue ``infra/relay-infrastructure.yaml`` creates and every function Chalice deploys, and both
templates fit CloudFormation's TemplateBody.

Each set is derived, never listed: the metrics from the calls to ``count`` and ``milliseconds`` in chalicelib/
(with the dimensions each call adds, since a metric emitted with a ``reason`` is a different metric from one
without and an alarm on the plain one never fires), the queues from the infrastructure template's
``AWS::SQS::Queue`` resources (by the name each gets in the stage), the functions from Chalice's application graph,
named as ``chalice deploy`` names them (``tests/unit/test_deployment_paths.py``; ``make package`` names them the
same). A metric added without an alarm fails here unless it is named below as one that only informs; every metric
is on the dashboard either way.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest

from scripts.deploy import ALARM_TOPIC_OUTPUT, MAX_TEMPLATE_BODY
from scripts.stage import INFRASTRUCTURE_TEMPLATE, MONITORING_TEMPLATE, read_template
from tests.conftest import PROJECT
from tests.unit.test_deployment_paths import STAGES, chalice_deploy_functions

NAMESPACE = "ConnectChatRelay"
SERVICE = "connect-chat-relay"
# Metrics that say what went well or what the relay did on its own, with no operator action to take: on the
# dashboard, never paging. A metric of trouble belongs in an alarm (and in the README's runbook).
INFORMS_ONLY = frozenset(
    {
        "AttachmentCopied",
        "ChatAttachmentSent",
        "ChatAttachmentStarted",
        "ChatContactStarted",
        "ChatDisconnected",
        "ChatEventSent",
        "ChatMessageSent",
        "CircuitClosed",
        "DeliveryDeferred",  # a destination's rate limit or open circuit: CircuitOpened and retry age alarm
        "DeliveryLatency",
        "DeliveryParked",  # a disabled destination's events: DestinationDisabled alarms
        "DeliveryRecovered",
        "DeliveryRedriven",
        "DeliveryRetried",  # the retry path working: DeliveryExhausted and the retry queue alarm
        "DeliverySkipped",  # the ledger working: a redelivered event not delivered again where it got through
        "DeliverySucceeded",
        "DestinationEnabled",
        "EventsReplayed",
        "ParkedReplayed",
        "ParticipantConnectionHeld",
        "RateLimited",
        "ReplayStarted",
        "SessionsReconciled",
        "SessionsSwept",
        "StreamingSkipped",
        "StreamingStartDeferred",  # another start of the same chat is under way; Lambda retries the event
        "StreamingStarted",
        "StreamingStopped",
        "TranscriptAssembled",
        "TranscriptIgnored",
        "TranscriptReassemblyQueued",  # late or recovered items: a new version on its way
        "TranscriptsScanned",
        "WebRTCContactStarted",
    }
)
_EMITTERS = {"count", "milliseconds"}


def _names(node: ast.expr) -> Iterator[str]:
    """The metric names an argument can be: a string, or either branch of ``a if c else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value
    elif isinstance(node, ast.IfExp):
        yield from _names(node.body)
        yield from _names(node.orelse)
    else:
        raise AssertionError(f"a metric name that is not a literal: {ast.unparse(node)}")


def _called(node: ast.Call) -> str | None:
    return node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)


def _argument(call: ast.Call, function: ast.FunctionDef, parameter: str) -> ast.expr | None:
    """What ``call`` passes for ``function``'s ``parameter`` (by keyword or by position)."""
    for keyword in call.keywords:
        if keyword.arg == parameter:
            return keyword.value
    positional = [a.arg for a in function.args.posonlyargs + function.args.args]
    index = positional.index(parameter) if parameter in positional else len(call.args)
    return call.args[index] if index < len(call.args) else None


_Call = tuple[ast.Call, ast.FunctionDef | None]


def _parameters(function: ast.FunctionDef) -> set[str]:
    return {a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs}


@cache
def _chalicelib_calls() -> tuple[list[_Call], list[_Call], dict[str, ast.FunctionDef]]:
    """Every named call in chalicelib/ with the function it is in, those of count/milliseconds among them, and the
    functions by name."""
    calls: list[_Call] = []
    emitting: list[_Call] = []
    functions: dict[str, ast.FunctionDef] = {}
    for path in sorted((PROJECT / "chalicelib").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        enclosing: dict[ast.AST, ast.FunctionDef] = {}
        for node in ast.walk(tree):  # outer functions first, so the innermost one is kept
            if isinstance(node, ast.FunctionDef):
                functions[node.name] = node
                enclosing.update(dict.fromkeys(ast.walk(node), node))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _called(node) is None:
                continue
            calls.append((node, enclosing.get(node)))
            method = isinstance(node.func, ast.Attribute) and path.name != "observability.py"
            if _called(node) in _EMITTERS and node.args and not method:
                emitting.append((node, enclosing.get(node)))
    return calls, emitting, functions


@cache
def emitted_metrics() -> dict[str, frozenset[str]]:
    """Every metric chalicelib emits, with the dimensions it carries (``service`` and those the call adds).

    A call of ``count``/``milliseconds`` names its metric, or passes on a parameter of the function it is in (a
    helper such as ``keep_unreadable(..., metric=...)``): then each call of that helper names it, or passes it on."""
    calls, pending, functions = _chalicelib_calls()
    pending = list(pending)
    helpers: dict[str, tuple[str, frozenset[str]]] = {}  # helper -> the parameter naming its metric, dimensions
    metrics: dict[str, set[frozenset[str]]] = {}
    while pending:
        call, within = pending.pop()
        name = str(_called(call))
        if name in _EMITTERS:
            dimensions = frozenset({"service", *(k.arg for k in call.keywords if k.arg)})
            value = call.args[0]
        else:
            parameter, dimensions = helpers[name]
            found = _argument(call, functions[name], parameter)
            assert found is not None, f"{ast.unparse(call)} does not name the metric ({parameter})"
            value = found
        if within is not None and isinstance(value, ast.Name) and value.id in _parameters(within):
            if within.name not in helpers:
                helpers[within.name] = (value.id, dimensions)
                pending.extend((c, w) for c, w in calls if _called(c) == within.name)
            continue
        for metric in _names(value):
            metrics.setdefault(metric, set()).add(dimensions)
    for name, shapes in metrics.items():
        assert len(shapes) == 1, f"{name} is emitted with different dimensions {shapes}: one alarm cannot see both"
    return {name: next(iter(shapes)) for name, shapes in metrics.items()}


@cache
def monitoring() -> dict[str, Any]:
    return read_template(MONITORING_TEMPLATE)


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def _value(value: Any, stage: str) -> str:
    """A name as it will be in the stage: ``!Sub`` resolved."""
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
        return value["Fn::Sub"].replace("${Stage}", stage)
    raise AssertionError(f"a value the test cannot read: {value}")


def queue_names(stage: str) -> dict[str, str]:
    """Each queue of the infrastructure template -> its name in the stage."""
    queues = resources(read_template(INFRASTRUCTURE_TEMPLATE), "AWS::SQS::Queue")
    return {logical: _value(queue["Properties"]["QueueName"], stage) for logical, queue in queues.items()}


Watched = set[tuple[str, str, frozenset[tuple[str, str]]]]


def alarm_metrics(stage: str) -> Watched:
    """(namespace, metric, dimensions) of every metric an alarm watches; a Metrics Insights query over a schema
    watches its metric with the schema's dimension names (values "*")."""
    watched = set()
    for alarm in resources(monitoring(), "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        stats = [{**props, "Dimensions": props.get("Dimensions", [])}] if "MetricName" in props else []
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                stats.append(query["MetricStat"]["Metric"])
            schema = re.fullmatch(r"SELECT \w+\((\w+)\) FROM SCHEMA\((\w+), ([\w, ]+)\)", query.get("Expression", ""))
            if schema:
                names = frozenset((d.strip(), "*") for d in schema.group(3).split(","))
                watched.add((schema.group(2), schema.group(1), names))
        for stat in stats:
            dims = frozenset((d["Name"], _value(d["Value"], stage)) for d in stat.get("Dimensions", []))
            watched.add((stat["Namespace"], stat["MetricName"], dims))
    return watched


def dashboard_metrics(stage: str) -> Watched:
    """(namespace, metric, dimensions) of every metric a dashboard widget shows; a SEARCH over a schema shows its
    metric with the schema's dimension names (values "*")."""
    (dashboard,) = resources(monitoring(), "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    body = body.replace("${Stage}", stage).replace("${AWS::Region}", "us-east-1")
    assert "${" not in body, "a substitution the test does not resolve"
    shown = set()
    for widget in json.loads(body)["widgets"]:
        previous: list[Any] = []
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                search = re.fullmatch(
                    r"SEARCH\('\{(\w+),([\w,]+)\} MetricName=\"(\w+)\"', '\w+', \d+\)", row[0]["expression"]
                )
                assert search, row[0]["expression"]
                names = frozenset((d, "*") for d in search.group(2).split(","))
                shown.add((search.group(1), search.group(3), names))
                continue
            fields = [f for f in row if not isinstance(f, dict)]
            if fields and fields[0] == "...":  # the previous row, its last fields replaced by these
                fields = previous[: len(previous) - len(fields) + 1] + fields[1:]
            fields = [previous[i] if f == "." else f for i, f in enumerate(fields)]
            previous = fields
            dims = frozenset(zip(fields[2::2], fields[3::2], strict=True))
            shown.add((fields[0], fields[1], dims))
    return shown


def relay_metric(name: str) -> tuple[str, str, frozenset[tuple[str, str]]]:
    """How an alarm or a widget must name a metric the relay emits: by its exact dimensions."""
    dimensions = emitted_metrics()[name]
    if dimensions == {"service"}:
        return (NAMESPACE, name, frozenset({("service", SERVICE)}))
    return (NAMESPACE, name, frozenset((d, "*") for d in dimensions))


def test_the_scan_finds_the_metrics_of_each_kind_of_call() -> None:
    """Given chalicelib, then the scan finds a plain counter, one with a dimension, a latency and either name of a
    conditional one (so an empty scan cannot pass the tests below)."""
    metrics = emitted_metrics()
    assert metrics["DeliveryFailed"] == {"service"}
    assert metrics["StreamingStartFailed"] == {"service", "reason"}
    assert {"DeliveryLatency", "ChatAttachmentStarted", "ChatAttachmentSent", "StreamingSkipped"} <= set(metrics)
    # Through keep_unreadable(metric=...) directly and through readable_requests(metric=...).
    assert {"InvalidChatItem", "InvalidTranscriptRequest", "InvalidReconciliationRequest"} <= set(metrics)


def test_every_metric_the_relay_emits_is_on_the_dashboard() -> None:
    missing = {name for name in emitted_metrics() if relay_metric(name) not in dashboard_metrics("dev")}
    assert not missing, f"metrics emitted but on no dashboard widget (by their exact dimensions): {sorted(missing)}"


def test_every_metric_of_trouble_has_an_alarm() -> None:
    watched = alarm_metrics("dev")
    missing = {name for name in emitted_metrics() if name not in INFORMS_ONLY and relay_metric(name) not in watched}
    assert not missing, f"metrics without an alarm (or name them in INFORMS_ONLY): {sorted(missing)}"
    assert set(emitted_metrics()) >= INFORMS_ONLY, "INFORMS_ONLY names a metric nothing emits"
    assert relay_metric("DeliveryLedgerUnavailable") in watched, "a failing ledger means possible duplicates"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("metric", ["ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesVisible"])
def test_every_queue_s_age_and_depth_have_an_alarm_and_a_widget(stage: str, metric: str) -> None:
    queues = queue_names(stage)
    assert len(queues) >= 7
    for logical, queue in queues.items():
        shown = ("AWS/SQS", metric, frozenset({("QueueName", queue)}))
        assert shown in alarm_metrics(stage), f"no alarm on {logical}'s {metric}"
        assert shown in dashboard_metrics(stage), f"no dashboard widget shows {logical}'s {metric}"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_s_errors_and_throttles_have_an_alarm_and_a_widget(stage: str, metric: str) -> None:
    functions = [f.function_name for f in chalice_deploy_functions(stage)]
    assert f"connect-chat-relay-{stage}" in functions
    for name in functions:
        shown = ("AWS/Lambda", metric, frozenset({("FunctionName", name)}))
        assert shown in alarm_metrics(stage), f"no alarm on {name}'s {metric}"
        assert shown in dashboard_metrics(stage), f"no dashboard widget shows {name}'s {metric}"


def test_every_alarm_tells_the_infrastructure_stack_s_alarm_topic() -> None:
    """The monitoring stack takes the topic as a parameter, which make deploy fills from the infrastructure
    stack's output of the same name (tests/integration/test_deploy.py deploys both)."""
    infrastructure = read_template(INFRASTRUCTURE_TEMPLATE)
    assert infrastructure["Outputs"][ALARM_TOPIC_OUTPUT]["Value"] == {"Ref": "AlarmTopic"}
    assert resources(infrastructure, "AWS::CloudWatch::Alarm") == {}, "alarms belong in the monitoring stack"
    assert set(monitoring()["Parameters"]) == {"Stage", ALARM_TOPIC_OUTPUT}
    alarms = resources(monitoring(), "AWS::CloudWatch::Alarm")
    assert len(alarms) > 40
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": ALARM_TOPIC_OUTPUT}], name
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", name


@pytest.mark.parametrize("template", [INFRASTRUCTURE_TEMPLATE, MONITORING_TEMPLATE], ids=lambda t: t.name)
def test_each_template_fits_cloudformation_s_template_body(template: Any) -> None:
    """make deploy sends each template inline (TemplateBody), which CloudFormation takes up to 51,200 bytes."""
    assert len(template.read_bytes()) <= MAX_TEMPLATE_BODY


def test_the_readme_s_runbook_says_what_to_do_for_every_alarm() -> None:
    readme = (PROJECT / "README.md").read_text()
    runbook = readme.split("## Runbook", 1)[1].split("\n## ", 1)[0]
    suffix = "-errors-throttles"
    for alarm in resources(monitoring(), "AWS::CloudWatch::Alarm").values():
        name = str(alarm["Properties"]["AlarmName"]["Fn::Sub"]).removeprefix("connect-chat-relay-${Stage}-")
        named = f"`{name.removesuffix(suffix)}`" if name.endswith(suffix) else f"`{name}`"
        assert named in runbook, f"the README's runbook has no line for the alarm {name}"
