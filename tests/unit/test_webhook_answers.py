"""Reading a receiver's answer: whatever bytes arrive, the relay gets a status, waits for more, or names the fault."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.adapters.webhooks import MAX_ANSWER_BYTES, _parse_answer

ANSWERS = [
    (b"HTTP/1.1 204 No Content\r\n\r\n", 204, True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, True),
    (b"HTTP/1.1 429 Too Many\r\nretry-after:  7 \r\nContent-Length: 0\r\n\r\n", 429, True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", 201, True),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 200, False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, False),
]


@pytest.mark.parametrize(("data", "status", "reusable"), ANSWERS)
def test_a_whole_answer_gives_its_status_and_whether_the_connection_is_kept(
    data: bytes, status: int, reusable: bool
) -> None:
    answer = _parse_answer(bytearray(data))

    assert answer is not None
    assert (answer.status, answer.reusable) == (status, reusable)
    if reusable:
        assert answer.end == len(data)


def test_retry_after_is_read_whatever_its_case() -> None:
    answer = _parse_answer(bytearray(ANSWERS[2][0]))

    assert answer is not None
    assert answer.retry_after == "7"


def test_an_answer_body_over_the_limit_ends_reading_and_the_connection() -> None:
    data = bytearray(f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_ANSWER_BYTES + 1}\r\n\r\n".encode())

    answer = _parse_answer(data)

    assert answer is not None
    assert (answer.status, answer.end, answer.reusable) == (200, None, False)


@given(st.sampled_from(ANSWERS), st.data())
def test_part_of_an_answer_waits_for_the_rest_and_never_ends_early(
    answer: tuple[bytes, int, bool], data: st.DataObject
) -> None:
    """Given any prefix of a valid answer, then the head is not yet there, or the status is right and the end, if
    known, is the whole answer's."""
    whole, status, _ = answer
    cut = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))

    partial = _parse_answer(bytearray(whole[:cut]))

    if partial is not None:
        assert partial.status == status
        assert partial.end is None or not partial.reusable or partial.end == len(whole)


FIELD = st.sampled_from(["Content-Length", "Transfer-Encoding", "Connection", "Retry-After", "X-Other"])
HEADS = st.builds(
    lambda version, code, fields, rest: (
        (f"{version} {code} Reason\r\n" + "".join(f"{name}: {value}\r\n" for name, value in fields) + "\r\n").encode(
            "latin-1"
        )
        + rest
    ),
    st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "HTTP/1.1x"]),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=4),
    st.lists(st.tuples(FIELD, st.text(alphabet=st.characters(max_codepoint=255), max_size=8)), max_size=4),
    st.binary(max_size=64),
)


@given(st.one_of(st.binary(max_size=2048), HEADS, st.lists(HEADS, max_size=3).map(b"".join)))
def test_any_bytes_give_an_answer_a_wait_or_a_named_fault(data: bytes) -> None:
    """Given arbitrary bytes from a receiver, then parsing returns or raises ValueError, never anything else."""
    fault = None
    try:
        answer = _parse_answer(bytearray(data))
    except ValueError as exc:
        answer, fault = None, str(exc)

    assert fault in {None, "BadStatusLine", "LineTooLong", "BadChunkSize"}
    assert answer is None or 200 <= answer.status <= 999
