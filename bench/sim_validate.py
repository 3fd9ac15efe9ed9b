"""Simulator vs. real load test on the same scenario (issue #8).

For each audience size N it writes one scenario JSON and runs it through both commands:

- ``swarmcast simulate --config`` over several seeds (deterministic per seed, and cheap);
- ``swarmcast loadtest --config`` (real aiortc viewers, local origin and signalling) over
  ``--real-seeds`` seeds, repeated ``--repeat`` times each (the real run is not deterministic),

then prints a side-by-side table (offload, origin requests per segment, stalls, startup p50,
live latency) and a verdict per N against the tolerances of :class:`Tolerance`.

**How the scenario is made representable by both.** Inside ``tests/netns-run`` every address
(198.18.0.1, .2) is local to one namespace, so traffic between them goes over ``lo`` whatever
the veth says: ``tc netem`` on the veth shapes nothing, and ``tc`` on ``lo`` would shape the
whole run at once (origin, signalling, every peer pair), never one viewer's link (and the
kernel of these machines has no ``sch_netem`` at all; ``tbf`` exists). So instead
of imposing the simulator's defaults on the namespace, the script **measures what the
namespace gives** and writes those figures into the scenario: origin time to first byte and
throughput for one segment of the rendition played, WebRTC connection set-up time (offer to
open data channel), and the data-channel one-way latency (half the round trip). Everything
else is chosen to mean the same in both: no NAT failures (everything connects in the
namespace), no ABR (one rendition; its measured mean segment size sets ``bitrate_kbps``), no
seeds, every viewer's upload capped at the same ``--upload`` Mbit/s (the load test applies the
cap as ``UploadConfig.rate_limit_bps``, the simulator as the uplink capacity), and
``max_neighbours`` = the load test's ``--max-peers`` (10).

**Live latency is defined differently** by the two reports today: the simulator samples it at
each playlist reload (the moment the newest segment becomes known, the top of a sawtooth), the
load test every second against the newest segment the viewer knows (the sawtooth's mean, one
half reload period lower when nothing stalls). The table shows the simulator's raw figure and
the figure minus ``segment_duration / 2``; the verdict uses the latter.

Run it inside the namespace (WebRTC needs it); it prints the load average before and after::

    tests/netns-run .venv/bin/python bench/sim_validate.py --viewers 2,4,6,10,20 --out /tmp/sv

Reports are kept under ``--out`` (one folder per run); a run whose ``report.json`` is already
there is not run again, so an interrupted campaign resumes and ``--analyse`` re-prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ tolerance and verdict


@dataclass(frozen=True)
class Tolerance:
    """How far the simulator's mean may sit from the real runs' mean and still "agree"."""

    offload_points: float = 0.05
    """Offload, absolute (0.05 = 5 percentage points)."""
    requests_per_viewer: float = 0.05
    """Origin requests per segment, as a share of N: 5 points of offload expressed in requests
    (offload ~ 1 - requests per segment / N), so the bound is ``0.05 * N``."""
    startup_p50: float = 0.1
    """Startup p50, seconds (5 % of a 2 s segment; both are tens of ms in the namespace)."""
    live_latency: float = 0.3
    """Mean live latency, seconds, after the simulator's sampling offset (module docstring)."""
    stalls: int = 0
    """Stalls allowed in each run of either side (fallback is sacred: the target is none)."""


@dataclass(frozen=True)
class Figures:
    """The compared figures of one report."""

    offload: float
    """P2P bytes / all bytes viewers received."""
    requests_per_segment: float
    """Viewers' origin segment requests / distinct segments stored."""
    stalls: int
    """Stalls after the first frame, all viewers."""
    startup_p50: float | None
    """Median join -> first frame, seconds (None: nobody started)."""
    live_latency: float | None
    """Mean of the per-viewer mean live latencies, seconds."""
    valid: bool = True
    """False when the load generator was the bottleneck (the load test says so)."""
    lag_p95: float = 0.0
    """Worst worker event-loop lag p95, seconds (0 for the simulator)."""


def figures(report: dict[str, Any]) -> Figures:
    """Pick the compared figures out of a ``swarmcast.qoe-report/1`` report."""
    if report.get("schema") != "swarmcast.qoe-report/1":
        raise ValueError(f"not a swarmcast.qoe-report/1 report: schema {report.get('schema')!r}")
    s = report["summary"]
    gen = report.get("generator") or {}
    lags = [w.get("p95") or 0.0 for w in (gen.get("workers") or {}).values()]
    return Figures(
        offload=float(s["offload"]),
        requests_per_segment=float(s["origin_requests_per_segment"]),
        stalls=int(s["stalls"]["count"]),
        startup_p50=s["startup"]["p50"],
        live_latency=s["live_latency"]["mean"],
        valid=bool(gen.get("valid", True)),
        lag_p95=max(lags, default=0.0),
    )


@dataclass(frozen=True)
class Spread:
    """Mean, minimum and maximum of one figure over runs."""

    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread | None:
        """None for no values."""
        if not values:
            return None
        return cls(statistics.fmean(values), min(values), max(values))

    def text(self, fmt: str) -> str:
        """``mean [low-high]`` (just the mean when all runs agree)."""
        mean = format(self.mean, fmt)
        if format(self.low, fmt) == format(self.high, fmt):
            return mean
        return f"{mean} [{format(self.low, fmt)}-{format(self.high, fmt)}]"


@dataclass(frozen=True)
class Comparison:
    """One audience size: the real runs against the simulator's seeds."""

    viewers: int
    real: list[Figures]
    sim: list[Figures]
    latency_offset: float
    """Subtracted from the simulator's live latency (half a segment duration)."""
    failures: list[str]
    """Tolerances missed (empty = agreement)."""

    @property
    def agrees(self) -> bool:
        """Every figure within its tolerance."""
        return not self.failures


def _spread(runs: list[Figures], name: str, offset: float = 0.0) -> Spread | None:
    values = [getattr(f, name) for f in runs]
    return Spread.of([v - offset for v in values if v is not None])


def compare(
    viewers: int,
    real: list[Figures],
    sim: list[Figures],
    tolerance: Tolerance,
    segment_duration: float,
) -> Comparison:
    """Compare the means of the valid real runs with the simulator's; list what misses."""
    offset = segment_duration / 2
    failures: list[str] = []
    valid = [f for f in real if f.valid]
    if len(valid) < len(real):
        failures.append(f"{len(real) - len(valid)} real run(s) invalid (generator overloaded)")
    if not valid or not sim:
        failures.append("no valid real run" if not valid else "no simulator run")
        return Comparison(viewers, real, sim, offset, failures)
    checks = [
        ("offload", "offload", 0.0, tolerance.offload_points, "{:.1%}"),
        (
            "origin requests/segment",
            "requests_per_segment",
            0.0,
            tolerance.requests_per_viewer * viewers,
            "{:.2f}",
        ),
        ("startup p50", "startup_p50", 0.0, tolerance.startup_p50, "{:.3f} s"),
        ("live latency", "live_latency", offset, tolerance.live_latency, "{:.2f} s"),
    ]
    for label, name, sim_offset, bound, fmt in checks:
        r, s = _spread(valid, name), _spread(sim, name, sim_offset)
        if r is None or s is None:
            failures.append(f"{label}: missing on one side")
        elif abs(r.mean - s.mean) > bound + 1e-12:
            failures.append(
                f"{label}: real {fmt.format(r.mean)} vs sim {fmt.format(s.mean)}, "
                f"tolerance {fmt.format(bound)}"
            )
    for side, runs in (("real", valid), ("sim", sim)):
        worst = max(f.stalls for f in runs)
        if worst > tolerance.stalls:
            failures.append(f"stalls: a {side} run had {worst} (allowed {tolerance.stalls})")
    return Comparison(viewers, real, sim, offset, failures)


def table(comparisons: list[Comparison]) -> str:
    """The side-by-side markdown table."""
    head = (
        "| N | runs real / sim | offload real | offload sim | origin req./seg. real | sim | "
        "stalls real / sim | startup p50 real | sim | live latency real | sim (at reload) | "
        "sim - d/2 | lag p95 | verdict |"
    )
    lines = [head, "|---" * 14 + "|"]
    for c in comparisons:
        valid = [f for f in c.real if f.valid]

        def cell(runs: list[Figures], name: str, fmt: str, offset: float = 0.0) -> str:
            s = _spread(runs, name, offset)
            return "-" if s is None else s.text(fmt)

        lag = max((f.lag_p95 for f in c.real), default=0.0)
        stalls = f"{sum(f.stalls for f in valid)} / {sum(f.stalls for f in c.sim)}"
        lines.append(
            f"| {c.viewers} | {len(valid)}/{len(c.real)} / {len(c.sim)} | "
            f"{cell(valid, 'offload', '.1%')} | {cell(c.sim, 'offload', '.1%')} | "
            f"{cell(valid, 'requests_per_segment', '.2f')} | "
            f"{cell(c.sim, 'requests_per_segment', '.2f')} | {stalls} | "
            f"{cell(valid, 'startup_p50', '.3f')} | {cell(c.sim, 'startup_p50', '.3f')} | "
            f"{cell(valid, 'live_latency', '.2f')} | {cell(c.sim, 'live_latency', '.2f')} | "
            f"{cell(c.sim, 'live_latency', '.2f', c.latency_offset)} | {lag * 1000:.0f} ms | "
            f"{'agree' if c.agrees else 'DISAGREE'} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ the scenario


@dataclass(frozen=True)
class NetnsFacts:
    """What the namespace gives, measured (these go into the simulator's scenario)."""

    http_ttfb: float
    """Origin time to first byte of a segment, median, seconds."""
    http_mbps: float
    """Origin throughput for one segment (size / full fetch time), median, Mbit/s."""
    connect_low: float
    """Fastest WebRTC set-up (offer to open data channel) seen, seconds."""
    connect_high: float
    """Slowest WebRTC set-up seen, seconds."""
    p2p_latency: float
    """Data-channel one-way latency (half the median round trip of a small message), seconds."""
    segment_bytes: float
    """Mean segment size of the rendition played, bytes."""

    def to_json(self) -> dict[str, float]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def scenario_for(
    base: dict[str, Any],
    facts: NetnsFacts,
    *,
    viewers: int,
    seed: int,
    upload_mbps: float,
    max_peers: int,
) -> dict[str, Any]:
    """The shared scenario of one run: ``base`` plus the measured namespace and the fixed
    choices of the module docstring."""
    d = float(base.get("segment_duration", 2.0))
    sc = dict(base)
    sc.update(
        viewers=viewers,
        seed=seed,
        live=True,
        seeds=0,
        bitrate_kbps=round(facts.segment_bytes * 8 / d / 1000, 3),
        upload=[[1.0, upload_mbps, upload_mbps]],
        download=[[1.0, round(facts.http_mbps, 1), round(facts.http_mbps, 1)]],
        http_latency=round(facts.http_ttfb, 4),
        p2p_latency=round(facts.p2p_latency, 4),
        p2p_latency_remote=round(facts.p2p_latency, 4),
        localities=1,
        connect_time=[round(facts.connect_low, 3), round(facts.connect_high, 3)],
        nat_fail=0.0,
        origin_capacity=None,
        p2p=True,
        max_neighbours=max_peers,
        session=None,
    )
    return sc


# ------------------------------------------------------------------ measuring the namespace


def rendition_segments(media: Path, rendition: str) -> list[Path]:
    """Segment files of one rendition, in playlist order."""
    playlist = media / rendition
    lines = playlist.read_text().splitlines()
    segs = [playlist.parent / line for line in lines if line and not line.startswith("#")]
    if not segs:
        raise SystemExit(f"{playlist} lists no segments")
    return segs


async def measure_netns(host: str, media: Path, rendition: str, rounds: int = 20) -> NetnsFacts:
    """Measure the origin and WebRTC in this namespace (idle: run it before the campaign)."""
    import aiohttp

    from swarmcast.peer.rtc import connected_pair
    from swarmcast.samples.origin import OriginConfig, start_origin

    segs = rendition_segments(media, rendition)
    sizes = [p.stat().st_size for p in segs]
    runner, base = await start_origin(OriginConfig(root=media, host=host, port=0))
    ttfb: list[float] = []
    rates: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(rounds):
                seg = segs[i % len(segs)]
                url = f"{base}/vod/{seg.relative_to(media).as_posix()}"
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    first = await resp.content.readany()
                    t1 = time.perf_counter()
                    size = len(first) + len(await resp.read())
                t2 = time.perf_counter()
                ttfb.append(t1 - t0)
                rates.append(size * 8 / 1e6 / max(t2 - t0, 1e-6))
    finally:
        await runner.cleanup()
    setups: list[float] = []
    rtts: list[float] = []
    for _ in range(5):
        t0 = time.perf_counter()
        (pc_a, ch_a), (pc_b, ch_b) = await connected_pair()
        setups.append(time.perf_counter() - t0)
        rtts.extend(await _ping(ch_a, ch_b, 20))
        await asyncio.gather(pc_a.close(), pc_b.close())
    return NetnsFacts(
        http_ttfb=statistics.median(ttfb),
        http_mbps=statistics.median(rates),
        connect_low=min(setups),
        connect_high=max(setups),
        p2p_latency=statistics.median(rtts) / 2,
        segment_bytes=statistics.fmean(sizes),
    )


async def _ping(a: Any, b: Any, count: int) -> list[float]:
    """Round trips of a 32-byte message a -> b -> a."""
    loop = asyncio.get_running_loop()
    b.on("message", lambda m: b.send(m))
    out: list[float] = []
    for _ in range(count):
        got: asyncio.Future[bytes] = loop.create_future()
        a.on("message", lambda m, f=got: f.done() or f.set_result(m))
        t0 = time.perf_counter()
        a.send(b"p" * 32)
        await asyncio.wait_for(got, 5)
        out.append(time.perf_counter() - t0)
        a.remove_all_listeners("message")
    return out


# ------------------------------------------------------------------ running both commands


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "swarmcast.cli", "-q", *args]


def run_sim(scenario: Path, out: Path) -> dict[str, Any]:
    """``swarmcast simulate --config``; returns report.json (kept: not rerun if present)."""
    if not (out / "report.json").exists():
        cmd = _cli("simulate", "--config", str(scenario), "--out", str(out), "--no-progress")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"simulate failed with exit code {proc.returncode}")
    return json.loads((out / "report.json").read_text())


def run_real(args: argparse.Namespace, scenario: Path, out: Path) -> dict[str, Any]:
    """``swarmcast loadtest --config`` in this namespace; returns report.json (kept)."""
    if not (out / "report.json").exists():
        cmd = _cli(
            "loadtest", "--config", str(scenario), "--host", args.host,
            "--media", str(args.media), "--rendition", args.rendition,
            "--workers", str(args.workers), "--max-peers", str(args.max_peers),
            "--no-live", "--no-plots", "--out", str(out),
        )  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        # 0 = fine, 1 = a threshold missed (none set), 3 = invalid run (kept, marked invalid).
        if proc.returncode not in (0, 1, 3):
            sys.stderr.write(proc.stderr[-3000:])
            raise SystemExit(f"loadtest failed with exit code {proc.returncode}: see above")
    return json.loads((out / "report.json").read_text())


def campaign(args: argparse.Namespace, facts: NetnsFacts) -> list[Comparison]:
    """Every run of every N; prints one line per real run as it ends. Returns the comparisons
    with the simulator."""
    base = json.loads(args.base.read_text()) if args.base else {}
    base.setdefault("duration", args.duration)
    base.setdefault("join_spread", args.join_spread)
    d = float(base.get("segment_duration", 2.0))
    out: list[Comparison] = []
    for n in args.viewers:
        sim, real = [], []
        for seed in args.sim_seeds:
            path = _write(args, facts, base, n, seed)
            sim.append(figures(run_sim(path, args.out / f"n{n}-sim-seed{seed}")))
        for seed in args.real_seeds:
            path = _write(args, facts, base, n, seed)
            for k in range(args.repeat):
                folder = args.out / f"n{n}-real-seed{seed}-{k}"
                if args.analyse and not (folder / "report.json").exists():
                    continue
                f = figures(run_real(args, path, folder))
                real.append(f)
                print(
                    f"# N={n} real seed {seed} #{k}: offload {f.offload:.1%}, "
                    f"req/seg {f.requests_per_segment:.2f}, stalls {f.stalls}, "
                    f"lag p95 {f.lag_p95 * 1000:.0f} ms, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
        out.append(compare(n, real, sim, args.tolerance, d))
    return out


def _write(
    args: argparse.Namespace, facts: NetnsFacts, base: dict[str, Any], n: int, seed: int
) -> Path:
    sc = scenario_for(
        base, facts, viewers=n, seed=seed, upload_mbps=args.upload, max_peers=args.max_peers
    )
    path = args.out / "scenarios" / f"n{n}-seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sc, indent=1) + "\n")
    return path


# ------------------------------------------------------------------ command line


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _seeds(text: str) -> list[int]:
    if "-" in text and "," not in text:
        lo, _, hi = text.partition("-")
        return list(range(int(lo), int(hi) + 1))
    return _ints(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--viewers", type=_ints, default=[2, 4, 6, 10, 20], help="audience sizes, e.g. 2,4,6")
    a("--duration", type=float, default=60.0, help="seconds per run (unless --base sets it)")
    a("--join-spread", type=float, default=10.0, help="join ramp, s (unless --base sets it)")
    a("--upload", type=float, default=4.0, help="every viewer's upload cap, Mbit/s")
    a("--real-seeds", type=_seeds, default=[1, 2, 3], help="plan seeds of the real runs")
    a("--repeat", type=int, default=1, help="real runs per seed")
    a("--sim-seeds", type=_seeds, default=list(range(1, 11)), help="simulator seeds, e.g. 1-10")
    a("--base", type=Path, help="scenario JSON to start from (default: the defaults)")
    a("--out", type=Path, default=Path("sim-validate-out"), help="folder of every run")
    a("--analyse", action="store_true", help="only re-read the runs already under --out")
    a("--workers", type=int, default=os.cpu_count() or 1, help="load-test worker processes")
    a("--max-peers", type=int, default=10, help="load-test links per viewer (= max_neighbours)")
    a("--media", type=Path, default=ROOT / "media" / "loadtest-bench", help="sample folder")
    a("--rendition", default="360p/index.m3u8", help="rendition every viewer plays")
    a("--host", default=os.environ.get("SWARMCAST_TEST_HOST", "127.0.0.1"))
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    args.tolerance = Tolerance()
    return args


def ensure_sample(media: Path) -> None:
    """The default ladder (240p/360p/720p), 30 s, as bench/loadtest_capacity.py uses."""
    from swarmcast.samples.generate import SampleConfig, generate

    generate(media, SampleConfig(duration=30.0), progress=False)


def main(argv: list[str] | None = None) -> int:
    """Measure, run, print; exit 0 when every N agrees, 1 otherwise."""
    args = parse_args(argv)
    if os.environ.get("SWARMCAST_NETNS") != "1" and not args.analyse:
        sys.stderr.write(
            "sim_validate: run me inside the test namespace (tests/netns-run .venv/bin/python "
            "bench/sim_validate.py): without it the real viewers cannot connect to each other\n"
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_sample(args.media)
    facts_file = args.out / "netns.json"
    if facts_file.exists():
        facts = NetnsFacts(**json.loads(facts_file.read_text()))
    elif args.analyse:
        sys.stderr.write(f"sim_validate: --analyse needs a campaign under {args.out}\n")
        return 2
    else:
        from swarmcast.runtime import run as run_loop

        facts = run_loop(measure_netns(args.host, args.media, args.rendition))
        facts_file.write_text(json.dumps(facts.to_json(), indent=1) + "\n")
    print(f"# load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    print(
        f"# namespace: origin TTFB {facts.http_ttfb * 1000:.1f} ms, {facts.http_mbps:.0f} Mbit/s;"
        f" WebRTC set-up {facts.connect_low * 1000:.0f}-{facts.connect_high * 1000:.0f} ms;"
        f" data channel one-way {facts.p2p_latency * 1000:.2f} ms;"
        f" segment {facts.segment_bytes / 1000:.1f} kB"
    )
    comparisons = campaign(args, facts)
    print(f"# load average after: {os.getloadavg()}")
    print(table(comparisons))
    t = args.tolerance
    print(
        f"# tolerance: offload {t.offload_points:.0%} points, origin req./seg. "
        f"{t.requests_per_viewer} x N, startup p50 {t.startup_p50} s, live latency "
        f"{t.live_latency} s (sim - d/2), stalls <= {t.stalls} per run"
    )
    for c in comparisons:
        for failure in c.failures:
            print(f"# N={c.viewers} DISAGREES: {failure}")
    return 0 if all(c.agrees for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
