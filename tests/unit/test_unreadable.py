"""readable_requests hands ``read`` each SQS body's JSON object; anything else is kept, never read or dropped."""

from __future__ import annotations

from typing import Any

import pytest
from chalice.app import SQSEvent

from chalicelib.handlers import unreadable


def test_only_json_objects_reach_read_and_the_rest_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[tuple[str, object, str]] = []

    def keep(source: str, *, record_id: str | None, reason: str, record: object, metric: str) -> str:
        kept.append((source, record, metric))
        return "key"

    monkeypatch.setattr(unreadable, "keep_unreadable", keep)
    bodies = ['{"n": 1}', "not json", "[1]", '"text"', "null", '{"n": "x"}', '{"n": 2}']
    event = SQSEvent({"Records": [{"body": b, "receiptHandle": f"h-{i}"} for i, b in enumerate(bodies)]}, None)

    def read(fields: dict[str, Any]) -> int | None:
        n = fields.get("n")
        return n if isinstance(n, int) else None

    read_ones = list(unreadable.readable_requests(event, read, source="s", reason="r", metric="M"))

    assert read_ones == [1, 2]
    assert kept == [("s", body, "M") for body in ["not json", "[1]", '"text"', "null", '{"n": "x"}']]
