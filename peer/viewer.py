"""``swarmcast view URL``: a simulated viewer — a virtual player fed by the swarm and the origin.

The viewer plays one rendition (or, with ``--abr``, switches between the variants by measured
throughput) with a :class:`VirtualPlayer` (playhead in real time, startup,
stalls) and records QoE: startup time, stalls and their duration, bytes from HTTP and from
peers, bytes uploaded, distance to the live edge. It is what the load test runs by the hundred,
so it is one asyncio task tree that sleeps until something is due. At the end it prints a
summary and can write the QoE as JSON (``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from swarmcast.peer.agent import AgentConfig, PeerAgent
from swarmcast.peer.origin_client import OriginError
from swarmcast.peer.player import PlayerConfig
from swarmcast.peer.protocol import Role
from swarmcast.peer.qoe import QoE
from swarmcast.peer.stream import PlaylistError
from swarmcast.peer.swarm import SwarmConfig
from swarmcast.peer.upload import UploadConfig
from swarmcast.runtime import run as run_loop

log = logging.getLogger(__name__)


@dataclass
class ViewerConfig:
    """What ``swarmcast view`` is told."""

    url: str
    """Master (or media) playlist URL."""
    signaling_url: str | None = None
    """Signalling WebSocket URL; None = plain HTTP (a baseline without P2P)."""
    rendition: str | None = None
    """Rendition id to play (to start on, with ``abr``); None = the first variant (the lowest
    with ``abr``)."""
    abr: bool = False
    """Switch renditions by measured download throughput (HTTP and peers together)."""
    max_peers: int = 10
    """Most peers connected at once."""
    cache_bytes: int = 64 * 1024 * 1024
    """Memory budget of the segment cache."""
    upload: bool = True
    """Serve segments to other viewers."""
    upload_rate: float | None = None
    """Upload cap in bytes/s (None: no cap)."""
    startup_buffer: float = 2.0
    """Seconds buffered before playback starts."""
    require_integrity: bool = True
    """Refuse unverifiable peer data (streams without manifests then play from HTTP only)."""
    network: str | None = None
    """Locality hint for signalling."""
    token: str | None = None
    """Join token, when signalling requires one."""
    extra: dict[str, object] = field(default_factory=dict)
    """Further AgentConfig overrides (tests, load tests)."""

    def agent_config(self) -> AgentConfig:
        """The :class:`AgentConfig` of this viewer."""
        return AgentConfig(
            url=self.url,
            role=Role.VIEWER,
            signaling_url=self.signaling_url,
            renditions=(self.rendition,) if self.rendition else (),
            cache_bytes=self.cache_bytes,
            require_integrity=self.require_integrity,
            network=self.network,
            token=self.token,
            upload=UploadConfig(enabled=self.upload, rate_limit_bps=self.upload_rate),
            swarm=SwarmConfig(max_peers=self.max_peers, upload_enabled=self.upload),
            player=PlayerConfig(startup_buffer=self.startup_buffer, abr=self.abr),
            **self.extra,  # type: ignore[arg-type]
        )


async def run_viewer(config: ViewerConfig, duration: float) -> QoE:
    """Watch for ``duration`` seconds (or until a VOD ends); the QoE of the session."""
    agent = PeerAgent(config.agent_config())
    try:
        await agent.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                while not agent.finished:
                    await asyncio.sleep(0.5)
        return agent.report()
    finally:
        await agent.close()


def summary(qoe: QoE) -> str:
    """Human-readable QoE lines."""
    startup = "never" if qoe.startup_time is None else f"{qoe.startup_time:.2f} s"
    latency = qoe.live_latency
    lines = [
        f"startup      {startup}",
        f"played       {qoe.played_time:.1f} s",
        f"stalls       {qoe.stalls} ({qoe.stall_time:.2f} s, rebuffer {qoe.rebuffer_ratio:.1%})",
        f"from HTTP    {qoe.http_bytes / 1e6:.2f} MB",
        f"from peers   {qoe.p2p_bytes / 1e6:.2f} MB (offload {qoe.offload:.1%})",
        f"uploaded     {qoe.uploaded_bytes / 1e6:.2f} MB",
        f"rejected     {qoe.p2p_rejected_bytes} B from peers that failed integrity",
        f"switches     {qoe.switches} rendition switches (ABR)",
    ]
    if latency is not None:
        lines.append(f"live latency {latency:.1f} s behind the edge")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast view``."""
    parser.add_argument("url", help="master playlist URL")
    parser.add_argument("--signal", default=None, help="signalling URL (omit: HTTP only)")
    parser.add_argument(
        "--rendition",
        default=None,
        help="rendition id to play, or to start on with --abr (default: first variant; the "
        "lowest with --abr)",
    )
    parser.add_argument(
        "--abr",
        action="store_true",
        help="switch renditions by measured throughput (HTTP and peers together)",
    )
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to watch")
    parser.add_argument("--json", type=Path, default=None, help="write the QoE as JSON here")
    parser.add_argument("--max-peers", type=int, default=10, help="peers at once (default 10)")
    parser.add_argument("--cache-mb", type=int, default=64, help="cache size, MiB")
    parser.add_argument("--no-upload", action="store_true", help="do not serve other viewers")
    parser.add_argument("--upload-rate", type=float, default=None, help="upload cap, bytes/s")
    parser.add_argument("--startup-buffer", type=float, default=2.0, help="seconds before play")
    parser.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept peer data without an integrity manifest (unsafe: any peer can corrupt it)",
    )
    parser.add_argument("--network", default=None, help="locality hint for signalling")
    parser.add_argument("--token", default=None, help="join token")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stock asyncio loop")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarmcast view``."""
    if not args.duration > 0:
        sys.stderr.write("swarmcast view: --duration must be > 0\n")
        return 2
    try:
        config = ViewerConfig(
            url=args.url,
            signaling_url=args.signal,
            rendition=args.rendition,
            abr=args.abr,
            max_peers=args.max_peers,
            cache_bytes=args.cache_mb * 1024 * 1024,
            upload=not args.no_upload,
            upload_rate=args.upload_rate,
            startup_buffer=args.startup_buffer,
            require_integrity=not args.allow_unverified,
            network=args.network,
            token=args.token,
        )
        config.agent_config()  # validates
    except ValueError as exc:
        sys.stderr.write(f"swarmcast view: {exc}\n")
        return 2
    try:
        qoe = run_loop(_main(config, args.duration), use_uvloop=False if args.no_uvloop else None)
    except (OriginError, PlaylistError, KeyError) as exc:
        sys.stderr.write(f"swarmcast view: cannot load {args.url}: {exc}\n")
        return 1
    except TimeoutError:
        sys.stderr.write(f"swarmcast view: no answer from the signalling server {args.signal}\n")
        return 1
    if qoe is None:
        return 130
    sys.stdout.write(summary(qoe) + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(qoe.to_json(), indent=2) + "\n")
    return 0


async def _main(config: ViewerConfig, duration: float) -> QoE | None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    try:
        return await run_viewer(config, duration)
    except asyncio.CancelledError:
        return None
