"""Real Chromium viewers mixed into a load test (``swarmcast loadtest --chromium M``).

The simulated viewers are Python peers; these are the real browser client (hls.js and the
swarmcast embed) in Debian's Chromium, driven by Playwright. One browser process holds them
all, each viewer in its own context (no shared cache, storage or cookies) with one page that
opens the signalling server's ``/watch`` page for the run's stream.

They run in the coordinator process, not in the worker processes: the browser is a separate
set of processes anyway, and the coordinator only awaits a ``player.stats()`` call per viewer
per sample interval. Each viewer joins at a time drawn over the scenario's join ramp (its own
random stream, so the Python viewers' plan is the same with or without browsers) and stays to
the end of the run (no churn). Every sample interval :class:`ChromiumFleet` turns the stats
into a :class:`~swarmcast.loadtest.metrics.WorkerSample` of the pseudo-worker
:data:`CHROMIUM_WORKER`, and each viewer ends as a report row with ``"kind": "chromium"``.

WebRTC needs ICE candidates: Chromium offers none in a network namespace without a default
route (DESIGN.md). ``tests/netns-run`` adds one; on a host with a normal network it is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from swarmcast.loadtest.metrics import WorkerSample

log = logging.getLogger(__name__)

#: The Debian package's binary; Playwright's own browser downloads are never used.
CHROMIUM_PATH = "/usr/bin/chromium"

#: ``worker`` of the samples and rows of Chromium viewers (real workers count from 0).
CHROMIUM_WORKER = -1

#: Flags that work headless in a test namespace and on a desktop alike (DESIGN.md).
#: ``WebRtcHideLocalIpsWithMdns`` off: Python peers see real host candidates, not ``.local``
#: names nothing resolves; the throttling flags keep every page of the one browser playing.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
)

# One call per viewer per interval: the embed's stats plus what the media element knows
# (seconds really played, from `played` ranges) and hls.js's live latency estimate.
_STATS_JS = """
() => {
  const p = window.player;
  if (!p) return null;
  const s = p.stats();
  const v = document.querySelector('video');
  let played = 0;
  if (v) for (let i = 0; i < v.played.length; i++) played += v.played.end(i) - v.played.start(i);
  const latency = p.hls && Number.isFinite(p.hls.latency) ? p.hls.latency : null;
  return {...s, playedSeconds: played, latency,
          mediaError: v && v.error ? v.error.message || String(v.error.code) : null};
}
"""


class ChromiumUnavailable(Exception):
    """Chromium or Playwright is missing (the message says what to install)."""


def check_available(executable: str = CHROMIUM_PATH) -> None:
    """Raise :class:`ChromiumUnavailable` unless Playwright and the Chromium binary exist."""
    if importlib.util.find_spec("playwright") is None:
        raise ChromiumUnavailable(
            "--chromium needs Playwright (pip install playwright; its own browser download "
            "is not used)"
        )
    if shutil.which(executable) is None:
        raise ChromiumUnavailable(
            f"--chromium needs Chromium at {executable} (apt-get install chromium)"
        )


@dataclass(frozen=True)
class ChromiumPlan:
    """When one Chromium viewer is in the run."""

    id: str
    """Row id (``c0``, ``c1``, ...)."""
    join_at: float
    """Seconds after the start when the page opens."""
    leave_at: float
    """Seconds after the start when the page closes (the end of the run)."""


def plan_chromium(
    count: int, *, join_spread: float, duration: float, seed: int
) -> list[ChromiumPlan]:
    """``count`` viewers joining uniformly over the ramp, in join order.

    Drawn from their own random stream (derived from ``seed``) so that adding browsers leaves
    the Python viewers' plan unchanged.
    """
    if count < 0:
        raise ValueError(f"--chromium must be >= 0, got {count}")
    rng = random.Random(f"chromium:{seed}")
    joins = sorted(rng.uniform(0.0, min(join_spread, duration)) for _ in range(count))
    return [ChromiumPlan(f"c{i}", round(j, 6), duration) for i, j in enumerate(joins)]


def watch_url(signal_url: str, stream_url: str, *, p2p: bool = True) -> str:
    """The ``/watch`` page URL on the signalling server of ``signal_url`` (``ws[s]://.../ws``);
    ``p2p`` False: the page plays over HTTP only."""
    parts = urlsplit(signal_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"the signalling URL must be ws:// or wss://, got {signal_url!r}")
    scheme = "https" if parts.scheme == "wss" else "http"
    query = urlencode({"src": stream_url, "signal": signal_url, "p2p": "1" if p2p else "0"})
    return urlunsplit((scheme, parts.netloc, "/watch", query, ""))


@dataclass
class _Viewer:
    plan: ChromiumPlan
    started: float | None = None
    page: Any = None
    stats: dict[str, Any] | None = None
    last: dict[str, float] = field(
        default_factory=lambda: {"http": 0, "p2p": 0, "up": 0, "stalls": 0}
    )
    peer_sum: int = 0
    peer_samples: int = 0
    error: str | None = None


class ChromiumFleet:
    """M Chromium viewers of one run: launch, join on the ramp, sample, report rows."""

    def __init__(
        self,
        plans: list[ChromiumPlan],
        page_url: str,
        *,
        sample_interval: float,
        emit: Callable[[dict[str, Any]], None],
        executable: str = CHROMIUM_PATH,
        goto_timeout: float = 30.0,
    ) -> None:
        self.plans = plans
        self.page_url = page_url
        self.sample_interval = sample_interval
        self.emit = emit
        self.executable = executable
        self.goto_timeout = goto_timeout
        self.viewers = {p.id: _Viewer(p) for p in plans}
        self._pw: Any = None
        self._browser: Any = None
        self._t0 = 0.0
        self._pending = {"http": 0.0, "p2p": 0.0, "up": 0.0, "stalls": 0.0}

    async def launch(self) -> None:
        """Start Playwright and the browser (before the run starts: not counted in it)."""
        check_available(self.executable)
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        try:
            self._browser = await self._pw.chromium.launch(
                executable_path=self.executable, headless=True, args=list(CHROMIUM_FLAGS)
            )
        except PlaywrightError as exc:
            await self.close()
            raise ChromiumUnavailable(f"Chromium did not start: {exc}") from None
        log.info("Chromium started for %d viewers: %s", len(self.plans), self.page_url)

    async def run(self, start_at: float) -> None:
        """Run every viewer from the wall-clock time ``start_at`` to its leave time."""
        self._t0 = time.monotonic() + (start_at - time.time())
        sampler = asyncio.create_task(self._sample_loop())
        try:
            await asyncio.gather(*(self._session(v) for v in self.viewers.values()))
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        self._send_sample()

    async def close(self) -> None:
        """Close the browser and Playwright (safe to call twice)."""
        if self._browser is not None:
            with contextlib.suppress(Exception):
                await self._browser.close()
            self._browser = None
        if self._pw is not None:
            with contextlib.suppress(Exception):
                await self._pw.stop()
            self._pw = None

    def now(self) -> float:
        """Seconds since the run's start."""
        return time.monotonic() - self._t0

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _session(self, viewer: _Viewer) -> None:
        from playwright.async_api import Error as PlaywrightError

        plan = viewer.plan
        await self._sleep_until(plan.join_at)
        viewer.started = self.now()
        context = None
        try:
            context = await self._browser.new_context(viewport={"width": 640, "height": 360})
            viewer.page = await context.new_page()
            viewer.page.on("pageerror", lambda exc: log.warning("%s page error: %s", plan.id, exc))
            resp = await viewer.page.goto(self.page_url, timeout=self.goto_timeout * 1000)
            if resp is None or resp.status != 200:
                raise RuntimeError(f"/watch answered HTTP {resp.status if resp else 'nothing'}")
            await self._sleep_until(plan.leave_at)
            await self._read(viewer)
        except (PlaywrightError, RuntimeError, TimeoutError) as exc:
            # One browser viewer failing is a finding of the run, not a crash of it.
            viewer.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            log.warning("Chromium viewer %s failed: %s", plan.id, viewer.error)
            await self._sleep_until(plan.leave_at)
        except Exception as exc:
            # A bug in the page or the harness fails this viewer (counted in the report), not
            # the run and the other viewers.
            viewer.error = f"{type(exc).__name__}: {exc}"
            log.exception("Chromium viewer %s crashed", plan.id)
            await self._sleep_until(plan.leave_at)
        finally:
            viewer.page = None
            self._account(viewer)
            row = self.row(viewer, left_at=self.now())
            if context is not None:
                with contextlib.suppress(Exception):
                    await context.close()
        self.emit({"type": "session", "row": row})

    async def _read(self, viewer: _Viewer) -> None:
        if viewer.page is None:
            return
        from playwright.async_api import Error as PlaywrightError

        try:
            stats = await asyncio.wait_for(viewer.page.evaluate(_STATS_JS), 5.0)
        except (PlaywrightError, TimeoutError) as exc:
            log.debug("stats of %s unavailable: %s", viewer.plan.id, exc)
            return
        if isinstance(stats, dict):
            viewer.stats = stats

    async def _sample_loop(self) -> None:
        k = 1
        while True:
            await self._sleep_until(k * self.sample_interval)
            online = [v for v in self.viewers.values() if v.page is not None]
            await asyncio.gather(*(self._read(v) for v in online))
            self._send_sample(online)
            k = max(k + 1, int(self.now() / self.sample_interval) + 1)

    def _account(self, viewer: _Viewer) -> None:
        """Add the viewer's counter growth since its last accounting to the pending sample."""
        s = viewer.stats
        if s is None:
            return
        now = {
            "http": _num(s.get("httpBytes")),
            "p2p": _num(s.get("p2pBytes")),
            "up": _num(s.get("uploadedBytes")),
            "stalls": _num(s.get("stalls")),
        }
        for key, value in now.items():
            self._pending[key] += max(value - viewer.last[key], 0)
        viewer.last = now

    def _send_sample(self, online: list[_Viewer] | None = None) -> None:
        online = online if online is not None else []
        sample = WorkerSample(worker=CHROMIUM_WORKER, t=round(self.now(), 6), online=len(online))
        for v in online:
            self._account(v)
            if v.stats is None:
                continue
            peers = int(_num(v.stats.get("peers")))
            v.peer_sum += peers
            v.peer_samples += 1
            sample.neighbours += peers
            sample.playing += v.stats.get("startupMs") is not None
        p = self._pending
        sample.http_bytes, sample.p2p_bytes = int(p["http"]), int(p["p2p"])
        sample.uploaded_bytes, sample.stalls = int(p["up"]), int(p["stalls"])
        self._pending = dict.fromkeys(p, 0.0)
        self.emit({"type": "sample", "sample": sample.to_json()})

    def row(self, viewer: _Viewer, *, left_at: float) -> dict[str, Any]:
        """The report row of one viewer (the Python viewers' fields, where the browser has
        them; counters it does not have are absent rather than made up)."""
        s = viewer.stats or {}
        startup_ms = s.get("startupMs")
        played = _num(s.get("playedSeconds"))
        return {
            "id": viewer.plan.id,
            "kind": "chromium",
            "worker": CHROMIUM_WORKER,
            "joined_at": round(viewer.started if viewer.started is not None else 0.0, 6),
            "left_at": round(left_at, 6),
            "upload_bps": 0.0,
            "download_bps": None,
            "upload_enabled": True,
            "http_bytes": int(_num(s.get("httpBytes"))),
            "p2p_bytes": int(_num(s.get("p2pBytes"))),
            "uploaded_bytes": int(_num(s.get("uploadedBytes"))),
            "startup_time": round(startup_ms / 1000, 6) if startup_ms is not None else None,
            "play_time": round(played, 6),
            "stall_count": int(_num(s.get("stalls"))),
            "stall_time": round(_num(s.get("stallMs")) / 1000, 6),
            "live_latency": s.get("latency"),
            "neighbours": int(_num(s.get("peers"))),
            "mean_neighbours": viewer.peer_sum / viewer.peer_samples
            if viewer.peer_samples
            else 0.0,
            "p2p_rejected_bytes": int(_num(s.get("rejectedBytes"))),
            "rendition": s.get("rendition"),
            "error": viewer.error or s.get("mediaError"),
        }


def _num(value: Any) -> float:
    """A number from page JSON (anything else counts as 0: the page is not trusted blindly)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if value == value and value not in (float("inf"), float("-inf")) else 0.0
