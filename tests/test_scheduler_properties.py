"""Property tests of the scheduler: the deadline rule, the election, invariants under fuzzing.

The swarm-level properties run tests/swarm_model.py, a time-stepped live swarm that drives the
real SegmentScheduler (see its docstring).
"""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from swarm_model import ModelParams, SwarmModel

from swarmcast.peer.scheduler import (
    CancelTransfer,
    FetchFromOrigin,
    FetchFromPeer,
    SchedulerConfig,
    SegmentInfo,
    SegmentScheduler,
)

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- deadline rule


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    viewers=st.integers(2, 7),
    upload_low=st.sampled_from([10_000.0, 100_000.0, 500_000.0]),
    upload_high=st.sampled_from([600_000.0, 4_000_000.0]),
    dead=st.sampled_from([0.0, 0.3, 0.8]),
    leave=st.sampled_from([0.0, 0.4]),
    http_bps=st.sampled_from([300_000.0, 1_000_000.0, 5_000_000.0]),
    http_latency=st.sampled_from([0.01, 0.1, 0.3]),
    join_spread=st.floats(0.0, 8.0),
)
def test_no_stall_whatever_the_peers_do(
    seed, viewers, upload_low, upload_high, dead, leave, http_bps, http_latency, join_spread
):
    """With an origin able to carry the stream alone, slow, silent or departing peers never
    make a viewer stall: late P2P moves to HTTP in time."""
    params = ModelParams(
        viewers=viewers,
        duration=30.0,
        upload_bps=(upload_low, upload_high),
        dead_transfer_probability=dead,
        leave_probability=leave,
        http_bps=http_bps,
        http_latency=http_latency,
        join_spread=join_spread,
    )
    model = SwarmModel(params, random.Random(seed))
    result = model.run()
    assert result.stalls == 0, result
    assert all(v.started_at is not None for v in model.viewers if not v.gone)


def test_switches_happen_and_still_no_stall():
    # Peers that accept and then go silent half of the time: the fallback must do real work.
    params = ModelParams(
        viewers=5, duration=60.0, dead_transfer_probability=0.5, upload_bps=(50_000.0, 300_000.0)
    )
    model = SwarmModel(params, random.Random(7))
    result = model.run()
    switched = sum(v.sched.stats.switches for v in model.viewers)
    assert switched > 0
    assert result.stalls == 0


# ----------------------------------------------------------------------------- election


def viewers_with_views(n: int, degree: int | None, rng: random.Random, k: int = 1):
    names = [f"viewer-{rng.getrandbits(48):012x}" for _ in range(n)]
    views: dict[str, set[str]] = {a: set() for a in names}
    for a in names:
        others = [b for b in names if b != a]
        for b in others if degree is None else rng.sample(others, degree):
            views[a].add(b)
            views[b].add(a)  # data channels are symmetric
    scheds = []
    for a in names:
        s = SegmentScheduler(SchedulerConfig(election_copies=k), peer_id=a)
        for b in views[a]:
            s.add_peer(b)
        scheds.append(s)
    return scheds, views


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 40), k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_full_view_elects_exactly_k(n, k, seed):
    scheds, _ = viewers_with_views(n, None, random.Random(seed), k)
    for seq in range(50):
        assert sum(s.election_rank(seq) < k for s in scheds) == min(k, n)


@settings(max_examples=10, deadline=None)
@given(n=st.integers(20, 80), degree=st.integers(3, 10), seed=st.integers(0, 2**32 - 1))
def test_partial_views_elect_about_one_per_neighbourhood(n, degree, seed):
    rng = random.Random(seed)
    scheds, views = viewers_with_views(n, degree, rng)
    counts = [sum(s.election_rank(seq) == 0 for s in scheds) for seq in range(100)]
    # The viewer with the highest score overall wins in its own view: never zero copies.
    assert min(counts) >= 1
    # A viewer wins with probability 1 / (its degree + 1).
    expected = sum(1 / (len(views[s.peer_id]) + 1) for s in scheds)
    mean = sum(counts) / len(counts)
    assert 0.6 * expected <= mean <= 1.4 * expected


def test_one_origin_copy_per_segment_in_a_live_swarm():
    params = ModelParams(viewers=8, duration=80.0)
    model = SwarmModel(params, random.Random(3))
    result = model.run()
    first_joined = int(max(v.joined_at for v in model.viewers) // params.segment_duration) + 2
    steady = [c for s, c in result.origin_fetches_per_segment.items() if s >= first_joined]
    assert len(steady) > 30
    assert sum(steady) / len(steady) <= 1.25
    assert result.stalls == 0


def test_defaults_beat_the_tuned_p2p_media_loader_figures_in_the_model():
    """DESIGN.md: 47 / 66 / 70 % offload for 2 / 4 / 6 viewers at ~10 s latency, no stall.

    This is the model (ideal links), not browsers: it pins the defaults, the real comparison
    is the benchmark.
    """
    anchor = {2: 0.47, 4: 0.66, 6: 0.70}
    for n, bar in anchor.items():
        result = SwarmModel(ModelParams(viewers=n, duration=120.0), random.Random(n)).run()
        assert result.stalls == 0
        assert result.offload > bar, (n, result.offload)
        assert result.mean_latency < 10.0


# ----------------------------------------------------------------------------- fuzzing


EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.floats(0.0, 1.5)),
        st.tuples(st.just("has"), st.integers(0, 4), st.integers(0, 12)),
        st.tuples(st.just("fetching"), st.integers(0, 4), st.integers(0, 12)),
        st.tuples(st.just("lost"), st.integers(0, 4), st.integers(0, 12)),
        st.tuples(st.just("join"), st.integers(0, 4), st.booleans()),
        st.tuples(st.just("leave"), st.integers(0, 4)),
        st.tuples(st.just("progress"), st.integers(0, 5), st.integers(0, 200_000)),
        st.tuples(st.just("done"), st.integers(0, 5)),
        st.tuples(
            st.just("fail"),
            st.integers(0, 5),
            st.sampled_from(
                ["timeout", "busy", "dont_have", "bad_data", "peer_gone", "http_error"]
            ),
        ),
        st.tuples(st.just("play"), st.floats(0.0, 4.0), st.booleans()),
        st.tuples(st.just("evict"), st.integers(0, 12)),
        st.tuples(st.just("slide"), st.integers(0, 6)),
    ),
    min_size=10,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(
    events=EVENTS,
    initial=st.lists(st.sets(st.integers(0, 8), max_size=8), min_size=1, max_size=4),
)
def test_invariants_under_random_events(events, initial):
    cfg = SchedulerConfig(prefetch_seconds=12.0)
    s = SegmentScheduler(cfg, peer_id="me")
    first = 0
    s.set_timeline([SegmentInfo(q, 2.0, 150_000, q * 2.0) for q in range(8)], live=True)
    now, position, buffered, playing = 0.0, 0.0, 0.0, False
    s.set_playback(now, position, buffered, 1.0, playing)
    inflight: dict[int, tuple[int, str | None]] = {}
    announced: dict[str, set[int]] = {}
    for i, seqs in enumerate(initial):
        s.add_peer(f"p{i}")
        s.peer_has(f"p{i}", seqs)
        announced[f"p{i}"] = set(seqs)
    for ev in events:
        kind, *args = ev
        pid = f"p{args[0]}" if args and kind in ("has", "fetching", "lost", "join", "leave") else ""
        if kind == "advance":
            now += args[0]
            if playing:
                position = min(position + args[0], max(buffered, position))
        elif kind == "has":
            s.peer_has(pid, [args[1]])
            if pid in announced:
                announced[pid].add(args[1])
        elif kind == "fetching":
            s.peer_fetching(pid, args[1])
        elif kind == "lost":
            s.peer_lost(pid, [args[1]])
            announced.get(pid, set()).discard(args[1])
        elif kind == "join":
            s.add_peer(pid, is_seed=args[1])
            announced.setdefault(pid, set())
        elif kind == "leave":
            for tid in s.remove_peer(pid):
                inflight.pop(tid)
            announced.pop(pid, None)
        elif kind in ("progress", "done", "fail") and inflight:
            tid = sorted(inflight)[args[0] % len(inflight)]
            if kind == "progress":
                s.transfer_progress(now, tid, args[1])
            elif kind == "done":
                s.transfer_done(now, tid)
                inflight.pop(tid)
            else:
                s.transfer_failed(now, tid, args[1])
                inflight.pop(tid)
        elif kind == "play":
            buffered = max(buffered, position + args[0])
            playing = args[1]
        elif kind == "evict":
            s.segment_evicted(args[0])
        elif kind == "slide":
            first += args[0]
            s.set_timeline(
                [SegmentInfo(q, 2.0, 150_000, q * 2.0) for q in range(first, first + 8)], live=True
            )
            position = max(position, first * 2.0)
            buffered = max(buffered, position)
        s.set_playback(now, position, buffered, 1.0, playing)
        for action in s.poll(now):
            if isinstance(action, CancelTransfer):
                assert action.transfer_id in inflight
                inflight.pop(action.transfer_id)
            elif isinstance(action, FetchFromPeer):
                assert action.transfer_id not in inflight
                assert action.sequence in announced[action.peer_id]
                assert not s.has(action.sequence)
                inflight[action.transfer_id] = (action.sequence, action.peer_id)
            elif isinstance(action, FetchFromOrigin):
                assert action.transfer_id not in inflight
                assert 0 <= action.offset < 150_000
                inflight[action.transfer_id] = (action.sequence, None)
        # The scheduler's view of what is in flight matches what it told us.
        assert s.transfers() == inflight
        seqs = [q for q, _ in inflight.values()]
        assert len(seqs) == len(set(seqs)), "two transfers for one segment"
        assert sum(p is not None for _, p in inflight.values()) <= cfg.max_parallel_p2p
        for p in announced:
            assert sum(peer == p for _, peer in inflight.values()) <= cfg.max_inflight_per_peer
        wake = s.next_wakeup(now)
        assert wake is None or wake >= now
