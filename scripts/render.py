"""``make render``: every account-specific file of the deployment, rendered from the stage files.

For each ``stages/<stage>.json`` (see :mod:`scripts.stage`):

- ``chalicelib/config/destinations-<stage>.json``: the fields the stage file's ``destinations`` names (the
  archive's bucket and key), the rest of the file as it is;
- ``.chalice/config.json``'s section for the stage: ``RELAY_STAGE``, the Connect instance(s), flows and transcript
  locations, every variable an infrastructure output sets (its Description names it) and the stage file's
  ``environment``; the other settings (timeouts, memory, tunables) as they are. A stage new to the file starts as
  a copy of the first one;
- ``.chalice/policy-<stage>-<name>.json`` for each function of the stage: ``infra/policies/<name>.json`` with its
  ``${...}`` filled in (``FunctionName`` is the function's own name, as Chalice deploys it), then the grants its
  destinations need (:mod:`scripts.render_policies`).

``tests/unit/test_stage_rendering.py`` fails when a committed file differs from what this renders.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from chalicelib.destinations import parse_relay_config
from scripts.render_policies import SID_PREFIX, grants_of
from scripts.stage import PROJECT, Stage, StageFileError, load_stage, output_variables, stage_names, substitute

CHALICE_CONFIG = PROJECT / ".chalice" / "config.json"
CONFIG_DIR = PROJECT / "chalicelib" / "config"
POLICY_TEMPLATES = PROJECT / "infra" / "policies"


def _dump(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def policy_template(policy_file: str, stage: str) -> Path:
    """``policy-<stage>-<name>.json`` is rendered from ``infra/policies/<name>.json``."""
    prefix = f"policy-{stage}-"
    if not policy_file.startswith(prefix) or not policy_file.endswith(".json"):
        raise StageFileError(f".chalice/config.json: stage {stage}: iam_policy_file {policy_file!r} is not {prefix}*")
    return POLICY_TEMPLATES / policy_file.removeprefix(prefix)


def stage_environment(stage: Stage) -> dict[str, str]:
    """The variables of a stage's section that the stage file decides."""
    outputs = stage.outputs()
    environment = {"RELAY_STAGE": stage.name}
    environment.update({variable: outputs[key] for key, variable in output_variables().items() if key in outputs})
    environment["ALLOWED_INSTANCE_IDS"] = ",".join(stage.instance_ids)
    environment["CONNECT_INSTANCE_ID"] = stage.instance_ids[0]
    if stage.contact_flows:
        environment["CONTACT_FLOWS"] = json.dumps(stage.contact_flows)
        environment["DEFAULT_CONTACT_FLOW"] = stage.default_contact_flow
    if stage.transcript_locations:
        environment["RECONCILE_TRANSCRIPT_LOCATIONS"] = ",".join(stage.transcript_locations)
    variables = stage.variables()
    for name, value in stage.environment.items():
        environment[name] = substitute(value, variables, where=f"{stage.path.name}: environment.{name}")
    return environment


def _section(config: dict[str, Any], stage: Stage) -> dict[str, Any]:
    sections = config["stages"]
    if stage.name in sections:
        return copy.deepcopy(sections[stage.name])
    model_name = next(iter(sections))
    section = json.loads(json.dumps(sections[model_name]).replace(f"policy-{model_name}-", f"policy-{stage.name}-"))
    section["api_gateway_stage"] = stage.name
    section.setdefault("tags", {})["stage"] = stage.name
    return section  # type: ignore[no-any-return]


def render_stage(name: str, config: dict[str, Any] | None = None, stage: Stage | None = None) -> dict[Path, str]:
    """Every file ``make render`` writes for one stage, with its text; ``config`` is ``.chalice/config.json``'s
    document, updated in place with the stage's section; ``stage`` the stage file, when not ``stages/<name>.json``."""
    stage = load_stage(name) if stage is None else stage
    variables = stage.variables()
    config = json.loads(CHALICE_CONFIG.read_text()) if config is None else config
    files: dict[Path, str] = {}

    destinations_path = CONFIG_DIR / f"destinations-{name}.json"
    destinations = json.loads(destinations_path.read_text())
    for destination_name, fields in stage.destinations.items():
        matching = [d for d in destinations.get("destinations", []) if d.get("name") == destination_name]
        if not matching:
            raise StageFileError(f"{stage.path}: destinations.{destination_name}: not in {destinations_path.name}")
        where = f"{stage.path.name}: destinations.{destination_name}"
        matching[0].update(substitute(fields, variables, where=where))
    files[destinations_path] = _dump(destinations)
    relay_config = parse_relay_config(destinations, source=str(destinations_path))

    section = _section(config, stage)
    section["environment_variables"] = {**section.get("environment_variables", {}), **stage_environment(stage)}
    config["stages"][name] = section
    environment = {**config.get("environment_variables", {}), **section["environment_variables"]}

    for function, settings in section.get("lambda_functions", {}).items():
        template_path = policy_template(settings["iam_policy_file"], name)
        if not template_path.is_file():
            raise StageFileError(f"{function}: no policy template infra/policies/{template_path.name}")
        template = json.loads(template_path.read_text())
        where = f"infra/policies/{template_path.name}"
        policy = substitute(template, {**variables, "FunctionName": stage.function_name(function)}, where=where)
        if any(str(s.get("Sid", "")).startswith(SID_PREFIX) for s in policy["Statement"]):
            raise StageFileError(f"{where}: Sids starting with {SID_PREFIX} are rendered from the destinations")
        policy["Statement"] += grants_of(function, relay_config, environment)
        files[PROJECT / ".chalice" / settings["iam_policy_file"]] = _dump(policy)
    files[CHALICE_CONFIG] = _dump(config)
    return files


def render_all() -> dict[Path, str]:
    """Every file ``make render`` writes, for every stage."""
    config = json.loads(CHALICE_CONFIG.read_text())
    missing = sorted(set(config["stages"]) - set(stage_names()))
    if missing:
        raise StageFileError(f".chalice/config.json has stages without a stage file: {', '.join(missing)}")
    files: dict[Path, str] = {}
    for name in stage_names():
        files.update(render_stage(name, config))
    return files


def write(files: dict[Path, str]) -> list[Path]:
    """Write the files that differ; the paths written."""
    written = []
    for path, text in files.items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main() -> int:
    """Render every stage; say which files changed."""
    try:
        files = render_all()
    except StageFileError as exc:
        print(f"make render: {exc}", file=sys.stderr)
        return 1
    changed = write(files)
    for path in changed:
        print(f"rendered {path.relative_to(PROJECT)}")
    print(f"make render: {len(files)} files, {len(changed)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
