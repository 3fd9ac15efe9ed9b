"""Run the signalling benchmark: server pinned to core 0 (uvloop), load generator on core 1.

    .venv/bin/python bench/signaling/run.py                 # 1k peers, rate steps
    .venv/bin/python bench/signaling/run.py --conns 10000   # 10k peers
    .venv/bin/python bench/signaling/run.py --conns 19000 --rates 5000,10000 --seconds 4
    .venv/bin/python bench/signaling/run.py --nodes 3 --conns 51000   # concurrency + memory

With ``--nodes N`` (N > 1) a throwaway redis-server joins N nodes into one swarm space, one
generator per node holds ``conns / N`` idle peers (swarms span every node), and the total RSS
of the nodes and of Redis is printed. Several processes are needed past ~20k peers here: the
hard open-files limit of this machine is 20000 per process.

Everything stays on loopback. Other arguments go to the load generator (loadgen.py --help).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PY = ROOT / ".venv" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pinned(cmd: list[str], core: str) -> list[str]:
    """Prefix with taskset (which execs, so the pid stays the program's own)."""
    pin = shutil.which("taskset")
    return [pin, "-c", core, *cmd] if pin else cmd


def start_server(port: int, args: argparse.Namespace, core: str, extra: list[str]):
    cmd = [str(PY), "-m", "swarmcast.cli", "-q", "signal", "--port", str(port)]
    cmd += ["--max-connections-per-ip", "200000", "--max-connections", "200000"]
    # The generator multiplexes many peers per process: lift per-connection rate limits.
    cmd += ["--rate-per-second", "100000", "--rate-burst", "100000"]
    cmd += ["--max-peers-per-swarm", "1000000", "--heartbeat-timeout", "600", *extra]
    if args.no_uvloop:
        cmd.append("--no-uvloop")
    return subprocess.Popen(pinned(cmd, core))


def wait_healthy(port: int, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("server did not come up") from None
            time.sleep(0.1)


def run_single(args: argparse.Namespace, rest: list[str]) -> int:
    port = free_port()
    server = start_server(port, args, args.server_core, [])
    try:
        wait_healthy(port, server)
        loop = "asyncio" if args.no_uvloop else "uvloop"
        print(
            f"server pid {server.pid} on core {args.server_core} ({loop}), generator on core "
            f"{args.gen_core}, {os.cpu_count()} cores",
            flush=True,
        )
        gen = [
            str(PY),
            str(HERE / "loadgen.py"),
            "--url",
            f"ws://127.0.0.1:{port}/ws",
            "--conns",
            str(args.conns),
            "--server-pid",
            str(server.pid),
            "--server-core",
            args.server_core,
            *rest,
        ]
        return subprocess.call(pinned(gen, args.gen_core))
    finally:
        server.terminate()
        server.wait(30)


def run_nodes(args: argparse.Namespace, rest: list[str]) -> int:
    """N Redis-joined nodes, one idle generator each; print total RSS per 1k peers."""
    work = Path(tempfile.mkdtemp(prefix="sc-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen] = []
    gens: list[subprocess.Popen] = []
    try:
        ports = [free_port() for _ in range(args.nodes)]
        url = f"redis://127.0.0.1:{redis_port}/0"
        cores = os.cpu_count() or 1
        for i, port in enumerate(ports):
            extra = ["--redis-url", url, "--node-id", f"n{i}"]
            procs.append(start_server(port, args, str(i % cores), extra))
        for port, proc in zip(ports, procs, strict=True):
            wait_healthy(port, proc)
        base = sum(rss_mib(p.pid) for p in procs) + rss_mib(redis.pid)
        per_node = args.conns // args.nodes
        t0 = time.monotonic()
        for i, port in enumerate(ports):
            cmd = [
                str(PY),
                str(HERE / "loadgen.py"),
                "--url",
                f"ws://127.0.0.1:{port}/ws",
                "--conns",
                str(per_node),
                "--hold",
                "900",
                "--offset",
                str(i),
                "--stride",
                str(args.nodes),
                "--connect-concurrency",
                "200",
                *rest,
            ]
            gens.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        for gen in gens:
            for line in gen.stdout:  # type: ignore[union-attr]
                print("  gen:", line.rstrip(), flush=True)
                if line.startswith("HOLDING"):
                    break
            else:
                raise SystemExit("a generator ended before holding its peers")
        elapsed = time.monotonic() - t0
        time.sleep(3)
        health = [wait_healthy(port, proc) for port, proc in zip(ports, procs, strict=True)]
        conns = sum(h["connections"] for h in health)
        nodes_rss = [rss_mib(p.pid) for p in procs]
        redis_rss = rss_mib(redis.pid)
        total = sum(nodes_rss) + redis_rss
        print(
            f"{conns} concurrent peers on {args.nodes} nodes sharing swarms via Redis, "
            f"connected in {elapsed:.0f} s"
        )
        print(
            f"RSS per node: {', '.join(f'{r:.0f}' for r in nodes_rss)} MiB; redis "
            f"{redis_rss:.0f} MiB; total {total:.0f} MiB ({total / 1024:.2f} GiB); "
            f"{(total - base) / conns * 1000:.1f} MiB per 1k peers above idle"
        )
        return 0
    finally:
        for proc in [*gens, *procs, redis]:
            proc.terminate()
        for proc in [*gens, *procs, redis]:
            proc.wait(60)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conns", type=int, default=1000, help="concurrent peers in total")
    p.add_argument("--no-uvloop", action="store_true", help="server on the stock asyncio loop")
    p.add_argument("--server-core", default="0")
    p.add_argument("--gen-core", default="1")
    p.add_argument("--nodes", type=int, default=1, help="N > 1: Redis-joined nodes, idle peers")
    args, rest = p.parse_known_args()
    rest = [a for a in rest if a != "--"]
    return run_nodes(args, rest) if args.nodes > 1 else run_single(args, rest)


if __name__ == "__main__":
    sys.exit(main())
