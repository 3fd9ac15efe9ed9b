"""Segment transfer throughput over one aiortc data channel, with and without the protocol.

Two aiortc peer connections in one process, connected over the test namespace's veth pair
(ICE needs a non-loopback interface). For each event loop (asyncio, then uvloop):

1. **raw** (the anchor): 64 KiB messages written straight to the channel, with the same
   bufferedAmount watermarks PeerLink uses, until the receiver has every byte;
2. **protocol**: a viewer PeerLink requests 2 MB segments from a holder PeerLink (a few
   outstanding at once, as the scheduler would), reassembled and delivered as TransferCompleted.

It prints MB/s (10^6 bytes/s) of both and the protocol's ratio to the raw figure measured in
the same run. Run it inside the namespace:

    tests/netns-run .venv/bin/python bench/link_throughput.py [--megabytes 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from swarmcast.peer.connection import (
    ConnectionConfig,
    Event,
    RequestReceived,
    TransferCompleted,
)
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.link import LinkConfig, PeerLink, link_pair
from swarmcast.peer.rtc import connected_pair
from swarmcast.runtime import run, uvloop_available

SWARM = "bench-swarm"
SEGMENT_SIZE = 2_000_000
CHUNK = 65536


async def raw_throughput(total: int) -> float:
    """MB/s of raw 64 KiB messages over one channel (the anchor)."""
    (pc_a, ch_a), (pc_b, ch_b) = await connected_pair()
    config = LinkConfig()
    received = 0
    done = asyncio.get_running_loop().create_future()

    def on_message(message: bytes) -> None:
        nonlocal received
        received += len(message)
        if received >= total and not done.done():
            done.set_result(None)

    ch_b.on("message", on_message)
    ch_a.bufferedAmountLowThreshold = config.low_watermark
    payload = os.urandom(CHUNK)
    sent = 0

    def pump() -> None:
        nonlocal sent
        while sent < total and ch_a.bufferedAmount < config.high_watermark:
            ch_a.send(payload)
            sent += CHUNK

    ch_a.on("bufferedamountlow", pump)
    started = time.perf_counter()
    pump()
    await done
    elapsed = time.perf_counter() - started
    await asyncio.gather(pc_a.close(), pc_b.close())
    return total / elapsed / 1e6


async def protocol_throughput(total: int, outstanding: int) -> float:
    """MB/s of 2 MB segments requested and reassembled through PeerLink."""
    data = os.urandom(SEGMENT_SIZE)
    count = max(1, total // SEGMENT_SIZE)

    def serve(link: PeerLink, event: Event) -> None:
        if isinstance(event, RequestReceived):
            link.protocol.send_segment(event.request_id, data)
            link.flush()

    viewer, holder = await link_pair(
        ConnectionConfig("viewer", swarms=[SWARM]),
        ConnectionConfig("holder", swarms=[SWARM]),
        on_event_b=serve,
    )
    next_number = 0
    completed = 0
    started = time.perf_counter()

    def ask() -> None:
        nonlocal next_number
        while next_number < count and viewer.protocol.request_slots > 0:
            active = next_number - completed
            if active >= outstanding:
                break
            viewer.protocol.request(SWARM, SegmentKey.media(next_number))
            next_number += 1
        viewer.flush()

    ask()
    while completed < count:
        event = await viewer.events.get()
        if isinstance(event, TransferCompleted):
            if len(event.data) != SEGMENT_SIZE:
                raise RuntimeError("segment arrived truncated")
            completed += 1
            ask()
    elapsed = time.perf_counter() - started
    await asyncio.gather(viewer.close(), holder.close())
    return count * SEGMENT_SIZE / elapsed / 1e6


async def measure(total: int, repeat: int, outstanding: int) -> tuple[list[float], list[float]]:
    raw, proto = [], []
    for _ in range(repeat):
        raw.append(await raw_throughput(total))
        proto.append(await protocol_throughput(total, outstanding))
    return raw, proto


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=64, help="data per measurement (MB)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per loop (median shown)")
    parser.add_argument("--outstanding", type=int, default=4, help="requests in flight")
    args = parser.parse_args()
    if os.environ.get("SWARMCAST_NETNS") != "1":
        print("run inside the test namespace: tests/netns-run .venv/bin/python", sys.argv[0])
        return 2
    total = args.megabytes * 1_000_000
    loops = [("asyncio", False)] + ([("uvloop", True)] if uvloop_available() else [])
    print(f"{args.megabytes} MB per run, {args.repeat} runs (raw and protocol alternate)")
    print("MB/s (10^6 B/s): median [min-max]; ratio = protocol median / raw median")
    print(f"{'loop':8} {'raw channel':>20} {'protocol':>20} {'ratio':>6}")
    for name, use_uvloop in loops:
        raw, proto = run(measure(total, args.repeat, args.outstanding), use_uvloop=use_uvloop)
        raw_mbps, proto_mbps = statistics.median(raw), statistics.median(proto)
        print(f"{name:8} {_spread(raw):>20} {_spread(proto):>20} {proto_mbps / raw_mbps:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
