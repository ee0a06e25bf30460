"""The Lambda Python runtime of every function, stated here and nowhere else.

python3.14: the newest runtime Chalice 1.34 knows (``Config.lambda_python_version`` maps Python 3.10 to 3.14 to
themselves) and that every runtime dependency declares (boto3, botocore, Powertools, standardwebhooks, urllib3;
all pure Python, so the package is the same whatever Python builds it). Lambda no longer creates python3.11
functions (blocked since 31 July 2026), so the developer's Python must not decide it.

Chalice writes the runtime of the Python that runs it, and with ``automatic_layer`` puts the dependencies under
that Python's ``python/lib/python3.X/site-packages`` in the layer, a directory only that runtime searches (on
python3.14, ``/opt/python/lib/python3.11/site-packages`` is not on ``sys.path``: the functions would run on the
runtime's older boto3 and miss Powertools). ``make package`` calls :func:`pin_runtime` on the template it writes and
:func:`relocate_layer` on the layer it names; ``make deploy`` gives Chalice's deployer this runtime, from which
Chalice builds the layer for it (``scripts/deploy.py``).
"""

from __future__ import annotations

import copy
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

LAMBDA_RUNTIME = "python3.14"
# Where a layer's Python packages go for LAMBDA_RUNTIME (the directory Chalice's layer packager names after it).
SITE_PACKAGES = f"python/lib/{LAMBDA_RUNTIME}/site-packages/"
_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})
_LAYER_TYPES = frozenset({"AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"})
_ANY_SITE_PACKAGES = re.compile(r"python/lib/python3\.\d+/site-packages/")


def pin_runtime(template: dict[str, Any]) -> dict[str, Any]:
    """Set every function of a CloudFormation template to :data:`LAMBDA_RUNTIME`, and every layer's compatible
    runtimes to it alone; returns the template."""
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") in _FUNCTION_TYPES:
            resource.setdefault("Properties", {})["Runtime"] = LAMBDA_RUNTIME
        elif resource.get("Type") in _LAYER_TYPES:
            resource.setdefault("Properties", {})["CompatibleRuntimes"] = [LAMBDA_RUNTIME]
    return template


def layer_archives(template: dict[str, Any], directory: Path) -> list[Path]:
    """The layer zips a packaged template names (``ContentUri``, relative to its directory)."""
    return [
        directory / resource["Properties"]["ContentUri"]
        for resource in template.get("Resources", {}).values()
        if resource.get("Type") in _LAYER_TYPES and isinstance(resource.get("Properties", {}).get("ContentUri"), str)
    ]


def relocate_layer(archive: Path) -> int:
    """Move a layer zip's packages into :data:`SITE_PACKAGES`, in place; returns how many entries moved."""
    moved = 0
    relocated = archive.with_suffix(".relocating")
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(relocated, "w") as target:
        for entry in source.infolist():
            renamed = copy.copy(entry)
            renamed.filename = _ANY_SITE_PACKAGES.sub(SITE_PACKAGES, entry.filename, count=1)
            moved += renamed.filename != entry.filename
            target.writestr(renamed, source.read(entry), compress_type=entry.compress_type)
    relocated.replace(archive)
    return moved


def main(argv: list[str]) -> int:
    """``python -m scripts.lambda_runtime TEMPLATE``: pin the runtime in a packaged template and move its layers'
    packages to that runtime's directory, in place."""
    if len(argv) != 1:
        print("usage: python -m scripts.lambda_runtime build/package/sam.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    template = pin_runtime(json.loads(path.read_text()))
    path.write_text(json.dumps(template, indent=2) + "\n")
    print(f"Lambda runtime {LAMBDA_RUNTIME} written into {path}")
    for archive in layer_archives(template, path.parent):
        print(f"{relocate_layer(archive)} entries of {archive} moved to {SITE_PACKAGES}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
