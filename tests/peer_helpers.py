"""Shared fixtures of the peer tests: a development origin, a signalling server, and seeds and
viewers (``PeerAgent``) all in one event loop, bound to the test host.

Everything is real: aiohttp origin with the simulated live stream, the signalling server,
aiortc data channels (run inside ``tests/netns-run``). Only the scale is small: the tiny 2 s
sample, a 6-segment live window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from swarmcast.peer.agent import AgentConfig, PeerAgent
from swarmcast.peer.protocol import Role
from swarmcast.peer.swarm import SwarmConfig
from swarmcast.samples.origin import OriginConfig, start_origin
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.server import create_app

log = logging.getLogger(__name__)


@dataclass
class Lab:
    """A running origin + signalling server, and the agents started in it."""

    host: str
    origin_url: str
    signal_url: str
    signal_port: int
    origin_runner: web.AppRunner
    signal_runner: web.AppRunner | None
    agents: list[PeerAgent] = field(default_factory=list)

    @property
    def live_url(self) -> str:
        """The simulated live master playlist."""
        return f"{self.origin_url}/live/master.m3u8"

    def config(self, role: Role = Role.VIEWER, **overrides: Any) -> AgentConfig:
        """An agent config for the live stream, lowest rendition, with test-friendly limits."""
        swarm = overrides.pop("swarm", None) or SwarmConfig(
            max_peers=20 if role is Role.SEED else 10, connect_timeout=5.0
        )
        base = AgentConfig(
            url=self.live_url,
            role=role,
            signaling_url=self.signal_url,
            renditions=("90p/index.m3u8",),
            swarm=swarm,
        )
        return replace(base, **overrides)

    async def agent(self, role: Role = Role.VIEWER, **overrides: Any) -> PeerAgent:
        """Start an agent and keep it for cleanup."""
        agent = PeerAgent(self.config(role, **overrides))
        self.agents.append(agent)
        await agent.start()
        return agent

    async def origin_faults(self, **faults: Any) -> None:
        """Change the origin's fault injection (``docs/origin.md``)."""
        # Admin routes answer loopback only; the origin listens on the test host, so ask the
        # app directly through its state rather than over the wire.
        from swarmcast.samples.origin import ORIGIN_KEY

        app = self.origin_runner.app
        state = app[ORIGIN_KEY]
        state.set_faults(replace(state.faults, **faults))

    async def stop_signaling(self) -> None:
        """Shut the signalling server down (every WebSocket closed with 1001)."""
        if self.signal_runner is not None:
            await self.signal_runner.cleanup()
            self.signal_runner = None

    async def start_signaling(self) -> None:
        """Start the signalling server again on the same port."""
        self.signal_runner = await _start_signaling(self.host, self.signal_port)


async def _start_signaling(host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(create_app(SignalingConfig(host=host, port=port)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    for _ in range(50):  # the port may linger a moment after a restart
        try:
            await site.start()
            return runner
        except OSError:
            await asyncio.sleep(0.1)
    await site.start()
    return runner


@contextlib.asynccontextmanager
async def lab(sample: Path, host: str, *, live_window: int = 6) -> AsyncIterator[Lab]:
    """Origin + signalling on ``host``; every agent started through it is closed at the end."""
    origin_runner, origin_url = await start_origin(
        OriginConfig(root=sample, host=host, port=0, live_window=live_window)
    )
    signal_runner = await _start_signaling(host, 0)
    port = signal_runner.addresses[0][1]
    the_lab = Lab(host, origin_url, f"ws://{host}:{port}/ws", port, origin_runner, signal_runner)
    try:
        yield the_lab
    finally:
        await asyncio.gather(*(a.close() for a in the_lab.agents), return_exceptions=True)
        await the_lab.stop_signaling()
        await origin_runner.cleanup()


async def play(seconds: float) -> None:
    """Let the lab run for ``seconds`` of wall-clock time."""
    await asyncio.sleep(seconds)
