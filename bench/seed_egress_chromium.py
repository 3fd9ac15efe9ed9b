"""Seed egress against Chromium receivers: one Python seed process serving K real browsers that
play a live stream, with and without uvloop (issue #5, second figure).

Run inside the test namespace (WebRTC needs a non-loopback interface)::

    tests/netns-run .venv/bin/python bench/seed_egress_chromium.py --viewers 2,4 --seconds 30

Layout: this process runs the development origin (simulated live stream of a generated 360p
sample), the signalling server and a page server on the namespace address, and drives headless
Debian Chromium through Playwright: K pages, each in its own browser context, each a
``swarmcast.attach`` player (hls.js + the P2P engine). The **seed** is a separate process
(``--role seed``, the same :class:`~swarmcast.peer.seed.SeedConfig` as ``swarmcast seed``), so
its CPU time is its own: read from ``/proc/<pid>/stat`` (utime + stime) at the edges of the
measurement window. The seed answers each line on its stdin with its cumulative upload bytes,
so bytes and CPU cover the same window.

Unlike bench/seed_egress.py (bulk pullers, the seed's ceiling), the receivers here are real-time
players: they take about the rendition bitrate each, and the browsers also share segments with
each other. The seed is far from saturated, so "viewers per core" below is an **extrapolation**
from MB per seed CPU-second, which also counts the seed's fixed costs (playlist polling,
origin fetches, signalling) and so understates what a loaded seed does per CPU-second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
HLS_JS = WEB / "node_modules" / "hls.js" / "dist" / "hls.min.js"
sys.path.insert(0, str(ROOT / "tests"))  # the Chromium harness the browser tests use

log = logging.getLogger("bench.seed_egress_chromium")

# The embed API as docs/embedding.md shows it; the player lives on window.player.
PAGE = """<!doctype html>
<html><body>
<video id="v" muted playsinline style="width:320px"></video>
<script src="/static/hls.min.js"></script>
<script src="/static/swarmcast.js"></script>
<script>
  const q = new URLSearchParams(location.search);
  window.player = swarmcast.attach(document.getElementById('v'), {
    src: q.get('src'), signalingUrl: q.get('signal'),
  });
  document.getElementById('v').play().catch(() => {});
</script>
</body></html>
"""

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` in seconds, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


# ------------------------------------------------------------------------------------ seed


async def seed_main(url: str, signal: str) -> None:
    """The seed process: seed ``url``; each stdin line gets a JSON line of counters; EOF stops."""
    from swarmcast.peer.agent import PeerAgent
    from swarmcast.peer.seed import SeedConfig

    agent = PeerAgent(SeedConfig(url=url, signaling_url=signal).agent_config())
    await agent.start()
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while await reader.readline():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            links = len(agent.swarm.links) if agent.swarm else 0
            row = {
                "uploaded": agent.qoe.uploaded_bytes,
                "cpu": usage.ru_utime + usage.ru_stime,
                "links": links,
            }
            print(json.dumps(row), flush=True)
    finally:
        await agent.close()


# ------------------------------------------------------------------------------ orchestrator


@dataclass
class Sample:
    """Counters at one instant of a run."""

    wall: float
    seed_uploaded: int
    seed_cpu: float
    seed_links: int
    browsers: list[dict[str, Any]] = field(default_factory=list)
    video_times: list[float] = field(default_factory=list)


@dataclass
class RunResult:
    """What one (loop, K) run measured over its window."""

    loop: str
    viewers: int
    start: Sample
    end: Sample
    startup_ms: list[float | None]
    errors: list[str]

    @property
    def wall(self) -> float:
        return self.end.wall - self.start.wall

    @property
    def seed_bytes(self) -> int:
        return self.end.seed_uploaded - self.start.seed_uploaded

    @property
    def seed_cpu(self) -> float:
        return self.end.seed_cpu - self.start.seed_cpu

    def browser_delta(self, key: str) -> float:
        return sum(
            b[key] - a[key] for a, b in zip(self.start.browsers, self.end.browsers, strict=True)
        )

    @property
    def played(self) -> float:
        """Least video time any browser advanced over the window (seconds)."""
        return min(b - a for a, b in zip(self.start.video_times, self.end.video_times, strict=True))


class SeedProcess:
    """The seed child: spawned with ``--role seed``, probed over stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, url: str, signal: str, use_uvloop: bool) -> SeedProcess:
        flags = [] if use_uvloop else ["--no-uvloop"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--role", "seed", "--url", url, "--signal", signal, *flags,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        seed = cls(proc)
        ready = await seed._line(timeout=30.0)
        if not ready.get("ready"):
            raise RuntimeError(f"seed did not start: {ready}")
        return seed

    async def _line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not raw:
            raise RuntimeError(f"seed process exited (code {await self.proc.wait()})")
        return json.loads(raw)

    async def probe(self) -> dict[str, Any]:
        """Upload bytes and links now, CPU seconds from /proc (the seed's own view as a check)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        await self.proc.stdin.drain()
        row = await self._line(timeout=10.0)
        row["proc_cpu"] = proc_cpu_seconds(self.proc.pid)
        return row

    async def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10.0)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def build_bundle(out: Path) -> Path:
    """The IIFE bundle from the current web/ sources (never a stale dist/)."""
    subprocess.run(
        ["node", "scripts/build.mjs", "--outdir", str(out)], cwd=WEB, check=True, timeout=120
    )
    return out / "swarmcast.js"


async def start_page_server(bundle: Path, host: str) -> tuple[web.AppRunner, str]:
    from browser_helpers import start_app

    files = {"swarmcast.js": bundle, "hls.min.js": HLS_JS}
    app = web.Application()

    async def index(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def static(request: web.Request) -> web.FileResponse:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.FileResponse(files[name])

    async def no_icon(_request: web.Request) -> web.Response:
        return web.Response(status=204)  # Chromium asks for it; a 404 would litter the console

    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/static/{name}", static)
    return await start_app(app, host)


async def wait_started(pages: list[Any], timeout: float) -> None:
    """Until every page's video is playing (not paused, has data); raises on timeout."""
    deadline = time.monotonic() + timeout
    js = "v => !v.paused && v.readyState >= 2 && v.currentTime > 0"
    while time.monotonic() < deadline:
        states = [await p.eval_on_selector("video", js) for p in pages]
        if all(states):
            return
        await asyncio.sleep(0.25)
    raise RuntimeError(f"not every browser started playing within {timeout:.0f}s: {states}")


async def snapshot(seed: SeedProcess, pages: list[Any]) -> Sample:
    from browser_helpers import player_stats, video_time

    row = await seed.probe()
    sample = Sample(time.monotonic(), row["uploaded"], row["proc_cpu"], row["links"])
    for page in pages:
        sample.browsers.append(await player_stats(page))
        sample.video_times.append(await video_time(page))
    return sample


async def one_run(args: argparse.Namespace, bundle: Path, viewers: int, loop: str) -> RunResult:
    """Origin, signalling, page server, the seed process and ``viewers`` Chromium pages."""
    from browser_helpers import launch_chromium, new_page, page_errors

    from swarmcast.samples.origin import OriginConfig, start_origin
    from swarmcast.signaling.config import SignalingConfig
    from swarmcast.signaling.server import create_app

    host = os.environ.get("SWARMCAST_TEST_HOST", "127.0.0.1")
    origin_runner, origin = await start_origin(OriginConfig(root=args.sample, host=host, port=0))
    sig_runner = web.AppRunner(create_app(SignalingConfig(host=host, port=0)), access_log=None)
    await sig_runner.setup()
    await web.TCPSite(sig_runner, host, 0).start()
    signal = f"ws://{host}:{sig_runner.addresses[0][1]}/ws"
    pages_runner, base = await start_page_server(bundle, host)
    src = f"{origin}/live/master.m3u8"
    seed = await SeedProcess.spawn(src, signal, use_uvloop=loop == "uvloop")
    try:
        async with launch_chromium() as browser:
            pages = [await new_page(browser, name=f"viewer{i}") for i in range(viewers)]
            url = f"{base}/?{urlencode({'src': src, 'signal': signal})}"
            for page in pages:
                await page.goto(url)
            await wait_started(pages, timeout=30.0)
            await asyncio.sleep(args.warmup)  # data channels open, the first HTTP segments land
            start = await snapshot(seed, pages)
            await asyncio.sleep(args.seconds)
            end = await snapshot(seed, pages)
            errors = [e for p in pages for e in page_errors(p)]
        return RunResult(loop, viewers, start, end, [b["startupMs"] for b in end.browsers], errors)
    finally:
        await seed.stop()
        await pages_runner.cleanup()
        await sig_runner.cleanup()
        await origin_runner.cleanup()


# --------------------------------------------------------------------------------- report


def rendition_bitrate(sample: Path) -> tuple[int | None, float]:
    """(BANDWIDTH of the master playlist, mean bit/s of the segment files) of the rendition."""
    import m3u8

    master = m3u8.load(str(sample / "master.m3u8"))
    variant = master.playlists[-1]
    media_path = sample / variant.uri
    media = m3u8.load(str(media_path))
    size = sum((media_path.parent / seg.uri).stat().st_size for seg in media.segments)
    duration = sum(seg.duration for seg in media.segments)
    return variant.stream_info.bandwidth, size * 8 / duration


def print_table(results: list[RunResult], bitrate: float) -> None:
    head = (
        f"{'loop':8s} {'K':>2s} {'seed MB':>8s} {'MB/s':>6s} {'seed CPU s':>10s} {'%core':>6s} "
        f"{'MB/CPU-s':>8s} {'p2p share':>9s} {'seed/p2p':>8s} {'b2b MB':>7s} "
        f"{'stalls':>6s} {'played s':>8s} {'viewers/core*':>13s}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        p2p, http = r.browser_delta("p2pBytes"), r.browser_delta("httpBytes")
        share = p2p / (p2p + http) if p2p + http else 0.0
        per_cpu = r.seed_bytes / max(r.seed_cpu, 1e-9) / 1e6
        stalls = sum(b["stalls"] for b in r.end.browsers)
        window_stalls = r.browser_delta("stalls")
        print(
            f"{r.loop:8s} {r.viewers:2d} {r.seed_bytes / 1e6:8.2f} "
            f"{r.seed_bytes / r.wall / 1e6:6.3f} {r.seed_cpu:10.2f} {r.seed_cpu / r.wall:6.1%} "
            f"{per_cpu:8.2f} {share:9.1%} {r.seed_bytes / max(p2p, 1):8.1%} "
            f"{r.browser_delta('uploadedBytes') / 1e6:7.2f} {f'{window_stalls:.0f}/{stalls}':>6s} "
            f"{r.played:8.1f} {per_cpu * 8e6 / bitrate:13.0f}"
        )
        if r.errors:
            print(f"         page errors: {r.errors[:3]}")
    print(
        f"\nwindow {results[0].wall:.0f}s; p2p share = browsers' P2P bytes / all their bytes in "
        "the window; seed/p2p = seed upload / browsers' P2P bytes (rest came browser to "
        "browser, b2b); stalls = in window / since start (all browsers); played = least "
        "video time advanced by a browser.\n"
        f"* EXTRAPOLATION, not measured: viewers per seed core = (MB per seed CPU-second) / "
        f"rendition bitrate ({bitrate / 1000:.0f} kbit/s, mean of the segment files); the seed "
        "was nowhere near saturated and its fixed costs are in the denominator."
    )


# ----------------------------------------------------------------------------------- main


def make_sample(path: Path | None) -> Path:
    from swarmcast.samples.generate import Rendition, SampleConfig, generate

    config = SampleConfig(
        duration=30.0, segment_duration=2.0, fps=30, renditions=(Rendition("360p", 640, 360, 800),)
    )
    return generate(path or Path("/tmp/swarmcast-bench/chromium-360p"), config, progress=False)


async def bench(args: argparse.Namespace, bundle: Path) -> list[RunResult]:
    results = []
    for viewers in args.viewers:
        for loop in args.loops:
            log.warning("run: %s, %d Chromium viewers, %.0fs", loop, viewers, args.seconds)
            results.append(await one_run(args, bundle, viewers, loop))
    return results


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("bench", "seed"), default="bench")
    parser.add_argument(
        "--viewers", default="2,4", help="Chromium viewer counts, comma-separated (default 2,4)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds after all play")
    parser.add_argument("--loops", default="asyncio,uvloop", help="seed event loops to measure")
    parser.add_argument("--sample", type=Path, default=None, help="sample dir (default: make one)")
    parser.add_argument("--no-uvloop", action="store_true", help="(seed role) stock asyncio")
    parser.add_argument("--url", help="(seed role) master playlist")
    parser.add_argument("--signal", help="(seed role) signalling URL")
    args = parser.parse_args()
    try:
        args.viewers = [int(v) for v in args.viewers.split(",")]
    except ValueError:
        parser.error(f"--viewers wants comma-separated integers, got {args.viewers!r}")
    args.loops = args.loops.split(",")
    if any(v < 1 or v > 16 for v in args.viewers):
        parser.error("--viewers: each count must be 1..16 (every viewer is a Chromium page)")
    if set(args.loops) - {"asyncio", "uvloop"}:
        parser.error(f"--loops: asyncio and/or uvloop, got {args.loops}")
    if args.seconds <= 0 or args.warmup < 0:
        parser.error("--seconds must be > 0 and --warmup >= 0")
    return args


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    from swarmcast.runtime import run as run_loop

    if args.role == "seed":
        if not args.url or not args.signal:
            print("--role seed needs --url and --signal", file=sys.stderr)
            return 2
        run_loop(seed_main(args.url, args.signal), use_uvloop=not args.no_uvloop)
        return 0
    if os.environ.get("SWARMCAST_NETNS") != "1":
        print("run inside tests/netns-run (WebRTC needs a non-loopback interface)", file=sys.stderr)
        return 2
    args.sample = make_sample(args.sample)
    _, bitrate = rendition_bitrate(args.sample)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        bundle = build_bundle(Path(tmp))
        # The orchestrator's own loop does not matter (its CPU is not measured).
        results = asyncio.run(bench(args, bundle))
    print_table(results, bitrate)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
