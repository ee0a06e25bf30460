"""The project's licence: Apache-2.0 (as Chalice and Powertools), in LICENSE and named where it is published."""

from __future__ import annotations

import json
import tomllib

from tests.conftest import PROJECT


def test_the_licence_file_is_the_apache_license_2_0() -> None:
    text = (PROJECT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_openapi_document_and_the_project_metadata_name_it() -> None:
    info = json.loads((PROJECT / "chalicelib" / "openapi.json").read_text())["info"]
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    assert info["license"] == {"name": "Apache License 2.0", "identifier": "Apache-2.0"}
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
