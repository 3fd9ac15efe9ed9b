"""Load generator for ``swarmcast signal``: thousands of WebSocket peers doing join/relay/stats.

Peers are raw asyncio protocols with a hand-written RFC 6455 client (zero masking key, frames
built by concatenation) so one generator core can drive a server core: an aiohttp client per
peer would cost the generator more CPU than the server spends relaying.

Workload, per connection: ``hello``, ``join`` of swarm ``s<i // swarm_size>``, then signals to
random members of its swarm at an offered aggregate rate that steps up: ~82 % trickled ICE
candidates (~280 B), ~18 % SDP offers (~940 B) each answered by the receiver with an SDP answer,
plus one ``stats`` report per peer every ``--stats-interval`` seconds. Each relayed message
carries its send time, so the one-way relay latency (generator -> server -> generator, same
clock) is measured (sampled on one delivery in ``--latency-every``).

Prints one row per offered rate: delivered relays/s, server CPU share, relays per server
CPU-second, p50/p99 latency; and server RSS per 1k connected peers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

CANDIDATE = (
    "candidate:842163049 1 udp 1677729535 198.18.0.{host} {port} typ srflx raddr 0.0.0.0 "
    "rport 0 generation 0 ufrag EsAw network-id 1 network-cost 10 ts:{ts}"
)
SDP_BODY = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    + (
        "a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n"
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\na=mid:0\r\n"
        "a=sctp-port:5000\r\na=max-message-size:262144\r\n"
    )
    * 2
)

_TS = re.compile(rb"ts:(\d+)")


def frame(payload: bytes) -> bytes:
    """A masked client text frame with the all-zero key (payload needs no XOR)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


@dataclass
class Totals:
    """Counters of one measurement window."""

    sent: int = 0
    relayed: int = 0
    answers: int = 0
    errors: int = 0
    closes: int = 0
    latencies: list[float] = field(default_factory=list)


class Peer(asyncio.Protocol):
    """One signalling client."""

    def __init__(self, gen: Generator, index: int) -> None:
        self.gen = gen
        self.index = index
        global_index = index * gen.args.stride + gen.args.offset
        self.swarm = f"s{global_index // gen.args.swarm_size}"
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.peer_id = ""
        self.ready = asyncio.get_running_loop().create_future()
        self.stats = [0, 0]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        host = self.gen.host_header
        request = (
            f"GET {self.gen.path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        transport.write(request.encode())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.gen.window.closes += 1
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"peer {self.index} lost: {exc}"))

    def send(self, message: dict) -> None:
        assert self.transport is not None
        self.transport.write(frame(orjson.dumps(message)))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:80]).decode(errors="replace")))
                self.transport.close()  # type: ignore[union-attr]
                return
            del buf[: end + 4]
            self.upgraded = True
            self.send({"type": "hello"})
        pos, size = 0, len(buf)
        while size - pos >= 2:
            opcode, n = buf[pos] & 0x0F, buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < n:
                break
            if opcode == 1:
                self.on_text(bytes(buf[start : start + n]))
            elif opcode == 8:
                self.gen.window.closes += 1
            pos = start + n
        del buf[:pos]

    def on_text(self, raw: bytes) -> None:
        gen = self.gen
        if raw.startswith(b'{"type":"signal"'):
            sent_ns = int(_TS.search(raw, raw.rfind(b"ts:")).group(1))  # type: ignore[union-attr]
            w = gen.window
            w.relayed += 1
            if w.relayed % gen.args.latency_every == 0:
                w.latencies.append((time.monotonic_ns() - sent_ns) / 1e6)
            if b'"type":"offer"' in raw:
                msg = orjson.loads(raw)
                w.answers += 1
                w.sent += 1
                self.send(gen.sdp_message("answer", msg["from"], self.swarm))
            return
        msg = orjson.loads(raw)
        kind = msg["type"]
        if kind == "welcome":
            self.peer_id = msg["peer"]
            self.send({"type": "join", "swarm": self.swarm})
        elif kind == "joined":
            gen.members.setdefault(self.swarm, []).append(self.peer_id)
            self.ready.set_result(None)
        elif kind == "error":
            gen.window.errors += 1
            if gen.window.errors <= 5:
                sys.stderr.write(f"error from server: {msg}\n")


class Generator:
    """Owns the peers and the offered load."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        rest = args.url.split("://", 1)[1]
        hostport, _, path = rest.partition("/")
        self.host, _, port = hostport.partition(":")
        self.port = int(port)
        self.host_header = hostport
        self.path = "/" + path
        self.peers: list[Peer] = []
        self.members: dict[str, list[str]] = {}
        self.window = Totals()
        self.rng = random.Random(1)

    def sdp_message(self, kind: str, to: str, swarm: str) -> dict:
        sdp = f"{SDP_BODY}a=x-ts:ts:{time.monotonic_ns()}\r\n"
        return {
            "type": "signal",
            "to": to,
            "swarm": swarm,
            "data": {"sdp": {"type": kind, "sdp": sdp}},
        }

    async def connect_all(self) -> float:
        loop = asyncio.get_running_loop()
        sources = [f"127.0.0.{i}" for i in range(2, 2 + self.args.source_ips)]
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(self.args.connect_concurrency)

        async def one(i: int) -> None:
            async with sem:
                peer = Peer(self, i)
                await loop.create_connection(
                    lambda: peer, self.host, self.port, local_addr=(sources[i % len(sources)], 0)
                )
                self.peers.append(peer)
                await asyncio.wait_for(peer.ready, 60)

        await asyncio.gather(*(one(i) for i in range(self.args.conns)))
        return time.perf_counter() - t0

    def offer_one(self) -> None:
        rng = self.rng
        peer = self.peers[rng.randrange(len(self.peers))]
        members = self.members[peer.swarm]
        if len(members) < 2:
            return
        to = members[rng.randrange(len(members))]
        if to == peer.peer_id:
            return
        if rng.random() < 0.15 / 0.85:  # offers; each triggers an answer
            msg = self.sdp_message("offer", to, peer.swarm)
        else:
            cand = CANDIDATE.format(
                host=peer.index % 250, port=40000 + peer.index % 20000, ts=time.monotonic_ns()
            )
            msg = {
                "type": "signal",
                "to": to,
                "swarm": peer.swarm,
                "data": {"candidate": {"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}},
            }
        peer.send(msg)
        self.window.sent += 1

    def send_stats(self, peer: Peer) -> None:
        peer.stats[0] += 1_000_000
        peer.stats[1] += 3_000_000
        peer.send(
            {
                "type": "stats",
                "swarm": peer.swarm,
                "http_bytes": peer.stats[0],
                "p2p_bytes": peer.stats[1],
                "uploaded_bytes": peer.stats[1],
                "stalls": 0,
            }
        )
        self.window.sent += 1

    async def run_rate(self, rate: float, seconds: float) -> Totals:
        """Offer ``rate`` signals/s (answers come on top) for ``seconds``."""
        self.window = Totals()
        tick = 0.001  # fine-grained pacing: coarse bursts would show up as queueing latency
        stats_per_tick = len(self.peers) * tick / self.args.stats_interval
        carry = stats_carry = 0.0
        next_stats = 0
        start = time.perf_counter()
        nxt = start
        while (now := time.perf_counter()) - start < seconds:
            carry += rate * tick
            while carry >= 1:
                self.offer_one()
                carry -= 1
            stats_carry += stats_per_tick
            while stats_carry >= 1:
                self.send_stats(self.peers[next_stats % len(self.peers)])
                next_stats += 1
                stats_carry -= 1
            nxt += tick
            await asyncio.sleep(max(0.0, nxt - now))
        await asyncio.sleep(0.3)  # let in-flight relays land
        return self.window


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float:
    """Non-idle time of one core, including the softirq time loopback TCP costs there."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return float("nan")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(args: argparse.Namespace) -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    gen = Generator(args)
    rss0 = rss_bytes(args.server_pid) if args.server_pid else 0
    elapsed = await gen.connect_all()
    await asyncio.sleep(1.0)
    rss1 = rss_bytes(args.server_pid) if args.server_pid else 0
    print(
        f"connected {len(gen.peers)} peers in {len(gen.members)} swarms in {elapsed:.1f} s "
        f"({len(gen.peers) / elapsed:.0f} hello+join/s)"
    )
    if args.server_pid:
        per_k = (rss1 - rss0) / len(gen.peers) * 1000 / 2**20
        print(
            f"server RSS {rss0 / 2**20:.1f} MiB idle -> {rss1 / 2**20:.1f} MiB with peers: "
            f"{per_k:.2f} MiB per 1k peers"
        )
    if args.hold:
        print("HOLDING", flush=True)  # run.py measures every process now
        await asyncio.sleep(args.hold)
        return 0
    print(
        f"{'offered/s':>10} {'relayed/s':>10} {'srv cpu':>8} {'relayed/cpu-s':>13} "
        f"{'core busy':>9} {'relayed/core-s':>14} {'p50 ms':>7} {'p99 ms':>7} {'gen cpu':>8} "
        f"{'errors':>6}"
    )
    for rate in args.rates:
        c0 = cpu_seconds(args.server_pid) if args.server_pid else 0.0
        k0 = core_busy_seconds(args.server_core)
        g0 = time.process_time()
        t0 = time.perf_counter()
        w = await gen.run_rate(rate, args.seconds)
        dt = time.perf_counter() - t0
        busy = (cpu_seconds(args.server_pid) - c0) / dt if args.server_pid else float("nan")
        gbusy = (time.process_time() - g0) / dt
        per_cpu = w.relayed / dt / busy if busy else float("nan")
        core = (core_busy_seconds(args.server_core) - k0) / dt
        per_core = w.relayed / dt / core if core else float("nan")
        print(
            f"{rate:>10.0f} {w.relayed / dt:>10.0f} {busy:>8.2f} {per_cpu:>13.0f} "
            f"{core:>9.2f} {per_core:>14.0f} "
            f"{pct(w.latencies, 0.5):>7.2f} {pct(w.latencies, 0.99):>7.2f} {gbusy:>8.2f} "
            f"{w.errors:>6}",
            flush=True,
        )
        if w.latencies and statistics.median(w.latencies) > args.stop_ms:
            print(f"stopping: median latency above {args.stop_ms} ms (server saturated)")
            break
    for peer in gen.peers:
        if peer.transport is not None:
            peer.transport.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="ws://127.0.0.1:8790/ws")
    p.add_argument("--conns", type=int, default=1000, help="concurrent WebSocket peers")
    p.add_argument("--swarm-size", type=int, default=20, help="peers per swarm")
    p.add_argument(
        "--rates",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[5000, 10000, 20000, 30000, 40000],
        help="offered signals/s, comma separated (answers add ~18 %%)",
    )
    p.add_argument("--seconds", type=float, default=5.0, help="duration of each rate step")
    p.add_argument("--stats-interval", type=float, default=10.0, help="seconds between stats")
    p.add_argument("--server-pid", type=int, default=0, help="server pid for CPU/RSS readings")
    p.add_argument("--hold", type=float, default=0.0, help="only connect, then idle N seconds")
    p.add_argument("--offset", type=int, default=0, help="global index of this generator")
    p.add_argument("--stride", type=int, default=1, help="number of generators")
    p.add_argument("--server-core", type=int, default=0, help="core the server is pinned to")
    p.add_argument("--source-ips", type=int, default=8, help="loopback sources 127.0.0.2..")
    p.add_argument("--connect-concurrency", type=int, default=500)
    p.add_argument("--latency-every", type=int, default=7, help="sample 1 latency in N")
    p.add_argument("--stop-ms", type=float, default=200.0, help="stop when p50 exceeds this")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    runner = uvloop.run if uvloop is not None else asyncio.run
    sys.exit(runner(main(arguments)))
