"""PeerSwarm: real aiortc links negotiated through the real signalling server (netns), the
connection budget, duplicate links after a signalling restart, bans, and config checks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from swarmcast.peer.connection import ConnectionClosed, Event, HelloReceived
from swarmcast.peer.link import PeerLink
from swarmcast.peer.signaling_client import SignalingClientConfig
from swarmcast.peer.swarm import PeerSwarm, SwarmConfig
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.server import create_app


class Listener:
    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[tuple[str | None, int | None]] = []

    def link_opened(self, link: PeerLink, hello: HelloReceived) -> None:
        self.opened.append(hello.peer_id)

    def link_event(self, link: PeerLink, event: Event) -> None:
        pass

    def link_closed(self, link: PeerLink, event: ConnectionClosed) -> None:
        self.closed.append((link.peer_id, event.code))


async def _until(predicate, timeout: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_peers"):
        SwarmConfig(max_peers=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        SwarmConfig(connect_timeout=0)


@pytest.mark.netns
async def test_budget_bans_and_clean_close(test_host: str) -> None:
    runner = web.AppRunner(create_app(SignalingConfig(host=test_host, port=0)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, test_host, 0).start()
    url = f"ws://{test_host}:{runner.addresses[0][1]}/ws"
    listeners = [Listener() for _ in range(4)]
    budgets = [2, 10, 10, 10]  # the first one accepts only two peers
    swarms = [
        PeerSwarm(SwarmConfig(max_peers=n, connect_timeout=20.0), SignalingClientConfig(url), lst)
        for n, lst in zip(budgets, listeners, strict=True)
    ]
    try:
        for s in swarms:
            await s.start()
            await s.join("s1")
        first = swarms[0]
        # The full peer answers the third newcomer's offer with "busy": the newcomer gives
        # that negotiation up at once, long before its 20 s connect timeout.
        await _until(lambda: swarms[3].stats["failed"] == 1 and not swarms[3]._pending, 8.0)
        await _until(lambda: len(first.links) == 2 and len(swarms[3].links) >= 2)
        await asyncio.sleep(0.5)
        assert len(first.links) == 2  # the third newcomer's offer was not taken
        assert len(swarms[3].links) == 2  # it is linked to the two others with room
        victim = swarms[1]
        banned_id = swarms[2].local_id or ""
        victim.ban(banned_id, "test")
        await _until(lambda: banned_id not in victim.links)
        assert victim.is_banned(banned_id)
        await asyncio.sleep(0.3)
        assert (banned_id, 6) in listeners[1].closed  # ERROR banned (code 6)
    finally:
        links: list[Any] = [link for s in swarms for link in s.links.values()]
        await asyncio.gather(*(s.close() for s in swarms))
        await runner.cleanup()
    assert all(link.is_closed for link in links)


async def test_unoffered_peers_of_a_sample_are_tried_when_room_appears() -> None:
    """A sample larger than the budget: the rest are spares, offered (seeds first, in sample
    order) when a slot frees up, before asking signalling for a new sample."""
    swarm = PeerSwarm(
        SwarmConfig(max_peers=2), SignalingClientConfig("ws://127.0.0.1:9/ws"), Listener()
    )
    offered: list[str] = []

    async def offer(remote: str, swarm_id: str) -> None:
        swarm._offering.discard(remote)
        swarm._pending[remote] = object()  # type: ignore[assignment]
        offered.append(remote)

    swarm._offer = offer  # type: ignore[method-assign]
    swarm.swarms.append("s1")
    swarm.banned["banned"] = float("inf")
    peers = [{"peer": p, "role": "viewer"} for p in ("a", "banned", "b", "c")]
    swarm.on_joined("s1", [*peers, {"peer": "seed", "role": "seed"}])
    await asyncio.sleep(0)
    assert offered == ["seed", "a"]  # seeds first, within the budget of 2
    swarm._maintain_once(0.0)
    await asyncio.sleep(0)
    assert offered == ["seed", "a"]  # no room yet
    del swarm._pending["a"]  # that negotiation failed
    swarm._maintain_once(0.0)
    await asyncio.sleep(0)
    assert offered == ["seed", "a", "b"]  # the banned one is skipped
    assert swarm._spare["s1"] == ["c"]
