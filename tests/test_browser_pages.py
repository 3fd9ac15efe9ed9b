"""The /watch page in real Chromium: one viewer, no peers, plays the simulated live stream from
the origin; the frame counter burnt into the video advances; the stats panel and chart show
the HTTP traffic. A screenshot is saved under the test's tmp dir (look at it when changing the
page: layout, video, panel and chart must all be legible).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest
from browser_helpers import (
    console_lines,
    frame_number,
    launch_chromium,
    new_page,
    page_errors,
    player_stats,
    requires_chromium,
    start_app,
    wait_playing,
)

from swarmcast.samples.origin import OriginConfig, start_origin
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.pages import add_pages
from swarmcast.signaling.server import create_app

pytestmark = [pytest.mark.netns, pytest.mark.browser, requires_chromium]
log = logging.getLogger(__name__)

FPS = 15  # tiny_sample's frame rate
FRAMES = 12 * FPS  # tiny_sample's length: the live loop wraps the frame counter there


@pytest.fixture
async def servers(tiny_sample: Path, test_host: str) -> AsyncIterator[tuple[str, str]]:
    """(origin base URL, signalling+pages base URL), both on the test host."""
    origin_runner, origin = await start_origin(
        OriginConfig(root=tiny_sample, host=test_host, port=0)
    )
    app = create_app(SignalingConfig(host=test_host, port=0))
    add_pages(app)
    runner, base = await start_app(app, test_host)
    try:
        yield origin, base
    finally:
        await runner.cleanup()
        await origin_runner.cleanup()


async def _frames_advance(page) -> tuple[int, int]:
    """Two frame numbers read 1.5 s apart, checked to move forward at about the frame rate."""
    first = await frame_number(page)
    await asyncio.sleep(1.5)
    second = await frame_number(page)
    assert first is not None and second is not None
    advanced = (second - first) % FRAMES  # the live loop restarts the counter
    assert 0.5 * 1.5 * FPS <= advanced <= 2.0 * 1.5 * FPS, (first, second)
    return first, second


@pytest.mark.timeout(120)
async def test_watch_page_plays_from_origin_alone(servers, tmp_path: Path):
    origin, base = servers
    src = f"{origin}/live/master.m3u8"
    async with launch_chromium() as browser:
        page = await new_page(browser, name="viewer")
        response = await page.goto(f"{base}/watch?src={quote(src, safe='')}")
        assert response is not None and response.status == 200
        await wait_playing(page, min_time=2.0, timeout=45)
        first, second = await _frames_advance(page)

        await asyncio.sleep(2.5)  # a few chart samples after the first segments
        stats = await player_stats(page)
        log.info("stats after playback: %s", json.dumps(stats))
        assert stats["httpBytes"] > 10_000  # segments really came over HTTP
        assert stats["p2pBytes"] == 0 and stats["peers"] == 0  # nobody else to share with
        assert stats["startupMs"] is not None and stats["startupMs"] > 0

        panel = {
            key: await page.text_content(f"#stat-{key}")
            for key in ("http", "p2p", "peers", "offload", "startup")
        }
        assert panel["http"] not in ("0 B", "\u2013") and panel["p2p"] == "0 B", panel
        assert panel["peers"] == "0" and panel["offload"] == "0.0 %", panel
        assert panel["startup"].endswith(" ms"), panel
        samples = await page.evaluate("() => SwarmcastPage.chart.samples.length")
        assert samples >= 3
        # The chart's download stack really shows the HTTP traffic.
        peak = await page.evaluate(
            "() => Math.max(...SwarmcastPage.chart.samples.map(s => s.http))"
        )
        assert peak > 0

        shot = tmp_path / "watch.png"
        await page.screenshot(path=str(shot), full_page=True)
        log.info("screenshot: %s (frames %d -> %d)", shot, first, second)
        assert shot.stat().st_size > 20_000

        assert await page.locator("#banner").is_hidden()
        assert page_errors(page) == []
        problems = [ln for ln in console_lines(page) if "Content Security Policy" in ln]
        assert problems == []


@pytest.mark.timeout(60)
async def test_watch_page_rejects_bad_src_in_browser(servers):
    _, base = servers
    async with launch_chromium() as browser:
        page = await new_page(browser, name="bad-src")
        response = await page.goto(f"{base}/watch?src=javascript%3Aalert(1)")
        assert response is not None and response.status == 400
        text = await page.text_content(".error-message")
        assert text is not None and "http://" in text
        assert await page.locator("video").count() == 0
        assert page_errors(page) == []


@pytest.mark.timeout(60)
async def test_watch_page_reports_unreachable_stream(servers, test_host: str):
    """A src that answers 404 shows an error banner instead of spinning silently."""
    origin, base = servers
    src = f"{origin}/live/missing.m3u8"
    async with launch_chromium() as browser:
        page = await new_page(browser, name="missing")
        await page.goto(f"{base}/watch?src={quote(src, safe='')}")
        banner = page.locator("#banner")
        await banner.wait_for(state="visible", timeout=30_000)
        text = (await banner.text_content() or "").strip()
        assert text and "404" in text, text
