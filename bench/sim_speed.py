"""Simulator speed: simulated viewer-seconds per wall-second at a few swarm sizes.

    .venv/bin/python bench/sim_speed.py                 # 100, 1000, 3000 viewers x 60 s
    .venv/bin/python bench/sim_speed.py --sizes 10000 --duration 600

Default live scenario (770 kbit/s, 2 s segments, default capacity mix, 20 % NAT failures).
Prints one line per size and the machine's load average (the figure depends on it).
"""

from __future__ import annotations

import argparse
import os
import time

from swarmcast.sim.engine import Simulation
from swarmcast.sim.scenario import Scenario


def measure(viewers: int, duration: float) -> dict[str, float]:
    """Run one default scenario; wall time, events and speed."""
    sim = Simulation(Scenario(viewers=viewers, duration=duration))
    started = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - started
    viewer_seconds = sum((v.left_at or duration) - v.joined_at for v in sim.viewers)
    return {
        "wall": wall,
        "events": sim.events,
        "speed": viewer_seconds / wall,
        "offload": sim.counters.p2p_bytes
        / max(sim.counters.p2p_bytes + sim.counters.http_bytes, 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,3000", help="viewer counts, comma-separated")
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cpus)")
    for n in (int(x) for x in args.sizes.split(",")):
        r = measure(n, args.duration)
        print(
            f"{n:>7} viewers x {args.duration:g} s: {r['wall']:8.1f} s wall, "
            f"{r['events'] / r['wall']:9.0f} events/s, {r['speed']:8.0f} viewer-s/wall-s, "
            f"offload {100 * r['offload']:.1f} %",
            flush=True,
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
