"""Real aiortc peers negotiate through the signalling server: full SDP one way, trickled
candidates the other way (what a browser does). Needs the test namespace (aioice offers no
loopback candidates)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web
from signaling_helpers import WsClient

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.server import create_app

pytestmark = pytest.mark.netns


def split_candidates(sdp: str) -> tuple[str, list[str]]:
    """An SDP without its a=candidate lines, and those lines (as trickle ICE would send)."""
    lines = sdp.splitlines()
    cands = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
    rest = [ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(rest) + "\r\n", cands


async def test_aiortc_peers_connect_through_the_server_with_trickled_candidates(
    test_host: str,
) -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.sdp import candidate_from_sdp

    app = create_app(SignalingConfig(port=0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, test_host, 0).start()
    url = f"http://{test_host}:{runner.addresses[0][1]}/ws"
    config = RTCConfiguration(iceServers=[])
    offerer, answerer = RTCPeerConnection(config), RTCPeerConnection(config)
    try:
        async with aiohttp.ClientSession() as session:
            a = WsClient(await session.ws_connect(url))
            b = WsClient(await session.ws_connect(url))
            await a.hello()
            await b.hello()
            await a.join("rtc")
            assert (await b.join("rtc"))["peers"][0]["peer"] == a.peer

            opened = asyncio.get_running_loop().create_future()
            channel = offerer.createDataChannel("segments")
            channel.on("open", lambda: opened.set_result(True))
            echoed = asyncio.get_running_loop().create_future()
            channel.on("message", echoed.set_result)

            @answerer.on("datachannel")
            def on_channel(ch) -> None:
                ch.on("message", lambda msg: ch.send(b"echo:" + msg))

            # Offerer (b) trickles like a browser: bare SDP, then candidates, then null.
            await offerer.setLocalDescription(await offerer.createOffer())
            bare, cands = split_candidates(offerer.localDescription.sdp)
            assert cands, "aioice gathered no candidate: is the namespace up?"
            await b.send(
                {
                    "type": "signal",
                    "to": a.peer,
                    "swarm": "rtc",
                    "data": {"sdp": {"type": "offer", "sdp": bare}},
                }
            )
            for cand in [*cands, None]:
                init = (
                    None if cand is None else {"candidate": cand, "sdpMid": "0", "sdpMLineIndex": 0}
                )
                await b.send(
                    {"type": "signal", "to": a.peer, "swarm": "rtc", "data": {"candidate": init}}
                )

            got = await a.recv_type("signal")
            assert got["from"] == b.peer and "a=candidate" not in got["data"]["sdp"]["sdp"]
            await answerer.setRemoteDescription(RTCSessionDescription(**got["data"]["sdp"]))
            while (msg := await a.recv_type("signal"))["data"]["candidate"] is not None:
                init = msg["data"]["candidate"]
                cand = candidate_from_sdp(init["candidate"].split(":", 1)[1])
                cand.sdpMid, cand.sdpMLineIndex = init["sdpMid"], init["sdpMLineIndex"]
                await answerer.addIceCandidate(cand)
            # The answerer is aiortc-style: one full SDP with every candidate, no trickle.
            await answerer.setLocalDescription(await answerer.createAnswer())
            await a.send(
                {
                    "type": "signal",
                    "to": b.peer,
                    "swarm": "rtc",
                    "data": {"sdp": {"type": "answer", "sdp": answerer.localDescription.sdp}},
                }
            )
            answer = await b.recv_type("signal")
            await offerer.setRemoteDescription(RTCSessionDescription(**answer["data"]["sdp"]))

            await asyncio.wait_for(opened, 15)
            channel.send(b"hi")
            assert await asyncio.wait_for(echoed, 10) == b"echo:hi"
            await a.ws.close()
            await b.ws.close()
    finally:
        await offerer.close()
        await answerer.close()
        await runner.cleanup()
