"""Helpers shared by the signalling tests: a JSON-level driver for the sans-IO hub, a WebSocket
client for real servers, and launchers for redis-server / turnserver on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.hub import Close, Output, Send, SwarmHub


class HubDriver:
    """Drives a :class:`SwarmHub` with a fake clock and keeps every peer's inbox."""

    def __init__(self, **config: Any) -> None:
        self.hub = SwarmHub(SignalingConfig(**config))
        self.now = 1_000_000.0
        self.inbox: dict[str, list[dict[str, Any]]] = {}
        self.closed: dict[str, tuple[int, str]] = {}

    def _apply(self, outputs: list[Output]) -> list[Output]:
        for out in outputs:
            if isinstance(out, Send):
                self.inbox.setdefault(out.peer, []).append(json.loads(out.data))
            elif isinstance(out, Close):
                self.closed[out.peer] = (out.code, out.reason)
        return outputs

    def connect(self, address: str = "127.0.0.1", hello: bool = True, **fields: Any) -> str:
        peer = self.hub.connect(self.now, address)
        self.inbox[peer] = []
        if hello:
            self.send(peer, {"type": "hello", **fields})
            assert self.pop(peer)["type"] == "welcome"
        return peer

    def send(self, peer: str, message: dict[str, Any] | str) -> list[Output]:
        frame = message if isinstance(message, str) else json.dumps(message)
        return self._apply(self.hub.receive(peer, frame, self.now))

    def join(self, peer: str, swarm: str = "s1", **fields: Any) -> dict[str, Any]:
        self.send(peer, {"type": "join", "swarm": swarm, **fields})
        return self.pop(peer)

    def disconnect(self, peer: str) -> None:
        self._apply(self.hub.disconnect(peer, self.now))

    def tick(self, advance: float = 0.0) -> None:
        self.now += advance
        self._apply(self.hub.tick(self.now))

    def pop(self, peer: str) -> dict[str, Any]:
        return self.inbox[peer].pop(0)

    def drain(self, peer: str) -> list[dict[str, Any]]:
        msgs, self.inbox[peer] = self.inbox[peer], []
        return msgs


class WsClient:
    """A minimal signalling client over a real WebSocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.peer = ""

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected text, got {msg.type} {msg.data}"
        return json.loads(msg.data)

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """Next message of ``kind``, skipping notifications of other types."""
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - time.monotonic()))
            if msg["type"] == kind:
                return msg

    async def hello(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "hello", **fields})
        welcome = await self.recv()
        assert welcome["type"] == "welcome", welcome
        self.peer = welcome["peer"]
        return welcome

    async def join(self, swarm: str = "s1", **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", "swarm": swarm, **fields})
        return await self.recv_type("joined")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, udp: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp:
            out = subprocess.run(["ss", "-lun"], capture_output=True, text=True).stdout
            if f"127.0.0.1:{port} " in out:
                return
        else:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


@contextlib.contextmanager
def redis_server(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate()`` until true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)
