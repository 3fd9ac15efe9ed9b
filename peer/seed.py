"""``swarmcast seed URL``: a seed peer that runs next to the origin and injects segments.

A seed follows a VOD or live stream (every rendition, or the ones chosen), fetches each new
segment from the origin as soon as the playlist shows it, keeps a window of them in memory and
serves them to the swarms it joins as a ``seed`` (signalling prefers seeds with spare capacity
in its samples). It never runs the viewers' election: it is a source. Several seeds can run on
one host (one process per core is the measured sweet spot, see bench/seed_egress.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from dataclasses import dataclass, field

from swarmcast.peer.agent import AgentConfig, PeerAgent
from swarmcast.peer.origin_client import OriginError
from swarmcast.peer.protocol import Role
from swarmcast.peer.stream import PlaylistError
from swarmcast.peer.swarm import SwarmConfig
from swarmcast.peer.upload import UploadConfig
from swarmcast.runtime import run as run_loop

log = logging.getLogger(__name__)


@dataclass
class SeedConfig:
    """What ``swarmcast seed`` is told."""

    url: str
    """Master (or media) playlist URL on the origin."""
    signaling_url: str
    """Signalling WebSocket URL (``ws://host:8790/ws``)."""
    renditions: tuple[str, ...] = ()
    """Rendition ids to seed (e.g. ``720p/index.m3u8``); empty = all of them."""
    max_peers: int = 200
    """Most viewers connected at once."""
    capacity: int = 100
    """Viewers offered to signalling per swarm (its sampling prefers seeds with spare room)."""
    cache_bytes: int = 256 * 1024 * 1024
    """Memory budget of each rendition's segment window."""
    upload_rate: float | None = None
    """Upload cap in bytes/s (None: as fast as the data channels go)."""
    network: str | None = None
    """Locality hint for signalling."""
    token: str | None = None
    """Join token (a ``seed`` token), when signalling requires one."""
    extra: dict[str, object] = field(default_factory=dict)
    """Further AgentConfig overrides (tests, benchmarks)."""

    def agent_config(self) -> AgentConfig:
        """The :class:`AgentConfig` of this seed."""
        return AgentConfig(
            url=self.url,
            role=Role.SEED,
            signaling_url=self.signaling_url,
            renditions=self.renditions,
            cache_bytes=self.cache_bytes,
            network=self.network,
            token=self.token,
            upload=UploadConfig(rate_limit_bps=self.upload_rate, max_concurrent=64, max_queued=256),
            swarm=SwarmConfig(
                max_peers=self.max_peers, min_peers=0, capacity=self.capacity, idle_timeout=120.0
            ),
            **self.extra,  # type: ignore[arg-type]
        )


async def run_seed(config: SeedConfig, duration: float | None = None) -> PeerAgent:
    """Seed until cancelled (or for ``duration`` seconds); returns the closed agent."""
    agent = PeerAgent(config.agent_config())
    try:
        await agent.start()
        log.info(
            "seeding %s: %s",
            config.url,
            ", ".join(st.rendition.rendition_id for st in agent.states.values()),
        )
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        await agent.close()
    return agent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast seed``."""
    parser.add_argument("url", help="master playlist URL on the origin")
    parser.add_argument(
        "--signal", default="ws://127.0.0.1:8790/ws", help="signalling URL (default: %(default)s)"
    )
    parser.add_argument(
        "--rendition",
        action="append",
        default=[],
        help="rendition id to seed (repeatable; default all)",
    )
    parser.add_argument("--max-peers", type=int, default=200, help="viewers at once (default: 200)")
    parser.add_argument("--capacity", type=int, default=100, help="capacity told to signalling")
    parser.add_argument("--cache-mb", type=int, default=256, help="cache per rendition, MiB")
    parser.add_argument("--upload-rate", type=float, default=None, help="upload cap, bytes/s")
    parser.add_argument("--network", default=None, help="locality hint for signalling")
    parser.add_argument("--token", default=None, help="join token (swarmcast token --role seed)")
    parser.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarmcast seed``."""
    try:
        config = SeedConfig(
            url=args.url,
            signaling_url=args.signal,
            renditions=tuple(args.rendition),
            max_peers=args.max_peers,
            capacity=args.capacity,
            cache_bytes=args.cache_mb * 1024 * 1024,
            upload_rate=args.upload_rate,
            network=args.network,
            token=args.token,
        )
        config.agent_config()  # validates
    except ValueError as exc:
        sys.stderr.write(f"swarmcast seed: {exc}\n")
        return 2
    try:
        run_loop(_main(config, args.duration), use_uvloop=False if args.no_uvloop else None)
    except (OriginError, PlaylistError, KeyError) as exc:
        sys.stderr.write(f"swarmcast seed: cannot load {args.url}: {exc}\n")
        return 1
    except TimeoutError:
        sys.stderr.write(f"swarmcast seed: no answer from the signalling server {args.signal}\n")
        return 1
    return 0


async def _main(config: SeedConfig, duration: float | None) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    with contextlib.suppress(asyncio.CancelledError):
        await run_seed(config, duration)
