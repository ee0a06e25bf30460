"""``make deploy STAGE=dev`` and ``make destroy STAGE=dev``: the relay in an AWS account, in one command each.

Deploy, in order (each step prints what it does, and a second run changes nothing):

1. validates ``stages/<stage>.json`` and checks that the credentials are for its account;
2. deploys ``infra/relay-infrastructure.yaml`` as the stack the stage file names, through a change set (created,
   listed, executed; one with no changes is success), printing the stack's events as they come;
3. reads the stack's outputs into the stage file's ``stack_outputs`` and renders the deployment's files from it
   (``make render``);
4. runs Chalice's own deployer for the stage, as ``chalice deploy --stage`` does, with every function on the runtime
   of ``scripts/lambda_runtime.py`` whatever Python runs it;
5. sets what Chalice cannot declare, for the functions the app's own deployment graph names: the on-failure
   destination of every asynchronously invoked function (SNS, EventBridge, schedules, S3: the stack's
   failed-invocations queue, as ``infra/on-failure.json`` does for ``make package``) and partial batch responses
   (``ReportBatchItemFailures``) on every SQS event source mapping;
6. deploys ``infra/relay-monitoring.yaml`` (alarms and the dashboard) as ``connect-chat-relay-<stage>-monitoring``,
   through a change set as in step 2: it names the stage's queues and functions and tells the infrastructure
   stack's alarm topic (its ``AlarmTopicArn`` output), so it comes once both exist; a stack of its own because the
   infrastructure template with it would be over CloudFormation's 51,200-byte ``TemplateBody``;
7. prints the API's URL and a smoke test.

``infrastructure`` runs steps 1 to 3 alone and ``monitoring`` step 6 alone, for the single-stack path
(``make package``, whose stack ``connect-chat-relay-<stage>`` names the functions as ``chalice deploy`` does).

Destroy: the monitoring stack, ``chalice delete`` for the stage, then the infrastructure stack. The relay's bucket
(quarantine, dead letters, the archive) and the destinations table are retained by the stack (``DeletionPolicy:
Retain``); with ``--delete-archive`` (``make destroy KEEP_ARCHIVE=false``) the bucket is emptied, every version, and
deleted.

boto3 and Chalice only; ``AWS_ENDPOINT_URL`` points both at a stand-in (moto, in ``tests/integration``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError
from chalice.deploy.deployer import ChaliceDeploymentError

from scripts.lambda_runtime import LAMBDA_RUNTIME
from scripts.render import render_all, write
from scripts.stage import (
    INFRASTRUCTURE_TEMPLATE,
    MONITORING_TEMPLATE,
    PROJECT,
    Stage,
    StageFileError,
    load_stage,
)

# The on-failure settings of asynchronously invoked functions; infra/on-failure.json says the same for make package.
MAXIMUM_RETRY_ATTEMPTS = 2
MAXIMUM_EVENT_AGE_SECONDS = 21_600
FAILED_INVOCATIONS_OUTPUT = "FailedInvocationsQueueArn"
ALARM_TOPIC_OUTPUT = "AlarmTopicArn"
PARTIAL_BATCH_RESPONSES = ["ReportBatchItemFailures"]
# CloudFormation takes a template body of at most 51,200 bytes; above it the template must go through S3.
MAX_TEMPLATE_BODY = 51_200
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]


class DeployError(RuntimeError):
    """A step that failed; the message says which and why (never a credential)."""


@dataclass(frozen=True)
class Subscribers:
    """What the Chalice app's deployment graph says about its functions."""

    # Function name -> the ARN of each SQS queue that feeds it.
    sqs: dict[str, list[str]] = field(default_factory=dict)
    # The functions invoked asynchronously (SNS, EventBridge rules and schedules, S3 notifications).
    asynchronous: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)


def _pinned_runtime_config(config: Any) -> Any:
    """Chalice's config for the stage, with every function on :data:`LAMBDA_RUNTIME` (Chalice would take the
    runtime of the Python that runs it)."""
    from chalice.config import Config

    class RelayRuntimeConfig(Config):
        @property
        def lambda_python_version(self) -> str:
            return LAMBDA_RUNTIME

    config.__class__ = RelayRuntimeConfig
    return config


def _chalice_cli() -> Any:
    """Chalice's CLI factory as ``chalice`` makes it: on this process's environment, which it gives the stage's
    variables before importing ``app.py`` (the deploy-time ones decide the topic, queues and rules subscribed)."""
    from chalice.cli import factory

    return factory.CLIFactory(str(PROJECT), environ=os.environ)


class Deployment:
    """One stage's deployment, through one boto3 session; ``say`` prints progress."""

    def __init__(
        self,
        stage: Stage,
        *,
        session: boto3.Session | None = None,
        say: Callable[[str], None] = print,
        poll_seconds: float = 5.0,
    ) -> None:
        self.stage = stage
        self.session = session or boto3.Session(region_name=stage.region)
        self.say = say
        self.poll_seconds = poll_seconds
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        """One client per service for the whole run."""
        if service not in self._clients:
            self._clients[service] = self.session.client(service, region_name=self.stage.region)  # type: ignore[call-overload]
        return self._clients[service]

    # -- the steps ------------------------------------------------------------------------------------------------

    def check_account(self) -> None:
        """Refuse credentials for another account than the stage file's."""
        account = self.client("sts").get_caller_identity()["Account"]
        if account != self.stage.account:
            raise DeployError(
                f"the credentials are for account {account}, {self.stage.path.name} deploys to {self.stage.account}"
            )
        self.say(f"stage {self.stage.name}: account {account}, region {self.stage.region}")

    def deploy_infrastructure(self) -> dict[str, str]:
        """Create or update the infrastructure stack through a change set; its outputs."""
        return self._deploy_stack(
            "infrastructure", self.stage.stack_name, INFRASTRUCTURE_TEMPLATE, self.stage.template_parameters()
        )

    def deploy_monitoring(self, outputs: dict[str, str]) -> None:
        """Create or update the monitoring stack (alarms and the dashboard), which tells the infrastructure stack's
        alarm topic and names the functions as the stage names them: run once both exist."""
        topic = outputs.get(ALARM_TOPIC_OUTPUT)
        if topic is None:
            raise DeployError(f"the infrastructure stack has no {ALARM_TOPIC_OUTPUT} output")
        parameters = {"Stage": self.stage.name, ALARM_TOPIC_OUTPUT: topic}
        self._deploy_stack("monitoring", self.stage.monitoring_stack_name, MONITORING_TEMPLATE, parameters)

    def _deploy_stack(self, label: str, name: str, template: Path, parameters: dict[str, str]) -> dict[str, str]:
        """Create or update a stack through a change set (created, listed, executed), printing its events; its
        outputs. A change set without changes is success."""
        cfn = self.client("cloudformation")
        body = template.read_text()
        if len(body.encode()) > MAX_TEMPLATE_BODY:
            raise DeployError(f"{template.name} is over {MAX_TEMPLATE_BODY} bytes")
        status = self._stack_status(name)
        if status == "ROLLBACK_COMPLETE":
            raise DeployError(f"stack {name} failed to create (ROLLBACK_COMPLETE): delete it, then deploy again")
        change_type = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
        change_set = f"make-deploy-{datetime.now(UTC):%Y%m%d%H%M%S}"
        self.say(f"{label}: {change_type.lower()} stack {name} (change set {change_set})")
        started = datetime.now(UTC)
        try:
            created = cfn.create_change_set(
                StackName=name,
                ChangeSetName=change_set,
                ChangeSetType=change_type,
                TemplateBody=body,
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
                Capabilities=CAPABILITIES,
                Tags=[{"Key": "app", "Value": "connect-chat-relay"}, {"Key": "stage", "Value": self.stage.name}],
            )
        except ClientError as exc:
            # CloudFormation creates a change set without changes and fails it (below); moto refuses to create it.
            if not any(text in str(exc.response.get("Error", {}).get("Message", "")) for text in NO_CHANGES):
                raise
            self.say(f"{label}: no changes")
            return self._outputs(name)
        description = self._wait_for_change_set(created["Id"])
        if description["Status"] == "FAILED":
            reason = str(description.get("StatusReason", ""))
            cfn.delete_change_set(ChangeSetName=created["Id"])
            if any(text in reason for text in NO_CHANGES):
                self.say(f"{label}: no changes")
                return self._outputs(name)
            raise DeployError(f"change set {change_set} failed: {reason}")
        for change in description.get("Changes", []):
            resource = change.get("ResourceChange", {})
            self.say(
                f"  {resource.get('Action', '?'):8} {resource.get('LogicalResourceId', '?')}"
                f" ({resource.get('ResourceType', '?')})"
            )
        cfn.execute_change_set(ChangeSetName=created["Id"])
        final = self._follow_stack(created["StackId"], started)
        if not final.endswith("_COMPLETE") or "ROLLBACK" in final:
            raise DeployError(f"stack {name} ended {final}: see its events above")
        return self._outputs(name)

    def record_outputs(self, outputs: dict[str, str]) -> Stage:
        """Keep the stack's outputs in the stage file and render the deployment's files from it."""
        if outputs != self.stage.stack_outputs:
            self.stage.path.write_text(self.stage.with_outputs(outputs))
            self.say(f"outputs of {self.stage.stack_name} kept in {self.stage.path.relative_to(PROJECT)}")
        self.stage = load_stage(self.stage.name, self.stage.path.parent)
        for path in write(render_all()):
            self.say(f"rendered {path.relative_to(PROJECT)}")
        return self.stage

    def deploy_functions(self) -> dict[str, Any]:
        """``chalice deploy --stage``: Chalice's own deployer and report; the deployed values."""
        from chalice.utils import UI

        cli = _chalice_cli()
        config = _pinned_runtime_config(cli.create_config_obj(chalice_stage_name=self.stage.name))
        # Chalice warns when the local Python is not the functions' runtime; the runtime is pinned above.
        warnings.filterwarnings("ignore", message="You are currently running python")
        session = cli.create_botocore_session()
        session.set_config_variable("region", self.stage.region)
        ui = UI()
        deployer = cli.create_default_deployer(session=session, config=config, ui=ui)
        deployed: dict[str, Any] = deployer.deploy(config, chalice_stage_name=self.stage.name)
        cli.create_deployment_reporter(ui=ui).display_report(deployed)
        return deployed

    def subscribers(self) -> Subscribers:
        """The app's functions and their event sources, from Chalice's deployment graph."""
        from chalice.deploy import models
        from chalice.deploy.appgraph import ApplicationGraphBuilder, DependencyBuilder

        config = _chalice_cli().create_config_obj(chalice_stage_name=self.stage.name)
        application = ApplicationGraphBuilder().build(config, self.stage.name)
        resources = DependencyBuilder().build_dependencies(application)
        found = Subscribers()
        for resource in resources:
            if isinstance(resource, models.LambdaFunction):
                found.functions.append(resource.function_name)
            elif isinstance(resource, models.SQSEventSource):
                queue = resource.queue
                arn = (
                    queue.arn
                    if isinstance(queue, models.QueueARN)
                    else f"arn:{self.stage.partition}:sqs:{self.stage.region}:{self.stage.account}:{queue}"
                )
                found.sqs.setdefault(resource.lambda_function.function_name, []).append(arn)
            elif isinstance(
                resource, models.SNSLambdaSubscription | models.CloudWatchEventBase | models.S3BucketNotification
            ):
                found.asynchronous.append(resource.lambda_function.function_name)
        return found

    def configure_functions(self, subscribers: Subscribers, outputs: dict[str, str]) -> int:
        """On-failure destinations and partial batch responses; how many settings changed."""
        changed = 0
        destination = outputs.get(FAILED_INVOCATIONS_OUTPUT)
        if destination is None:
            raise DeployError(f"the infrastructure stack has no {FAILED_INVOCATIONS_OUTPUT} output")
        lam = self.client("lambda")
        wanted = {
            "MaximumRetryAttempts": MAXIMUM_RETRY_ATTEMPTS,
            "MaximumEventAgeInSeconds": MAXIMUM_EVENT_AGE_SECONDS,
            "DestinationConfig": {"OnFailure": {"Destination": destination}},
        }
        for function in sorted(set(subscribers.asynchronous)):
            try:
                current = lam.get_function_event_invoke_config(FunctionName=function)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                current = {}
            if {key: current.get(key) for key in wanted} == wanted:
                self.say(f"on-failure: {function} unchanged")
                continue
            lam.put_function_event_invoke_config(FunctionName=function, **wanted)
            self.say(f"on-failure: {function} -> {destination.rsplit(':', 1)[-1]}")
            changed += 1
        for function, queues in sorted(subscribers.sqs.items()):
            for queue in queues:
                mappings = lam.list_event_source_mappings(EventSourceArn=queue).get("EventSourceMappings", [])
                found = [m for m in mappings if str(m.get("FunctionArn", "")).rsplit(":", 1)[-1] == function]
                if not found:
                    raise DeployError(f"{function} has no event source mapping for {queue}")
                for mapping in found:
                    if mapping.get("FunctionResponseTypes") == PARTIAL_BATCH_RESPONSES:
                        self.say(f"partial batch responses: {function} unchanged")
                        continue
                    lam.update_event_source_mapping(UUID=mapping["UUID"], FunctionResponseTypes=PARTIAL_BATCH_RESPONSES)
                    self.say(f"partial batch responses: {function} <- {queue.rsplit(':', 1)[-1]}")
                    changed += 1
        return changed

    def report(self, deployed: dict[str, Any]) -> None:
        """The API's URL and a smoke test."""
        resources = deployed.get("resources", [])
        url = next((r.get("rest_api_url") for r in resources if r.get("resource_type") == "rest_api"), None)
        flow = self.stage.function_name("start_streaming_from_flow")
        self.say(f"API: {url}")
        self.say("smoke test (no authorisation, no side effect):")
        self.say(f"  curl -fsS {url}openapi.json | head -c 120; echo")
        self.say(
            f"  aws lambda invoke --region {self.stage.region} --function-name {flow} --payload '{{}}' /dev/stdout"
            '   # answers {"streaming": "failed", "reason": "the event has no Details.ContactData"}'
        )

    def deploy(self) -> dict[str, Any]:
        """Every step of ``make deploy``; Chalice's deployed values."""
        self.check_account()
        outputs = self.deploy_infrastructure()
        self.record_outputs(outputs)
        deployed = self.deploy_functions()
        changed = self.configure_functions(self.subscribers(), outputs)
        self.say(f"set what Chalice cannot: {changed} change(s)")
        self.deploy_monitoring(outputs)
        self.report(deployed)
        return deployed

    def destroy(self, *, delete_archive: bool) -> None:
        """The monitoring stack, ``chalice delete`` for the stage, then the infrastructure stack (and the archive
        bucket if told)."""
        self.check_account()
        self._delete_stack("monitoring", self.stage.monitoring_stack_name)
        self.delete_functions()
        bucket = self.stage.outputs().get("RelayBucketName")
        self._delete_stack("infrastructure", self.stage.stack_name)
        if bucket is None:
            return
        if delete_archive:
            self.delete_bucket(bucket)
        else:
            self.say(
                f"kept: bucket {bucket} and the destinations table (make destroy KEEP_ARCHIVE=false deletes the bucket)"
            )

    def _delete_stack(self, label: str, name: str) -> None:
        if self._stack_status(name) is None:
            self.say(f"{label}: no stack {name}")
            return
        cfn = self.client("cloudformation")
        stack_id = cfn.describe_stacks(StackName=name)["Stacks"][0]["StackId"]
        started = datetime.now(UTC)
        cfn.delete_stack(StackName=stack_id)
        self.say(f"{label}: deleting stack {name}")
        final = self._follow_stack(stack_id, started)
        if final != "DELETE_COMPLETE":
            raise DeployError(f"stack {name} ended {final}: see its events above")

    def delete_functions(self) -> None:
        """``chalice delete --stage``."""
        from chalice.utils import UI

        if not (PROJECT / ".chalice" / "deployed" / f"{self.stage.name}.json").is_file():
            self.say(f"functions: nothing recorded in .chalice/deployed/{self.stage.name}.json")
            return
        cli = _chalice_cli()
        config = cli.create_config_obj(chalice_stage_name=self.stage.name)
        session = cli.create_botocore_session()
        session.set_config_variable("region", self.stage.region)
        cli.create_deletion_deployer(session=session, ui=UI()).deploy(config, chalice_stage_name=self.stage.name)

    def delete_bucket(self, bucket: str) -> None:
        """Empty the bucket (every version and delete marker) and delete it."""
        s3 = self.client("s3")
        deleted = 0
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                objects = [
                    {"Key": item["Key"], "VersionId": item["VersionId"]}
                    for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
                ]
                if objects:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
                    deleted += len(objects)
            s3.delete_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
                raise
            self.say(f"archive: no bucket {bucket}")
            return
        self.say(f"archive: bucket {bucket} deleted ({deleted} object versions)")

    # -- CloudFormation ---------------------------------------------------------------------------------------------

    def _stack_status(self, name: str) -> str | None:
        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                return None
            raise
        status = str(stacks[0]["StackStatus"]) if stacks else None
        return None if status == "DELETE_COMPLETE" else status

    def _wait_for_change_set(self, change_set: str) -> dict[str, Any]:
        cfn = self.client("cloudformation")
        while True:
            description: dict[str, Any] = cfn.describe_change_set(ChangeSetName=change_set)
            if description["Status"] in ("CREATE_COMPLETE", "FAILED"):
                return description
            time.sleep(self.poll_seconds)

    def _follow_stack(self, stack_id: str, since: datetime) -> str:
        """Print the stack's events after ``since`` until it settles; its last status. By id, which still
        answers once the stack is deleted."""
        cfn = self.client("cloudformation")
        seen: set[str] = set()
        while True:
            events = cfn.describe_stack_events(StackName=stack_id)["StackEvents"]
            for event in reversed(events):
                if event["EventId"] in seen or event["Timestamp"] < since:
                    continue
                seen.add(event["EventId"])
                reason = f" ({event['ResourceStatusReason']})" if event.get("ResourceStatusReason") else ""
                self.say(
                    f"  {event['Timestamp']:%H:%M:%S} {event['ResourceStatus']:20} {event['LogicalResourceId']}{reason}"
                )
            status = str(cfn.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"])
            if not status.endswith("_IN_PROGRESS"):
                return status
            time.sleep(self.poll_seconds)

    def deployed_outputs(self) -> dict[str, str]:
        """The infrastructure stack's outputs as deployed."""
        if self._stack_status(self.stage.stack_name) is None:
            raise DeployError(f"no stack {self.stage.stack_name}: deploy the infrastructure first")
        return self._outputs(self.stage.stack_name)

    def _outputs(self, name: str) -> dict[str, str]:
        stack = self.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]
        return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs") or []}


def main(argv: list[str] | None = None) -> int:
    """``python -m scripts.deploy {deploy,destroy,infrastructure,monitoring} --stage STAGE [--delete-archive]``."""
    parser = argparse.ArgumentParser(prog="python -m scripts.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        choices=["deploy", "destroy", "infrastructure", "monitoring"],
        help="infrastructure: steps 1-3; monitoring: step 6 (the infrastructure stack deployed)",
    )
    parser.add_argument("--stage", required=True, help="the stage file stages/<stage>.json")
    parser.add_argument("--delete-archive", action="store_true", help="destroy: empty and delete the relay's bucket")
    arguments = parser.parse_args(argv)
    try:
        deployment = Deployment(load_stage(arguments.stage))
        if arguments.command == "deploy":
            deployment.deploy()
        elif arguments.command == "infrastructure":
            deployment.check_account()
            deployment.record_outputs(deployment.deploy_infrastructure())
        elif arguments.command == "monitoring":
            deployment.check_account()
            deployment.deploy_monitoring(deployment.deployed_outputs())
        else:
            deployment.destroy(delete_archive=arguments.delete_archive)
    except (StageFileError, DeployError) as exc:
        print(f"make {arguments.command}: {exc}", file=sys.stderr)
        return 1
    except ChaliceDeploymentError as exc:
        # Chalice's own account of what failed; anything else keeps its traceback.
        print(f"make {arguments.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
