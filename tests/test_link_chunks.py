"""SCTP tuning in peer/rtc.py: large chunks between opted-in Python peers, delayed SACKs.

The SDP helpers are pure; the transfers run over real aiortc channels in the test namespace
and look at the DTLS transports' own packet counters, so a setting that silently did nothing
fails here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest
from aiortc import RTCPeerConnection

from swarmcast.peer.rtc import (
    LARGE_CHUNK_MAX,
    accept_large_records,
    advertise_large_chunks,
    advertised_chunk,
    create_peer_connection,
    install_delayed_sack,
    send_large_chunks,
    wait_open,
)

from .conftest import IN_NETNS

needs_netns = pytest.mark.skipif(not IN_NETNS, reason="WebRTC needs tests/netns-run")

SDP = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"


def test_advertised_size_round_trips_and_keeps_line_endings() -> None:
    sdp = advertise_large_chunks(SDP, 16000)
    assert sdp.startswith(SDP) and sdp.endswith("a=x-swarmcast-sctp-chunk:16000\r\n")
    assert advertised_chunk(sdp) == 16000
    unix = advertise_large_chunks(SDP.replace("\r\n", "\n").rstrip("\n"), 4000)
    assert "\r" not in unix and advertised_chunk(unix) == 4000


@pytest.mark.parametrize(
    "line", ["", "a=x-swarmcast-sctp-chunk:1200\r\n", "a=x-swarmcast-sctp-chunk:99999\r\n"]
)
def test_missing_or_out_of_range_offers_are_ignored(line: str) -> None:
    assert advertised_chunk(SDP + line) is None


@pytest.mark.parametrize("size", [1200, LARGE_CHUNK_MAX + 1, 0, "16000"])
def test_bad_sizes_are_refused(size: object) -> None:
    with pytest.raises(ValueError, match="chunk size"):
        advertise_large_chunks(SDP, size)  # type: ignore[arg-type]


async def _pair(large: bool) -> tuple[RTCPeerConnection, RTCPeerConnection, object, object]:
    a, b = create_peer_connection(), create_peer_connection()
    incoming: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    b.on("datachannel", lambda ch: incoming.done() or incoming.set_result(ch))
    channel = a.createDataChannel("t", ordered=True)
    if large:
        accept_large_records(a)
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    if large:
        accept_large_records(b)
    await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)
    await wait_open(channel, 10)
    remote = await asyncio.wait_for(incoming, 10)
    if large:
        assert send_large_chunks(a, 16000) and send_large_chunks(b, 16000)
    return a, b, channel, remote


async def _transfer(channel: object, remote: object, total: int) -> tuple[str, str]:
    sent, got = hashlib.sha256(), hashlib.sha256()
    received = 0
    done = asyncio.get_running_loop().create_future()

    def on_message(message: bytes) -> None:
        nonlocal received
        got.update(message)
        received += len(message)
        if received >= total and not done.done():
            done.set_result(None)

    remote.on("message", on_message)  # type: ignore[attr-defined]
    for _ in range(total // 65536):
        payload = os.urandom(65536)
        sent.update(payload)
        channel.send(payload)  # type: ignore[attr-defined]
    await asyncio.wait_for(done, 30)
    return sent.hexdigest(), got.hexdigest()


def _sent(pc: RTCPeerConnection) -> tuple[int, int]:
    """(packets, bytes) the DTLS transport sent (aiortc's counters; pc.getStats() covers RTP
    only)."""
    assert pc.sctp is not None
    stats = pc.sctp.transport._get_stats()
    transport = next(s for s in stats.values() if s.type == "transport")
    return transport.packetsSent, transport.bytesSent


@needs_netns
@pytest.mark.parametrize("large", [False, True])
async def test_bytes_arrive_intact_in_standard_or_large_packets(large: bool) -> None:
    a, b, channel, remote = await _pair(large)
    try:
        sent, got = await _transfer(channel, remote, 4 * 1024 * 1024)
        assert sent == got
        packets, nbytes = _sent(a)
        per_packet = nbytes / packets
        if large:
            assert per_packet > 8000  # most packets carry a 16,000-byte chunk
        else:
            assert per_packet < 1300  # aiortc's own 1,200-byte chunks
    finally:
        await asyncio.gather(a.close(), b.close())


@needs_netns
async def test_delayed_sack_halves_the_receivers_packets() -> None:
    assert install_delayed_sack()
    a, b, channel, remote = await _pair(False)
    try:
        sent, got = await _transfer(channel, remote, 4 * 1024 * 1024)
        assert sent == got
        acks, _ = _sent(b)
        data, _ = _sent(a)
        # One SACK per DATA packet would make these equal; every second packet: about half.
        assert acks < 0.8 * data  # measured: ~0.62 delayed, ~0.93 stock
    finally:
        await asyncio.gather(a.close(), b.close())
