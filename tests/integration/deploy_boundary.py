"""``python -m scripts.deploy`` against moto server, with two stand-ins at the boundary where moto or the sandbox
stops (run by ``test_deploy.py``, in a copy of the project, as the working directory):

- **Chalice's package build**: resolving ``requirements.txt`` for Lambda runs pip against PyPI (no network here) and
  takes most of a minute; a zip of ``app.py`` and ``chalicelib/`` stands in for the functions' package, and a zip
  of ``requirements.txt`` in the directory Chalice names after the runtime it is given
  (``python/lib/<runtime>/site-packages/``) for the managed layer's (moto stores both, never runs them).
- **API Gateway's REST API**: moto's ``import_rest_api`` does not take Chalice's Swagger 2.0 document; the calls
  Chalice makes for it (import, get, update, deploy the stage, delete) are recorded in ``rest-api.json`` and
  answered with one API id, and the test checks the recorded document instead. The Lambda permission that lets
  API Gateway invoke the function is real (moto's Lambda).
- **Lambda's GetLayerVersionByArn**: moto 5.2.5 answers it with a 500 (it has no route for it), so a second deploy,
  which asks whether the layer it recorded exists, would stop there; the same question goes to moto's
  GetLayerVersion, with the name and version of the ARN. Publishing, deleting and using the layer is moto's own.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())

from chalice.awsclient import TypedAWSClient
from chalice.deploy.packager import AppOnlyDeploymentPackager, LayerDeploymentPackager

from scripts.deploy import main

RECORD = Path("rest-api.json")
API_ID = "relay0api1"


def record(call: str, **arguments: Any) -> None:
    calls = json.loads(RECORD.read_text()) if RECORD.is_file() else []
    calls.append({"call": call, **arguments})
    RECORD.write_text(json.dumps(calls, indent=1))


def package(self: Any, project_dir: str, python_version: str, *args: Any, **kwargs: Any) -> str:
    """The functions' package: the app's code alone, its dependencies being in the layer."""
    path = Path(project_dir) / ".chalice" / "deployments" / f"stand-in-{python_version}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(Path(project_dir) / "app.py", "app.py")
        for source in sorted((Path(project_dir) / "chalicelib").rglob("*")):
            if source.is_file() and "__pycache__" not in source.parts:
                archive.write(source, str(source.relative_to(project_dir)))
    return str(path)


def layer(self: Any, project_dir: str, python_version: str, *args: Any, **kwargs: Any) -> str:
    """The managed layer's package, where Chalice puts the dependencies for ``python_version``."""
    path = Path(project_dir) / ".chalice" / "deployments" / f"stand-in-layer-{python_version}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(
            Path(project_dir) / "requirements.txt", f"python/lib/{python_version}/site-packages/requirements.txt"
        )
    return str(path)


def get_layer_version(self: Any, layer_version_arn: str) -> dict[str, Any]:
    client = self._client("lambda")
    _, name, number = layer_version_arn.rsplit(":", 2)
    try:
        answer: dict[str, Any] = client.get_layer_version(LayerName=name, VersionNumber=int(number))
    except client.exceptions.ResourceNotFoundException:
        return {}
    return answer


def import_rest_api(self: Any, swagger_document: dict[str, Any], endpoint_type: str) -> str:
    record("import_rest_api", swagger_document=swagger_document, endpoint_type=endpoint_type)
    return API_ID


def get_rest_api(self: Any, rest_api_id: str) -> dict[str, Any]:
    """The API as API Gateway describes it: its id and the endpoint type it was imported with."""
    calls = json.loads(RECORD.read_text()) if RECORD.is_file() else []
    types = [call["endpoint_type"] for call in calls if call["call"] == "import_rest_api"]
    if rest_api_id != API_ID or not types:
        return {}
    return {"id": API_ID, "endpointConfiguration": {"types": types[-1:]}}


def update_api_from_swagger(self: Any, rest_api_id: str, swagger_document: dict[str, Any]) -> None:
    record("update_api_from_swagger", rest_api_id=rest_api_id, swagger_document=swagger_document)


def update_rest_api(self: Any, rest_api_id: str, patch_operations: list[dict[str, str]]) -> None:
    record("update_rest_api", rest_api_id=rest_api_id, patch_operations=patch_operations)


def deploy_rest_api(self: Any, rest_api_id: str, api_gateway_stage: str, xray: bool) -> None:
    record("deploy_rest_api", rest_api_id=rest_api_id, api_gateway_stage=api_gateway_stage)


def delete_rest_api(self: Any, rest_api_id: str) -> None:
    record("delete_rest_api", rest_api_id=rest_api_id)


AppOnlyDeploymentPackager.create_deployment_package = package  # type: ignore[method-assign]
LayerDeploymentPackager.create_deployment_package = layer  # type: ignore[method-assign]
for stand_in in (
    import_rest_api,
    get_rest_api,
    update_api_from_swagger,
    update_rest_api,
    deploy_rest_api,
    get_layer_version,
):
    setattr(TypedAWSClient, stand_in.__name__, stand_in)
TypedAWSClient.delete_rest_api = delete_rest_api  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
