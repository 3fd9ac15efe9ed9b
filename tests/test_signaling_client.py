"""SignalingClient against the real signalling server on loopback: welcome, join/rejoin after a
server restart (new peer id), relays, errors, clean close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from conftest import free_port

from swarmcast.peer.signaling_client import (
    SignalingClient,
    SignalingClientConfig,
    SignalingError,
    Welcome,
)
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.server import create_app


class Recorder:
    """A SignalingHandler that keeps everything."""

    def __init__(self) -> None:
        self.welcomes: list[Welcome] = []
        self.joined: list[tuple[str, list[dict[str, Any]]]] = []
        self.signals: list[tuple[str, str, dict[str, Any]]] = []
        self.disconnects = 0
        self.got = asyncio.Event()

    def on_welcome(self, welcome: Welcome) -> None:
        self.welcomes.append(welcome)

    def on_joined(self, swarm: str, peers: list[dict[str, Any]]) -> None:
        self.joined.append((swarm, peers))
        self.got.set()

    def on_peer_joined(self, swarm: str, peer: str, role: str) -> None:
        pass

    def on_peer_left(self, swarm: str, peer: str) -> None:
        pass

    def on_signal(self, sender: str, swarm: str, data: dict[str, Any]) -> None:
        self.signals.append((sender, swarm, data))
        self.got.set()

    def on_disconnected(self) -> None:
        self.disconnects += 1


async def _server(port: int, **config: Any) -> web.AppRunner:
    runner = web.AppRunner(create_app(SignalingConfig(port=port, **config)), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    return runner


def _client(port: int, handler: Recorder, **config: Any) -> SignalingClient:
    cfg = SignalingClientConfig(url=f"ws://127.0.0.1:{port}/ws", reconnect_initial=0.05, **config)
    return SignalingClient(cfg, handler)


async def _until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_join_relay_and_rejoin_after_server_restart() -> None:
    port = free_port()
    runner = await _server(port)
    ha, hb = Recorder(), Recorder()
    a, b = _client(port, ha), _client(port, hb)
    try:
        a.start()
        b.start()
        await a.wait_ready(5)
        await b.wait_ready(5)
        await a.join("s1")
        await b.join("s1", role="seed", capacity=5)
        assert hb.joined[-1] == ("s1", [{"peer": a.peer_id, "role": "viewer"}])
        b.signal(a.peer_id or "", "s1", {"candidate": None})
        await _until(lambda: bool(ha.signals))
        assert ha.signals == [(b.peer_id, "s1", {"candidate": None})]
        old_a = a.peer_id
        await runner.cleanup()
        await _until(lambda: ha.disconnects == 1 and hb.disconnects == 1)
        runner = await _server(port)
        await _until(lambda: len(ha.joined) == 2 and len(hb.joined) == 2)
        assert a.connections == 2 and a.peer_id != old_a  # new id, swarms rejoined
        assert a.swarms == ["s1"]
        assert await a.ping() < 1.0
    finally:
        await a.close()
        await b.close()
        await runner.cleanup()


async def test_refused_join_raises_and_is_not_rejoined() -> None:
    port = free_port()
    runner = await _server(port, auth_secret="x" * 20)
    client = _client(port, Recorder())
    try:
        client.start()
        await client.wait_ready(5)
        with pytest.raises(SignalingError) as info:
            await client.join("s1")
        assert info.value.code == "unauthorized"
        assert client.swarms == []
    finally:
        await client.close()
        await runner.cleanup()


async def test_unreachable_server_keeps_retrying_without_raising() -> None:
    client = _client(free_port(), Recorder())
    client.start()
    with pytest.raises(TimeoutError):
        await client.wait_ready(0.5)
    assert not client.connected
    await client.close()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="ws://"):
        SignalingClientConfig(url="ftp://x")
    with pytest.raises(ValueError, match="reconnect_initial"):
        SignalingClientConfig(url="ws://x/ws", reconnect_initial=20.0)
