"""Harness for the browser tests: real Debian Chromium driven by Playwright (async API).

Browser tests are marked ``@pytest.mark.netns`` and ``@pytest.mark.browser`` and run inside
``tests/netns-run`` (``make test``): there the namespace has a default route, so Chromium offers
ICE host candidates (198.18.0.x) without camera permission, and nothing leaves the machine.
Bind servers to the ``test_host`` fixture address and load pages from ``http://198.18.0.1:PORT``.

Typical use::

    async with launch_chromium() as browser:
        page = await new_page(browser)
        await page.goto(f"{base}/watch?src={src}")
        await wait_playing(page, min_time=2.0, timeout=30)
        stats = await player_stats(page)

Pages put their player on ``window.player`` (the object ``swarmcast.attach`` returns), which
is what :func:`player_stats` reads. :func:`frame_number` reads the frame counter that the
sample generator burns into every frame (``samples/drawing.py``), from the pixels the page is
showing right now: the proof that playback really advances, not only ``currentTime``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

# One Chromium binary and flag list for the tests, `swarmcast loadtest --chromium` and benches.
from swarmcast.loadtest.chromium import CHROMIUM_FLAGS, CHROMIUM_PATH
from swarmcast.samples.drawing import Y_BLACK, Y_WHITE, barcode_cell, decode_barcode

log = logging.getLogger(__name__)

#: Skip marker for modules that need the browser binary and Playwright.
requires_chromium = pytest.mark.skipif(
    shutil.which(CHROMIUM_PATH) is None, reason=f"needs Debian chromium at {CHROMIUM_PATH}"
)

# Console lines and uncaught page errors per page, for assertions and failure messages.
_console: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()
_errors: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def launch_chromium(*extra_flags: str) -> AsyncIterator[Any]:
    """Start headless Chromium (``/usr/bin/chromium``) with :data:`CHROMIUM_FLAGS`.

    Yields a Playwright ``Browser``; closes it and Playwright on exit.
    """
    from playwright.async_api import async_playwright

    if shutil.which(CHROMIUM_PATH) is None:
        pytest.skip(f"needs Debian chromium at {CHROMIUM_PATH} (apt-get install chromium)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM_PATH,
            headless=True,
            args=[*CHROMIUM_FLAGS, *extra_flags],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(
    browser: Any, *, width: int = 1280, height: int = 800, name: str = "page"
) -> Any:
    """A page in a fresh browser context (no shared cache, storage or cookies).

    Its console messages and uncaught errors go to logging (logger ``browser_helpers``,
    prefixed by ``name``) and are kept for :func:`console_lines` / :func:`page_errors`.
    """
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    lines: list[str] = []
    errors: list[str] = []
    _console[page] = lines
    _errors[page] = errors

    def on_console(msg: Any) -> None:
        line = f"[{msg.type}] {msg.text}"
        lines.append(line)
        level = logging.WARNING if msg.type in ("error", "warning") else logging.INFO
        log.log(level, "%s console %s", name, line)

    def on_error(exc: Any) -> None:
        errors.append(str(exc))
        log.warning("%s page error: %s", name, exc)

    page.on("console", on_console)
    page.on("pageerror", on_error)
    return page


def console_lines(page: Any) -> list[str]:
    """Console messages the page printed so far (``[type] text``)."""
    return list(_console.get(page, ()))


def page_errors(page: Any) -> list[str]:
    """Uncaught exceptions the page raised so far."""
    return list(_errors.get(page, ()))


async def video_time(page: Any, selector: str = "video") -> float:
    """``currentTime`` of the page's video element (seconds)."""
    return float(await page.eval_on_selector(selector, "v => v.currentTime"))


async def wait_playing(
    page: Any, min_time: float, timeout: float = 30.0, selector: str = "video"
) -> float:
    """Wait until the video is playing and has played ``min_time`` seconds past where it was.

    The start point is the first time seen playing, so a live stream that starts far from 0
    must really advance. Returns the current time. Fails the test with the video's state and
    the page's last console lines when it does not happen within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    start: float | None = None
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = await page.eval_on_selector(
            selector,
            "v => ({t: v.currentTime, paused: v.paused, ready: v.readyState,"
            " error: v.error && v.error.message})",
        )
        if state["error"]:
            break
        if not state["paused"] and state["ready"] >= 2:
            if start is None:
                start = state["t"]
            elif state["t"] - start >= min_time:
                return float(state["t"])
        await asyncio.sleep(0.2)
    tail = "\n".join(console_lines(page)[-20:])
    pytest.fail(
        f"video did not play {min_time}s within {timeout}s: last state {state}, started at {start}"
        f"\npage errors: {page_errors(page)}\nconsole tail:\n{tail}"
    )


async def player_stats(page: Any) -> dict[str, Any]:
    """``window.player.stats()`` of the page (see the embed API in docs/web.md)."""
    return await page.evaluate("() => window.player.stats()")


async def wait_stats(
    page: Any, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Poll ``player_stats`` until ``predicate`` holds; return those stats.

    For conditions that depend on WebRTC setup time (a peer link opening, the first P2P
    bytes), which varies with the machine's load: waiting for the event, not a fixed amount
    of playback, keeps such tests honest on a slow CI machine. Fails the test with the last
    stats and the page's console tail after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = await player_stats(page)
        if predicate(stats):
            return stats
        await asyncio.sleep(0.2)
    tail = "\n".join(console_lines(page)[-30:])
    pytest.fail(f"{what}: not seen within {timeout}s; last stats {stats}\nconsole tail:\n{tail}")


# Reads the frame on screen into a canvas at the video's own size and returns studio-range
# luma (what decode_barcode thresholds) of the barcode rows only, base64-encoded.
_READ_LUMA_JS = """
([selector, rows]) => {
  const v = document.querySelector(selector);
  if (!v || v.readyState < 2 || !v.videoWidth) return null;
  const w = v.videoWidth, h = Math.min(rows, v.videoHeight);
  const c = document.createElement('canvas');
  c.width = w; c.height = v.videoHeight;
  const ctx = c.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(v, 0, 0, w, v.videoHeight);
  const px = ctx.getImageData(0, 0, w, h).data;
  const out = new Uint8Array(w * h);
  for (let i = 0, j = 0; j < out.length; i += 4, j++) {
    out[j] = Math.round(16 + (219 / 255) * (0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]));
  }
  let s = '';
  for (let k = 0; k < out.length; k += 0x8000) {
    s += String.fromCharCode.apply(null, out.subarray(k, k + 0x8000));
  }
  return {w: v.videoWidth, h: v.videoHeight, data: btoa(s)};
}
"""


async def frame_number(page: Any, selector: str = "video") -> int | None:
    """The sample frame number burnt into the picture on screen (``None`` before a frame).

    Decoded by :func:`swarmcast.samples.drawing.decode_barcode` from the video's pixels at
    its native size (so page layout and scaling do not matter).
    """
    probe = await page.eval_on_selector(selector, "v => [v.videoWidth, v.videoHeight]")
    width, height = probe
    if not width:
        return None
    rows = barcode_cell(width, height)[1]
    got = await page.evaluate(_READ_LUMA_JS, [selector, rows])
    if got is None:
        return None
    luma = np.full((got["h"], got["w"]), (Y_BLACK + Y_WHITE) // 2, dtype=np.uint8)
    top = np.frombuffer(base64.b64decode(got["data"]), dtype=np.uint8)
    luma[: len(top) // got["w"]] = top.reshape(-1, got["w"])
    return decode_barcode(luma)


async def start_app(app: web.Application, host: str, port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve an aiohttp app on ``host``; returns the runner (``cleanup()`` it) and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


def static_dir(path: Path) -> web.Application:
    """An app serving the files of ``path`` (test pages next to the bundles)."""
    app = web.Application()
    app.router.add_static("/", path, show_index=False)
    return app
