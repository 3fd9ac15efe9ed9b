"""Bad input never crashes the server nor leaks state: hypothesis on the hub, garbage on sockets."""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from signaling_helpers import HubDriver, until

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.hub import Close, MemberChange, Send
from swarmcast.signaling.server import SERVER, create_app

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "type",
        "id",
        "swarm",
        "to",
        "data",
        "role",
        "capacity",
        "token",
        "network",
        "client",
        "http_bytes",
        "p2p_bytes",
        "uploaded_bytes",
        "stalls",
        "spare",
        "sdp",
        "candidate",
    ]
)
types = st.sampled_from(["hello", "join", "leave", "signal", "stats", "ping", "nope", ""])
messages = st.builds(
    lambda kind, extra: {"type": kind, **extra},
    types,
    st.dictionaries(field_names, json_values | st.sampled_from(["s1", "s2", "PEER"]), max_size=5),
)
frames = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    json_values.map(json.dumps),
)


def check_outputs(outputs: list) -> None:
    for out in outputs:
        assert isinstance(out, Send | Close | MemberChange)
        if isinstance(out, Send):
            decoded = json.loads(out.data)
            assert isinstance(decoded, dict) and isinstance(decoded.get("type"), str)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), frames, st.floats(0, 20)), max_size=40))
def test_any_frame_sequence_keeps_the_hub_consistent(script) -> None:
    d = HubDriver(max_errors=5, heartbeat_interval=5, heartbeat_timeout=15, hello_timeout=5)
    peers = [d.connect(hello=i % 2 == 0) for i in range(4)]
    for who, frame, advance in script:
        frame = frame.replace("PEER", peers[(who + 1) % 4])
        d.now += advance
        check_outputs(d.send(peers[who], frame))
        check_outputs(d.hub.tick(d.now))
        assert_consistent(d)
    for p in peers:
        d.disconnect(p)
    assert d.hub.connections == {} and d.hub.swarms == {}


def assert_consistent(d: HubDriver) -> None:
    hub = d.hub
    for swarm_id, swarm in hub.swarms.items():
        assert swarm.members, "empty swarms are deleted"
        assert set(swarm.pool.items) == set(swarm.members)
        assert swarm.local == len(swarm.members)
        for peer, member in swarm.members.items():
            assert hub.connections[peer].swarms[swarm_id] is member
    for conn in hub.connections.values():
        for swarm_id in conn.swarms:
            assert conn.id in hub.swarms[swarm_id].members


async def test_a_flood_of_garbage_leaves_the_server_serving_and_empty() -> None:
    app = create_app(SignalingConfig(port=0, max_errors=20, max_message_bytes=4096))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    server = app[SERVER]
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/ws"
    rng = random.Random(3)

    async def attacker(session: aiohttp.ClientSession, n: int) -> None:
        ws = await session.ws_connect(url)
        await ws.send_str('{"type":"hello"}')
        await ws.send_str('{"type":"join","swarm":"s1"}')
        for _ in range(60):
            choice = rng.random()
            if choice < 0.3:
                data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))
                await ws.send_bytes(data)
            elif choice < 0.6:
                await ws.send_str("".join(chr(rng.randrange(32, 0x2FF)) for _ in range(50)))
            elif choice < 0.9:
                junk = {
                    "type": rng.choice(["signal", "join", "stats", "x"]),
                    "swarm": "s1",
                    "to": "A" * rng.randrange(40),
                    "data": {"sdp": rng.random()},
                }
                await ws.send_str(json.dumps(junk))
            else:
                await ws.send_str("[" * 5000)
            if ws.closed:
                return
        await ws.close()

    async with aiohttp.ClientSession() as session:
        results = await asyncio.gather(
            *(attacker(session, i) for i in range(100)), return_exceptions=True
        )
        assert not [
            r
            for r in results
            if isinstance(r, Exception) and not isinstance(r, aiohttp.ClientError | ConnectionError)
        ]
        await until(lambda: not server.hub.connections and not server.hub.swarms, timeout=10)
        assert server.sockets == {} and server.per_ip == {}
        ws = await session.ws_connect(url)  # still serving
        await ws.send_str('{"type":"hello","id":1}')
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "welcome"
        await ws.close()
        errors = server.hub.errors
        assert errors.get("bad-json", 0) > 0 and errors.get("binary-frame", 0) > 0
    await runner.cleanup()
