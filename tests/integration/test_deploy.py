"""``make deploy`` and ``make destroy`` against moto server on 127.0.0.1, in a copy of the project.

The deploy runs as ``python -m scripts.deploy`` does, in its own interpreter, through ``deploy_boundary.py``: two
stand-ins where moto or the sandbox stops (the Lambda package build needs PyPI; moto's REST API import does not take
Chalice's Swagger 2.0), both described there; the REST API's request is checked here instead. Everything else is
moto: the infrastructure and monitoring stacks through change sets, IAM roles, functions, the managed layer they
share, the SNS subscription, EventBridge rules, event source mappings, on-failure destinations, S3.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts.deploy import MAXIMUM_EVENT_AGE_SECONDS, MAXIMUM_RETRY_ATTEMPTS
from scripts.lambda_runtime import LAMBDA_RUNTIME
from scripts.local_aws import ACCOUNT
from scripts.stage import load_stage, predicted_outputs
from tests.conftest import PROJECT, REGION

pytestmark = pytest.mark.integration
COPIED = ("app.py", "chalicelib", "scripts", "stages", "infra", "requirements.txt", ".chalice")
BOUNDARY = Path(__file__).parent / "deploy_boundary.py"
STAGE = "dev"
LAYER = f"connect-chat-relay-{STAGE}-managed-layer"


def _copy_project(target: Path) -> None:
    for name in COPIED:
        source = PROJECT / name
        if source.is_dir():
            shutil.copytree(
                source, target / name, ignore=shutil.ignore_patterns("__pycache__", "deployed", "deployments")
            )
        else:
            shutil.copy2(source, target / name)


@contextlib.contextmanager
def _outputs_after_change_sets() -> Iterator[None]:
    """moto 5.2.5 computes a stack's outputs only in create_stack and update_stack; CloudFormation also has them
    after a change set is executed. This gives moto's stack its outputs there too, while it lasts."""
    from moto.cloudformation.models import CloudFormationBackend

    original = CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        for stack in self.stacks.values():
            stack._parse_template()
            stack.output_map = stack._create_output_map()

    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]
    try:
        yield
    finally:
        CloudFormationBackend.execute_change_set = original  # type: ignore[method-assign]


@dataclass
class Run:
    returncode: int
    output: str


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _optional(call: Any, **arguments: Any) -> Any:
    """The call's answer without its ResponseMetadata, or None when it answers an error (not found)."""
    try:
        answer = call(**arguments)
    except ClientError:
        return None
    answer.pop("ResponseMetadata", None)
    return answer


def observe(endpoint: str) -> dict[str, Any]:
    """What moto holds of the stage's deployment: the stack, functions (settings, role policy, invoke config),
    subscriptions, rules, event source mappings and buckets."""
    stage = load_stage(STAGE)
    client = functools.partial(_client, endpoint)
    lam, iam = client("lambda"), client("iam")
    stacks = _optional(client("cloudformation").describe_stacks, StackName=stage.stack_name)
    monitoring = _optional(client("cloudformation").describe_stacks, StackName=stage.monitoring_stack_name)
    functions = {}
    for function in json.loads((PROJECT / ".chalice" / "config.json").read_text())["stages"][STAGE]["lambda_functions"]:
        found = _optional(lam.get_function_configuration, FunctionName=stage.function_name(function))
        if found is None:
            continue
        role = found["Role"].rsplit("/", 1)[-1]
        (policy_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        policy = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        invoke = _optional(lam.get_function_event_invoke_config, FunctionName=stage.function_name(function))
        functions[function] = {
            "configuration": found,
            "policy": json.loads(policy) if isinstance(policy, str) else policy,
            "invoke": invoke,
        }
    topic = predicted_outputs(stage)["StreamingTopicArn"]
    subscriptions = _optional(client("sns").list_subscriptions_by_topic, TopicArn=topic)
    return {
        "layer_versions": lam.list_layer_versions(LayerName=LAYER)["LayerVersions"],
        "stack": stacks["Stacks"][0] if stacks else None,
        "monitoring": monitoring["Stacks"][0] if monitoring else None,
        "functions": functions,
        "subscriptions": subscriptions["Subscriptions"] if subscriptions else [],
        "rules": {
            rule["Name"]: json.loads(rule["EventPattern"]) if "EventPattern" in rule else rule["ScheduleExpression"]
            for rule in client("events").list_rules()["Rules"]
        },
        "mappings": lam.list_event_source_mappings()["EventSourceMappings"],
        "buckets": [bucket["Name"] for bucket in client("s3").list_buckets()["Buckets"]],
    }


@dataclass
class Deployed:
    """Two deploys, then two destroys (keeping the archive, then deleting it), and what moto held after each."""

    project: Path
    first: Run
    second: Run
    after_first: dict[str, Any]
    after_second: dict[str, Any]
    destroy: Run
    after_destroy: dict[str, Any]
    delete_archive: Run
    after_delete_archive: dict[str, Any]

    def rest_api_calls(self) -> list[dict[str, Any]]:
        record = self.project / "rest-api.json"
        return json.loads(record.read_text()) if record.is_file() else []


def _run(project: Path, endpoint: str, *arguments: str) -> Run:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    environment.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        PYTHONDONTWRITEBYTECODE="1",
    )
    done = subprocess.run(
        [sys.executable, str(BOUNDARY), *arguments],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return Run(done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    from moto.server import ThreadedMotoServer

    saved = os.environ.get("MOTO_ACCOUNT_ID")
    os.environ["MOTO_ACCOUNT_ID"] = ACCOUNT
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        project = tmp_path_factory.mktemp("project")
        _copy_project(project)
        runs, states = [], []
        with _outputs_after_change_sets(), warnings.catch_warnings():
            # moto creates no alarms, dashboard, topic or bucket policy (and says so for each).
            warnings.filterwarnings("ignore", message="Tried to parse AWS::.* but it's not supported by moto")
            for arguments in (["deploy"], ["deploy"], ["destroy"], ["destroy", "--delete-archive"]):
                runs.append(_run(project, endpoint, *arguments, "--stage", STAGE))
                assert runs[-1].returncode == 0, runs[-1].output
                states.append(observe(endpoint))
        yield Deployed(project, runs[0], runs[1], states[0], states[1], runs[2], states[2], runs[3], states[3])
    finally:
        server.stop()
        if saved is None:
            os.environ.pop("MOTO_ACCOUNT_ID", None)
        else:
            os.environ["MOTO_ACCOUNT_ID"] = saved


def test_the_infrastructure_stack_is_created_with_the_outputs_the_stage_predicted(deployed: Deployed) -> None:
    stack = deployed.after_first["stack"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    assert outputs == predicted_outputs(load_stage(STAGE))
    assert "infrastructure: create stack" in deployed.first.output
    assert "CREATE_COMPLETE" in deployed.first.output
    # Its outputs are kept in the stage file; rendered from them, every other file is as committed.
    kept = json.loads((deployed.project / "stages" / f"{STAGE}.json").read_text())["stack_outputs"]
    assert kept == outputs
    for path in (".chalice/config.json", f"chalicelib/config/destinations-{STAGE}.json"):
        assert (deployed.project / path).read_text() == (PROJECT / path).read_text(), path
    assert f"connect-chat-relay-{STAGE}-{ACCOUNT}" in deployed.after_first["buckets"]


def test_every_function_is_deployed_with_its_settings_and_its_own_role(deployed: Deployed) -> None:
    config = json.loads((PROJECT / ".chalice" / "config.json").read_text())
    section = config["stages"][STAGE]
    environment = {**config["environment_variables"], **section["environment_variables"]}
    functions = deployed.after_first["functions"]
    assert set(functions) == set(section["lambda_functions"])
    for function, settings in section["lambda_functions"].items():
        found = functions[function]["configuration"]
        assert found["Runtime"] == LAMBDA_RUNTIME, function
        assert found["Timeout"] == settings.get("lambda_timeout", config["lambda_timeout"]), function
        assert found["MemorySize"] == settings.get("lambda_memory_size", config["lambda_memory_size"]), function
        assert found["Environment"]["Variables"] == environment, function
        policy = json.loads((PROJECT / ".chalice" / settings["iam_policy_file"]).read_text())
        assert functions[function]["policy"] == policy, function


def test_every_function_runs_on_the_one_managed_layer_built_for_its_runtime(deployed: Deployed) -> None:
    """The dependencies are in one layer (``automatic_layer``) that every function references, built by Chalice
    for the runtime it is given (its packager names the layer's directory after it) and published for it alone."""
    (layer,) = deployed.after_first["layer_versions"]
    assert layer["CompatibleRuntimes"] == [LAMBDA_RUNTIME]
    functions = deployed.after_first["functions"]
    assert functions
    for function, found in functions.items():
        assert [used["Arn"] for used in found["configuration"]["Layers"]] == [layer["LayerVersionArn"]], function
    built = sorted(path.name for path in (deployed.project / ".chalice" / "deployments").glob("stand-in-layer-*"))
    assert built == [f"stand-in-layer-{LAMBDA_RUNTIME}.zip"]
    # A second deploy publishes the layer again and deletes the version before: one version is left.
    (again,) = deployed.after_second["layer_versions"]
    for found in deployed.after_second["functions"].values():
        assert [used["Arn"] for used in found["configuration"]["Layers"]] == [again["LayerVersionArn"]]


def test_the_event_sources_are_subscribed_with_their_settings(deployed: Deployed) -> None:
    """The SNS subscription, both EventBridge rules, each SQS mapping's batch size and partial batch responses,
    and the on-failure destination of every function invoked asynchronously."""
    stage = load_stage(STAGE)
    outputs = predicted_outputs(stage)
    state = deployed.after_first
    assert [s["Endpoint"].rsplit(":", 1)[-1] for s in state["subscriptions"]] == [
        stage.function_name("on_chat_message")
    ]
    contact_rule = next(p for n, p in state["rules"].items() if "on_contact_event" in n)
    assert contact_rule["source"] == ["aws.connect"]
    assert next(p for n, p in state["rules"].items() if "scan_transcripts" in n).startswith(("rate(", "cron("))
    assert next(p for n, p in state["rules"].items() if "sweep_sessions" in n).startswith(("rate(", "cron("))
    transcript_rule = next(p for n, p in state["rules"].items() if "on_transcript_written" in n)
    assert transcript_rule["detail"]["bucket"]["name"] == [f"amazon-connect-{STAGE}-{ACCOUNT}"]
    mappings = {m["FunctionArn"].rsplit(":", 1)[-1]: m for m in state["mappings"]}
    batches = {"retry_deliveries": 10, "assemble_transcripts": 1, "reconcile_transcripts": 1}
    assert set(mappings) == {stage.function_name(function) for function in batches}
    for function, batch_size in batches.items():
        mapping = mappings[stage.function_name(function)]
        assert mapping["BatchSize"] == batch_size, function
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"], function
    invoked = {name for name, found in state["functions"].items() if found["invoke"] is not None}
    # SNS, EventBridge rules and the schedules: every function Lambda invokes asynchronously.
    assert invoked == {
        "on_chat_message",
        "on_contact_event",
        "on_transcript_written",
        "scan_transcripts",
        "sweep_sessions",
    }
    for function in invoked:
        invoke = state["functions"][function]["invoke"]
        assert invoke["DestinationConfig"]["OnFailure"]["Destination"] == outputs["FailedInvocationsQueueArn"]
        assert (invoke["MaximumRetryAttempts"], invoke["MaximumEventAgeInSeconds"]) == (2, 21600)


def test_the_on_failure_settings_are_those_of_the_packaged_template() -> None:
    merged = json.loads((PROJECT / "infra" / "on-failure.json").read_text())["Resources"]
    configs = [r["Properties"] for r in merged.values() if r.get("Type") == "AWS::Lambda::EventInvokeConfig"]
    assert configs
    for properties in configs:
        assert properties["MaximumRetryAttempts"] == MAXIMUM_RETRY_ATTEMPTS
        assert properties["MaximumEventAgeInSeconds"] == MAXIMUM_EVENT_AGE_SECONDS


def test_the_rest_api_request_is_chalice_s_swagger_for_the_api_function(deployed: Deployed) -> None:
    """moto stops at the REST API import: the request made is checked instead."""
    (imported,) = [call for call in deployed.rest_api_calls() if call["call"] == "import_rest_api"]
    document = imported["swagger_document"]
    assert document["swagger"] == "2.0"
    assert imported["endpoint_type"] == "REGIONAL"
    assert "/contacts/{contact_id}/streaming" in document["paths"]
    integration = document["paths"]["/openapi.json"]["get"]["x-amazon-apigateway-integration"]
    assert f"function:{load_stage(STAGE).function_name('api_handler')}/" in json.dumps(integration["uri"])
    assert next(c["api_gateway_stage"] for c in deployed.rest_api_calls() if c["call"] == "deploy_rest_api") == STAGE
    assert f"API: https://relay0api1.execute-api.{REGION}.amazonaws.com/{STAGE}/" in deployed.first.output
    assert "aws lambda invoke" in deployed.first.output


def _settled(state: dict[str, Any]) -> dict[str, Any]:
    """A state without what every deploy rewrites: code upload times and revisions, and the layer's version number
    (Chalice publishes the layer again on every deploy and deletes the version before)."""
    functions = {
        name: {
            **found,
            "configuration": {k: v for k, v in found["configuration"].items() if k not in VOLATILE},
            "layers": [layer["Arn"].rsplit(":", 1)[0] for layer in found["configuration"]["Layers"]],
        }
        for name, found in state["functions"].items()
    }
    mappings = [{k: v for k, v in m.items() if k not in VOLATILE} for m in state["mappings"]]
    stack = {k: v for k, v in state["stack"].items() if k not in VOLATILE}
    monitoring = {k: v for k, v in state["monitoring"].items() if k not in VOLATILE}
    layers = [{k: v for k, v in layer.items() if k not in VOLATILE} for layer in state["layer_versions"]]
    return {
        **state,
        "functions": functions,
        "mappings": mappings,
        "stack": stack,
        "monitoring": monitoring,
        "layer_versions": layers,
    }


VOLATILE = frozenset(
    {
        "LastModified",
        "RevisionId",
        "CodeSha256",
        "CodeSize",
        "LastUpdateStatus",
        "State",
        "LastUpdatedTime",
        "Layers",
        "LayerVersionArn",
        "Version",
        "CreatedDate",
    }
)


def test_the_monitoring_stack_comes_after_the_functions_and_tells_the_alarm_topic(deployed: Deployed) -> None:
    """moto keeps no alarms or dashboards (tests/unit/test_operations.py checks what they watch): the stack, its
    parameters and its place in the run are checked here."""
    stage = load_stage(STAGE)
    stack = deployed.after_first["monitoring"]
    assert stack["StackName"] == f"connect-chat-relay-{STAGE}-monitoring"
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:connect-chat-relay-{STAGE}-alarms"
    assert parameters == {"Stage": STAGE, "AlarmTopicArn": topic}
    assert predicted_outputs(stage)["AlarmTopicArn"] == topic
    output = deployed.first.output
    assert "monitoring: create stack" in output
    assert output.index("set what Chalice cannot") < output.index("monitoring: create stack") < output.index("API: ")


def test_a_second_deploy_changes_nothing(deployed: Deployed) -> None:
    assert "infrastructure: no changes" in deployed.second.output
    assert "monitoring: no changes" in deployed.second.output
    assert "rendered " not in deployed.second.output
    assert "kept in stages" not in deployed.second.output
    settings = sum(found["invoke"] is not None for found in deployed.after_first["functions"].values())
    settings += len(deployed.after_first["mappings"])
    assert f"set what Chalice cannot: {settings} change(s)" in deployed.first.output
    assert "set what Chalice cannot: 0 change(s)" in deployed.second.output
    assert _settled(deployed.after_second) == _settled(deployed.after_first)


def test_destroy_removes_the_functions_and_the_stack_and_keeps_the_archive_unless_told(deployed: Deployed) -> None:
    bucket = f"connect-chat-relay-{STAGE}-{ACCOUNT}"
    after = deployed.after_destroy
    assert after["stack"] is None
    assert after["monitoring"] is None
    assert f"monitoring: deleting stack connect-chat-relay-{STAGE}-monitoring" in deployed.destroy.output
    assert f"monitoring: no stack connect-chat-relay-{STAGE}-monitoring" in deployed.delete_archive.output
    assert after["functions"] == {}
    assert after["layer_versions"] == []
    assert after["subscriptions"] == after["mappings"] == []
    assert after["rules"] == {}
    assert bucket in after["buckets"]
    assert f"kept: bucket {bucket}" in deployed.destroy.output
    assert bucket not in deployed.after_delete_archive["buckets"]
    assert f"archive: bucket {bucket} deleted" in deployed.delete_archive.output
