"""JSON as the standard defines it: Python's parser also accepts NaN and Infinity, which are not JSON and which a
consumer's parser would reject in a webhook body."""

from __future__ import annotations

import json
from typing import Final, NoReturn


def reject_constant(name: str) -> NoReturn:
    """A ``parse_constant`` that refuses NaN, Infinity and -Infinity."""
    raise ValueError(name)


STRICT_JSON: Final = json.JSONDecoder(parse_constant=reject_constant)
