"""The emulated Connect's chat items: AbsoluteTime as Connect writes it, in the order the items were made."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts.emulated_connect import absolute_time, chat_item


def test_absolute_time_is_connects_shape_to_the_millisecond() -> None:
    assert absolute_time(1_800_000_000.0) == "2027-01-15T08:00:00.000Z"
    assert absolute_time(1_800_000_000.9996) == "2027-01-15T08:00:00.999Z"


@given(st.floats(1_800_000_000.0, 1_800_000_100.0), st.floats(0.0, 2.0))
def test_a_later_moment_never_reads_earlier(first: float, later_by: float) -> None:
    # Across a second's end too: the seconds and the milliseconds come from one reading
    assert absolute_time(first) <= absolute_time(first + later_by)


def test_a_chat_item_is_stamped_from_one_reading_of_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a clock read just before a second ends
    monkeypatch.setattr("scripts.emulated_connect.time.time", lambda: 1_800_000_000.9996)
    item = chat_item("contact-1", type_="MESSAGE", content_type="text/plain", content="Hi")
    assert item["AbsoluteTime"] == "2027-01-15T08:00:00.999Z"
