"""Event-loop helpers shared by every long-running subcommand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop is installed (the ``speed`` extra)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T], *, use_uvloop: bool | None = None) -> T:
    """Run ``main`` to completion, on uvloop when it is installed (or when asked explicitly).

    ``use_uvloop=None`` means "use it if installed"; ``False`` forces the stock asyncio loop,
    which benchmarks use to measure both side by side.
    """
    if use_uvloop is None:
        use_uvloop = uvloop_available()
    if use_uvloop:
        import uvloop

        log.debug("using uvloop")
        return uvloop.run(main)
    return asyncio.run(main)
