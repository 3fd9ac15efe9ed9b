"""Throughput of the peer wire codec and of a whole sans-IO link, in MB/s of payload.

Three figures, measured in one run on this machine:
- anchor: copying 64 KiB buffers (``bytes(memoryview)``), the floor any codec pays once;
- codec: encode + decode of 64 KiB DATA frames (``protocol.encode`` / ``protocol.decode``);
- link: a 2 MB segment through PeerProtocol.send_segment -> data_to_send -> receive ->
  TransferCompleted, i.e. chunking, framing, validation and reassembly together.

Run: .venv/bin/python bench/protocol_codec.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from swarmcast.peer.connection import ConnectionConfig, PeerProtocol, TransferCompleted
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.protocol import MAX_DATA_PAYLOAD, Data, Role, decode, encode

MB = 1_000_000


def rate(work: Callable[[], int], seconds: float) -> float:
    """Payload MB/s of ``work`` (which returns the payload bytes it moved), best of 3."""
    best = 0.0
    for _ in range(3):
        moved, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            moved += work()
        best = max(best, moved / elapsed / MB)
    return best


def copy_anchor() -> Callable[[], int]:
    view = memoryview(bytes(range(256)) * (MAX_DATA_PAYLOAD // 256 + 1))[:MAX_DATA_PAYLOAD]

    def work() -> int:
        for _ in range(100):
            bytes(view)
        return 100 * MAX_DATA_PAYLOAD

    return work


def codec() -> Callable[[], int]:
    message = Data(7, 123_456, bytes(MAX_DATA_PAYLOAD))

    def work() -> int:
        for _ in range(100):
            decode(encode(message))
        return 100 * MAX_DATA_PAYLOAD

    return work


def link(segment_size: int = 2_000_000) -> Callable[[], int]:
    viewer = PeerProtocol(ConnectionConfig("viewer", ("s",)))
    seed = PeerProtocol(ConnectionConfig("seed", ("s",), role=Role.SEED))
    for frame in viewer.data_to_send():
        seed.receive(frame)
    for frame in seed.data_to_send():
        viewer.receive(frame)
    segment = bytes(segment_size)

    def work() -> int:
        rid = viewer.request("s", SegmentKey.media(1))
        for frame in viewer.data_to_send():
            seed.receive(frame)
        seed.send_segment(rid, segment)
        done = False
        for frame in seed.data_to_send():
            for event in viewer.receive(frame):
                done = done or isinstance(event, TransferCompleted)
        assert done
        return segment_size

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per figure")
    args = parser.parse_args()
    anchor = rate(copy_anchor(), args.seconds)
    codec_rate = rate(codec(), args.seconds)
    link_rate = rate(link(), args.seconds)
    rows = [
        ("anchor  bytes() copy of 64 KiB", anchor),
        ("codec   encode+decode 64 KiB DATA", codec_rate),
        ("link    2 MB segment, send -> complete", link_rate),
    ]
    for label, value in rows:
        ratio = "" if value is anchor else f"  ({anchor / value:.1f}x the anchor's time)"
        print(f"{label:40s} {value:8.0f} MB/s{ratio}")


if __name__ == "__main__":
    main()
