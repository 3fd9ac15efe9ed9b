"""fMP4 init segments (EXT-X-MAP) in the Python peer: fetched once, verified, pinned, shared.

Run inside the test namespace: ``tests/netns-run .venv/bin/pytest tests/test_peer_init.py``.
Sample: ``tiny_sample_fmp4`` (90p fMP4, one ``init.mp4``, looped live by the origin).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from peer_helpers import lab, play

from swarmcast.peer.agent import PeerAgent, init_cache_key
from swarmcast.peer.connection import RequestReceived
from swarmcast.peer.ids import SegmentKind
from swarmcast.peer.link import PeerLink
from swarmcast.peer.protocol import Role

pytestmark = pytest.mark.netns


def _init_size(sample: Path) -> int:
    return (sample / "90p" / "init.mp4").stat().st_size


def _init_id(agent: PeerAgent) -> int:
    st = next(iter(agent.states.values()))
    inits = {s.init.key.number for s in st.follower.timeline.segments if s.init is not None}
    assert len(inits) == 1
    return inits.pop()


class CorruptInitSeed(PeerAgent):
    """A seed that serves every media segment faithfully but its init segment corrupted."""

    def _on_request(self, link: PeerLink, event: RequestReceived) -> None:
        st = self.states[event.swarm_id]
        data = st.cache.get(init_cache_key(event.key.number))
        if event.key.kind is not SegmentKind.INIT or data is None:
            super()._on_request(link, event)
            return
        bad = bytearray(data)
        bad[len(bad) // 2] ^= 0xFF
        link.protocol.send_segment(event.request_id, bytes(bad))
        link.flush()


async def test_fmp4_live_plays_with_init_fetched_once_and_shared(
    tiny_sample_fmp4: Path, test_host: str
) -> None:
    size = _init_size(tiny_sample_fmp4)
    async with lab(tiny_sample_fmp4, test_host) as the_lab:
        seed = await the_lab.agent(Role.SEED)
        first = await the_lab.agent()
        await play(1.0)
        # This one waits for a peer to announce the init (it starts with links coming up).
        second = await the_lab.agent(init_peer_wait=3.0)
        await play(12.0)
        reports = [v.report() for v in (first, second)]
        seed_cache = next(iter(seed.states.values())).cache
        init_id = _init_id(seed)
    for agent, q in zip((first, second), reports, strict=True):
        print(agent.init_stats, q.to_json())
        assert q.startup_time is not None
        assert q.stalls == 0
        assert q.played_time > 8.0
        assert q.p2p_rejected_bytes == 0
        stats = agent.init_stats
        # Fetched exactly once, from one source, and verified against the manifest.
        assert stats["http_bytes"] + stats["p2p_bytes"] == size
        assert stats["verified"] == 1 and stats["rejected"] == 0
    assert second.init_stats["p2p_bytes"] == size  # shared by a peer
    assert seed.init_stats["http_bytes"] == size and seed.init_stats["verified"] == 1
    assert seed_cache.has(init_cache_key(init_id))
    # Pinned: still there after many media segments came and went.
    assert next(iter(second.states.values())).cache.has(init_cache_key(init_id))


async def test_corrupted_init_from_a_peer_is_rejected(
    tiny_sample_fmp4: Path, test_host: str
) -> None:
    size = _init_size(tiny_sample_fmp4)
    async with lab(tiny_sample_fmp4, test_host) as the_lab:
        liar = CorruptInitSeed(the_lab.config(Role.SEED))
        the_lab.agents.append(liar)
        await liar.start()
        await play(1.0)
        viewer = await the_lab.agent(init_peer_wait=3.0)
        await play(8.0)
        qoe = viewer.report()
        banned = viewer.swarm.stats["bans"]
        st = next(iter(viewer.states.values()))
        init_id = _init_id(viewer)
        held = st.cache.get(init_cache_key(init_id))
    print(viewer.init_stats, qoe.to_json())
    assert viewer.init_stats["rejected"] == 1
    assert qoe.p2p_rejected_bytes >= size
    assert banned >= 1
    # The origin's copy replaced it, verified; playback went on.
    assert viewer.init_stats["http_bytes"] == size and viewer.init_stats["verified"] == 1
    assert held is not None and len(held) == size
    assert st.follower.timeline.verify(
        next(s.init for s in st.follower.timeline.segments if s.init), held
    )
    assert qoe.stalls == 0 and qoe.played_time > 3.0
