"""PeerAgent's public hooks: the VOD start position and the segment-stored callback.

The pure part (``vod_start_position``, config validation) on made-up segments; the agent part
against a real development origin over HTTP only (no signalling: no namespace needed).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from swarmcast.peer.agent import AgentConfig, PeerAgent, RenditionState, vod_start_position
from swarmcast.peer.stream import Segment
from swarmcast.samples.origin import OriginConfig, start_origin


def segments(n: int, duration: float = 2.0) -> list[Segment]:
    return [
        Segment(10 + i, f"http://o/s{i}.ts", f"s{i}.ts", duration, i * duration) for i in range(n)
    ]


def test_start_defaults_to_the_first_segment() -> None:
    assert vod_start_position(segments(10)) == 0.0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, 0.0), (5.0, 4.0), (6.0, 6.0), (7.99, 6.0), (1000.0, 18.0)],
)
def test_start_in_seconds_snaps_back_to_a_segment_start(seconds: float, expected: float) -> None:
    assert vod_start_position(segments(10), seconds=seconds) == expected


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, 0.0), (0.5, 6.0), (0.99, 10.0)])
def test_start_fraction_leaves_segments_after_it(fraction: float, expected: float) -> None:
    # 10 segments: starts fall in segments 0..5, so at least four are left to play after it.
    assert vod_start_position(segments(10), fraction=fraction) == expected


def test_start_fraction_of_a_short_playlist_is_the_first_segment() -> None:
    assert vod_start_position(segments(2), fraction=0.9) == 0.0


@pytest.mark.parametrize(
    "overrides",
    [
        {"start_position": -1.0},
        {"start_position": float("nan")},
        {"start_fraction": 1.0},
        {"start_fraction": -0.1},
        {"start_position": 2.0, "start_fraction": 0.5},
    ],
)
def test_bad_start_settings_are_refused(overrides: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="start_"):
        AgentConfig(url="http://o/master.m3u8", **overrides)  # type: ignore[arg-type]


async def test_vod_viewer_starts_at_the_fraction_and_reports_what_it_stores(
    tiny_sample: Path,
) -> None:
    runner, url = await start_origin(OriginConfig(root=tiny_sample, host="127.0.0.1", port=0))
    stored: list[tuple[str, int]] = []

    def on_stored(st: RenditionState, seg: Segment) -> None:
        stored.append((st.swarm_id, seg.sequence))

    config = AgentConfig(url=f"{url}/vod/master.m3u8", signaling_url=None, start_fraction=0.5)
    agent = PeerAgent(config, on_segment_stored=on_stored)
    try:
        await agent.start()
        async with asyncio.timeout(10):
            while len(stored) < 2:
                await asyncio.sleep(0.05)
        assert agent.player is not None and agent.playing is not None
        segs = agent.playing.follower.timeline.segments
        expected = vod_start_position(segs, fraction=0.5)
        assert expected > segs[0].start  # the test means something: not the default start
        assert agent.player.start_position == expected
        first = next(s.sequence for s in segs if s.start == expected)
        assert all(swarm == agent.playing.swarm_id for swarm, _ in stored)
        assert min(seq for _, seq in stored) == first  # nothing before the start was fetched
    finally:
        await agent.close()
        await runner.cleanup()
