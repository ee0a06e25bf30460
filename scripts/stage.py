"""A stage file (``stages/<stage>.json``): the one place that says which account, region, Connect instance and
flows a stage runs against, and what its infrastructure stack is called.

Everything account-specific in the deployment is rendered from it (``make render``): ``.chalice/config.json``'s
variables that name resources, every ``.chalice/policy-<stage>-*.json`` and the archive's bucket and key in the
stage's destinations file. The names of the infrastructure's resources are the stack's outputs: ``make deploy``
reads them into ``stack_outputs``; before a stage is deployed they are predicted from
``infra/relay-infrastructure.yaml`` (its resources' names are fixed by stage, region and account), so the example
stages render the same files they will have once deployed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).parent.parent
STAGES_DIR = PROJECT / "stages"
INFRASTRUCTURE_TEMPLATE = PROJECT / "infra" / "relay-infrastructure.yaml"
MONITORING_TEMPLATE = PROJECT / "infra" / "relay-monitoring.yaml"
APP_NAME = "connect-chat-relay"

ACCOUNT = re.compile(r"^\d{12}\Z")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d\Z")
PARTITION = re.compile(r"^aws(-[a-z]+)*\Z")
STAGE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,15}\Z")
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}\Z")
CONNECT_ID = re.compile(r"^[A-Za-z0-9-]{1,100}\Z")
FLOW_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")
TRANSCRIPT_LOCATION = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<prefix>[^,\s]*)\Z")
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
PLACEHOLDER = re.compile(r"\$\{([A-Za-z][A-Za-z0-9]*)\}")
# An output whose Description is exactly a variable's name sets that variable in the stage's environment.
OUTPUT_VARIABLE = VARIABLE
# Parameters of the infrastructure template that the stage file's own fields set.
DERIVED_PARAMETERS = frozenset({"Stage", "ConnectInstanceArn"})
FIELDS = frozenset(
    {
        "stage",
        "account",
        "region",
        "partition",
        "connect",
        "infrastructure",
        "environment",
        "destinations",
        "stack_outputs",
    }
)
CONNECT_FIELDS = frozenset({"instance_ids", "contact_flows", "default_contact_flow", "transcript_locations"})


class StageFileError(ValueError):
    """A stage file that cannot be used; the message names every problem."""


@dataclass(frozen=True)
class Stage:
    """A validated stage file."""

    name: str
    account: str
    region: str
    partition: str
    instance_ids: tuple[str, ...]
    contact_flows: dict[str, str]
    default_contact_flow: str
    transcript_locations: tuple[str, ...]
    stack_name: str
    parameters: dict[str, str]
    environment: dict[str, str]
    destinations: dict[str, dict[str, str]]
    stack_outputs: dict[str, str]
    path: Path

    @property
    def instance_arns(self) -> list[str]:
        """The Connect instances' ARNs, the first one the instance the contact routes use."""
        return [
            f"arn:{self.partition}:connect:{self.region}:{self.account}:instance/{instance}"
            for instance in self.instance_ids
        ]

    def function_name(self, function: str) -> str:
        """A function's name as Chalice deploys it (the API function is the app and stage alone)."""
        base = f"{APP_NAME}-{self.name}"
        return base if function == "api_handler" else f"{base}-{function}"

    @property
    def monitoring_stack_name(self) -> str:
        """The monitoring stack's name (``infra/relay-monitoring.yaml``: alarms and the dashboard)."""
        return f"{APP_NAME}-{self.name}-monitoring"

    def template_parameters(self) -> dict[str, str]:
        """The infrastructure stack's parameters."""
        return {"Stage": self.name, "ConnectInstanceArn": self.instance_arns[0], **self.parameters}

    def outputs(self) -> dict[str, str]:
        """The infrastructure stack's outputs: as ``make deploy`` read them, or as the template predicts them."""
        return dict(self.stack_outputs) if self.stack_outputs else predicted_outputs(self)

    def variables(self) -> dict[str, str | list[str]]:
        """What ``${Name}`` may name in a policy template or the stage file: the stage's own fields, the stack's
        outputs, and, for each output that is a queue URL, the queue's ARN and name (``RetryQueueUrl`` gives
        ``RetryQueueArn`` and ``RetryQueueName``)."""
        values: dict[str, str | list[str]] = {
            "Stage": self.name,
            "Account": self.account,
            "Region": self.region,
            "Partition": self.partition,
            "App": APP_NAME,
            "ConnectInstanceArn": self.instance_arns[0],
            "ConnectInstanceArns": self.instance_arns,
            "ContactFlowIds": list(self.contact_flows.values()),
            "TranscriptLocationArns": [
                f"arn:{self.partition}:s3:::{location.removeprefix('s3://')}" for location in self.transcript_locations
            ],
            "TranscriptBucketArns": sorted(
                {
                    f"arn:{self.partition}:s3:::{location.removeprefix('s3://').split('/', 1)[0]}"
                    for location in self.transcript_locations
                }
            ),
            "TranscriptPrefixes": [
                location.removeprefix("s3://").split("/", 1)[1] for location in self.transcript_locations
            ],
        }
        for key, value in self.outputs().items():
            values[key] = value
            queue = _queue_of_url(value)
            if key.endswith("QueueUrl") and queue is not None:
                values.setdefault(key.removesuffix("Url") + "Arn", f"arn:{self.partition}:sqs:{queue[0]}")
                values.setdefault(key.removesuffix("Url") + "Name", queue[1])
        return values

    def with_outputs(self, outputs: dict[str, str]) -> str:
        """The stage file's text with ``stack_outputs`` replaced by ``outputs`` (what ``make deploy`` writes)."""
        document = json.loads(self.path.read_text())
        document["stack_outputs"] = dict(sorted(outputs.items()))
        return json.dumps(document, indent=2) + "\n"


def _queue_of_url(url: str) -> tuple[str, str] | None:
    """``region:account:name`` and the name of an SQS queue URL, or None for anything else."""
    match = re.match(r"^https?://sqs\.([a-z0-9-]+)\.[a-z0-9.-]+/(\d{12})/([A-Za-z0-9_.-]{1,80})\Z", url)
    if match is None:
        return None
    region, account, name = match.groups()
    return f"{region}:{account}:{name}", name


def stage_names() -> list[str]:
    """The stages that have a stage file."""
    return sorted(path.stem for path in STAGES_DIR.glob("*.json"))


def load_stage(name: str, directory: Path = STAGES_DIR) -> Stage:
    """Read and validate ``stages/<name>.json``; every problem is reported at once."""
    path = directory / f"{name}.json"
    if not path.is_file():
        raise StageFileError(f"{path}: no such stage file (stages: {', '.join(stage_names()) or 'none'})")
    try:
        document = json.loads(path.read_text())
    except ValueError as exc:
        raise StageFileError(f"{path}: not JSON ({exc})") from None
    return parse_stage(document, path=path, name=name)


def parse_stage(document: Any, *, path: Path, name: str) -> Stage:  # noqa: PLR0912, PLR0915 - one flat list of checks
    """Validate a stage file's document."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise StageFileError(f"{path}: expected a JSON object")
    problems += [f"unknown field {key!r}" for key in sorted(set(document) - FIELDS)]

    def text(value: Any, field: str, pattern: re.Pattern[str]) -> str:
        if not isinstance(value, str) or not pattern.match(value):
            problems.append(f"{field}: expected {pattern.pattern}, got {value!r}")
            return ""
        return value

    def mapping(value: Any, field: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            problems.append(f"{field}: expected an object")
            return {}
        return value

    stage = text(document.get("stage"), "stage", STAGE_NAME)
    if stage and stage != name:
        problems.append(f"stage: {stage!r} in the file of stage {name!r}")
    account = text(document.get("account"), "account", ACCOUNT)
    region = text(document.get("region"), "region", REGION)
    partition = text(document.get("partition", "aws"), "partition", PARTITION)

    connect = mapping(document.get("connect"), "connect")
    problems += [f"connect: unknown field {key!r}" for key in sorted(set(connect) - CONNECT_FIELDS)]
    instances = connect.get("instance_ids")
    if not isinstance(instances, list) or not instances:
        problems.append("connect.instance_ids: expected a non-empty list of instance ids")
        instances = []
    instance_ids = [text(value, f"connect.instance_ids[{i}]", CONNECT_ID) for i, value in enumerate(instances)]
    flows = mapping(connect.get("contact_flows"), "connect.contact_flows")
    for flow, flow_id in flows.items():
        text(flow, "connect.contact_flows (a name)", FLOW_NAME)
        text(flow_id, f"connect.contact_flows.{flow}", CONNECT_ID)
    default_flow = connect.get("default_contact_flow", next(iter(flows), ""))
    if flows and default_flow not in flows:
        problems.append(f"connect.default_contact_flow: {default_flow!r} is not one of connect.contact_flows")
    locations = connect.get("transcript_locations", [])
    if not isinstance(locations, list):
        problems.append("connect.transcript_locations: expected a list of s3://bucket/prefix")
        locations = []
    for i, location in enumerate(locations):
        text(location, f"connect.transcript_locations[{i}]", TRANSCRIPT_LOCATION)

    infrastructure = mapping(document.get("infrastructure"), "infrastructure")
    stack_name = text(
        infrastructure.get("stack_name", f"{APP_NAME}-{name}-infra"), "infrastructure.stack_name", STACK_NAME
    )
    parameters = mapping(infrastructure.get("parameters"), "infrastructure.parameters")
    known = set(infrastructure_template().get("Parameters", {}))
    for key, value in parameters.items():
        if key in DERIVED_PARAMETERS:
            problems.append(f"infrastructure.parameters.{key}: set from the stage file's own fields")
        elif key not in known:
            problems.append(f"infrastructure.parameters.{key}: not a parameter of {INFRASTRUCTURE_TEMPLATE.name}")
        if not isinstance(value, str):
            problems.append(f"infrastructure.parameters.{key}: expected a string")

    environment = mapping(document.get("environment"), "environment")
    for key, value in environment.items():
        text(key, "environment (a variable's name)", VARIABLE)
        if not isinstance(value, str):
            problems.append(f"environment.{key}: expected a string")
    destinations = mapping(document.get("destinations"), "destinations")
    for destination, fields in destinations.items():
        if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
            problems.append(f"destinations.{destination}: expected an object of strings")
    outputs = mapping(document.get("stack_outputs"), "stack_outputs")
    if not all(isinstance(v, str) for v in outputs.values()):
        problems.append("stack_outputs: expected an object of strings")

    if problems:
        raise StageFileError(f"{path}:\n  " + "\n  ".join(problems))
    return Stage(
        name=name,
        account=account,
        region=region,
        partition=partition,
        instance_ids=tuple(instance_ids),
        contact_flows={str(k): str(v) for k, v in flows.items()},
        default_contact_flow=str(default_flow),
        transcript_locations=tuple(str(location) for location in locations),
        stack_name=stack_name,
        parameters={str(k): str(v) for k, v in parameters.items()},
        environment={str(k): str(v) for k, v in environment.items()},
        destinations={str(k): dict(v) for k, v in destinations.items()},
        stack_outputs={str(k): str(v) for k, v in outputs.items()},
        path=path,
    )


def _intrinsic(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
    """CloudFormation's short forms: ``!Ref X`` is ``{"Ref": "X"}``, ``!GetAtt A.B`` ``{"Fn::GetAtt": ["A", "B"]}``."""
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}


# PyYAML's safe loader, plus the short forms (cfn-lint's own reader takes seconds to import).
_TEMPLATE_LOADER: Any = type("TemplateLoader", (yaml.SafeLoader,), {})
_TEMPLATE_LOADER.add_multi_constructor("!", _intrinsic)


def read_template(path: Path) -> dict[str, Any]:
    """A CloudFormation template of ``infra/`` as a document."""
    document: dict[str, Any] = yaml.load(path.read_text(), Loader=_TEMPLATE_LOADER)  # noqa: S506
    return document


def infrastructure_template() -> dict[str, Any]:
    """``infra/relay-infrastructure.yaml`` as a document."""
    return read_template(INFRASTRUCTURE_TEMPLATE)


def output_variables() -> dict[str, str]:
    """Output key -> the environment variable it sets (its Description names the variable)."""
    outputs = infrastructure_template().get("Outputs", {})
    return {
        key: str(output.get("Description", "")).strip()
        for key, output in outputs.items()
        if OUTPUT_VARIABLE.match(str(output.get("Description", "")).strip())
    }


class OutputPredictionError(ValueError):
    """An output whose value only the deployed stack knows (deploy the stage to read it)."""


def predicted_outputs(stage: Stage) -> dict[str, str]:
    """The infrastructure stack's unconditional outputs, as CloudFormation will give them for ``stage``."""
    template = infrastructure_template()
    parameters = {
        key: str(spec.get("Default", "")) for key, spec in template.get("Parameters", {}).items() if "Default" in spec
    }
    parameters.update(stage.template_parameters())
    resources: dict[str, Any] = template.get("Resources", {})
    pseudo = {
        "AWS::AccountId": stage.account,
        "AWS::Region": stage.region,
        "AWS::Partition": stage.partition,
        "AWS::StackName": stage.stack_name,
    }

    def evaluate(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            return PLACEHOLDER_WITH_COLONS.sub(lambda m: evaluate(_reference(m.group(1))), value["Fn::Sub"])
        if isinstance(value, dict) and "Ref" in value:
            name = value["Ref"]
            if name in pseudo:
                return pseudo[name]
            if name in parameters:
                return parameters[name]
            return attribute(name, "Ref")
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            name, attr = value["Fn::GetAtt"]
            return attribute(name, attr)
        raise OutputPredictionError(f"cannot evaluate {value!r}")

    def attribute(name: str, attr: str) -> str:
        resource = resources.get(name)
        if resource is None:
            raise OutputPredictionError(f"no resource {name}")
        kind, props = resource["Type"], resource.get("Properties", {})
        region, account, partition = stage.region, stage.account, stage.partition
        if kind == "AWS::SQS::Queue":
            queue = evaluate(props["QueueName"])
            return {
                "Ref": f"https://sqs.{region}.amazonaws.com/{account}/{queue}",
                "Arn": f"arn:{partition}:sqs:{region}:{account}:{queue}",
                "QueueName": queue,
            }[attr]
        if kind == "AWS::SNS::Topic":
            topic = evaluate(props["TopicName"])
            arn = f"arn:{partition}:sns:{region}:{account}:{topic}"
            return {"Ref": arn, "TopicArn": arn, "TopicName": topic}[attr]
        if kind == "AWS::DynamoDB::Table":
            table = evaluate(props["TableName"])
            return {"Ref": table, "Arn": f"arn:{partition}:dynamodb:{region}:{account}:table/{table}"}[attr]
        if kind == "AWS::S3::Bucket":
            bucket = evaluate(props["BucketName"])
            return {"Ref": bucket, "Arn": f"arn:{partition}:s3:::{bucket}"}[attr]
        if kind == "AWS::KMS::Alias" and attr == "Ref":
            return evaluate(props["AliasName"])
        raise OutputPredictionError(f"{name} ({kind}).{attr} is known only once the stack exists")

    outputs: dict[str, str] = {}
    for key, output in template.get("Outputs", {}).items():
        if "Condition" in output:
            continue
        outputs[key] = evaluate(output["Value"])
    return outputs


PLACEHOLDER_WITH_COLONS = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")


def _reference(name: str) -> dict[str, Any]:
    """``${X}`` in a ``Fn::Sub`` is ``Ref X``; ``${X.Attr}`` is ``Fn::GetAtt [X, Attr]``."""
    if "." in name:
        return {"Fn::GetAtt": name.split(".", 1)}
    return {"Ref": name}


def substitute(value: Any, variables: dict[str, str | list[str]], *, where: str) -> Any:
    """``value`` with every ``${Name}`` replaced. In a list, a string naming a list variable becomes one string per
    element (``"${ConnectInstanceArns}/contact/*"``); anywhere else a list variable is an error, as is an unknown
    name."""
    if isinstance(value, dict):
        return {key: substitute(item, variables, where=where) for key, item in value.items()}
    if isinstance(value, list):
        expanded: list[Any] = []
        for item in value:
            if isinstance(item, str):
                expanded += _expand(item, variables, where=where)
            else:
                expanded.append(substitute(item, variables, where=where))
        return expanded
    if isinstance(value, str):
        (only,) = _expand(value, variables, where=where, single=True)
        return only
    return value


def _expand(text: str, variables: dict[str, str | list[str]], *, where: str, single: bool = False) -> list[str]:
    names = PLACEHOLDER.findall(text)
    unknown = [name for name in names if name not in variables]
    if unknown:
        raise StageFileError(f"{where}: unknown ${{{unknown[0]}}} (known: {', '.join(sorted(variables))})")
    lists = [name for name in names if isinstance(variables[name], list)]
    if len(set(lists)) > 1 or (lists and single):
        raise StageFileError(f"{where}: ${{{lists[0]}}} is a list: only one, and only as an element of a list")
    choices = list(variables[lists[0]]) if lists else [""]
    results = []
    for choice in choices:

        def value(match: re.Match[str], choice: str = choice) -> str:
            found = variables[match.group(1)]
            return choice if isinstance(found, list) else found

        results.append(PLACEHOLDER.sub(value, text))
    return results
