"""Both deployment paths (`chalice deploy` and `make package`): each function writes its own logs and no other, and
runs on the one stated Lambda runtime.

Lambda writes a function's logs to ``/aws/lambda/<function name>``, so the Logs statement of each function's policy
must name that exact log group. The two paths name functions differently unless told: ``chalice deploy`` calls the
API function ``connect-chat-relay-<stage>`` (no suffix) and the others ``connect-chat-relay-<stage>-<name>``;
CloudFormation would call them ``<stack>-<LogicalId>-<random>``, which no policy can name, so the merged template
(``infra/on-failure.json``) names each after the stack, ``connect-chat-relay-<stage>`` as the README deploys it.
Both paths' names come from Chalice itself here: its application graph (what ``chalice deploy`` creates) and its
SAM template generator (what ``chalice package`` writes), without building a package.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from chalice.awsclient import TypedAWSClient
from chalice.cli.factory import CLIFactory
from chalice.deploy import models
from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder
from chalice.package import PackageOptions, SAMTemplateGenerator, TemplateDeepMerger

from scripts.lambda_runtime import LAMBDA_RUNTIME, layer_archives, pin_runtime, relocate_layer
from scripts.local_aws import ACCOUNT
from tests.conftest import PROJECT, REGION

CONFIG = json.loads((PROJECT / ".chalice" / "config.json").read_text())
STAGES = sorted(CONFIG["stages"])
LOG_ACTIONS = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}


def stack_name(stage: str) -> str:
    """The application stack's name, as the README's package commands deploy it."""
    return f"connect-chat-relay-{stage}"


def log_group_arns(function_name: str) -> set[str]:
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{function_name}"
    return {group, f"{group}:*"}


def chalice_deploy_functions(stage: str) -> list[models.LambdaFunction]:
    config = CLIFactory(str(PROJECT)).create_config_obj(chalice_stage_name=stage)
    application = ApplicationGraphBuilder().build(config, stage)
    return [r for r in DependencyBuilder().build_dependencies(application) if isinstance(r, models.LambdaFunction)]


def packaged_template(stage: str) -> dict[str, Any]:
    config = CLIFactory(str(PROJECT)).create_config_obj(chalice_stage_name=stage)
    application = ApplicationGraphBuilder().build(config, stage)
    resources = DependencyBuilder().build_dependencies(application)
    options = PackageOptions(TypedAWSClient(botocore.session.get_session()))
    template = SAMTemplateGenerator(config, options).generate(resources)
    merged = json.loads((PROJECT / "infra" / "on-failure.json").read_text())
    return TemplateDeepMerger().merge(merged, template)


def cloudformation_name(function: dict[str, Any], stage: str) -> str:
    name = function["Properties"].get("FunctionName")
    assert isinstance(name, dict), "without a FunctionName CloudFormation adds a random suffix no policy can name"
    return str(name["Fn::Sub"]).replace("${AWS::StackName}", stack_name(stage))


def log_resources(policy: dict[str, Any]) -> set[str]:
    statements = [s for s in policy["Statement"] if set(s["Action"]) & LOG_ACTIONS]
    assert len(statements) == 1
    assert set(statements[0]["Action"]) == LOG_ACTIONS
    return set(statements[0]["Resource"])


@pytest.mark.parametrize("stage", STAGES)
def test_each_function_may_write_to_its_own_log_group_on_both_paths(stage: str) -> None:
    """Given each function of a stage, as chalice deploy names it and as the packaged template names it, then its
    policy grants the logs actions on exactly that function's log group."""
    template = packaged_template(stage)
    packaged = {
        resource["Properties"]["Handler"]: resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    deployed = chalice_deploy_functions(stage)
    assert len(deployed) == len(packaged) == len(CONFIG["stages"][stage]["lambda_functions"])
    for function in deployed:
        # The policy file Chalice puts in the function's role, on both paths.
        role = function.role
        assert isinstance(role, models.ManagedIAMRole)
        assert isinstance(role.policy, models.FileBasedIAMPolicy)
        policy = json.loads((PROJECT / ".chalice" / role.policy.filename).read_text())

        assert log_resources(policy) == log_group_arns(function.function_name), function.resource_name
        assert cloudformation_name(packaged[function.handler], stage) == function.function_name


def test_the_api_function_has_no_suffix() -> None:
    """Given chalice deploy's names, then the API function is the app and stage alone (its logs were denied when the
    policy named only ``connect-chat-relay-<stage>-*``)."""
    names = {f.resource_name: f.function_name for f in chalice_deploy_functions("dev")}
    assert names["api_handler"] == "connect-chat-relay-dev"
    assert names["on_chat_message"] == "connect-chat-relay-dev-on_chat_message"


@pytest.mark.parametrize("stage", STAGES)
def test_every_packaged_function_runs_on_the_one_stated_runtime(stage: str) -> None:
    """Given the packaged template (built here with Python 3.11), then `make package`'s step sets every function
    to the runtime stated in scripts/lambda_runtime.py, whatever Python ran Chalice."""
    template = pin_runtime(packaged_template(stage))
    runtimes = {
        name: resource["Properties"]["Runtime"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    assert set(runtimes.values()) == {LAMBDA_RUNTIME}
    assert len(runtimes) == len(CONFIG["stages"][stage]["lambda_functions"])


@pytest.mark.parametrize("stage", STAGES)
def test_every_packaged_function_uses_the_one_managed_layer_for_the_stated_runtime(stage: str) -> None:
    """Given the packaged template, then the dependencies are one layer (``automatic_layer``) that every function
    references, and `make package`'s step makes it compatible with the stated runtime alone."""
    template = pin_runtime(packaged_template(stage))
    layers = {n: r for n, r in template["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion"}
    assert list(layers) == ["ManagedLayer"]
    assert layers["ManagedLayer"]["Properties"]["CompatibleRuntimes"] == [LAMBDA_RUNTIME]
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    assert len(functions) == len(CONFIG["stages"][stage]["lambda_functions"])
    assert all(function["Properties"]["Layers"] == [{"Ref": "ManagedLayer"}] for function in functions)


def test_the_layer_s_packages_move_to_the_stated_runtime_s_directory(tmp_path: Path) -> None:
    """Given a layer zip as Chalice builds it on Python 3.11 (``python/lib/python3.11/site-packages/``, which
    python3.14 does not search), when `make package`'s step relocates it, then every entry is under the stated
    runtime's directory with its content and date, and a second run moves nothing."""
    built = "python/lib/python3.11/site-packages/"
    entries = {"boto3/__init__.py": b"__version__ = '1'\n", "boto3-1.dist-info/RECORD": b"boto3/__init__.py,,\n"}
    archive = tmp_path / "layer-deployment.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as layer:
        for name, content in entries.items():
            layer.writestr(zipfile.ZipInfo(built + name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    layer_properties = {"ContentUri": "./layer-deployment.zip"}
    template = {
        "Resources": {"ManagedLayer": {"Type": "AWS::Serverless::LayerVersion", "Properties": layer_properties}}
    }
    assert layer_archives(template, tmp_path) == [tmp_path / "./layer-deployment.zip"]

    assert relocate_layer(archive) == len(entries)

    with zipfile.ZipFile(archive) as layer:
        assert {info.filename: layer.read(info) for info in layer.infolist()} == {
            f"python/lib/{LAMBDA_RUNTIME}/site-packages/{name}": content for name, content in entries.items()
        }
        assert {info.date_time for info in layer.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert relocate_layer(archive) == 0


def test_the_makefile_pins_the_runtime_of_the_package_it_builds() -> None:
    assert "$(BIN)/python -m scripts.lambda_runtime build/package/sam.json" in (PROJECT / "Makefile").read_text()


ASYNCHRONOUS_EVENTS = frozenset({"SNS", "CloudWatchEvent", "Schedule", "S3"})


@pytest.mark.parametrize("stage", STAGES)
def test_the_packaged_template_sets_what_make_deploy_sets_for_every_function_that_needs_it(stage: str) -> None:
    """Given the packaged template, then every function invoked asynchronously (SNS, EventBridge, schedules, S3) has
    an on-failure destination and every SQS event source reports partial batch failures, as `make deploy` sets them
    (derived from the template Chalice generates, so a new function without them fails here)."""
    template = packaged_template(stage)
    resources = template["Resources"]
    on_failure = {
        r["Properties"]["FunctionName"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {"Ref": "FailedInvocationsQueueArn"}
    }
    asynchronous, sqs = set(), {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event_name, event in (resource["Properties"].get("Events") or {}).items():
            if event["Type"] in ASYNCHRONOUS_EVENTS:
                asynchronous.add(name)
            elif event["Type"] == "SQS":
                sqs[event_name] = event["Properties"].get("FunctionResponseTypes")
    assert asynchronous == on_failure
    assert sqs
    assert all(types == ["ReportBatchItemFailures"] for types in sqs.values()), sqs
