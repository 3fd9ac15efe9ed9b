"""The scheduler's bookkeeping shortcuts (issue #8) against the plain rules they replace.

The per-segment index of announcements, the election ranks kept in step with the
neighbours, the bisected prefetch walk, the running transfer counts and the shared timeline
tables must give exactly what the plain definitions give: the simulator's identity check
(`bench/sim_speed.py --check`) compares whole runs, these tests pin each shortcut.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import swarmcast.peer.scheduler as scheduler_module
from swarmcast.peer.scheduler import (
    BUFFER_TOLERANCE,
    FailureReason,
    FetchFromOrigin,
    FetchFromPeer,
    SchedulerConfig,
    SegmentInfo,
    SegmentScheduler,
    hrw_score,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEERS = [f"p{i}" for i in range(6)]


def timeline(first: int, count: int, d: float = 2.0) -> tuple[SegmentInfo, ...]:
    return tuple(SegmentInfo(s, d, 100_000, s * d) for s in range(first, first + count))


class Model:
    """Per-neighbour sets of announced segments, as the scheduler kept them before #8."""

    def __init__(self) -> None:
        self.has: dict[str, set[int]] = {}
        self.fetching: dict[str, set[int]] = {}

    def add(self, pid: str) -> None:
        self.has.setdefault(pid, set())
        self.fetching.setdefault(pid, set())

    def remove(self, pid: str) -> None:
        self.has.pop(pid, None)
        self.fetching.pop(pid, None)


op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(PEERS), st.booleans()),
    st.tuples(st.just("remove"), st.sampled_from(PEERS)),
    st.tuples(st.just("have"), st.sampled_from(PEERS), st.lists(st.integers(0, 12), max_size=3)),
    st.tuples(st.just("have_one"), st.sampled_from(PEERS), st.integers(0, 12)),
    st.tuples(st.just("lost"), st.sampled_from(PEERS), st.lists(st.integers(0, 12), max_size=3)),
    st.tuples(st.just("fetching"), st.sampled_from(PEERS), st.integers(0, 12)),
    st.tuples(st.just("aborted"), st.sampled_from(PEERS), st.integers(0, 12)),
    st.tuples(st.just("slide"), st.integers(0, 8)),
)


@FAST
@given(ops=st.lists(op, max_size=60))
def test_announcement_index_matches_per_peer_sets(ops):
    s = SegmentScheduler(peer_id="me")
    s.set_timeline(timeline(0, 6), live=True)
    m = Model()
    oldest = 0
    for o in ops:
        kind = o[0]
        if kind == "add":
            s.add_peer(o[1], is_seed=o[2])
            m.add(o[1])
        elif kind == "remove":
            s.remove_peer(o[1])
            m.remove(o[1])
        elif kind == "have":
            s.peer_has(o[1], o[2])
            if o[1] in m.has:
                m.has[o[1]].update(o[2])
                m.fetching[o[1]].difference_update(o[2])
        elif kind == "have_one":
            s.peer_has_one(o[1], o[2])
            if o[1] in m.has:
                m.has[o[1]].add(o[2])
                m.fetching[o[1]].discard(o[2])
        elif kind == "lost":
            s.peer_lost(o[1], o[2])
            if o[1] in m.has:
                m.has[o[1]].difference_update(o[2])
        elif kind == "fetching":
            s.peer_fetching(o[1], o[2])
            if o[1] in m.has and o[2] not in m.has[o[1]]:
                m.fetching[o[1]].add(o[2])
        elif kind == "aborted":
            s.peer_fetch_aborted(o[1], o[2])
            if o[1] in m.fetching:
                m.fetching[o[1]].discard(o[2])
        else:
            oldest = max(oldest, o[1])
            s.set_timeline(timeline(oldest, 6), live=True)
            for table in (*m.has.values(), *m.fetching.values()):
                table.difference_update([x for x in table if x < oldest])
        assert set(s._peers) == set(m.has)
        for pid in m.has:
            assert s._peers[pid].has == m.has[pid], (pid, o)
            assert s._peers[pid].fetching == m.fetching[pid], (pid, o)


def naive_rank(s: SegmentScheduler, seq: int) -> int:
    mine = (hrw_score(s.peer_id, seq), s.peer_id)
    return sum(
        1 for pid, p in s._peers.items() if not p.is_seed and (hrw_score(pid, seq), pid) > mine
    )


@FAST
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "rank"]), st.integers(0, 30), st.booleans()),
        max_size=80,
    )
)
def test_cached_election_ranks_follow_neighbour_changes(ops):
    s = SegmentScheduler(peer_id="viewer-7")
    s.set_timeline(timeline(0, 12), live=False)
    for kind, n, flag in ops:
        pid = f"viewer-{n}"
        if kind == "add":
            s.add_peer(pid, is_seed=flag and n % 5 == 0)
        elif kind == "remove":
            s.remove_peer(pid)
        else:
            assert s.election_rank(n % 12) == naive_rank(s, n % 12)
    for seq in range(12):
        assert s.election_rank(seq) == naive_rank(s, seq)


def test_ranks_of_played_segments_are_dropped_not_kept_stale():
    s = SegmentScheduler(peer_id="me")
    s.set_timeline(timeline(0, 10), live=False)
    s.add_peer("a")
    for seq in range(10):
        s.election_rank(seq)
    s.set_playback(0.0, 9.0, 9.0)  # segments 0-3 (ends 2..8) played
    s.add_peer("b")
    assert not any(seq in s._ranks for seq in range(4))
    assert all(s.election_rank(seq) == naive_rank(s, seq) for seq in range(10))


def naive_needed(s: SegmentScheduler, now: float) -> tuple[list[int], float | None]:
    playhead = s._position + (max(0.0, now - s._t_ref) * s._rate if s._playing else 0.0)
    horizon = playhead + s.config.prefetch_seconds
    out = []
    for seq in sorted(s._segments):
        seg = s._segments[seq]
        if seg.start > horizon:
            return out, seg.start
        if seg.end <= s._buffered_until + BUFFER_TOLERANCE or seq in s._stored:
            continue
        if seq not in s._by_seq:
            out.append(seq)
    return out, None


@FAST
@given(
    position=st.floats(0, 700),
    ahead=st.floats(0, 60),
    prefetch=st.sampled_from([0.0, 1.0, 10.0, 30.0, 1000.0]),
    stored=st.sets(st.integers(0, 299), max_size=40),
    shuffle=st.booleans(),
    gap=st.booleans(),
)
def test_bisected_prefetch_walk_matches_the_plain_walk(
    position, ahead, prefetch, stored, shuffle, gap
):
    segs = list(timeline(0, 300))
    if gap:  # a discontinuity: starts not in sequence order, so no bisection
        segs[150] = SegmentInfo(150, 2.0, 100_000, 10.0)
    if shuffle:
        random.Random(len(stored)).shuffle(segs)
    s = SegmentScheduler(SchedulerConfig(prefetch_seconds=prefetch), peer_id="me")
    s.set_timeline(segs)
    assert s._monotonic is not gap
    for seq in stored:
        s.segment_stored(seq)
    s.set_playback(5.0, position, position + ahead)
    for now in (5.0, 7.5):
        expected = naive_needed(s, now)
        assert s._needed(now) == expected[0]
        assert s._beyond_horizon == expected[1]


def test_running_transfer_counts_follow_starts_and_ends():
    s = SegmentScheduler(SchedulerConfig(max_parallel_http=2), peer_id="me")
    s.set_timeline(timeline(0, 8))
    s.add_peer("a")
    s.peer_has("a", range(8))
    s.set_playback(0.0, 0.0, 0.0, playing=False)
    actions = s.poll(0.0)
    s.set_playback(0.0, 0.0, 0.0)
    actions += s.poll(0.0)

    def counted():
        ts = s._transfers.values()
        return (
            sum(t.peer_id is not None for t in ts),
            sum(t.peer_id is None for t in ts),
            sum(t.peer_id is None and t.reason != "deadline" for t in ts),
        )

    assert any(isinstance(a, FetchFromOrigin) for a in actions)
    assert any(isinstance(a, FetchFromPeer) for a in actions)
    assert (s._p2p_running, s._http_running, s._http_optional) == counted()
    for a in actions:
        if isinstance(a, FetchFromPeer):
            s.transfer_failed(0.1, a.transfer_id, FailureReason.BUSY)
        else:
            s.transfer_done(0.2, a.transfer_id)
        assert (s._p2p_running, s._http_running, s._http_optional) == counted()
    assert (s._p2p_running, s._http_running, s._http_optional) == (0, 0, 0)


def test_a_playlist_tuple_is_derived_once_and_shared():
    playlist = timeline(10, 6)
    a, b = SegmentScheduler(peer_id="a"), SegmentScheduler(peer_id="b")
    a.set_timeline(playlist, live=True)
    b.set_timeline(playlist, live=True)
    assert a._segments is b._segments and a._order == list(range(10, 16))
    assert b.live_start_position() == 26.0 and b.live_edge == 32.0
    # A list may change between calls: it is derived again every time.
    items = list(playlist)
    a.set_timeline(items, live=True)
    items.append(SegmentInfo(16, 2.0, 100_000, 32.0))
    a.set_timeline(items, live=True)
    assert a.live_edge == 34.0


def test_a_bad_playlist_is_still_rejected_after_a_good_one_was_memoised():
    s = SegmentScheduler(peer_id="me")
    s.set_timeline(timeline(0, 3))
    with pytest.raises(ValueError, match="segment 5"):
        s.set_timeline((SegmentInfo(5, 0.0, 10, 0.0),))


def test_a_scheduler_renamed_after_creation_decides_as_one_created_with_that_id() -> None:
    """The Python agent makes its scheduler as "local" and renames it when signalling gives it
    an id: the cached hash prefixes and ranks must follow the new id (a stale prefix made one
    viewer of ten bootstrap most segments in real runs while the simulator saw nothing)."""
    renamed = SegmentScheduler(peer_id="local")
    renamed.add_peer("p0")
    renamed.set_timeline(timeline(0, 40), live=True)
    for seq in range(40):
        renamed.election_rank(seq)  # cache ranks under the old id
    renamed.peer_id = "me"
    renamed.add_peer("p1")
    fresh = SegmentScheduler(peer_id="me")
    fresh.add_peer("p0")
    fresh.add_peer("p1")
    fresh.set_timeline(timeline(0, 40), live=True)
    expected = [
        sum(hrw_score(p, seq) > hrw_score("me", seq) for p in ("p0", "p1")) for seq in range(40)
    ]
    assert [renamed.election_rank(s) for s in range(40)] == expected
    assert [fresh.election_rank(s) for s in range(40)] == expected
    # The source pick hashes "<me>><peer>" too: both pick the same neighbours.
    for sched in (renamed, fresh):
        sched.set_playback(0.0, position=0.0, buffered_until=0.0, rate=1.0, playing=True)
        for pid in ("p0", "p1"):
            sched.peer_has(pid, range(40))
    picks = [
        [(a.sequence, a.peer_id) for a in s.poll(0.0) if isinstance(a, FetchFromPeer)]
        for s in (renamed, fresh)
    ]
    assert picks[0] == picks[1] and picks[0]
    with pytest.raises(ValueError, match="peer_id"):
        renamed.peer_id = ""


def _reference_hrw(state: int, sequence: int) -> int:
    """The hash with Python's unbounded ints, as first written (and as the JS twin does it)."""
    for byte in str(sequence).encode():
        state = ((state ^ byte) * 0x01000193) & 0xFFFFFFFF
    state ^= state >> 16
    state = (state * 0x85EBCA6B) & 0xFFFFFFFF
    state ^= state >> 13
    state = (state * 0xC2B2AE35) & 0xFFFFFFFF
    return state ^ (state >> 16)


@FAST
@given(state=st.integers(0, 0xFFFFFFFF), sequence=st.integers(0, 10**12))
@example(state=0xFFFFFFFF, sequence=999_999_999)
@example(state=0, sequence=0)
def test_word_sized_hash_matches_the_unbounded_one(state, sequence):
    # A compiled build does this arithmetic in 64-bit words that overflow and wrap: the low
    # 32 bits must still be exact.
    assert scheduler_module._hrw_finish(state, sequence) == _reference_hrw(state, sequence)
    text = f"viewer-{sequence}/"
    expected = 0x811C9DC5
    for byte in text.encode():
        expected = ((expected ^ byte) * 0x01000193) & 0xFFFFFFFF
    assert scheduler_module._fnv1a(0x811C9DC5, text) == expected
