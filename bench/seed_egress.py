"""Seed egress: how many MB/s one Python seed process serves per core, and how many real-time
viewers that is at the sample's bitrates, with and without uvloop.

Run inside the test namespace (WebRTC needs a non-loopback interface)::

    tests/netns-run .venv/bin/python bench/seed_egress.py --viewers 6 --seconds 15

Layout: this process runs the origin (VOD of a generated sample) and the signalling server;
one **seed** process (a real ``PeerAgent`` seed) prefetches every segment, then serves;
``--procs`` **puller** processes hold ``--viewers`` pullers between them. A puller is a real
swarm member (signalling, aiortc data channel, wire protocol) that requests the segments the
seed announced, ``--inflight`` at a time, as fast as they come: the load is bulk, so the figure
is the seed's ceiling, and real-time viewers = ceiling / bitrate. The seed measures its own CPU
time (``getrusage``) and upload bytes over the measurement window, so its core is measured
honestly even though the pullers share the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from swarmcast.peer.agent import AgentConfig, PeerAgent
from swarmcast.peer.connection import (
    BusyReceived,
    ConnectionClosed,
    DontHaveReceived,
    Event,
    HaveReceived,
    HaveSetReceived,
    HelloReceived,
    TransferCompleted,
    TransferFailed,
)
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.link import PeerLink
from swarmcast.peer.protocol import Role
from swarmcast.peer.signaling_client import SignalingClientConfig
from swarmcast.peer.swarm import PeerSwarm, SwarmConfig
from swarmcast.peer.upload import UploadConfig
from swarmcast.runtime import run as run_loop

log = logging.getLogger("bench.seed_egress")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------------ seed


async def seed_main(url: str, signal: str, warmup: float, seconds: float) -> dict[str, Any]:
    config = AgentConfig(
        url=url,
        role=Role.SEED,
        signaling_url=signal,
        cache_bytes=256 * 1024 * 1024,
        upload=UploadConfig(max_concurrent=256, max_queued=1024),
        swarm=SwarmConfig(max_peers=500, min_peers=0, capacity=500, idle_timeout=600.0),
    )
    agent = PeerAgent(config)
    await agent.start()
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.sleep(warmup)
    up0, cpu0, t0 = agent.qoe.uploaded_bytes, _cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    up1, cpu1, t1 = agent.qoe.uploaded_bytes, _cpu(), time.monotonic()
    links = len(agent.swarm.links) if agent.swarm else 0
    await agent.close()
    return {"bytes": up1 - up0, "cpu": cpu1 - cpu0, "wall": t1 - t0, "links": links}


# ---------------------------------------------------------------------------------- puller


class Puller:
    """A swarm member that pulls announced segments from whoever has them, as fast as it can."""

    def __init__(self, signal: str, swarm_id: str, inflight: int) -> None:
        self.swarm_id = swarm_id
        self.inflight = inflight
        self.bytes = 0
        self.have: dict[PeerLink, list[int]] = {}
        self.cursor: dict[PeerLink, int] = {}
        config = SwarmConfig(max_peers=4, min_peers=1, upload_enabled=False)
        self.swarm = PeerSwarm(config, SignalingClientConfig(url=signal), self)

    def link_opened(self, link: PeerLink, hello: HelloReceived) -> None:
        self.have[link] = []
        self.cursor[link] = 0

    def link_event(self, link: PeerLink, event: Event) -> None:
        if isinstance(event, HaveSetReceived) and event.swarm_id == self.swarm_id:
            self.have[link] = list(event.sequences())
        elif isinstance(event, HaveReceived) and event.swarm_id == self.swarm_id:
            self.have.setdefault(link, []).append(event.key.number)
        elif isinstance(event, TransferCompleted):
            self.bytes += len(event.data)
        elif not isinstance(event, TransferFailed | DontHaveReceived | BusyReceived):
            return
        self._request(link)

    def link_closed(self, link: PeerLink, event: ConnectionClosed) -> None:
        self.have.pop(link, None)

    def _request(self, link: PeerLink) -> None:
        seqs = self.have.get(link)
        if not seqs or link.is_closed:
            return
        busy = link.protocol.request_slots
        limit = min(self.inflight, link.protocol.config.max_outbound_requests)
        outstanding = link.protocol.config.max_outbound_requests - busy
        while outstanding < limit and link.protocol.request_slots > 0:
            seq = seqs[self.cursor[link] % len(seqs)]
            self.cursor[link] += 1
            link.protocol.request(self.swarm_id, SegmentKey.media(seq))
            outstanding += 1
        link.flush()


async def puller_main(
    signal: str, swarm_id: str, count: int, inflight: int, warmup: float, seconds: float
) -> dict[str, Any]:
    pullers = [Puller(signal, swarm_id, inflight) for _ in range(count)]
    for p in pullers:
        await p.swarm.start()
        await p.swarm.join(swarm_id)
    await asyncio.sleep(warmup)
    b0 = sum(p.bytes for p in pullers)
    await asyncio.sleep(seconds)
    b1 = sum(p.bytes for p in pullers)
    links = sum(len(p.swarm.links) for p in pullers)
    await asyncio.gather(*(p.swarm.close() for p in pullers))
    return {"bytes": b1 - b0, "links": links}


# ------------------------------------------------------------------------------ orchestrator


async def orchestrate(args: argparse.Namespace, use_uvloop: bool) -> dict[str, Any]:
    from swarmcast.peer.origin_client import OriginClient
    from swarmcast.peer.stream import load_stream
    from swarmcast.samples.origin import OriginConfig, start_origin
    from swarmcast.signaling.config import SignalingConfig
    from swarmcast.signaling.server import create_app

    host = os.environ.get("SWARMCAST_TEST_HOST", "127.0.0.1")
    origin_runner, base = await start_origin(OriginConfig(root=args.sample, host=host, port=0))
    sig_runner = web.AppRunner(create_app(SignalingConfig(host=host, port=0)), access_log=None)
    await sig_runner.setup()
    await web.TCPSite(sig_runner, host, 0).start()
    signal = f"ws://{host}:{sig_runner.addresses[0][1]}/ws"
    url = f"{base}/vod/master.m3u8"
    async with OriginClient() as client:
        stream = await load_stream(client, url)
    rendition = stream.variants[-1]
    me = [sys.executable, __file__]
    loop_flag = [] if use_uvloop else ["--no-uvloop"]
    timing = ["--warmup", str(args.warmup), "--seconds", str(args.seconds)]
    seed = await asyncio.create_subprocess_exec(
        *me, "--role", "seed", "--url", url, "--signal", signal, *loop_flag, *timing,
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert seed.stdout is not None
    await seed.stdout.readline()  # ready: the seed has joined
    await asyncio.sleep(1.0)  # its prefetch of the VOD
    per_proc = [
        args.viewers // args.procs + (i < args.viewers % args.procs) for i in range(args.procs)
    ]
    pullers = [
        await asyncio.create_subprocess_exec(
            *me,
            "--role",
            "puller",
            "--signal",
            signal,
            "--swarm",
            rendition.swarm_id,
            "--count",
            str(n),
            "--inflight",
            str(args.inflight),
            *timing,
            "--warmup",
            str(args.warmup - 1.0),
            stdout=subprocess.PIPE,
        )
        for n in per_proc
        if n > 0
    ]
    outs = await asyncio.gather(*(p.communicate() for p in [seed, *pullers]))
    results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]
    await sig_runner.cleanup()
    await origin_runner.cleanup()
    seed_result = results[0]
    pulled = sum(r["bytes"] for r in results[1:])
    bitrates = [r.bandwidth for r in stream.variants if r.bandwidth]
    return {
        "seed": seed_result,
        "pulled": pulled,
        "bitrates": bitrates,
        "puller_links": sum(r["links"] for r in results[1:]),
    }


def report(name: str, result: dict[str, Any], viewers: int) -> None:
    seed = result["seed"]
    mbps = seed["bytes"] / seed["wall"] / 1e6
    per_core = seed["bytes"] / max(seed["cpu"], 1e-9) / 1e6
    print(
        f"{name:8s} viewers={viewers} links={seed['links']} seed egress {mbps:6.2f} MB/s "
        f"(pullers got {result['pulled'] / seed['wall'] / 1e6:.2f} MB/s), "
        f"seed CPU {seed['cpu'] / seed['wall']:.0%} of a core -> {per_core:6.2f} MB/s per core"
    )
    for bitrate in result["bitrates"]:
        print(
            f"         at {bitrate / 1000:.0f} kbit/s: {per_core * 8e6 / bitrate:8.0f} real-time "
            f"viewers per core ({mbps * 8e6 / bitrate:.0f} served in this run)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=("bench", "seed", "puller"), default="bench")
    parser.add_argument("--viewers", type=int, default=6, help="pullers in total")
    parser.add_argument("--procs", type=int, default=2, help="puller processes")
    parser.add_argument("--inflight", type=int, default=4, help="requests per puller")
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring")
    parser.add_argument("--sample", type=Path, default=None, help="sample dir (default: make one)")
    parser.add_argument("--loops", default="asyncio,uvloop", help="loops to measure")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--url")
    parser.add_argument("--signal")
    parser.add_argument("--swarm")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    use_uvloop = not args.no_uvloop
    if args.role == "seed":
        out = run_loop(
            seed_main(args.url, args.signal, args.warmup, args.seconds), use_uvloop=use_uvloop
        )
        print(json.dumps(out), flush=True)
        return 0
    if args.role == "puller":
        out = run_loop(
            puller_main(
                args.signal, args.swarm, args.count, args.inflight, args.warmup, args.seconds
            ),
            use_uvloop=use_uvloop,
        )
        print(json.dumps(out), flush=True)
        return 0
    if os.environ.get("SWARMCAST_NETNS") != "1":
        print("run inside tests/netns-run (WebRTC needs a non-loopback interface)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        if args.sample is None:
            from swarmcast.samples.generate import Rendition, SampleConfig, generate

            config = SampleConfig(
                duration=20.0,
                segment_duration=2.0,
                fps=15,
                renditions=(Rendition("180p", 320, 180, 300), Rendition("360p", 640, 360, 800)),
            )
            args.sample = generate(Path(tmp) / "sample", config, progress=False)
        for loop in args.loops.split(","):
            result = asyncio.run(orchestrate(args, use_uvloop=loop == "uvloop"))
            report(loop, result, args.viewers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
