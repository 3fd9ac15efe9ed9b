"""Unit tests of peer/scheduler.py with an injected clock, and the shared scenario vectors."""

import importlib.util
import json
from pathlib import Path

import pytest

from swarmcast.peer.scheduler import (
    CancelTransfer,
    FailureReason,
    FetchFromOrigin,
    FetchFromPeer,
    SchedulerConfig,
    SegmentInfo,
    SegmentScheduler,
    hrw_score,
)

SIZE = 100_000
DUR = 2.0
# Default priors: HTTP 500 kB/s and 0.25 s latency, x1.5, + 1 s: a 100 kB segment needs
# (0.25 + 0.2) * 1.5 + 1 = 1.675 s of notice before its deadline to be safe over HTTP.
HTTP_NEED = 1.675


def timeline(first: int = 0, count: int = 6, size: int | None = SIZE) -> list[SegmentInfo]:
    return [SegmentInfo(s, DUR, size, s * DUR) for s in range(first, first + count)]


def make(peer_id: str = "me", *, peers=(), seeds=(), count: int = 6, **cfg) -> SegmentScheduler:
    cfg.setdefault("prefetch_seconds", 6.0)
    s = SegmentScheduler(SchedulerConfig(**cfg), peer_id=peer_id)
    s.set_timeline(timeline(count=count))
    for p in peers:
        s.add_peer(p)
    for p in seeds:
        s.add_peer(p, is_seed=True)
    return s


def playing_at(s: SegmentScheduler, now: float, position: float, buffered: float) -> None:
    s.set_playback(now, position, buffered, 1.0, True)
    for seq in range(int(position // DUR), int(buffered // DUR)):
        s.segment_stored(seq)


def only(actions, kind, seq=None):
    return [a for a in actions if isinstance(a, kind) and (seq is None or a.sequence == seq)]


def loser_name(seq: int, winner: str = "me") -> str:
    """A peer id that ranks below ``winner`` for ``seq`` (so ``winner`` is elected)."""
    return next(f"p{i}" for i in range(1000) if hrw_score(f"p{i}", seq) < hrw_score(winner, seq))


def winner_name(seq: int, loser: str = "me") -> str:
    return next(f"p{i}" for i in range(1000) if hrw_score(f"p{i}", seq) > hrw_score(loser, seq))


# ----------------------------------------------------------------------------- deadline rule


def test_startup_segment_comes_from_origin_at_once():
    s = make(peers=["a"], prefetch_seconds=4.0)
    s.peer_has("a", [0, 1, 2])
    s.set_playback(0.0, 0.0, 0.0, 1.0, playing=False)
    actions = s.poll(0.0)
    assert only(actions, FetchFromOrigin, 0) == [FetchFromOrigin(1, 0, 0, "deadline")]
    # seq 2, due 4 s after playback starts, comes from the peer.
    assert [a.peer_id for a in only(actions, FetchFromPeer, 2)] == ["a"]
    # seq 1 is due 2 s after playback starts, queued behind seq 0 on the origin link: 1.975 s
    # of HTTP notice leaves too little for an unmeasured peer. It waits for playback to start
    # (deadlines float until then) ...
    assert only(actions, FetchFromPeer, 1) == []
    assert s.poll(0.2) == []
    s.transfer_done(0.3, 1)
    s.set_playback(0.3, 0.0, 2.0, 1.0, playing=True)
    assert s.poll(0.3) == []
    # ... and then goes over HTTP when its notice is down to 1.675 s.
    assert s.next_wakeup(0.3) == pytest.approx(2.3 - HTTP_NEED)
    assert only(s.poll(2.3 - HTTP_NEED), FetchFromOrigin, 1)


def test_segment_with_near_deadline_goes_to_origin_even_if_a_peer_has_it():
    s = make(peers=["a"])
    playing_at(s, 0.0, 0.0, 2.0)  # seq 0 buffered, seq 1 due at t=2
    s.peer_has("a", [1])
    s.set_playback(0.4, 0.4, 2.0)  # 1.6 s to go < HTTP_NEED
    assert only(s.poll(0.4), FetchFromOrigin, 1)[0].reason == "deadline"


def test_peer_used_while_the_deadline_is_far_and_origin_when_it_nears():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 2.0)
    s.set_playback(0.2, 0.2, 2.0)
    s.peer_has("a", [2])  # seq 2 due at t=4: P2P now, origin at 4 - HTTP_NEED at the latest
    actions = s.poll(0.2)
    assert only(actions, FetchFromPeer, 2)[0].peer_id == "a"
    assert only(actions, FetchFromOrigin, 1)  # seq 1 (nobody has it) is already urgent


def test_slow_p2p_transfer_switches_to_origin_with_range_resume():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)  # seq 2 due at t=4
    s.peer_has("a", [2])
    (fetch,) = only(s.poll(0.0), FetchFromPeer, 2)
    for t in (0.2, 0.6, 1.0, 1.4, 1.8):  # 5 kB, then 15.6 kB/s: hopeless for 100 kB by t=4
        s.set_playback(t, t, 4.0)
        s.transfer_progress(t, fetch.transfer_id, int(5_000 + (t - 0.2) * 25_000 / 1.6))
        assert s.poll(t) == []
    received = 30_000
    # Last safe moment for HTTP: the deadline minus the notice the remaining 70 kB need.
    switch_at = 4.0 - ((0.25 + (SIZE - received) / 500_000) * 1.5 + 1.0)  # 2.415
    # Segment 3 (start 6.0) enters the 4 s prefetch window at t=2.0: it has a wakeup of its own.
    assert s.next_wakeup(1.8) == pytest.approx(2.0)
    s.set_playback(2.0, 2.0, 4.0)
    assert not [a for a in s.poll(2.0) if getattr(a, "sequence", None) == 2]
    assert s.next_wakeup(2.0) == pytest.approx(switch_at, abs=1e-3)
    s.set_playback(switch_at, switch_at, 4.0)
    actions = [a for a in s.poll(switch_at) if getattr(a, "sequence", 2) == 2]
    assert actions == [
        CancelTransfer(fetch.transfer_id, "switch"),
        FetchFromOrigin(actions[1].transfer_id, 2, received, "switch"),
    ]
    assert s.stats.switches == 1


def test_p2p_transfer_on_track_is_left_alone():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (fetch,) = only(s.poll(0.0), FetchFromPeer, 2)
    # It started late but now runs at 1 MB/s with 10 kB left: on track, left alone.
    s.transfer_progress(0.1, fetch.transfer_id, 1_000)
    for i in range(1, 10):
        s.transfer_progress(1.7 + i * 0.01, fetch.transfer_id, 1_000 + i * 10_000)
    s.set_playback(2.0, 2.0, 4.0)
    assert only(s.poll(2.0), CancelTransfer) == []


def test_stalled_peer_is_cancelled_penalised_and_another_peer_tried():
    s = make(peers=["a", "b"], prefetch_seconds=4.0, prefer_seeds=False)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (fetch,) = only(s.poll(0.0), FetchFromPeer, 2)
    s.peer_has("b", [2])
    s.set_playback(1.0, 1.0, 4.0)
    stall = s.config.stall_timeout
    assert s.next_wakeup(0.5) == pytest.approx(stall)
    actions = s.poll(stall)
    assert actions[0] == CancelTransfer(fetch.transfer_id, "stalled")
    assert [a.peer_id for a in only(actions, FetchFromPeer, 2)] == ["b"]


# ----------------------------------------------------------------------------- peer choice


def test_seed_preferred_then_fastest_peer():
    s = make(peers=["slow", "fast"], seeds=["seed"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("slow", [2])
    s.peer_has("fast", [2])
    s.peer_has("seed", [2])
    assert only(s.poll(0.0), FetchFromPeer, 2)[0].peer_id == "seed"

    s = make(peers=["slow", "fast"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("slow", [1, 2])
    s.peer_has("fast", [1, 2])
    s._peers["fast"].estimator.add_sample(4_000_000, 2.0)
    s._peers["slow"].estimator.add_sample(100_000, 2.0)
    assert only(s.poll(0.0), FetchFromPeer, 2)[0].peer_id == "fast"


def test_load_is_spread_over_equal_peers():
    # Equal candidates: each downloader picks by a hash of (itself, candidate, segment), so
    # different downloaders, and one downloader over different segments, use different peers.
    by_downloader = set()
    for me in (f"viewer-{i}" for i in range(20)):
        s = make(me, peers=["a", "b", "c"], prefetch_seconds=4.0)
        playing_at(s, 0.0, 0.0, 4.0)
        for p in ("a", "b", "c"):
            s.peer_has(p, [2])
        by_downloader.add(only(s.poll(0.0), FetchFromPeer, 2)[0].peer_id)
    assert by_downloader == {"a", "b", "c"}
    s = make(
        peers=["a", "b", "c"],
        prefetch_seconds=30.0,
        count=40,
        max_parallel_p2p=40,
        max_inflight_per_peer=40,
    )
    playing_at(s, 0.0, 0.0, 2.0)
    for p in ("a", "b", "c"):
        s.peer_has(p, range(1, 40))
    picks = [a.peer_id for a in only(s.poll(0.0), FetchFromPeer)]
    assert len(picks) > 10
    assert min(picks.count(p) for p in "abc") >= 3


def test_busy_peer_retried_elsewhere_and_after_retry_after():
    s = make(peers=["a", "b"], prefetch_seconds=8.0)
    playing_at(s, 0.0, 0.0, 8.0)
    s.peer_has("a", [4])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 4)
    assert f1.peer_id == "a"
    s.transfer_failed(0.1, f1.transfer_id, FailureReason.BUSY, retry_after=2.0)
    assert only(s.poll(0.1), FetchFromPeer, 4) == []  # only "a" has it, and it is busy
    s.peer_has("b", [4])
    assert only(s.poll(0.2), FetchFromPeer, 4)[0].peer_id == "b"


def test_dont_have_forgets_the_claim():
    s = make(peers=["a", "b"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 2)
    s.peer_has("b", [2])
    s.transfer_failed(0.1, f1.transfer_id, "dont_have")
    assert only(s.poll(0.1), FetchFromPeer, 2)[0].peer_id == "b"
    assert 2 not in s._peers["a"].has


def test_bad_data_bans_the_peer():
    s = make(peers=["a", "b"], prefetch_seconds=4.0, prefer_seeds=False)
    playing_at(s, 0.0, 0.0, 4.0)
    s.set_timeline(timeline(count=8))
    s.peer_has("a", [2])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 2)
    s.transfer_failed(0.3, f1.transfer_id, FailureReason.BAD_DATA)
    s.peer_has("a", [2, 3])
    s.peer_has("b", [2])
    actions = s.poll(0.3)
    assert [a.peer_id for a in only(actions, FetchFromPeer)] == ["b"]
    assert s.next_wakeup(0.3) < 600  # the ban does not keep the scheduler asleep


def test_bytes_from_a_peer_that_fail_verification_after_resume_ban_it():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 2)
    s.transfer_progress(0.1, f1.transfer_id, 1_000)
    s.transfer_progress(1.0, f1.transfer_id, 20_000)
    s.set_playback(2.0, 2.0, 4.0)
    s.set_playback(2.4, 2.4, 4.0)
    fetch = only(s.poll(2.4), FetchFromOrigin, 2)[0]
    assert fetch.offset == 20_000
    s.transfer_failed(2.5, fetch.transfer_id, FailureReason.BAD_DATA)
    assert s._peers["a"].blocked_until > 500
    s.set_playback(2.8, 2.8, 4.0)
    retry = only(s.poll(2.8), FetchFromOrigin, 2)
    assert retry and retry[0].offset == 0  # the suspect bytes are thrown away


def test_peer_leaving_mid_transfer():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 2)
    assert s.remove_peer("a") == [f1.transfer_id]
    assert s.transfers() == {}
    s.set_playback(2.5, 2.5, 4.0)
    assert only(s.poll(2.5), FetchFromOrigin, 2)


def test_origin_error_retried_with_backoff():
    s = make(origin_retry_delay=0.25)
    s.set_playback(0.0, 0.0, 0.0, 1.0, playing=False)
    (f1,) = only(s.poll(0.0), FetchFromOrigin, 0)
    s.transfer_failed(0.1, f1.transfer_id, FailureReason.HTTP_ERROR)
    assert only(s.poll(0.2), FetchFromOrigin, 0) == []
    assert s.next_wakeup(0.2) == pytest.approx(0.35)
    (f2,) = only(s.poll(0.35), FetchFromOrigin, 0)
    s.transfer_failed(0.4, f2.transfer_id, FailureReason.HTTP_ERROR)
    assert only(s.poll(0.8), FetchFromOrigin, 0) == []  # second wait is 0.5 s
    assert only(s.poll(0.9), FetchFromOrigin, 0)


# ----------------------------------------------------------------------------- election


def live(s: SegmentScheduler, now: float, newest: int) -> None:
    """Live window ending at ``newest``; the player sits live_delay_segments behind."""
    s.set_timeline(timeline(first=max(newest - 5, 0), count=min(newest + 1, 6)), live=True)


def test_election_winner_bootstraps_at_once():
    other = loser_name(6)
    s = make(peers=[other], prefetch_seconds=30.0)
    playing_at(s, 0.0, 8.0, 12.0)
    live(s, 0.0, 6)
    assert s.election_rank(6) == 0
    assert only(s.poll(0.0), FetchFromOrigin, 6) == [FetchFromOrigin(1, 6, 0, "bootstrap")]
    assert s.stats.bootstraps == 1


def test_election_loser_waits_then_pulls_from_the_winner():
    other = winner_name(6)
    s = make(peers=[other], prefetch_seconds=30.0)
    playing_at(s, 0.0, 8.0, 12.0)
    live(s, 0.0, 6)
    assert s.election_rank(6) == 1
    assert s.poll(0.0) == []
    s.peer_fetching(other, 6)
    s.set_playback(0.6, 8.6, 12.0)
    assert s.poll(0.6) == []  # past the backoff, but the winner said it is fetching
    s.peer_has(other, [6])
    assert only(s.poll(0.7), FetchFromPeer, 6)[0].peer_id == other


def test_election_loser_steps_in_when_the_winner_is_silent():
    other = winner_name(6)
    s = make(peers=[other], prefetch_seconds=30.0)
    playing_at(s, 0.0, 8.0, 12.0)
    live(s, 0.0, 6)
    assert s.poll(0.0) == []
    backoff = s.config.election_backoff
    assert s.next_wakeup(0.0) == pytest.approx(backoff)
    s.set_playback(backoff, 8.0 + backoff, 12.0)
    assert only(s.poll(backoff), FetchFromOrigin, 6)[0].reason == "bootstrap"


def test_seed_announcement_suppresses_every_origin_fetch():
    other = loser_name(6)
    s = make(peers=[other], seeds=["seed"], prefetch_seconds=30.0)
    playing_at(s, 0.0, 8.0, 12.0)
    live(s, 0.0, 6)
    assert s.poll(0.0) == []  # winner, but gives the seed seed_grace to announce
    s.peer_fetching("seed", 6)
    grace = s.config.seed_grace
    assert s.poll(grace + 0.1) == []
    s.peer_has("seed", [6])
    assert only(s.poll(grace + 0.2), FetchFromPeer, 6)[0].peer_id == "seed"


def test_banned_peer_claims_do_not_hold_the_election_back():
    other = loser_name(6)
    s = make(peers=[other], prefetch_seconds=30.0, max_parallel_http=3)
    live(s, 0.0, 6)
    playing_at(s, 0.0, 4.0, 8.0)
    s.peer_has(other, [4, 6])  # claims 6: an honest claim would stop our bootstrap
    actions = s.poll(0.0)
    assert only(actions, FetchFromOrigin, 6) == []
    (fetch,) = only(actions, FetchFromPeer, 4)
    (from_other,) = only(actions, FetchFromPeer, 6)
    s.transfer_failed(0.2, fetch.transfer_id, FailureReason.BAD_DATA)
    s.peer_has(other, [4, 6])  # a banned peer keeps claiming
    actions = s.poll(0.2)
    # Its other transfer is dropped, and its claims no longer stop the election.
    assert CancelTransfer(from_other.transfer_id, "banned") in actions
    assert only(actions, FetchFromOrigin, 6)[0].reason == "bootstrap"


def test_election_copies_k_makes_k_winners():
    names = [f"v{i}" for i in range(10)]
    winners = 0
    for me in names:
        s = SegmentScheduler(SchedulerConfig(election_copies=3), peer_id=me)
        for p in names:
            s.add_peer(p)
        winners += s.election_rank(42) < 3
    assert winners == 3


# ----------------------------------------------------------------------------- misc


def test_live_start_position_and_edge():
    s = make(live_delay_segments=3)
    live(s, 0.0, 20)
    assert s.live_edge == 42.0
    assert s.live_start_position() == 36.0  # 3 x 2 s behind the edge


def test_seek_cancels_what_is_no_longer_needed():
    s = make(peers=["a"], prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)
    s.peer_has("a", [2])
    (f1,) = only(s.poll(0.0), FetchFromPeer, 2)
    s.set_playback(0.5, 8.0, 8.0)  # jumped past it
    assert CancelTransfer(f1.transfer_id, "not_needed") in s.poll(0.5)


def test_unknown_sizes_are_estimated_and_learned():
    s = make()
    s.set_timeline(timeline(size=None))
    assert s.segment_size(1) == int(DUR * s.config.assumed_bitrate_bps)
    s.set_playback(0.0, 0.0, 0.0, 1.0, playing=False)
    (f,) = only(s.poll(0.0), FetchFromOrigin, 0)
    s.transfer_progress(0.1, f.transfer_id, 10, total_size=123_456)
    assert s.segment_size(0) == 123_456


def test_sliding_window_forgets_old_state():
    s = make(peers=["a"])
    s.peer_has("a", range(0, 6))
    s.set_timeline(timeline(first=10), live=True)
    assert s._peers["a"].has == set()


def test_bad_inputs_are_rejected_clearly():
    s = make()
    with pytest.raises(ValueError, match="playback"):
        s.set_playback(0.0, -1.0, 0.0)
    with pytest.raises(ValueError, match="playback"):
        s.set_playback(0.0, float("nan"), 0.0)
    with pytest.raises(ValueError, match="timeline"):
        s.set_timeline([SegmentInfo(0, float("nan"), 10, 0.0)])
    with pytest.raises(ValueError, match="timeline"):
        s.set_timeline([SegmentInfo(0, 0.0, 10, 0.0)])
    with pytest.raises(ValueError):
        s.transfer_failed(0.0, 1, "nonsense")
    with pytest.raises(ValueError, match="peer_id"):
        SegmentScheduler(peer_id="")
    with pytest.raises(ValueError, match="max_parallel_p2p"):
        SchedulerConfig(max_parallel_p2p=0)
    # Events about unknown peers or transfers are ignored, not fatal (they race with leaves).
    s.peer_has("ghost", [1])
    s.transfer_progress(0.0, 999, 10)
    s.transfer_done(0.0, 999)


# ----------------------------------------------------------------------------- shared vectors

VECTORS = Path(__file__).parent / "vectors" / "scheduler"


def _load_vector_helpers():
    spec = importlib.util.spec_from_file_location("make_vectors", VECTORS / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "path", sorted(p for p in VECTORS.glob("*.json") if p.name != "hrw_score.json"), ids=str
)
def test_scenario_vector(path):
    helpers = _load_vector_helpers()
    vector = json.loads(path.read_text())
    s = SegmentScheduler(helpers.make_config(vector["config"]), peer_id=vector["peer_id"])
    polls = 0
    for i, step in enumerate(vector["steps"]):
        if step["call"] != "poll":
            helpers.apply_step(s, step)
            continue
        now = step["args"]["now"]
        got = [helpers.action_to_json(a) for a in s.poll(now)]
        assert got == step["expect"], f"step {i}"
        wake = s.next_wakeup(now)
        if step["next_wakeup"] is None:
            assert wake is None, f"step {i}"
        else:
            assert wake == pytest.approx(step["next_wakeup"], abs=1e-9), f"step {i}"
        polls += 1
    assert polls > 0


def test_hrw_score_vector():
    data = json.loads((VECTORS / "hrw_score.json").read_text())
    for case in data["cases"]:
        assert hrw_score(case["peer_id"], case["sequence"]) == case["score"]


def test_a_vod_viewer_with_no_events_still_prefetches_on_time():
    # Regression (found by the simulator): with nothing arriving, next_wakeup() was None while
    # the next segment was about to enter the prefetch window, so it was fetched only once the
    # player had stalled. Now the scheduler wakes when it enters, even without set_playback.
    s = make(count=8, prefetch_seconds=4.0)
    playing_at(s, 0.0, 0.0, 4.0)  # segments 0 and 1 buffered; 2 (start 4.0) is in the window
    (fetch,) = only(s.poll(0.0), FetchFromOrigin)
    assert fetch.sequence == 2
    s.transfer_done(1.0, fetch.transfer_id)
    s.segment_stored(2)
    assert s.poll(1.0) == []
    assert s.next_wakeup(1.0) == pytest.approx(2.0)  # segment 3 (start 6.0) enters at t=2.0
    assert only(s.poll(2.0), FetchFromOrigin, 3)


def test_an_origin_that_keeps_failing_never_overflows_the_backoff():
    # Regression: the retry delay was origin_retry_delay * 2 ** (errors - 1), which raises
    # OverflowError after 1024 errors in a row on one segment (found by the JS twin).
    s = make()
    now, failures = 0.0, 0
    playing_at(s, now, 0.0, 0.0)
    for _ in range(16000):
        for fetch in only(s.poll(now), FetchFromOrigin):
            s.transfer_failed(now, fetch.transfer_id, FailureReason.HTTP_ERROR)
            failures += 1
        wake = s.next_wakeup(now)
        now = wake if wake is not None and wake > now else now + 0.01
    # Four segments share the failures: each has failed well over 1024 times.
    assert failures > 4 * 1030
