"""``swarmcast signal``: run the signalling server (one node, or several sharing Redis)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import sys

from aiohttp import web

from swarmcast.runtime import run as run_loop
from swarmcast.signaling.config import (
    ConfigError,
    SignalingConfig,
    add_config_arguments,
    config_from_args,
)
from swarmcast.signaling.pages import add_pages
from swarmcast.signaling.server import create_app

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every :class:`SignalingConfig` field as a flag, plus loop selection."""
    add_config_arguments(parser)
    parser.add_argument(
        "--no-uvloop", action="store_true", help="use the stock asyncio loop (for comparisons)"
    )


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (capped by the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


async def serve(config: SignalingConfig) -> None:
    """Serve until cancelled."""
    bus = None
    if config.redis_url:
        from swarmcast.signaling.redis_bus import RedisBus

        bus = RedisBus(config)
    app = create_app(config, bus=bus)
    add_pages(app)  # /watch, / and the static files the player page needs
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096)
    await site.start()
    for address in runner.addresses:
        log.info("signalling on ws://%s:%d/ws", address[0], address[1])
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarmcast signal``."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        sys.stderr.write(f"swarmcast signal: {exc}\n")
        return 2
    limit = raise_fd_limit(config.max_connections + 64)
    if limit < config.max_connections:
        log.info(
            "open-files limit %d caps connections below max_connections=%d",
            limit,
            config.max_connections,
        )
    run_loop(serve(config), use_uvloop=False if args.no_uvloop else None)
    return 0
