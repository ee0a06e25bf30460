"""The README's settings table names every variable the relay reads, and only those."""

from __future__ import annotations

import dataclasses
import re

from chalicelib.environment import Environment
from tests.conftest import PROJECT

# Set by Lambda itself, and described in the Quick start rather than in the table.
SET_BY_LAMBDA = {"AWS_REGION", "AWS_DEFAULT_REGION"}
# Read by Powertools, not by the relay's own code.
READ_BY_POWERTOOLS = {"POWERTOOLS_LOG_LEVEL", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"}


def table_variables() -> set[str]:
    """Every variable a row of the README's settings table starts with (a row may name two: ``A`` / ``B``)."""
    readme = (PROJECT / "README.md").read_text()
    table = readme[readme.index("| variable | meaning |") :]
    table = table[: table.index("\n\n")]
    rows = [row.split(" | ")[0] for row in table.splitlines()[2:]]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def deploy_time_variables() -> set[str]:
    """The variables read at import by ``deploy_time("NAME", ...)``, which shape the deployment."""
    sources = [*(PROJECT / "chalicelib").rglob("*.py"), PROJECT / "app.py"]
    return {name for path in sources for name in re.findall(r'deploy_time\(\s*"([A-Z_]+)"', path.read_text())}


def test_every_variable_the_relay_reads_has_a_row() -> None:
    read = {field.name for field in dataclasses.fields(Environment)} - SET_BY_LAMBDA
    assert sorted(read - table_variables()) == []
    assert sorted(deploy_time_variables() - table_variables()) == []


def test_every_row_names_a_variable_the_relay_or_powertools_reads() -> None:
    read = {field.name for field in dataclasses.fields(Environment)} | deploy_time_variables() | READ_BY_POWERTOOLS
    assert sorted(table_variables() - read) == []
