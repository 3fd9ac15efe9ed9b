"""``swarmcast demo``: the local demo on built-in defaults (what ``make demo`` runs).

Today it generates the default sample stream once (cached under ``./media/sample``) and serves it
from the development origin, VOD and simulated live. Later parts of the system (signalling, seed,
player page) join the same command as they land.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast demo``."""
    parser.add_argument(
        "--media", type=Path, default=Path("media/sample"), help="where the sample stream lives"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the demo listens on")
    parser.add_argument("--port", type=int, default=8080, help="origin port")
    parser.add_argument("--duration", type=float, default=120.0, help="sample length in seconds")


async def _demo(args: argparse.Namespace) -> None:
    from swarmcast.samples.origin import OriginConfig, masters, start_origin

    runner, base = await start_origin(OriginConfig(root=args.media, host=args.host, port=args.port))
    try:
        lines = ["", "swarmcast demo is running. Open these in an HLS player (e.g. VLC, Safari):"]
        for master in masters(args.media.resolve()):
            lines.append(f"  live : {base}/live/{master}")
            lines.append(f"  VOD  : {base}/vod/{master}")
        lines.append(f"  origin stats: {base}/_origin/stats   metrics: {base}/metrics")
        lines.append("Press Ctrl-C to stop.")
        log.info("%s", "\n".join(lines))
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """``swarmcast demo``."""
    from swarmcast.runtime import run as run_loop
    from swarmcast.samples.generate import SampleConfig, generate

    log.info("sample stream: %s (generated once, then reused)", args.media)
    generate(args.media, SampleConfig(duration=args.duration))
    try:
        run_loop(_demo(args))
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s (try --port)", args.host, args.port, exc)
        return 1
    return 0
