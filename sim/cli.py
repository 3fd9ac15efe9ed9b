"""``swarmcast simulate``: run a scenario (or a sweep) and write a QoE report folder."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

from swarmcast.sim.scenario import Mixture, Scenario, ScenarioError

logger = logging.getLogger(__name__)

#: CLI flag -> scenario field, for flags that map one to one.
_FLAGS = {
    "viewers": "viewers",
    "duration": "duration",
    "seeds": "seeds",
    "bitrate": "bitrate_kbps",
    "segment_duration": "segment_duration",
    "vod_length": "vod_length",
    "nat_fail": "nat_fail",
    "churn": "session",
    "origin_capacity": "origin_capacity",
    "join_spread": "join_spread",
    "localities": "localities",
    "seed": "seed",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast simulate`` (each overrides the same field of ``--config``)."""
    a = parser.add_argument
    a("--config", metavar="FILE", help="scenario JSON (see docs/simulation.md); flags override")
    a("--viewers", type=int, help="concurrent viewers (default 100)")
    a("--duration", type=float, help="simulated seconds (default 120)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None, help="live")
    mode.add_argument("--vod", dest="live", action="store_false", help="VOD instead of live")
    a("--vod-length", type=float, help="VOD content length, seconds (default 600)")
    a("--seeds", type=int, help="seed peers next to the origin (default 0)")
    a("--bitrate", type=float, metavar="KBPS", help="media bitrate, kbit/s (default 770)")
    a("--segment-duration", type=float, metavar="S", help="segment duration, s (default 2)")
    a(
        "--upload-dist",
        metavar="DIST",
        help="viewer upload, Mbit/s, as WEIGHT:LOW-HIGH,... (0 = upload off), "
        "default '0.1:0,0.3:0.5-2,0.6:2-10'",
    )
    a("--download-dist", metavar="DIST", help="viewer download, Mbit/s (default '1:10-50')")
    a("--nat-fail", type=float, metavar="P", help="share of peer pairs that cannot connect")
    a("--churn", type=float, metavar="S", help="mean viewing session, s (leavers are replaced)")
    a("--origin-capacity", type=float, metavar="MBPS", help="origin egress cap, Mbit/s")
    a("--join-spread", type=float, metavar="S", help="viewers arrive within S seconds")
    a("--localities", type=int, help="networks viewers are spread over (default 1)")
    a("--no-p2p", action="store_true", help="plain HTTP baseline (no peers)")
    a(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SchedulerConfig field (JSON value), e.g. --set live_delay_segments=4",
    )
    a("--seed", type=int, help="random seed (default 1)")
    a("--out", metavar="DIR", help="report folder (default sim-out/)", default="sim-out")
    a(
        "--sweep",
        metavar="NAME=V1,V2",
        help="run once per value of a scenario field and plot offload (e.g. viewers=10,100; "
        "distribution values are separated by ';')",
    )
    a(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="with --sweep: run up to N points at once in worker processes (default 1; each "
        "point is its own seeded run, so the results do not depend on N)",
    )
    a("--write-scenario", metavar="FILE", help="write the resolved scenario JSON and exit")
    a("--no-progress", action="store_true", help="no progress bar")


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    """The scenario the flags describe (``--config`` first, then each given flag)."""
    base = Scenario.load(args.config) if args.config else Scenario()
    changes: dict[str, Any] = {}
    for flag, name in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            changes[name] = value
    if args.live is not None:
        changes["live"] = args.live
    if args.upload_dist:
        changes["upload"] = Mixture.parse(args.upload_dist)
    if args.download_dist:
        changes["download"] = Mixture.parse(args.download_dist)
    if args.no_p2p:
        changes["p2p"] = False
    if args.set:
        overrides = dict(base.scheduler)
        for item in args.set:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ScenarioError(f"--set wants KEY=VALUE, got {item!r}")
            try:
                overrides[key.strip()] = json.loads(raw)
            except json.JSONDecodeError:
                raise ScenarioError(f"--set {key}: {raw!r} is not a JSON value") from None
        changes["scheduler"] = overrides
    return base.replace(**changes) if changes else base


def run_scenario(
    scenario: Scenario,
    *,
    progress: bool = False,
    trace: Callable[[str, float, list[Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one scenario; returns ``{"report", "viewers", "timeseries"}`` (see report.py).

    ``trace(viewer_id, clock, actions)`` is called after every scheduler poll.
    """
    from swarmcast.sim.engine import Simulation
    from swarmcast.sim.report import build_report

    sim = Simulation(scenario)
    sim.trace = trace
    started = time.perf_counter()
    if progress:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} s simulated"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, transient=True) as bar:
            label = f"{scenario.viewers} viewers"
            task = bar.add_task(label, total=scenario.duration)
            sim.progress = lambda t: bar.update(task, completed=t)
            sim.run()
    else:
        sim.run()
    return build_report(sim, time.perf_counter() - started)


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def print_summary(report: dict[str, Any]) -> None:
    """A table of the headline figures on stdout."""
    from rich.console import Console
    from rich.table import Table

    s, run = report["summary"], report["run"]
    table = Table(title="swarmcast simulate", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("viewers (concurrent / sessions)", f"{s['concurrent_viewers']} / {s['sessions']}"),
        (
            "offload (bound (N-1)/N)",
            f"{100 * s['offload']:.1f} % ({100 * s['offload_bound']:.1f} %)",
        ),
        ("origin egress", f"{s['bytes']['origin_egress'] / 1e6:.1f} MB"),
        ("origin requests per segment", _fmt(s["origin_requests_per_segment"])),
        (
            "startup p50 / p95",
            f"{_fmt(s['startup']['p50'], ' s')} / {_fmt(s['startup']['p95'], ' s')}",
        ),
        ("rebuffering ratio", f"{100 * s['rebuffering_ratio']:.3f} %"),
        ("stalls (count / seconds)", f"{s['stalls']['count']} / {s['stalls']['duration']:.1f}"),
        ("live latency mean", _fmt(s["live_latency"]["mean"], " s")),
        ("mean neighbours", _fmt(s["connections"]["mean_neighbours"], "", 1)),
        ("speed", f"{run['viewer_seconds_per_wall_second']:.0f} viewer-s / wall-s"),
        ("engine", "compiled" if run.get("compiled") else "pure Python"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``swarmcast simulate``."""
    from swarmcast.sim.report import write_report

    if getattr(args, "verbose", 0) < 2:
        # Thousands of simulated peers log the same INFO lines (bans, fallbacks): keep them
        # for -vv; the report carries the counts.
        logging.getLogger("swarmcast.peer").setLevel(logging.WARNING)
    try:
        scenario = scenario_from_args(args)
        sweep = None
        if args.sweep:
            from swarmcast.sim.sweep import parse_sweep

            sweep = parse_sweep(args.sweep)
            for value in sweep[1]:
                scenario.replace(**{sweep[0]: value})  # validate every point before running
    except ScenarioError as exc:
        print(f"swarmcast simulate: {exc}", file=sys.stderr)
        return 2
    if args.write_scenario:
        Path(args.write_scenario).write_text(json.dumps(scenario.to_json(), indent=1) + "\n")
        return 0
    show = not args.no_progress and sys.stderr.isatty()
    out = Path(args.out)
    from swarmcast import accel

    engine = accel.status()
    if engine.active:
        logger.info("engine: %s", engine.describe())
    else:
        logger.warning("engine: %s; the compiled build is about 2x faster", engine.describe())
    if sweep is None:
        result = run_scenario(scenario, progress=show)
        write_report(out, result)
        print_summary(result["report"])
        print(f"report: {out}/report.json")
        return 0
    from swarmcast.sim.sweep import run_sweep, write_sweep

    name, values = sweep
    if args.jobs < 1:
        print("swarmcast simulate: --jobs must be >= 1", file=sys.stderr)
        return 2

    done = 0
    pool = None
    futures: list[Future[dict[str, Any]]] = []
    if args.jobs > 1 and len(values) > 1:
        # Every point in a worker process at once (up to --jobs running); the loop below takes
        # the results in the order of the values, as a sequential sweep would produce them.
        workers = min(args.jobs, len(values))
        pool = ProcessPoolExecutor(max_workers=workers)
        points = [scenario.replace(**{name: value}) for value in values]
        futures = [pool.submit(run_scenario, point) for point in points]
        logger.info("sweep: %d points in %d worker processes", len(values), workers)

    def one(sc: Scenario) -> dict[str, Any]:
        nonlocal done
        if futures:
            result = futures[done].result()
            logger.info("sweep point %d/%d done (%s=%s)", done + 1, len(values), name, values[done])
        else:
            result = run_scenario(sc, progress=show)
        write_report(out / f"run-{done:02d}", result)  # run-NN matches sweep.json's order
        done += 1
        return result

    try:
        rows = run_sweep(scenario, name, values, one)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    plot = write_sweep(out, name, rows, scenario)
    for row in rows:
        print(
            f"{name}={row[name]}: offload {100 * row['offload']:.1f} % "
            f"(bound {100 * row['offload_bound']:.1f} %), stalls {row['stall_count']}, "
            f"{row['viewer_seconds_per_wall_second']:.0f} viewer-s/wall-s"
        )
    print(f"sweep: {out}/sweep.json, plot: {plot}")
    return 0
