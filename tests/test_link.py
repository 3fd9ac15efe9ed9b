"""PeerLink over real aiortc data channels (two peer connections in this process).

ICE needs a non-loopback interface, so these run inside the test namespace:
``tests/netns-run .venv/bin/pytest tests/test_link.py`` (``make test`` does it).
"""

from __future__ import annotations

import asyncio
import random

import pytest

from swarmcast.peer.connection import (
    ConnectionClosed,
    ConnectionConfig,
    DontHaveReceived,
    Event,
    RequestReceived,
    TransferChunk,
    TransferCompleted,
    TransferFailed,
)
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.link import LinkConfig, PeerLink, link_pair
from swarmcast.peer.protocol import ErrorCode
from swarmcast.peer.rtc import connected_pair, ice_server, rtc_configuration

pytestmark = pytest.mark.timeout(60)

SWARM = "swarm-test-0000000000"


def segment(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


class Holder:
    """Serves segments from a dict when asked (what a seed does, minus the scheduler)."""

    def __init__(self, segments: dict[int, bytes]) -> None:
        self.segments = segments
        self.events: list[Event] = []

    def __call__(self, link: PeerLink, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, RequestReceived):
            data = self.segments.get(event.key.number)
            if data is None:
                link.protocol.send_dont_have(event.request_id)
            else:
                link.protocol.send_segment(event.request_id, data)
            link.flush()


async def next_event(link: PeerLink, kind: type, timeout: float = 10.0):
    async with asyncio.timeout(timeout):
        while True:
            event = await link.events.get()
            if isinstance(event, kind):
                return event


async def make_pair(holder: Holder | None = None, link_config: LinkConfig | None = None):
    return await link_pair(
        ConnectionConfig("viewer-a", swarms=[SWARM]),
        ConnectionConfig("seed-b", swarms=[SWARM]),
        on_event_b=holder,
        link_config=link_config,
    )


@pytest.mark.netns
async def test_handshake_over_a_real_channel():
    a, b = await make_pair()
    try:
        assert a.hello.result().peer_id == "seed-b"
        assert b.hello.result().peer_id == "viewer-a"
        assert a.hello.result().swarms == (SWARM,)
        assert a.protocol.request_slots > 0
    finally:
        await asyncio.gather(a.close(), b.close())
    assert a.closed.result().by_peer is False


@pytest.mark.netns
async def test_two_megabyte_segment_arrives_intact():
    data = segment(2 * 1024 * 1024, 3)
    a, b = await make_pair(Holder({42: data}))
    try:
        request_id = a.protocol.request(SWARM, SegmentKey.media(42))
        a.flush()
        done = await next_event(a, TransferCompleted)
        assert done.request_id == request_id
        assert done.total_size == len(data) and done.data == data
        assert b.stats.bytes_sent > len(data)  # framing overhead on top
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.netns
async def test_interleaved_transfers_share_the_link():
    sizes = {1: 700_000, 2: 300_000, 3: 1_000_000, 4: 65_527 * 3 + 5}
    segments = {n: segment(size, n) for n, size in sizes.items()}
    # A small channel buffer, so the protocol's round robin decides the order on the wire
    # rather than whoever asked first filling 1 MiB of buffer.
    config = LinkConfig(high_watermark=128 * 1024, low_watermark=32 * 1024)
    a, b = await make_pair(Holder(segments), link_config=config)
    try:
        ids = {a.protocol.request(SWARM, SegmentKey.media(n)): n for n in sizes}
        a.flush()
        received: dict[int, bytes] = {}
        chunk_order: list[int] = []
        async with asyncio.timeout(20):
            while len(received) < len(sizes):
                event = await a.events.get()
                if isinstance(event, TransferChunk):
                    chunk_order.append(event.request_id)
                elif isinstance(event, TransferCompleted):
                    received[ids[event.request_id]] = event.data
        assert received == segments
        # Round robin: every transfer got chunks through before the first one finished.
        first = chunk_order[0]
        last_of_first = len(chunk_order) - 1 - chunk_order[::-1].index(first)
        assert len(set(chunk_order[:last_of_first])) == len(sizes)
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.netns
async def test_missing_segment_is_answered_dont_have():
    a, b = await make_pair(Holder({}))
    try:
        a.protocol.request(SWARM, SegmentKey.media(7))
        a.flush()
        await next_event(a, DontHaveReceived)
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.netns
async def test_garbage_closes_the_sender():
    a, b = await make_pair()
    a.channel.send(b"\x00not a frame")  # bypass the protocol: a misbehaving peer
    closed_b = await asyncio.wait_for(b.closed, 10)
    assert closed_b.by_peer is False and closed_b.code == ErrorCode.UNKNOWN_TYPE
    event = await next_event(a, ConnectionClosed)
    assert event.by_peer is True and event.code == ErrorCode.UNKNOWN_TYPE
    await asyncio.gather(a.wait_closed(), b.wait_closed())
    assert a.channel.readyState in ("closing", "closed")
    assert a.pc.connectionState == "closed" and b.pc.connectionState == "closed"


@pytest.mark.netns
async def test_text_message_is_malformed():
    a, b = await make_pair()
    a.channel.send("hello?")
    closed_b = await asyncio.wait_for(b.closed, 10)
    assert closed_b.code == ErrorCode.MALFORMED
    event = await next_event(a, ConnectionClosed)
    assert event.code == ErrorCode.MALFORMED
    await asyncio.gather(a.wait_closed(), b.wait_closed())


@pytest.mark.netns
async def test_peer_vanishing_fails_open_requests():
    a, b = await make_pair(Holder({}))  # B never answers: its holder is replaced below
    b._on_event = lambda link, event: None
    request_id = a.protocol.request(SWARM, SegmentKey.media(1))
    a.flush()
    await asyncio.sleep(0.2)
    await b.pc.close()  # no ERROR frame: the transport just goes away
    failed = await next_event(a, TransferFailed)
    assert failed.request_id == request_id
    closed = await next_event(a, ConnectionClosed)
    assert closed.by_peer is True and closed.code is None
    await asyncio.gather(a.wait_closed(), b.close())


@pytest.mark.netns
async def test_backpressure_bounds_the_channel_buffer():
    config = LinkConfig(high_watermark=128 * 1024, low_watermark=32 * 1024)
    data = segment(2 * 1024 * 1024, 9)
    a, b = await make_pair(Holder({5: data}), link_config=config)
    try:
        peak_buffered = 0
        peak_pending = 0

        async def sample() -> None:
            nonlocal peak_buffered, peak_pending
            while True:
                peak_buffered = max(peak_buffered, b.channel.bufferedAmount)
                peak_pending = max(peak_pending, b.protocol.pending_bytes)
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        a.protocol.request(SWARM, SegmentKey.media(5))
        a.flush()
        done = await next_event(a, TransferCompleted, timeout=20)
        sampler.cancel()
        assert done.data == data
        # Never more than the watermark plus one frame in the channel; the rest waited in
        # the protocol (where a CANCEL would drop it at once).
        assert peak_buffered <= config.high_watermark + 65536
        assert peak_pending > 1024 * 1024
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.mark.netns
async def test_failing_event_handler_closes_the_link_not_the_loop():
    def broken(link: PeerLink, event: Event) -> None:
        if isinstance(event, RequestReceived):
            raise RuntimeError("bug in the application")

    a, b = await make_pair()
    b._on_event = broken
    a.protocol.request(SWARM, SegmentKey.media(1))
    a.flush()
    closed = await next_event(a, ConnectionClosed)
    assert closed.by_peer and closed.code == ErrorCode.GOING_AWAY
    await asyncio.gather(a.wait_closed(), b.wait_closed())


@pytest.mark.netns
async def test_clean_shutdown_leaves_no_tasks():
    before = asyncio.all_tasks()
    data = segment(256 * 1024, 1)
    a, b = await make_pair(Holder({1: data}))
    a.protocol.request(SWARM, SegmentKey.media(1))
    a.flush()
    await next_event(a, TransferCompleted)
    await asyncio.gather(a.close(), b.close())
    await asyncio.sleep(0.1)  # let aiortc's own callbacks settle
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert left == [], [t.get_coro() for t in left]


def test_configuration_never_uses_the_default_stun_server():
    assert rtc_configuration().iceServers == []
    config = rtc_configuration(
        [{"urls": "turn:198.18.0.1:3478", "username": "u", "credential": "p"}]
    )
    assert config.iceServers[0].urls == ["turn:198.18.0.1:3478"]
    with pytest.raises(ValueError, match="urls"):
        ice_server({"url": "stun:x"})
    with pytest.raises(ValueError, match="stun:"):
        ice_server({"urls": ["http://x"]})


@pytest.mark.netns
async def test_setup_is_fast_without_stun():
    # With aiortc's default (public STUN) configuration, gathering waits for the STUN timeout
    # in the namespace: 9.3 s measured. Without ICE servers it takes tens of milliseconds.
    started = asyncio.get_running_loop().time()
    (pc_a, _), (pc_b, _) = await connected_pair()
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.gather(pc_a.close(), pc_b.close())
    assert elapsed < 2.0


def test_link_config_is_checked():
    with pytest.raises(ValueError, match="low_watermark"):
        LinkConfig(high_watermark=10, low_watermark=10)
