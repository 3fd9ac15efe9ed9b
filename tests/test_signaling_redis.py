"""Two signalling nodes sharing swarms through a real redis-server on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from signaling_helpers import WsClient, free_port, redis_server, until, wait_port

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.redis_bus import RedisBus
from swarmcast.signaling.server import SERVER, SignalingServer, create_app

FAST = {"tick_interval": 0.1, "node_ttl": 1.0}
OFFER = {"sdp": {"type": "offer", "sdp": "v=0\r\n"}}


@pytest.fixture
def redis_url(tmp_path: Path):
    with redis_server(tmp_path) as url:
        yield url


async def start_node(url: str, node_id: str) -> tuple[web.AppRunner, str, SignalingServer]:
    config = SignalingConfig(redis_url=url, node_id=node_id, **FAST)
    app = create_app(config, bus=RedisBus(config))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/ws", app[SERVER]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_peers_on_two_nodes_meet_and_relay(redis_url: str, session) -> None:
    r1, url1, n1 = await start_node(redis_url, "node-a")
    r2, url2, n2 = await start_node(redis_url, "node-b")
    try:
        a = WsClient(await session.ws_connect(url1))
        b = WsClient(await session.ws_connect(url2))
        await a.hello()
        await b.hello()
        await a.join("live")
        await until(lambda: "live" in n2.hub.swarms)
        joined = await b.join("live")
        assert joined["peers"] == [{"peer": a.peer, "role": "viewer"}]
        assert (await a.recv_type("peer-joined"))["peer"] == b.peer  # crossed node-b -> node-a
        await until(lambda: b.peer in n1.hub.swarms["live"].members)
        await b.send({"type": "signal", "to": a.peer, "swarm": "live", "data": OFFER})
        assert await a.recv() == {"type": "signal", "from": b.peer, "swarm": "live", "data": OFFER}
        answer = {"sdp": {"type": "answer", "sdp": "v=0\r\n"}}
        await a.send({"type": "signal", "to": b.peer, "swarm": "live", "data": answer})
        assert (await b.recv())["data"] == answer
        await a.send({"type": "stats", "swarm": "live", "http_bytes": 100, "p2p_bytes": 300})
        await b.send({"type": "stats", "swarm": "live", "http_bytes": 100, "p2p_bytes": 100})
        stats_url = url2.removesuffix("/ws") + "/stats"
        for _ in range(50):  # a node publishes its totals with each heartbeat (0.1 s here)
            async with session.get(stats_url) as r:
                live = (await r.json())["swarms"]["live"]
            if live["reports"] == 2:
                break
            await asyncio.sleep(0.05)
        assert (live["peers"], live["http_bytes"], live["p2p_bytes"], live["offload"]) == (
            2,
            200,
            400,
            round(400 / 600, 4),
        )
        await a.send({"type": "leave", "swarm": "live"})
        assert (await b.recv_type("peer-left"))["peer"] == a.peer
        await until(lambda: a.peer not in n2.hub.swarms["live"].members)
        await a.ws.close()
        await b.ws.close()
    finally:
        await r1.cleanup()
        await r2.cleanup()


async def test_a_late_node_loads_existing_members(redis_url: str, session) -> None:
    r1, url1, _ = await start_node(redis_url, "early")
    try:
        a = WsClient(await session.ws_connect(url1))
        await a.hello()
        await a.join("vod", role="seed", capacity=3)
        r2, url2, _ = await start_node(redis_url, "late")
        try:
            b = WsClient(await session.ws_connect(url2))
            await b.hello()
            joined = await b.join("vod")
            assert joined["peers"] == [{"peer": a.peer, "role": "seed"}]
            await b.ws.close()
        finally:
            await r2.cleanup()
    finally:
        await r1.cleanup()


async def test_a_dead_node_does_not_strand_the_other_nodes_peers(redis_url: str, session) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SWARMCAST_REDIS_URL": redis_url,
        "SWARMCAST_NODE_ID": "doomed",
        "SWARMCAST_NODE_TTL": "1",
        "SWARMCAST_TICK_INTERVAL": "0.1",
    }
    doomed = subprocess.Popen(
        [sys.executable, "-m", "swarmcast.cli", "-q", "signal", "--port", str(port)], env=env
    )
    runner, url2, survivor = await start_node(redis_url, "survivor")
    try:
        await asyncio.to_thread(wait_port, port)
        a = WsClient(await session.ws_connect(f"http://127.0.0.1:{port}/ws"))
        await a.hello()
        await a.join("live")
        b = WsClient(await session.ws_connect(url2))
        await b.hello()
        await until(lambda: "live" in survivor.hub.swarms)
        assert (await b.join("live"))["peers"][0]["peer"] == a.peer
        doomed.send_signal(signal.SIGKILL)  # no goodbye: only the missing heartbeat tells
        left = await b.recv_type("peer-left", timeout=5)
        assert left == {"type": "peer-left", "swarm": "live", "peer": a.peer}
        assert set(survivor.hub.swarms["live"].members) == {b.peer}
        redis = survivor.bus.redis  # type: ignore[union-attr]
        assert await redis.hkeys("sc:m:live") == [b.peer.encode()]
        assert not await redis.exists("sc:nm:doomed") and not await redis.sismember(
            "sc:nodes", "doomed"
        )
        await b.send({"type": "signal", "to": a.peer, "swarm": "live", "data": OFFER})
        assert (await b.recv())["code"] == "unknown-peer"
        await b.ws.close()
    finally:
        doomed.kill()
        doomed.wait()
        await runner.cleanup()
