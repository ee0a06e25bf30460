"""The repository holds source only: a fresh clone must build its own ``.venv``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYMLINK_MODE = "120000"


def _tracked_entries() -> list[tuple[str, str]]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(
        [git, "ls-files", "--stage", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    entries = []
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        entries.append((meta.split()[0], path))
    return entries


def test_no_virtualenv_or_symlink_is_tracked() -> None:
    # A committed .venv symlink once made every fresh clone fail at `make test` (make could not create .venv).
    entries = _tracked_entries()
    assert [path for _, path in entries if path.split("/")[0] in {".venv", "venv"}] == []
    assert [path for mode, path in entries if mode == SYMLINK_MODE] == []
