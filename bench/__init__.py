"""`make bench`: the relay against naive and competent baselines measured in the same run."""

from __future__ import annotations

import argparse


def answer_help(doc: str | None) -> None:
    """``--help`` prints what the module measures (its docstring's first paragraph) and exits; else nothing."""
    argparse.ArgumentParser(description=(doc or "").split("\n\n")[0]).parse_args()
