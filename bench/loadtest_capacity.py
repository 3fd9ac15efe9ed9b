"""How many simulated viewers one machine sustains with `swarmcast loadtest`, and at what QoE.

For each audience size it runs the same scenario twice — P2P (with one Python seed) and the
HTTP-only baseline (``--p2p off``) — against a local origin serving the sample's middle
rendition as simulated live, and prints offload, rebuffering, startup, origin egress and the
workers' event-loop lag. A run whose worker lag p95 exceeds 100 ms is marked invalid by the
load test itself; the capacity is the largest size whose P2P run stayed valid.

Run inside the test namespace (WebRTC needs it)::

    tests/netns-run .venv/bin/python bench/loadtest_capacity.py --viewers 10,30,100

The machine's 1-minute load average is printed with every row (before -> after the run):
other jobs on the same cores make the lag (and so the capacity) worse, and the figures should
be read with it. ``--stock-sack`` adds, for each size, a P2P run with aiortc's own SACK per
DATA packet (``SWARMCAST_SCTP_SACK=every-packet``, docs/peer.md) right after the default one;
``--sctp-chunk 16000`` adds a P2P run with large SCTP chunks between the Python peers (a
load-generator option that changes the wire: its capacity is printed on its own line, never
as the default figure).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ensure_sample(media: Path) -> None:
    """The default ladder (240p/360p/720p), 30 s: the live stream loops over it."""
    from swarmcast.samples.generate import SampleConfig, generate

    generate(media, SampleConfig(duration=30.0), progress=False)


def middle_rendition(media: Path) -> str:
    """Rendition id of the middle variant of the sample's master playlist."""
    lines = (media / "master.m3u8").read_text().splitlines()
    uris = [line for line in lines if line and not line.startswith("#")]
    return uris[len(uris) // 2]


def one_run(
    args: argparse.Namespace,
    viewers: int,
    p2p: bool,
    out: Path,
    *,
    stock_sack: bool = False,
    chunk: int | None = None,
) -> dict:
    """One `swarmcast loadtest` run; returns its report.json (plus the load averages)."""
    cmd = [
        sys.executable, "-m", "swarmcast.cli", "-q", "loadtest", "--no-live", "--no-plots",
        "--media", str(args.media), "--host", args.host, "--rendition", args.rendition,
        "--viewers", str(viewers), "--duration", str(args.duration),
        "--join-spread", str(args.join_spread), "--workers", str(args.workers),
        "--seeds", str(args.seeds if p2p else 0), "--p2p", "on" if p2p else "off",
        "--out", str(out),
    ]  # fmt: skip
    if chunk is not None:
        cmd += ["--sctp-chunk", str(chunk)]
    env = dict(os.environ)
    if stock_sack:
        env["SWARMCAST_SCTP_SACK"] = "every-packet"
    load_before = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode not in (0, 1, 3):
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"loadtest failed with exit code {proc.returncode}")
    report = json.loads((out / "report.json").read_text())
    report["_load"] = (load_before, os.getloadavg()[0])
    return report


def row(viewers: int, mode: str, report: dict) -> str:
    """One line of the table."""
    s = report["summary"]
    lags = report["generator"]["workers"].values()
    p95 = max(w.get("p95", 0.0) for w in lags) * 1000
    worst = max(w.get("max", 0.0) for w in lags) * 1000
    p50 = s["startup"]["p50"]
    return (
        f"| {viewers} | {mode} | {s['offload']:.1%} | {s['rebuffering_ratio']:.3%} | "
        f"{s['stalls']['count']} | {s['startup']['never_started']} | "
        f"{'-' if p50 is None else f'{p50:.2f} s'} | {s['bytes']['origin_egress'] / 1e6:.1f} MB | "
        f"{s['http_only_egress'] / 1e6:.1f} MB | {p95:.0f} / {worst:.0f} ms | "
        f"{'yes' if report['generator']['valid'] else 'NO'} | "
        f"{report['_load'][0]:.1f} -> {report['_load'][1]:.1f} |"
    )


def main() -> None:
    """Parse flags, run the ladder, print the table and the capacity."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--viewers", default="10,30,100", help="audience sizes, comma-separated")
    p.add_argument("--duration", type=float, default=45.0, help="seconds per run")
    p.add_argument("--join-spread", type=float, default=10.0, help="join ramp, seconds")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--seeds", type=int, default=1, help="seeds in the P2P runs")
    p.add_argument("--media", type=Path, default=ROOT / "media" / "loadtest-bench")
    p.add_argument("--host", default=os.environ.get("SWARMCAST_TEST_HOST", "127.0.0.1"))
    p.add_argument("--no-baseline", action="store_true", help="skip the HTTP-only runs")
    p.add_argument(
        "--stock-sack", action="store_true", help="also run P2P with aiortc's SACK per packet"
    )
    p.add_argument(
        "--sctp-chunk", type=int, metavar="BYTES", help="also run P2P with large SCTP chunks"
    )
    args = p.parse_args()
    if os.environ.get("SWARMCAST_NETNS") != "1":
        sys.stderr.write("note: not in the test namespace; P2P cannot connect (tests/netns-run)\n")
    ensure_sample(args.media)
    args.rendition = middle_rendition(args.media)
    print(f"# load average before: {os.getloadavg()}, cores: {os.cpu_count()}")
    print(f"# rendition {args.rendition}, {args.duration:.0f} s live, {args.workers} workers")
    header = (
        "| viewers | mode | offload | rebuffering | stalls | never started | startup p50 | "
        "origin egress | HTTP-only cost | worker lag p95 / max | valid | load avg |"
    )
    print(header)
    print("|---" * 12 + "|")
    capacity = {"default": 0, "chunk": 0}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(v) for v in args.viewers.split(",")):
            # (name, p2p, stock SACK, SCTP chunk, capacity key)
            modes: list[tuple[str, bool, bool, int | None, str | None]] = [
                ("P2P + seed", True, False, None, "default")
            ]
            if args.stock_sack:
                modes.append(("P2P + seed, SACK per packet", True, True, None, None))
            if args.sctp_chunk:
                name = f"P2P + seed, {args.sctp_chunk}-byte SCTP chunks"
                modes.append((name, True, False, args.sctp_chunk, "chunk"))
            if not args.no_baseline:
                modes.append(("HTTP only", False, False, None, None))
            for i, (name, p2p, stock, chunk, key) in enumerate(modes):
                out = Path(tmp) / f"{n}-{i}"
                report = one_run(args, n, p2p, out, stock_sack=stock, chunk=chunk)
                print(row(n, name, report), flush=True)
                if key is not None and report["generator"]["valid"]:
                    capacity[key] = max(capacity[key], n)
    print(f"# load average after: {os.getloadavg()}")
    print(f"# largest audience with worker lag p95 < 100 ms (P2P run): {capacity['default']}")
    if args.sctp_chunk:
        print(f"# the same with {args.sctp_chunk}-byte SCTP chunks: {capacity['chunk']}")


if __name__ == "__main__":
    main()
