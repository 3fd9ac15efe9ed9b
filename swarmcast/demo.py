"""``swarmcast demo``: the whole system on one machine, on built-in defaults (``make demo``).

It generates the default sample stream once (cached under ``./media/sample``), then runs in one
process:

* the development origin, serving the sample as VOD and as simulated live;
* the signalling server, with the player pages mounted on it (``/watch``);
* one seed peer following the live stream, so the first viewer already has a peer.

It prints the page to open (``http://127.0.0.1:8790/watch?src=...live/master.m3u8``); open it
in two or more browser tabs or windows to watch them share segments. Ctrl-C (or SIGTERM)
stops everything cleanly: the seed leaves its swarms, sockets close, servers shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast demo``."""
    parser.add_argument(
        "--media", type=Path, default=Path("media/sample"), help="where the sample stream lives"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the demo listens on")
    parser.add_argument("--port", type=int, default=8080, help="origin port (0: any free one)")
    parser.add_argument(
        "--signal-port",
        type=int,
        default=8790,
        help="signalling server and player pages port (0: any free one)",
    )
    parser.add_argument("--duration", type=float, default=120.0, help="sample length in seconds")
    parser.add_argument("--no-seed", action="store_true", help="run without the seed peer")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _start_signalling(host: str, port: int) -> tuple[web.AppRunner, str]:
    """The signalling server with the player pages; returns the runner and its base URL."""
    from swarmcast.signaling.config import SignalingConfig
    from swarmcast.signaling.pages import add_pages
    from swarmcast.signaling.server import create_app

    app = create_app(SignalingConfig(host=host, port=port))
    add_pages(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner, f"http://{_url_host(host)}:{runner.addresses[0][1]}"


def _banner(origin: str, pages: str, masters: list[str], seeded: bool) -> str:
    live = f"{origin}/live/{masters[0]}"
    lines = [
        "",
        "swarmcast demo is running. Open the player (in several tabs to see P2P sharing):",
        f"  watch: {pages}/watch?src={quote(live, safe=':/')}",
        "",
        "Streams (any HLS player):",
    ]
    for master in masters:
        lines.append(f"  live : {origin}/live/{master}")
        lines.append(f"  VOD  : {origin}/vod/{master}")
    lines.append(f"Signalling: {pages.replace('http', 'ws', 1)}/ws   swarm stats: {pages}/stats")
    lines.append(f"Origin stats: {origin}/_origin/stats   metrics: {origin}/metrics")
    lines.append("Seed: " + ("one, following the live stream" if seeded else "none (--no-seed)"))
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


async def _demo(args: argparse.Namespace) -> None:
    from swarmcast.peer.agent import PeerAgent
    from swarmcast.peer.seed import SeedConfig
    from swarmcast.samples.origin import OriginConfig, masters, start_origin

    found = masters(args.media.resolve())
    if not found:
        raise FileNotFoundError(f"no master playlist under {args.media}")
    async with contextlib.AsyncExitStack() as stack:
        origin_runner, origin = await start_origin(
            OriginConfig(root=args.media, host=args.host, port=args.port)
        )
        stack.push_async_callback(origin_runner.cleanup)
        signal_runner, pages = await _start_signalling(args.host, args.signal_port)
        stack.push_async_callback(signal_runner.cleanup)
        if not args.no_seed:
            seed = PeerAgent(
                SeedConfig(
                    url=f"{origin}/live/{found[0]}",
                    signaling_url=f"{pages.replace('http', 'ws', 1)}/ws",
                ).agent_config()
            )
            # Registered before start: a half-started seed is closed too.
            stack.push_async_callback(seed.close)
            await seed.start()
        log.info("%s", _banner(origin, pages, found, seeded=not args.no_seed))
        await asyncio.Event().wait()


async def _main(args: argparse.Namespace) -> None:
    """Run the demo until SIGINT/SIGTERM, which cancel it so every cleanup runs."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    with contextlib.suppress(asyncio.CancelledError):
        await _demo(args)
    log.info("swarmcast demo stopped")


def run(args: argparse.Namespace) -> int:
    """``swarmcast demo``."""
    from swarmcast.runtime import run as run_loop
    from swarmcast.samples.generate import SampleConfig, generate

    log.info("sample stream: %s (generated once, then reused)", args.media)
    generate(args.media, SampleConfig(duration=args.duration))
    try:
        run_loop(_main(args))
    except FileNotFoundError as exc:
        log.error("%s: delete %s to generate the sample again", exc, args.media)
        return 1
    except OSError as exc:
        log.error(
            "cannot listen on %s (ports %s and %s): %s (try --port / --signal-port)",
            args.host,
            args.port,
            args.signal_port,
            exc,
        )
        return 1
    return 0
