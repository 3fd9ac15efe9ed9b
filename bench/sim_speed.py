"""Simulator speed: simulated viewer-seconds per wall-second, and a check that speed-ups of the
simulator or the scheduler change no decision.

    .venv/bin/python bench/sim_speed.py                 # 100, 1000, 3000 viewers x 60 s
    .venv/bin/python bench/sim_speed.py --sizes 10000 --duration 600
    .venv/bin/python bench/sim_speed.py --record /tmp/sim-ref   # before changing anything
    .venv/bin/python bench/sim_speed.py --check /tmp/sim-ref    # after: identical or exit 1

Speed: default live scenario (770 kbit/s, 2 s segments, default capacity mix, 20 % NAT
failures). Each size runs in a fresh process so that its peak RSS is its own; a progress line
goes to stderr every ``--progress`` wall seconds. Prints the load average (the figures depend
on it).

Identity (``--record`` / ``--check``): a fixed set of scenarios (live and VOD, churn, seeds,
NAT failures, localities, an origin cap, scheduler and upload overrides, 100-1000 viewers).
For each it keeps the report (minus wall-clock facts), ``viewers.json``, ``timeseries.json``
and a SHA-256 of every non-empty list of actions any scheduler returned (viewer, clock time,
actions). ``--check`` reruns them and compares field by field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from swarmcast.sim.cli import run_scenario
from swarmcast.sim.engine import Simulation
from swarmcast.sim.scenario import Scenario

#: The identity set: name -> scenario fields (each run ~2-20 s at the original speed).
IDENTITY_SCENARIOS: dict[str, dict[str, Any]] = {
    "live-300": {"viewers": 300, "duration": 120},
    "live-1000-churn-seeds": {"viewers": 1000, "duration": 60, "session": 60.0, "seeds": 2},
    "vod-200-churn-seed": {
        "viewers": 200,
        "duration": 200,
        "live": False,
        "vod_length": 300,
        "seeds": 1,
        "session": 120.0,
        "nat_fail": 0.3,
        "join_spread": 100,
    },
    "live-500-localities-tuned": {
        "viewers": 500,
        "duration": 90,
        "localities": 3,
        "nat_fail": 0.4,
        "origin_capacity": 1000,
        "scheduler": {"live_delay_segments": 4},
        "upload_config": {"max_concurrent": 1, "max_queued": 2},
        "seed": 2,
    },
    "vod-100-tick-prefetch10": {
        "viewers": 100,
        "duration": 150,
        "live": False,
        "player_tick": 0.25,
        "scheduler": {"prefetch_seconds": 10},
        "seed": 3,
    },
    "live-100-copies2-churn-seed": {
        "viewers": 100,
        "duration": 120,
        "session": 40.0,
        "seeds": 1,
        "scheduler": {"election_copies": 2},
        "seed": 7,
    },
    "live-40-saturated-origin": {
        "viewers": 40,
        "duration": 60,
        "origin_capacity": 25,
        "join_spread": 2,
        "seed": 5,
    },
}

#: ``run`` keys that depend on the wall clock or on how many events the engine needed.
_RUN_VOLATILE = (
    "wall_seconds",
    "viewer_seconds_per_wall_second",
    "events",
    "compiled",
    "engine",
)


# ---------------------------------------------------------------------- speed


def measure(viewers: int, duration: float, progress: float = 0.0) -> dict[str, float]:
    """Run one default scenario in this process; wall time, events, speed, peak RSS."""
    sim = Simulation(Scenario(viewers=viewers, duration=duration))
    started = time.perf_counter()
    if progress > 0:
        last = [started]

        def report(t: float) -> None:
            wall = time.perf_counter()
            if wall - last[0] >= progress:
                last[0] = wall
                print(
                    f"  {viewers} viewers: {t:6.0f}/{duration:g} s simulated, "
                    f"{wall - started:7.0f} s wall, load {os.getloadavg()[0]:.2f}",
                    file=sys.stderr,
                    flush=True,
                )

        sim.progress = report
    sim.run()
    wall = time.perf_counter() - started
    viewer_seconds = sum((v.left_at or duration) - v.joined_at for v in sim.viewers)
    return {
        "wall": wall,
        "events": sim.events,
        "speed": viewer_seconds / wall,
        "offload": sim.counters.p2p_bytes
        / max(sim.counters.p2p_bytes + sim.counters.http_bytes, 1.0),
        "stalls": sim.counters.stalls,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure_in_child(viewers: int, duration: float, progress: float) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter, so that peak RSS is this run's alone."""
    cmd = [sys.executable, __file__, "--single", str(viewers), "--duration", str(duration)]
    cmd += ["--progress", str(progress)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def speed(sizes: list[int], duration: float, progress: float) -> None:
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cpus)", flush=True)
    for n in sizes:
        r = measure_in_child(n, duration, progress)
        print(
            f"{n:>7} viewers x {duration:g} s: {r['wall']:8.1f} s wall, "
            f"{r['events'] / r['wall']:9.0f} events/s, {r['speed']:8.0f} viewer-s/wall-s, "
            f"offload {100 * r['offload']:.1f} %, {r['stalls']:.0f} stalls, "
            f"peak RSS {r['rss_mb']:.0f} MB, load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


# ---------------------------------------------------------------------- identity


def traced_run(scenario: Scenario) -> dict[str, Any]:
    """Run ``scenario``; the report without wall-clock facts, plus a digest of every decision."""
    digest = hashlib.sha256()
    polls = [0, 0]

    def trace(viewer: str, now: float, actions: list[Any]) -> None:
        polls[0] += 1
        if actions:
            polls[1] += 1
            digest.update(f"{viewer}@{now!r}:{actions!r}\n".encode())

    started = time.perf_counter()
    result = run_scenario(scenario, trace=trace)
    wall = time.perf_counter() - started
    run = result["report"]["run"]
    facts = {"wall": wall, "events": run["events"], "polls": polls[0], "acting_polls": polls[1]}
    for key in _RUN_VOLATILE:
        run.pop(key, None)
    result["decisions_sha256"] = digest.hexdigest()
    return {"result": result, "facts": facts}


def _differences(a: Any, b: Any, path: str, out: list[str], limit: int = 20) -> None:
    if len(out) >= limit:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            _differences(a.get(key), b.get(key), f"{path}.{key}", out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _differences(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: {a!r} != {b!r}")


def identity(folder: Path, *, record: bool, only: list[str] | None) -> int:
    names = only or list(IDENTITY_SCENARIOS)
    unknown = [n for n in names if n not in IDENTITY_SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {unknown}; known: {list(IDENTITY_SCENARIOS)}", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in names:
        run = traced_run(Scenario(**IDENTITY_SCENARIOS[name]))
        path = folder / f"{name}.json"
        f = run["facts"]
        line = (
            f"{name:30} {f['wall']:7.1f} s wall, {f['events']:9d} events, "
            f"{f['polls']:9d} polls ({f['acting_polls']} acting), load {os.getloadavg()[0]:.2f}"
        )
        if record:
            path.write_text(json.dumps(run["result"], sort_keys=True) + "\n")
            print(f"recorded {line}", flush=True)
            continue
        if not path.exists():
            print(f"MISSING  {line}: no {path} (run --record first)", flush=True)
            failed += 1
            continue
        # Through JSON both ways so that tuples and lists compare alike.
        ref = json.loads(path.read_text())
        new = json.loads(json.dumps(run["result"], sort_keys=True))
        diffs: list[str] = []
        _differences(ref, new, name, diffs)
        print(f"{'SAME' if not diffs else 'DIFFERS'}     {line}", flush=True)
        for d in diffs:
            print(f"    {d}")
        failed += bool(diffs)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,3000", help="viewer counts, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    parser.add_argument(
        "--progress", type=float, default=30.0, help="wall seconds between progress lines (0: off)"
    )
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--record", metavar="DIR", help="record the identity set's results")
    mode.add_argument("--check", metavar="DIR", help="compare the identity set with --record's")
    parser.add_argument(
        "--only", metavar="NAMES", help="identity scenarios to run, comma-separated"
    )
    args = parser.parse_args()
    if args.single is not None:
        print(json.dumps(measure(args.single, args.duration, args.progress)))
        return 0
    if args.record or args.check:
        only = args.only.split(",") if args.only else None
        return identity(Path(args.record or args.check), record=bool(args.record), only=only)
    try:
        sizes = [int(x) for x in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes wants comma-separated integers, got {args.sizes!r}")
    speed(sizes, args.duration, args.progress)
    return 0


if __name__ == "__main__":
    sys.exit(main())
