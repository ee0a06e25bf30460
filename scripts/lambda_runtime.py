"""The Lambda Python runtime of every function, stated here and nowhere else.

python3.14: the newest runtime Chalice 1.34 knows (``Config.lambda_python_version`` maps Python 3.10 to 3.14 to
themselves) and that every runtime dependency declares (boto3, botocore, Powertools, standardwebhooks, urllib3;
all pure Python, so the package is the same whatever Python builds it). Lambda no longer creates python3.11
functions (blocked since 31 July 2026), so the developer's Python must not decide it.

Chalice writes the runtime of the Python that runs it. ``make package`` calls :func:`pin_runtime` on the template it
writes; ``chalice deploy`` has no such hook and uses this runtime only when run from a virtualenv of that Python
(``make venv PYTHON=python3.14``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

LAMBDA_RUNTIME = "python3.14"
_FUNCTION_TYPES = frozenset({"AWS::Serverless::Function", "AWS::Lambda::Function"})


def pin_runtime(template: dict[str, Any]) -> dict[str, Any]:
    """Set every function of a CloudFormation template to :data:`LAMBDA_RUNTIME`; returns the template."""
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") in _FUNCTION_TYPES:
            resource.setdefault("Properties", {})["Runtime"] = LAMBDA_RUNTIME
    return template


def main(argv: list[str]) -> int:
    """``python -m scripts.lambda_runtime TEMPLATE``: pin the runtime in a packaged template, in place."""
    if len(argv) != 1:
        print("usage: python -m scripts.lambda_runtime build/package/sam.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(json.dumps(pin_runtime(json.loads(path.read_text())), indent=2) + "\n")
    print(f"Lambda runtime {LAMBDA_RUNTIME} written into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
