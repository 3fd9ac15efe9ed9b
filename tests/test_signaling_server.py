"""The aiohttp layer over real sockets on 127.0.0.1: relay, upgrade checks, limits, cleanup."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from signaling_helpers import WsClient, until

from swarmcast.signaling import messages as m
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.server import SERVER, SignalingServer, create_app

Start = Callable[..., Awaitable[tuple[str, SignalingServer]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def _start(**config: Any) -> tuple[str, SignalingServer]:
        app = create_app(SignalingConfig(port=0, **config))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}", app[SERVER]

    yield _start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def client(session: aiohttp.ClientSession, base: str, **headers: str) -> WsClient:
    return WsClient(await session.ws_connect(base + "/ws", headers=headers))


OFFER = {"sdp": {"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 200}}


async def test_two_peers_meet_and_exchange_offer_answer_and_trickled_candidates(
    start: Start, session: aiohttp.ClientSession
) -> None:
    base, _ = await start()
    a, b = await client(session, base), await client(session, base)
    await a.hello()
    await b.hello(network="lan-1")
    assert (await a.join("live-1"))["peers"] == []
    assert (await b.join("live-1"))["peers"] == [{"peer": a.peer, "role": "viewer"}]
    assert (await a.recv_type("peer-joined"))["peer"] == b.peer
    await b.send({"type": "signal", "to": a.peer, "swarm": "live-1", "data": OFFER})
    got = await a.recv()
    assert got == {"type": "signal", "from": b.peer, "swarm": "live-1", "data": OFFER}
    answer = {"sdp": {"type": "answer", "sdp": "v=0\r\n"}}
    await a.send({"type": "signal", "to": b.peer, "swarm": "live-1", "data": answer})
    assert (await b.recv())["data"] == answer
    for i in range(5):
        cand = {"candidate": {"candidate": f"candidate:{i} 1 udp 1 127.0.0.1 {4000 + i} typ host"}}
        await b.send({"type": "signal", "to": a.peer, "swarm": "live-1", "data": cand})
    await b.send({"type": "signal", "to": a.peer, "swarm": "live-1", "data": {"candidate": None}})
    datas = [(await a.recv())["data"] for _ in range(6)]
    assert datas[-1] == {"candidate": None} and len({json.dumps(x) for x in datas}) == 6


async def test_departed_peer_gets_clear_error_and_state_is_freed(
    start: Start, session: aiohttp.ClientSession
) -> None:
    base, server = await start()
    a, b = await client(session, base), await client(session, base)
    await a.hello()
    await b.hello()
    await a.join()
    await b.join()
    gone = b.peer
    await b.ws.close()
    assert (await a.recv_type("peer-left"))["peer"] == gone
    await a.send({"type": "signal", "to": gone, "swarm": "s1", "data": OFFER, "id": 9})
    err = await a.recv()
    assert (err["code"], err["ref"]) == ("unknown-peer", 9)
    await a.ws.close()
    await until(lambda: not server.hub.connections and not server.sockets and not server.per_ip)
    assert server.hub.swarms == {}


async def test_http_endpoints(start: Start, session: aiohttp.ClientSession) -> None:
    base, _ = await start()
    a = await client(session, base)
    await a.hello()
    await a.join("s9")
    await a.send({"type": "stats", "swarm": "s9", "http_bytes": 10, "p2p_bytes": 30})
    await a.send({"type": "ping", "id": "sync"})
    await a.recv_type("pong")
    async with session.get(base + "/healthz") as r:
        assert r.status == 200 and (await r.json())["connections"] == 1
    async with session.get(base + "/stats") as r:
        assert (await r.json())["swarms"]["s9"]["offload"] == 0.75
    async with session.get(base + "/metrics") as r:
        text = await r.text()
    assert 'swarmcast_signal_messages_total{type="join"} 1.0' in text
    assert "swarmcast_signal_connections 1.0" in text
    assert "swarmcast_signal_relay_latency_seconds_bucket" in text


async def test_origin_allow_list(start: Start, session: aiohttp.ClientSession) -> None:
    base, _ = await start(allowed_origins=("https://tv.example",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client(session, base, Origin="https://evil.example")
    assert info.value.status == 403
    ok = await client(session, base, Origin="https://tv.example")
    await ok.hello()
    await (await client(session, base)).hello()  # non-browser clients send no Origin


async def test_connections_per_ip_are_capped(start: Start, session: aiohttp.ClientSession) -> None:
    base, server = await start(max_connections_per_ip=2)
    first = [await client(session, base) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await client(session, base)
    assert info.value.status == 429
    await first[0].ws.close()
    await until(lambda: server.per_ip.get("127.0.0.1") == 1)
    await (await client(session, base)).hello()


def test_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    from aiohttp.test_utils import make_mocked_request

    server = SignalingServer(SignalingConfig(trusted_proxies=("10.0.0.0/8",)))
    headers = {"X-Forwarded-For": "203.0.113.9, 10.1.1.1"}
    req = make_mocked_request("GET", "/ws", headers=headers)
    req._transport_peername = ("10.2.2.2", 1234)  # what the socket reports
    assert server.client_address(req) == "203.0.113.9"
    plain = SignalingServer(SignalingConfig())
    assert plain.client_address(req) == "10.2.2.2"


async def test_oversized_and_binary_and_garbage_frames(
    start: Start, session: aiohttp.ClientSession
) -> None:
    base, server = await start(max_message_bytes=4096, max_errors=3)
    big = await client(session, base)
    await big.hello()
    await big.ws.send_str("x" * 5000)
    msg = await big.ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009
    bad = await client(session, base)
    await bad.hello()
    await bad.join()
    await bad.ws.send_bytes(b"\x00\x01")
    assert (await bad.recv())["code"] == "binary-frame"
    await bad.ws.send_str("{nope")
    assert (await bad.recv())["code"] == "bad-json"
    await bad.ws.send_str('{"type":"hello"}')
    msg = await bad.ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, m.CLOSE_TOO_MANY_ERRORS)
    assert msg.extra == "too many errors (last: already-hello)"
    await until(lambda: not server.hub.connections and not server.hub.swarms)


async def test_silent_connections_time_out(start: Start, session: aiohttp.ClientSession) -> None:
    base, server = await start(
        heartbeat_interval=0.2, heartbeat_timeout=0.4, hello_timeout=0.2, tick_interval=0.05
    )
    mute = await client(session, base)
    quiet = await client(session, base)
    await quiet.hello()
    await quiet.join()
    for c in (mute, quiet):
        msg = await c.ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, m.CLOSE_TIMEOUT)
    await until(lambda: not server.hub.connections and not server.hub.swarms)


async def test_shutdown_closes_clients_with_going_away(session: aiohttp.ClientSession) -> None:
    app = create_app(SignalingConfig(port=0))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    c = await client(session, f"http://127.0.0.1:{runner.addresses[0][1]}")
    await c.hello()
    cleanup = asyncio.create_task(runner.cleanup())
    msg = await c.ws.receive(timeout=5)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    await cleanup


async def raw_client(base: str, *frames: dict) -> asyncio.StreamWriter:
    """A bare WebSocket client that sends ``frames`` and then never reads again."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    for message in frames:
        payload = json.dumps(message).encode()
        assert len(payload) < 126
        writer.write(bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload)  # zero mask
    await writer.drain()
    return writer


async def test_a_peer_that_stops_reading_is_dropped_without_blocking_its_senders(
    start: Start, session: aiohttp.ClientSession
) -> None:
    base, server = await start(max_send_buffer=256 * 1024, rate_burst=5000, rate_per_second=5000)
    sender = await client(session, base)
    await sender.hello()
    await sender.join()
    sink_writer = await raw_client(base, {"type": "hello"}, {"type": "join", "swarm": "s1"})
    await until(lambda: len(server.hub.swarms.get("s1", {}).members) == 2)
    (sink,) = set(server.hub.swarms["s1"].members) - {sender.peer}
    big = {"sdp": {"type": "offer", "sdp": "a=" + "x" * 59000}}
    frame = json.dumps({"type": "signal", "to": sink, "swarm": "s1", "data": big})
    for _ in range(2000):  # up to 120 MB: far more than loopback socket buffers absorb
        await sender.ws.send_str(frame)
        await asyncio.sleep(0)
        if sink not in server.hub.connections:
            break
    await until(lambda: sink not in server.hub.connections)
    closes = server.metrics.registry.get_sample_value(
        "swarmcast_signal_closes_total", {"code": str(m.CLOSE_SLOW_CONSUMER)}
    )
    assert closes == 1
    await sender.send({"type": "ping", "id": "still-served"})
    assert (await sender.recv_type("pong"))["id"] == "still-served"
    sink_writer.close()
