"""One source of truth per stage: ``stages/<stage>.json`` renders every account-specific file (``make render``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts.local_aws import ACCOUNT
from scripts.render import CHALICE_CONFIG, render_all, render_stage, stage_environment
from scripts.stage import (
    INFRASTRUCTURE_TEMPLATE,
    StageFileError,
    infrastructure_template,
    load_stage,
    output_variables,
    parse_stage,
    predicted_outputs,
    stage_names,
)
from tests.conftest import PROJECT, REGION

CONFIG = json.loads(CHALICE_CONFIG.read_text())


def test_every_rendered_file_is_committed_as_rendered() -> None:
    """Given the committed stage files, then every file `make render` writes is committed exactly as it renders."""
    files = render_all()
    differing = [str(path.relative_to(PROJECT)) for path, text in files.items() if path.read_text() != text]
    assert differing == [], f"run `make render` (edit stages/*.json or infra/policies/, not these): {differing}"


def test_every_stage_of_the_chalice_config_has_a_stage_file_and_every_policy_is_rendered() -> None:
    assert stage_names() == sorted(CONFIG["stages"]) == ["dev", "prod"]
    policies = {path.name for path in (PROJECT / ".chalice").glob("policy-*.json")}
    assert policies == {path.name for path in render_all() if path.name.startswith("policy-")}


def test_the_example_account_appears_only_in_stage_files_and_what_they_render() -> None:
    """No hand-edited placeholder: the deployment's templates name no account, region or instance."""
    rendered = set(render_all())
    sources = [
        *(PROJECT / "infra").rglob("*.json"),
        *(PROJECT / "infra").rglob("*.yaml"),
        *(PROJECT / ".chalice").glob("*.json"),
        *(PROJECT / "chalicelib" / "config").glob("*.json"),
    ]
    stage = load_stage("dev")
    literals = [stage.account, stage.instance_ids[0], *stage.contact_flows.values()]
    for path in sources:
        if path not in rendered:
            text = path.read_text()
            assert not any(literal in text for literal in literals), path


def other_account(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((PROJECT / "stages" / f"{name}.json").read_text())
    document.update(account="444455556666", region="eu-west-1")
    document["connect"].update(
        instance_ids=["inst-one", "inst-two"],
        contact_flows={"care": "flow-care"},
        default_contact_flow="care",
        transcript_locations=["s3://my-connect-bucket/connect/mine/ChatTranscripts/"],
    )
    return document


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_another_account_s_stage_file_changes_every_account_specific_value(name: str) -> None:
    """Given a stage file for another account, region, two instances and another flow, then nothing rendered keeps
    the example's account, region, instance or flows, and both instances may stream."""
    stage = parse_stage(other_account(name), path=PROJECT / "stages" / f"{name}.json", name=name)
    files = render_stage(name, json.loads(CHALICE_CONFIG.read_text()), stage)
    example = load_stage(name)
    for path, text in files.items():
        # The config file holds every stage; only this one's section is rendered from this stage file.
        rendered = json.dumps(json.loads(text)["stages"][name]) if path == CHALICE_CONFIG else text
        for literal in (example.account, example.region, example.instance_ids[0], *example.contact_flows.values()):
            assert literal not in rendered, (path.name, literal)
    environment = json.loads(files[CHALICE_CONFIG])["stages"][name]["environment_variables"]
    assert environment["ALLOWED_INSTANCE_IDS"] == "inst-one,inst-two"
    assert environment["CONNECT_INSTANCE_ID"] == "inst-one"
    assert json.loads(environment["CONTACT_FLOWS"]) == {"care": "flow-care"}
    assert environment["STREAMING_TOPIC_ARN"] == f"arn:aws:sns:eu-west-1:444455556666:connect-chat-relay-{name}-stream"
    api = json.loads(files[PROJECT / ".chalice" / f"policy-{name}-api.json"])
    streaming = next(s for s in api["Statement"] if s["Sid"] == "ChatStreaming")
    assert streaming["Resource"] == [
        "arn:aws:connect:eu-west-1:444455556666:instance/inst-one/contact/*",
        "arn:aws:connect:eu-west-1:444455556666:instance/inst-two/contact/*",
    ]
    starts = next(s for s in api["Statement"] if s["Sid"] == "StartContacts")
    assert starts["Resource"] == [
        "arn:aws:connect:eu-west-1:444455556666:instance/inst-one/contact-flow/flow-care",
        "arn:aws:connect:eu-west-1:444455556666:instance/inst-one/contact/*",
    ]


def test_recorded_stack_outputs_win_over_the_prediction() -> None:
    """Given outputs `make deploy` read from the stack, then the stage renders them, not the template's names."""
    document = json.loads((PROJECT / "stages" / "dev.json").read_text())
    outputs = {**predicted_outputs(load_stage("dev")), "StreamsTableName": "imported-streams"}
    document["stack_outputs"] = outputs
    stage = parse_stage(document, path=PROJECT / "stages" / "dev.json", name="dev")
    files = render_stage("dev", json.loads(CHALICE_CONFIG.read_text()), stage)
    assert stage_environment(stage)["STREAMS_TABLE_NAME"] == "imported-streams"
    assert "table/imported-streams" in files[PROJECT / ".chalice" / "policy-dev-flow.json"]


def test_the_outputs_are_predicted_from_the_template_for_the_stage() -> None:
    outputs = predicted_outputs(load_stage("dev"))
    assert outputs["StreamingTopicArn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:connect-chat-relay-dev-stream"
    assert outputs["RetryQueueUrl"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/connect-chat-relay-dev-retries"
    assert (
        outputs["FailedInvocationsQueueArn"]
        == f"arn:aws:sqs:{REGION}:{ACCOUNT}:connect-chat-relay-dev-failed-invocations"
    )
    assert outputs["RelayBucketName"] == f"connect-chat-relay-dev-{ACCOUNT}"
    # Every unconditional output is predicted; a conditional one (the API key) only exists once deployed.
    template_outputs = infrastructure_template()["Outputs"]
    assert set(outputs) == {key for key, output in template_outputs.items() if "Condition" not in output}


def test_each_output_naming_a_variable_sets_it_in_the_stage_s_environment() -> None:
    environment = CONFIG["stages"]["dev"]["environment_variables"]
    outputs = predicted_outputs(load_stage("dev"))
    variables = output_variables()
    assert {"STREAMING_TOPIC_ARN", "RETRY_QUEUE_URL", "TRANSCRIPT_QUEUE_NAME"} <= set(variables.values())
    for key, variable in variables.items():
        if key in outputs:
            assert environment[variable] == outputs[key], variable


def test_a_stage_file_with_mistakes_names_every_one() -> None:
    document = {
        "stage": "dev",
        "account": "1234",
        "region": "Mars",
        "connect": {"instance_ids": [], "contact_flows": {"a": "x"}, "default_contact_flow": "b"},
        "infrastructure": {"parameters": {"Stage": "prod", "Nope": "1"}},
        "colour": "blue",
    }
    with pytest.raises(StageFileError) as raised:
        parse_stage(document, path=Path("stages/dev.json"), name="dev")
    message = str(raised.value)
    for fragment in (
        "unknown field 'colour'",
        "account:",
        "region:",
        "connect.instance_ids",
        "default_contact_flow",
        "parameters.Stage",
        f"parameters.Nope: not a parameter of {INFRASTRUCTURE_TEMPLATE.name}",
    ):
        assert fragment in message


def test_an_unknown_placeholder_in_a_policy_template_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scripts import render

    templates = tmp_path / "policies"
    templates.mkdir()
    for template in (PROJECT / "infra" / "policies").glob("*.json"):
        (templates / template.name).write_text(template.read_text().replace("${RetryQueueArn}", "${RetryQueueArm}"))
    monkeypatch.setattr(render, "POLICY_TEMPLATES", templates)
    with pytest.raises(StageFileError, match=r"unknown \$\{RetryQueueArm\}"):
        render_stage("dev")
