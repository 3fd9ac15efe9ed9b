"""Tests of peer/cache.py: memory budget, eviction order, pinned init segments."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarmcast.peer.cache import SegmentCache


def test_put_get_has():
    cache = SegmentCache(100)
    res = cache.put(1, b"x" * 40)
    assert res.stored and res.evicted == ()
    assert cache.has(1) and 1 in cache and cache.get(1) == b"x" * 40
    assert cache.get(2) is None
    assert cache.used_bytes == 40 and len(cache) == 1


def test_evicts_oldest_first_without_playhead():
    cache = SegmentCache(100)
    for seq in (5, 3, 4):
        cache.put(seq, b"." * 30)
    res = cache.put(6, b"." * 30)
    assert res.evicted == (3,)
    assert cache.sequences() == [4, 5, 6]


def test_evicts_behind_playhead_then_furthest_ahead():
    cache = SegmentCache(100)
    for seq in (1, 2, 10, 11):
        cache.put(seq, b"." * 25)
    cache.set_playhead(5)
    assert cache.put(6, b"." * 50).evicted == (1, 2)
    # Nothing behind the playhead left: the furthest ahead goes first.
    assert cache.put(7, b"." * 25).evicted == (11,)


def test_refuses_a_newcomer_less_useful_than_everything_held():
    cache = SegmentCache(100)
    cache.set_playhead(5)
    for seq in (5, 6, 7, 8):
        cache.put(seq, b"." * 25)
    res = cache.put(20, b"." * 25)
    assert not res.stored and res.evicted == ()
    assert cache.sequences() == [5, 6, 7, 8]


def test_pinned_init_segment_survives():
    cache = SegmentCache(100)
    cache.put("init", b"i" * 20, pinned=True)
    for seq in range(10):
        cache.put(seq, b"." * 30)
    assert cache.has("init")
    assert cache.used_bytes <= 100
    assert not cache.put(99, b"." * 90).stored  # cannot fit beside the pinned 20 bytes


def test_unpinned_string_keys_go_first():
    cache = SegmentCache(100)
    cache.put(1, b"." * 40)
    cache.put("extra", b"." * 40)
    assert cache.put(2, b"." * 40).evicted == ("extra",)


def test_replace_and_evict():
    cache = SegmentCache(100)
    cache.put(1, b"." * 60)
    cache.put(1, b"." * 10)
    assert cache.used_bytes == 10
    assert cache.evict(1) and not cache.evict(1)
    assert cache.used_bytes == 0


def test_memoryview_values_count_their_bytes():
    shared = bytes(1000)
    cache = SegmentCache(500)
    cache.put(1, memoryview(shared)[:300])
    assert cache.used_bytes == 300


@pytest.mark.parametrize("budget", [0, -1, 1.5])
def test_bad_budget(budget):
    with pytest.raises(ValueError, match="budget"):
        SegmentCache(budget)


def test_bad_key():
    with pytest.raises(TypeError):
        SegmentCache(10).put(1.5, b"")  # type: ignore[arg-type]


@given(
    budget=st.integers(1, 500),
    ops=st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 200), st.integers(0, 30) | st.none()),
        max_size=60,
    ),
)
def test_never_exceeds_budget_and_reports_every_eviction(budget, ops):
    cache = SegmentCache(budget)
    held: set[int] = set()
    for seq, size, playhead in ops:
        cache.set_playhead(playhead)
        res = cache.put(seq, bytes(size))
        assert cache.used_bytes <= budget
        held -= set(res.evicted)
        if res.stored:
            held.add(seq)
        assert set(cache.sequences()) == held
        assert cache.used_bytes == sum(len(cache.get(s)) for s in held)
