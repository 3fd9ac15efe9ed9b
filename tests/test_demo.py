"""`swarmcast demo` (what `make demo` runs): generates the sample once, then runs the origin, the
signalling server with the player pages and one seed; prints the page URL; stops on Ctrl-C."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import m3u8
import pytest
from browser_helpers import (
    launch_chromium,
    new_page,
    page_errors,
    player_stats,
    requires_chromium,
    wait_playing,
)

DEMO = (sys.executable, "-m", "swarmcast.cli", "demo")


@dataclass
class Demo:
    """A running ``swarmcast demo`` process and what it printed."""

    proc: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(self.output)

    def find(self, pattern: str) -> str | None:
        match = re.search(pattern, self.text())
        return match.group(1) if match else None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"demo did not stop within {timeout}s of signal {sig}:\n{self.text()}")


def _start_demo(media: Path, *extra: str) -> Demo:
    proc = subprocess.Popen(
        [
            *DEMO,
            "--media",
            str(media),
            "--duration",
            "4",
            "--port",
            "0",
            "--signal-port",
            "0",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = Demo(proc)
    assert proc.stdout is not None
    # Drained on a thread for the whole run, so a chatty demo never blocks on a full pipe.
    threading.Thread(target=lambda: demo.output.extend(proc.stdout), daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if "Press Ctrl-C to stop." in demo.text():
            return demo
        time.sleep(0.1)
    demo.stop(signal.SIGKILL)
    pytest.fail("demo did not come up:\n" + demo.text())


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


def _wait_for_seed(stats_url: str, timeout: float = 20) -> dict:
    """/stats of the signalling server once every swarm there has a seed."""
    deadline = time.monotonic() + timeout
    swarms: dict = {}
    while time.monotonic() < deadline:
        swarms = json.loads(_get(stats_url))["swarms"]
        if swarms and all(s["seeds"] >= 1 for s in swarms.values()):
            return swarms
        time.sleep(0.3)
    pytest.fail(f"the seed did not join within {timeout}s: {swarms}")


@pytest.mark.slow
def test_demo_runs_origin_pages_and_seed(tmp_path: Path):
    media = tmp_path / "media"
    demo = _start_demo(media)
    try:
        live = demo.find(r"live : (http://\S+/live/master\.m3u8)")
        watch = demo.find(r"watch: (http://\S+/watch\?\S+)")
        stats = demo.find(r"swarm stats: (http://\S+/stats)")
        assert live and watch and stats, demo.text()
        assert parse_qs(urlsplit(watch).query)["src"] == [live]

        master = m3u8.loads(_get(live).decode())
        assert master.is_variant and len(master.playlists) == 3
        media_url = live.rsplit("/", 1)[0] + "/" + master.playlists[0].uri
        playlist = m3u8.loads(_get(media_url).decode())
        assert not playlist.is_endlist and playlist.segments

        page = _get(watch).decode()
        assert '<video id="video"' in page and json.dumps(live) in page
        pages_base = watch.split("/watch", 1)[0]
        assert b"Hls" in _get(pages_base + "/static/hls.min.js")

        # The seed follows every rendition of the live stream: one swarm each, seeded.
        swarms = _wait_for_seed(stats)
        assert len(swarms) == 3
    finally:
        code = demo.stop(signal.SIGINT)
    assert code == 0, demo.text()
    assert "swarmcast demo stopped" in demo.text()
    assert "Traceback" not in demo.text()

    stamp = (media / "sample.json").stat().st_mtime
    again = _start_demo(media, "--no-seed")  # second start reuses the cached sample
    assert "Seed: none" in again.text()
    assert again.stop(signal.SIGTERM) == 0, again.text()
    assert (media / "sample.json").stat().st_mtime == stamp


@pytest.mark.slow
def test_demo_port_in_use_is_a_clear_error(tmp_path: Path):
    import socket

    from swarmcast.samples.generate import SampleConfig, generate

    media = tmp_path / "media"
    generate(media, SampleConfig(duration=4.0), progress=False)  # what the demo would make
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*DEMO, "--media", str(media), "--duration", "4", "--signal-port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert "cannot listen" in proc.stderr and "--signal-port" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.netns
@pytest.mark.browser
@requires_chromium
async def test_demo_page_plays_in_chromium(tmp_path: Path, test_host: str):
    """The URL the demo prints is the one a person opens: it must play in a real browser."""
    demo = _start_demo(tmp_path / "media", "--host", test_host)
    try:
        watch = demo.find(r"watch: (http://\S+/watch\?\S+)")
        assert watch, demo.text()
        async with launch_chromium() as browser:
            page = await new_page(browser, name="demo")
            response = await page.goto(watch)
            assert response is not None and response.status == 200
            await wait_playing(page, min_time=2.0, timeout=45)
            stats = await player_stats(page)
            assert stats["httpBytes"] + stats["p2pBytes"] > 0
            assert page_errors(page) == []
    finally:
        assert demo.stop(signal.SIGINT) == 0, demo.text()
