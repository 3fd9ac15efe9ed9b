"""HTTP Range parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmcast.samples.ranges import ByteRange, RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-9", 100, ByteRange(0, 10)),
        ("bytes=90-", 100, ByteRange(90, 100)),
        ("bytes=90-1000", 100, ByteRange(90, 100)),
        ("bytes=-10", 100, ByteRange(90, 100)),
        ("bytes=-1000", 100, ByteRange(0, 100)),
        ("Bytes = 5-5", 100, ByteRange(5, 6)),
        # Ignored as RFC 9110 allows: other units, several ranges, syntax errors.
        ("items=0-1", 100, None),
        ("bytes=0-1,5-6", 100, None),
        ("bytes=5-2", 100, None),
        ("bytes=a-b", 100, None),
        ("bytes=-", 100, None),
        ("bytes", 100, None),
    ],
)
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"), [("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)]
)
def test_unsatisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_content_range_header():
    assert ByteRange(10, 20).content_range(100) == "bytes 10-19/100"


@given(st.text(max_size=40), st.integers(min_value=0, max_value=10**9))
def test_any_header_gives_a_valid_range_or_a_clear_answer(header, size):
    try:
        result = parse_range(header, size)
    except RangeNotSatisfiable:
        return
    if result is not None:
        assert 0 <= result.start < result.end <= size
