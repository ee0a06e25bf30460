"""The event schemas and the OpenAPI document are what ``make openapi`` writes: no hand-copied schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from chalicelib.events import EVENT_TYPES, SCHEMA_DIR
from chalicelib.handlers.docs import OPENAPI_FILE
from scripts.openapi import event_schemas, rendered

RENDERED = rendered()


@pytest.mark.parametrize("path", sorted(RENDERED), ids=lambda path: path.name)
def test_the_checked_in_file_is_what_make_openapi_writes(path: Path) -> None:
    assert path.exists(), f"{path.name} is missing: run make openapi"
    assert path.read_text(encoding="utf-8") == RENDERED[path], f"{path.name} differs: run make openapi"


def test_every_event_type_has_one_generated_schema_and_no_other_file_exists() -> None:
    assert list(event_schemas()) == list(EVENT_TYPES)
    assert set(SCHEMA_DIR.glob("*.schema.json")) == set(RENDERED) - {OPENAPI_FILE}


def test_a_chat_item_field_is_written_once_for_every_item_event() -> None:
    # Given the schemas of two events made from chat items
    schemas = event_schemas()
    typing, attachment = schemas["chat.typing"], schemas["chat.attachment"]
    # Then they share the chat item's fields, and only the fixed Type differs
    shared = typing["properties"]["data"]["properties"]
    for name, field in attachment["properties"]["data"]["properties"].items():
        if name in shared and name != "connect_type":
            assert field == shared[name], name
    assert attachment["properties"]["data"]["properties"]["connect_type"]["const"] == "ATTACHMENT"
