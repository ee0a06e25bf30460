"""`make chaos`, reduced: a few hundred items through the same faults, as part of `make test`."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.integration

LINE = re.compile(
    r"^chaos: sent=(\d+) destinations=(\d+) delivered=(\d+) parked=(\d+) dead=(\d+) lost=(\d+) duplicate_ids=(\d+)$",
    re.MULTILINE,
)


def test_a_reduced_chaos_run_loses_nothing() -> None:
    # Given 200 items, 6 misbehaving receivers, crashes, short invocations and failing AWS calls, with the
    # schedule compressed 20,000 times (27.6 h in 5 s)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.chaos",
            "--items",
            "200",
            "--factor",
            "20000",
            "--budget",
            "220",  # wall time, for a machine shared with other test runs; a quiet one settles in about 50 s
            "--seed",
            "7",
        ],
        cwd=PROJECT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Then it ends with the summary line, nothing lost, and every pair is delivered, parked or dead
    match = LINE.search(done.stdout)
    assert match, done.stdout + done.stderr
    sent, destinations, delivered, parked, dead, lost, _ = map(int, match.groups())
    assert (sent, destinations, lost) == (200, 6, 0), done.stdout
    assert delivered + parked + dead == sent * destinations
    assert parked + dead >= sent  # the destination answering 410 is disabled: its events are parked
    assert done.returncode == 0
