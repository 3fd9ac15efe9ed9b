"""Virtual player: startup, stalls and resume timed exactly, buffer shape, VOD end, ABR."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from swarmcast.peer.player import PlayerConfig, PlayerEvent, PlayerState, VirtualPlayer


def kinds(events: list[PlayerEvent]) -> list[str]:
    return [e.kind for e in events]


def started(now: float = 0.0, *, segments: int = 1, config: PlayerConfig | None = None):
    """A player created at ``now`` that got ``segments`` 2 s segments at once and started."""
    p = VirtualPlayer(config, now=now)
    p.start_at(0.0, now)
    for i in range(segments):
        p.add_segment(2.0 * i, 2.0, now)
    return p


# ---------------------------------------------------------------- startup


def test_startup_time_counts_from_creation_to_enough_buffer() -> None:
    p = VirtualPlayer(now=100.0)
    p.start_at(10.0, 100.2)
    p.add_segment(10.0, 1.0, 100.5)  # 1 s < startup_buffer 2 s: not yet
    assert p.tick(100.6) == []
    assert p.state is PlayerState.WAITING
    p.add_segment(11.0, 1.0, 101.25)
    events = p.tick(102.0)
    assert kinds(events) == ["started"]
    assert events[0].at == pytest.approx(101.25)  # dated at the arrival, not at the tick
    assert p.qoe.startup_time == pytest.approx(1.25)
    assert p.state is PlayerState.PLAYING and p.rate == 1.0
    assert p.position(102.0) == pytest.approx(10.75)


def test_segments_before_start_at_count_once_it_is_known() -> None:
    p = VirtualPlayer(now=0.0)
    p.add_segment(20.0, 2.0, 0.3)
    p.add_segment(22.0, 2.0, 0.4)
    assert p.tick(0.5) == [] and p.rate == 0.0  # no start position yet
    p.start_at(20.0, 0.7)
    assert kinds(p.tick(0.7)) == ["started"]
    assert p.qoe.startup_time == pytest.approx(0.7)


def test_nothing_counted_as_stall_before_startup() -> None:
    p = VirtualPlayer(now=0.0)
    p.start_at(0.0, 0.0)
    p.tick(30.0)
    assert p.qoe.stalls == 0 and p.qoe.stall_time == 0.0
    assert p.waiting_time == pytest.approx(30.0)
    assert p.next_event_time(30.0) is None


def test_zero_startup_buffer_still_needs_some_media() -> None:
    p = VirtualPlayer(PlayerConfig(startup_buffer=0.0), now=0.0)
    p.start_at(0.0, 0.0)
    assert p.tick(1.0) == []
    p.add_segment(0.0, 0.5, 1.5)
    assert kinds(p.tick(1.5)) == ["started"]


# ---------------------------------------------------------------- stalls and resume


def test_stall_dated_when_buffer_runs_dry_and_resume_rule() -> None:
    p = started(segments=2)  # 4 s buffered, plays from t=0
    assert kinds(p.tick(0.0)) == ["started"]
    assert p.next_event_time(1.0) == pytest.approx(4.0)
    events = p.tick(5.5)  # the adapter was late: the stall still happened at 4.0
    assert kinds(events) == ["stall"]
    assert events[0].at == pytest.approx(4.0)
    assert events[0].detail["position"] == pytest.approx(4.0)
    assert p.state is PlayerState.STALLED and p.rate == 0.0
    assert p.qoe.stalls == 1
    assert p.qoe.stall_time == pytest.approx(1.5)
    assert p.qoe.played_time == pytest.approx(4.0)
    # Resume needs resume_buffer (2 s) ahead of the playhead: 1 s is not enough.
    p.add_segment(4.0, 1.0, 6.0)
    assert p.tick(6.0) == [] and p.state is PlayerState.STALLED
    p.add_segment(5.0, 1.0, 7.0)
    events = p.tick(7.0)
    assert kinds(events) == ["resume"]
    assert events[0].at == pytest.approx(7.0)
    assert events[0].detail["stalled_for"] == pytest.approx(3.0)
    assert p.qoe.stall_time == pytest.approx(3.0)
    p.tick(8.0)
    assert p.qoe.played_time == pytest.approx(5.0)
    assert p.position(8.0) == pytest.approx(5.0)


def test_resume_buffer_is_configurable() -> None:
    p = started(segments=1, config=PlayerConfig(startup_buffer=1.0, resume_buffer=4.0))
    p.tick(3.0)
    assert p.state is PlayerState.STALLED
    p.add_segment(2.0, 2.0, 3.5)
    p.add_segment(4.0, 1.0, 3.6)
    assert p.tick(3.6) == []  # 3 s ahead < 4 s
    p.add_segment(5.0, 1.0, 3.9)
    assert kinds(p.tick(3.9)) == ["resume"]


def test_segment_arriving_exactly_when_the_buffer_runs_dry_is_no_stall() -> None:
    p = started(segments=1)
    p.tick(0.0)
    assert p.next_event_time(0.0) == pytest.approx(2.0)
    p.add_segment(2.0, 2.0, 2.0)
    assert p.tick(2.0) == []
    assert p.state is PlayerState.PLAYING and p.qoe.stalls == 0


def test_tick_at_next_event_time_reports_the_stall() -> None:
    p = started(segments=1)
    p.tick(0.0)
    wake = p.next_event_time(0.3)
    assert wake is not None
    assert kinds(p.tick(wake)) == ["stall"]
    assert p.qoe.stalls == 1 and p.qoe.stall_time == 0.0


def test_tick_frequency_does_not_change_the_figures() -> None:
    def run(step: float) -> tuple[float, float, float, int]:
        p = VirtualPlayer(now=0.0)
        p.start_at(0.0, 0.0)
        arrivals = [(0.0, 0.4), (2.0, 1.0), (4.0, 5.3), (6.0, 6.0), (8.0, 11.0), (10.0, 11.1)]
        t = 0.0
        for start, at in arrivals:
            while t + step < at:
                t += step
                p.tick(t)
            p.add_segment(start, 2.0, at)
            t = at
        p.tick(20.0)
        q = p.qoe
        return (q.startup_time or -1.0, q.played_time, q.stall_time, q.stalls)

    coarse, fine = run(5.0), run(0.01)
    assert coarse == pytest.approx(fine)
    # By hand: starts at 0.4 (2 s buffered), [2,4) at 1.0, dry at 4.4; [4,6) at 5.3 resumes,
    # [6,8) at 6.0; dry at 9.3, [8,10) at 11.0 resumes, [10,12) at 11.1; dry at 15.0 for good.
    assert fine == pytest.approx((0.4, 12.0, 0.9 + 1.7 + 5.0, 3))


def test_every_stall_is_counted_and_timed() -> None:
    p = started(segments=1)
    for i, at in enumerate((3.0, 6.0, 9.0), start=1):
        p.add_segment(2.0 * i, 2.0, at)  # each arrives 1 s after the buffer ran dry
    events = p.tick(12.0)
    # dry at 2, 5, 8 and 11 (the last one never resumes)
    assert [e.at for e in events if e.kind == "stall"] == pytest.approx([2.0, 5.0, 8.0, 11.0])
    assert [e.at for e in events if e.kind == "resume"] == pytest.approx([3.0, 6.0, 9.0])
    assert p.qoe.stalls == 4
    assert p.qoe.stall_time == pytest.approx(4.0)
    assert p.qoe.played_time == pytest.approx(8.0)
    assert p.qoe.rebuffer_ratio == pytest.approx(4.0 / 12.0)


# ---------------------------------------------------------------- buffer shape


def test_out_of_order_segments_fill_the_buffer_once_contiguous() -> None:
    p = VirtualPlayer(now=0.0)
    p.start_at(0.0, 0.0)
    p.add_segment(4.0, 2.0, 0.1)
    p.add_segment(2.0, 2.0, 0.2)
    assert p.buffered_until(0.2) == 0.0  # nothing at the playhead yet
    assert p.tick(0.2) == []
    p.add_segment(0.0, 2.0, 0.3)
    assert kinds(p.tick(0.3)) == ["started"]
    assert p.buffered_until(0.3) == pytest.approx(6.0)
    assert p.buffer_ahead(1.3) == pytest.approx(5.0)


def test_gap_in_the_buffer_stalls_at_the_gap() -> None:
    p = started(segments=1)
    p.add_segment(4.0, 2.0, 0.0)  # [2, 4) missing
    assert p.buffered_until(0.0) == pytest.approx(2.0)
    assert kinds(p.tick(3.0)) == ["started", "stall"]
    p.add_segment(2.0, 2.0, 3.5)
    assert kinds(p.tick(3.5)) == ["resume"]
    assert p.buffered_until(3.5) == pytest.approx(6.0)


def test_small_holes_are_played_through() -> None:
    p = VirtualPlayer(now=0.0)
    p.start_at(0.0, 0.0)
    p.add_segment(0.04, 2.0, 0.0)  # first PTS slightly after 0, as in real streams
    p.add_segment(2.1, 2.0, 0.0)  # 60 ms hole < max_hole
    assert p.buffered_until(0.0) == pytest.approx(4.1)
    assert kinds(p.tick(0.0)) == ["started"]


def test_overlapping_and_duplicate_segments() -> None:
    p = started(segments=2)
    p.add_segment(0.0, 2.0, 0.0)
    p.add_segment(1.0, 2.0, 0.0)
    assert p.buffered_until(0.0) == pytest.approx(4.0)


def test_wants_more_and_playback_for_the_scheduler() -> None:
    p = started(segments=2, config=PlayerConfig(max_buffer=3.0))
    assert not p.wants_more(0.0)
    pb = p.playback(1.0)
    assert (pb.position, pb.buffered_until, pb.rate, pb.playing) == pytest.approx(
        (1.0, 4.0, 1.0, True)
    )
    assert p.wants_more(1.5)
    p.tick(5.0)
    assert p.playback(5.0).playing  # stalled still counts as started for deadlines
    assert VirtualPlayer(now=0.0).playback(0.0).playing is False


def test_seek_after_start_into_nothing_stalls() -> None:
    p = started(segments=1)
    p.start_at(30.0, 0.5)
    events = p.tick(0.5)
    assert kinds(events) == ["started", "stall"]
    p.add_segment(30.0, 2.0, 1.0)
    assert kinds(p.tick(1.0)) == ["resume"]
    assert p.position(1.5) == pytest.approx(30.5)


# ---------------------------------------------------------------- VOD end


def test_vod_end_starts_with_less_than_startup_buffer_and_ends() -> None:
    p = VirtualPlayer(now=0.0)
    p.set_end(1.5)
    p.start_at(0.0, 0.0)
    p.add_segment(0.0, 1.5, 0.2)  # the whole media: shorter than startup_buffer
    assert kinds(p.tick(0.2)) == ["started"]
    assert p.next_event_time(0.2) == pytest.approx(1.7)
    events = p.tick(4.0)
    assert kinds(events) == ["ended"]
    assert events[0].at == pytest.approx(1.7)
    assert p.state is PlayerState.ENDED
    assert p.qoe.stalls == 0 and p.qoe.played_time == pytest.approx(1.5)
    assert p.waiting_time == pytest.approx(0.2 + 2.3)
    assert p.position(9.0) == pytest.approx(1.5)
    with pytest.raises(RuntimeError, match="ended"):
        p.start_at(0.0, 9.0)


def test_end_set_after_a_stall_ends_instead_of_waiting() -> None:
    p = started(segments=2)
    p.tick(5.0)
    assert p.state is PlayerState.STALLED
    p.set_end(4.0, now=6.0)
    assert kinds(p.tick(6.0)) == ["ended"]
    assert p.qoe.stall_time == pytest.approx(2.0)


def test_resume_near_the_end_needs_only_what_is_left() -> None:
    p = started(segments=1)
    p.set_end(3.0)
    p.tick(2.5)
    assert p.state is PlayerState.STALLED
    p.add_segment(2.0, 1.0, 3.0)
    assert kinds(p.tick(3.0)) == ["resume"]
    assert kinds(p.tick(5.0)) == ["ended"]


def test_start_at_or_past_the_end_ends_without_starting() -> None:
    p = VirtualPlayer(now=0.0)
    p.set_end(10.0)
    p.start_at(10.0, 1.0)
    assert kinds(p.tick(1.0)) == ["ended"]
    assert p.qoe.startup_time is None


# ---------------------------------------------------------------- ABR

LADDER = [400_000, 1_200_000, 3_000_000]


def abr_player(**overrides: float) -> VirtualPlayer:
    return started(segments=5, config=PlayerConfig(abr=True, **overrides))


def test_abr_off_keeps_the_current_rendition() -> None:
    p = started(segments=5)
    assert p.choose_rendition(0.0, LADDER, 50e6, 0) == 0
    assert p.qoe.switches == 0


def test_abr_picks_highest_under_safety_times_throughput() -> None:
    p = abr_player()
    assert p.choose_rendition(0.0, LADDER, 1_200_000 / 0.7, 0) == 1  # exactly fits
    q = abr_player()
    assert q.choose_rendition(0.0, LADDER, 1_199_999 / 0.7, 0) == 0
    r = abr_player()
    assert r.choose_rendition(0.0, LADDER, 100_000, 2) == 0  # nothing fits: the lowest


def test_abr_handles_an_unsorted_ladder() -> None:
    p = abr_player()
    assert p.choose_rendition(0.0, [3_000_000, 400_000, 1_200_000], 2_000_000, 1) == 2


def test_abr_up_waits_for_the_min_interval() -> None:
    p = abr_player(abr_min_interval=6.0)
    assert p.choose_rendition(0.0, LADDER, 2e6, 0) == 1
    events = p.tick(0.0)
    assert next(e for e in events if e.kind == "switch").detail["to"] == 1
    p.add_segment(10.0, 10.0, 1.0)  # plenty of buffer
    assert p.choose_rendition(5.9, LADDER, 10e6, 1) == 1  # too soon
    assert p.choose_rendition(6.0, LADDER, 10e6, 1) == 2
    assert p.qoe.switches == 2


def test_abr_down_at_once_when_buffer_is_low() -> None:
    p = abr_player(abr_min_interval=6.0, abr_low_buffer=5.0)  # 10 s buffered at t=0
    assert p.choose_rendition(0.0, LADDER, 10e6, 0) == 2
    # Healthy buffer (8 s, then exactly 5 s ahead): a throughput dip waits for the interval.
    assert p.choose_rendition(2.0, LADDER, 1e6, 2) == 2
    assert p.choose_rendition(5.0, LADDER, 1e6, 2) == 2
    # Low buffer (4.5 s ahead), 5.5 s after the last switch: down at once, to what fits.
    assert p.choose_rendition(5.5, LADDER, 1e6, 2) == 0
    assert p.qoe.switches == 2


def test_abr_down_at_once_while_stalled() -> None:
    p = abr_player(abr_min_interval=100.0)
    assert p.choose_rendition(0.0, LADDER, 10e6, 0) == 2
    p.tick(11.0)
    assert p.state is PlayerState.STALLED
    assert p.choose_rendition(11.0, LADDER, 700_000, 2) == 0
    assert p.choose_rendition(12.0, LADDER, 10e6, 0) == 0  # but not back up


@pytest.mark.parametrize(
    ("bandwidths", "throughput", "current", "match"),
    [
        ([], 1e6, 0, "at least one"),
        ([0, 100], 1e6, 0, "> 0"),
        ([1.5e6], 1e6, 0, "integers"),
        (LADDER, 1e6, 3, "not an index"),
        (LADDER, 1e6, -1, "not an index"),
        (LADDER, math.nan, 0, "throughput"),
        (LADDER, -1.0, 0, "throughput"),
    ],
)
def test_abr_rejects_bad_input(bandwidths, throughput, current, match) -> None:
    p = abr_player()
    with pytest.raises(ValueError, match=match):
        p.choose_rendition(0.0, bandwidths, throughput, current)


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: p.add_segment(0.0, 0.0, 1.0), "duration"),
        (lambda p: p.add_segment(0.0, math.inf, 1.0), "duration"),
        (lambda p: p.add_segment(0.0, "2", 1.0), "duration"),
        (lambda p: p.add_segment("0", 2.0, 1.0), "segment start"),
        (lambda p: p.add_segment(-2.0, 2.0, 1.0), "segment start"),
        (lambda p: p.add_segment(math.nan, 2.0, 1.0), "segment start"),
        (lambda p: p.add_segment(0.0, 2.0, math.nan), "now"),
        (lambda p: p.start_at(-1.0, 1.0), "start position"),
        (lambda p: p.set_end(math.inf), "media end"),
        (lambda p: p.tick(math.inf), "now"),
    ],
)
def test_bad_input_is_a_clear_error(call, match) -> None:
    p = VirtualPlayer(now=0.0)
    with pytest.raises(ValueError, match=match):
        call(p)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"startup_buffer": -1.0},
        {"resume_buffer": math.nan},
        {"max_buffer": 0.0},
        {"abr_safety": 0.0},
        {"abr_safety": 1.5},
        {"abr_min_interval": -0.1},
        {"max_hole": -0.1},
    ],
)
def test_bad_config_is_refused(kwargs) -> None:
    with pytest.raises(ValueError, match="PlayerConfig"):
        PlayerConfig(**kwargs)


def test_clock_going_back_is_ignored() -> None:
    p = started(segments=2)
    p.tick(3.0)
    assert p.position(2.0) == pytest.approx(3.0)
    assert p.qoe.played_time == pytest.approx(3.0)


# ---------------------------------------------------------------- properties

_calls = st.lists(
    st.tuples(
        st.floats(0.0, 3.0),  # time step before the call
        st.sampled_from(["segment", "tick", "start", "end", "abr"]),
        st.integers(0, 12),  # segment index / start index
        st.floats(0.1, 4.0),  # duration / throughput scale
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(calls=_calls, created=st.floats(0.0, 1e6))
@example(  # found in CI: the player ends while the clock moves to a start call
    calls=[
        (0.0, "segment", 0, 2.0),
        (0.0, "start", 0, 1.0),
        (0.0, "end", 0, 1.5),
        (1.0, "segment", 0, 1.0),
        (1.0, "start", 0, 1.0),
    ],
    created=0.0,
)
def test_time_is_played_stalled_or_waiting_and_never_negative(calls, created) -> None:
    p = VirtualPlayer(PlayerConfig(abr=True, abr_min_interval=1.0), now=created)
    now = created
    last_pos = None
    stalls_seen = 0
    for step, op, index, value in calls:
        now += step
        # Bring the player to `now` first: it may end on the way (then it can't be started).
        events = p.tick(now)
        if op == "segment":
            p.add_segment(2.0 * index, value, now)
        elif op == "start" and p.state is not PlayerState.ENDED:
            p.start_at(2.0 * index, now)
            last_pos = None  # a seek may go backwards
        elif op == "end":
            p.set_end(2.0 * index + value, now=now)
        elif op == "abr":
            p.choose_rendition(now, [300_000, 1_000_000], value * 1e6, 0)
        events += p.tick(now)
        stalls_seen += sum(e.kind == "stall" for e in events)
        assert all(created <= e.at <= now + 1e-9 for e in events)
        q = p.qoe
        elapsed = now - created
        assert q.played_time >= 0 and q.stall_time >= 0 and p.waiting_time >= 0
        assert q.played_time + q.stall_time + p.waiting_time == pytest.approx(elapsed, abs=1e-6)
        assert q.stalls == stalls_seen
        assert 0.0 <= q.rebuffer_ratio <= 1.0
        pos = p.position(now)
        assert pos >= 0
        if last_pos is not None:
            assert pos >= last_pos - 1e-9  # the playhead never goes back by itself
        last_pos = pos
        assert p.buffered_until(now) >= pos
        if q.startup_time is not None:
            assert 0 <= q.startup_time <= elapsed + 1e-9
        wake = p.next_event_time(now)
        assert (wake is None) == (p.state is not PlayerState.PLAYING)
        if wake is not None:
            assert wake >= now - 1e-9


def test_a_player_that_ended_on_the_way_refuses_a_start() -> None:
    """The case hypothesis found: the end passes while the clock moves to the start call."""
    p = VirtualPlayer(PlayerConfig(), now=0.0)
    p.add_segment(0.0, 2.0, 0.0)
    p.start_at(0.0, 0.0)
    p.set_end(1.5, now=0.0)
    p.tick(2.0)
    assert p.state is PlayerState.ENDED
    with pytest.raises(RuntimeError, match="ended"):
        p.start_at(0.0, 2.0)
