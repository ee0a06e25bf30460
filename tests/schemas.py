"""The event schemas in ``chalicelib/schemas/``, read once per test session (the relay itself never reads them)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from chalicelib.events import EVENT_TYPES, SCHEMA_DIR


@cache
def load_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one event type's envelope; callers must not mutate it."""
    assert event_type in EVENT_TYPES, event_type
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / f"{event_type}.schema.json").read_text(encoding="utf-8"))
    return schema
