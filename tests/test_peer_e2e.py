"""End to end: real origin (simulated live), real signalling server, real aiortc links.

Run inside the test namespace: ``tests/netns-run .venv/bin/pytest tests/test_peer_e2e.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from peer_helpers import lab, play

from swarmcast.peer.protocol import Role

pytestmark = pytest.mark.netns


async def test_one_seed_three_viewers_play_mostly_from_peers(
    tiny_sample: Path, test_host: str
) -> None:
    async with lab(tiny_sample, test_host) as the_lab:
        seed = await the_lab.agent(Role.SEED)
        viewers = [await the_lab.agent() for _ in range(3)]
        await play(16.0)
        reports = [v.report() for v in viewers]
        seed_links = len(seed.swarm.links) if seed.swarm else 0
        seed_up = seed.qoe.uploaded_bytes
    for i, q in enumerate(reports):
        print(f"viewer {i}: {q.to_json()}")
    print(f"seed: links={seed_links} uploaded={seed_up} http={seed.qoe.http_bytes}")
    assert seed_links == 3
    for q in reports:
        assert q.startup_time is not None and q.startup_time < 3.0
        assert q.stalls == 0
        assert q.played_time > 10.0
        assert q.p2p_rejected_bytes == 0
    total_p2p = sum(q.p2p_bytes for q in reports)
    total_http = sum(q.http_bytes for q in reports)
    offload = total_p2p / (total_p2p + total_http)
    # Measured 0.71 for each viewer (the startup segments come from the origin, as designed);
    # a broken P2P path gives ~0.
    assert offload > 0.6, offload
    assert seed_up >= total_p2p * 0.5


async def test_clean_shutdown_leaves_no_tasks(tiny_sample: Path, test_host: str) -> None:
    before = set(asyncio.all_tasks())
    async with lab(tiny_sample, test_host) as the_lab:
        await the_lab.agent(Role.SEED)
        viewer = await the_lab.agent()
        await play(4.0)
        assert viewer.swarm is not None and viewer.swarm.links
        links = [link for agent in the_lab.agents for link in agent.swarm.links.values()]
        agents = list(the_lab.agents)
    await asyncio.sleep(0.2)  # let cancelled callbacks of aiortc's own timers run
    left = [t for t in asyncio.all_tasks() if t not in before and not t.done()]
    assert not left, [t.get_coro() for t in left]
    assert links and all(link.is_closed for link in links)
    assert all(link.pc.connectionState == "closed" for link in links)
    assert all(link.channel.readyState == "closed" for link in links)
    for agent in agents:
        assert agent.swarm.signaling._session.closed
        assert agent.origin._session is None
