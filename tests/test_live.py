"""The simulated live timeline: window, sequence numbers, loops, discontinuities, manifests."""

from __future__ import annotations

import m3u8
import pytest

from swarmcast.samples.live import LiveTimeline, SourceSegment, format_program_date_time


def _segments(n: int = 5, duration: float = 2.0, *, fmp4: bool = False) -> list[SourceSegment]:
    ext = ".m4s" if fmp4 else ".ts"
    return [
        SourceSegment(
            uri=f"seg-{i:05d}{ext}",
            duration=duration,
            size=1000 + i,
            sha256=f"{i:064x}",
            map_uri="init.mp4" if fmp4 else None,
        )
        for i in range(n)
    ]


def test_window_is_full_at_start_and_advances_one_segment_per_duration():
    tl = LiveTimeline(_segments(), window=3, start=1000.0)
    assert tl.window_range(1000.0) == range(0, 3)
    assert tl.window_range(1001.99) == range(0, 3)
    assert tl.window_range(1002.0) == range(1, 4)
    assert tl.window_range(1000.0 + 2 * 37) == range(37, 40)
    # Before the start (clock skew) the window stays at its first position.
    assert tl.window_range(900.0) == range(0, 3)


def test_window_with_uneven_durations_publishes_each_segment_at_its_end():
    segs = [SourceSegment(f"s{i}.ts", d, 10, "0" * 64) for i, d in enumerate([1.0, 3.0, 2.0])]
    tl = LiveTimeline(segs, window=1, start=0.0)
    # Live clock starts at media time 1.0 (end of segment 0): published = 1.
    assert tl.published(0.0) == 1
    assert tl.published(2.999) == 1
    assert tl.published(3.0) == 2  # segment 1 ends at media time 4.0
    assert tl.published(5.0) == 3  # segment 2 ends at 6.0
    assert tl.published(6.0) == 4  # next loop, segment 0 ends at 7.0


def test_playlist_parses_and_is_consistent():
    tl = LiveTimeline(_segments(), window=3, start=1000.0)
    pl = m3u8.loads(tl.render_playlist(1000.0 + 2 * 12 + 0.5))
    assert not pl.is_endlist
    assert pl.media_sequence == 12
    assert pl.target_duration == 2
    assert [s.uri for s in pl.segments] == ["live-12.ts", "live-13.ts", "live-14.ts"]
    assert all(s.duration == pytest.approx(2.0) for s in pl.segments)
    # Program date times are contiguous: each segment starts where the previous ended.
    times = [s.current_program_date_time.timestamp() for s in pl.segments]
    assert times[1] - times[0] == pytest.approx(2.0)
    assert times[2] - times[1] == pytest.approx(2.0)


def test_loop_wrap_is_a_discontinuity_with_matching_sequence():
    tl = LiveTimeline(_segments(5), window=3, start=0.0)
    # Window 4..6 crosses the wrap at msn 5 (VOD segment 0 of loop 1).
    pl = m3u8.loads(tl.render_playlist(2 * 4))
    assert pl.media_sequence == 4
    assert pl.discontinuity_sequence == 0
    assert [s.discontinuity for s in pl.segments] == [False, True, False]
    assert tl.segment(5).source.uri == "seg-00000.ts"
    # Window 5..7 starts at the wrap: its tag is implied by the discontinuity sequence.
    pl = m3u8.loads(tl.render_playlist(2 * 5))
    assert pl.media_sequence == 5
    assert pl.discontinuity_sequence == 1
    assert [s.discontinuity for s in pl.segments] == [False, False, False]


def test_fmp4_playlist_repeats_the_map_after_a_discontinuity():
    tl = LiveTimeline(_segments(3, fmp4=True), window=3, start=0.0)
    text = tl.render_playlist(2 * 2)  # window 2..4, wrap at 3
    assert text.count('#EXT-X-MAP:URI="init.mp4"') == 2
    pl = m3u8.loads(text)
    assert all(s.init_section.uri == "init.mp4" for s in pl.segments)


def test_integrity_manifest_follows_the_window():
    tl = LiveTimeline(_segments(5), window=3, start=0.0)
    doc = tl.integrity_manifest(2 * 6, playlist="index.m3u8", init=[])
    assert doc["live"] is True
    assert doc["media_sequence"] == 6
    assert [s["sequence"] for s in doc["segments"]] == [6, 7, 8]
    assert [s["uri"] for s in doc["segments"]] == ["live-6.ts", "live-7.ts", "live-8.ts"]
    # msn 6 plays VOD segment 1: same bytes, same hash.
    assert doc["segments"][0]["sha256"] == f"{1:064x}"
    assert doc["segments"][0]["size"] == 1001


def test_published_and_unpublished_segments():
    tl = LiveTimeline(_segments(5), window=3, start=0.0)
    assert tl.is_published(2, 0.0)
    assert not tl.is_published(3, 0.0)
    assert tl.is_published(3, 2.0)
    assert not tl.is_published(-1, 100.0)
    with pytest.raises(ValueError):
        tl.segment(-1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"segments": [], "window": 3}, "at least one"),
        ({"segments": _segments(), "window": 0}, "at least 1"),
        ({"segments": [SourceSegment("a.ts", 0.0, 1, "0" * 64)], "window": 1}, "positive"),
    ],
)
def test_bad_timelines_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LiveTimeline(kwargs["segments"], window=kwargs["window"], start=0.0)


def test_program_date_time_format():
    assert format_program_date_time(0.5) == "1970-01-01T00:00:00.500Z"
