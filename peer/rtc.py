"""RTCPeerConnection helpers: configuration from the signalling server, in-process pairs.

swarmcast never uses aiortc's default configuration: ``RTCPeerConnection()`` without one points
at a public STUN server, which sends traffic off the machine and, where that is blocked (the
test namespace), stalls ICE gathering until the STUN timeout (measured: 9.3 s to open a
channel, against 0.036 s with no ICE servers; see docs/testing.md). The ICE server list always
comes from the caller, i.e. from what the signalling server hands out; empty by default.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection

log = logging.getLogger(__name__)

#: Label of the swarmcast data channel (informative only, docs/protocol.md §2).
CHANNEL_LABEL = "swarmcast"


def ice_server(entry: RTCIceServer | Mapping[str, Any]) -> RTCIceServer:
    """An :class:`RTCIceServer` from one entry of a WebRTC-style ``iceServers`` list.

    Accepts ``{"urls": "turn:host:3478", "username": ..., "credential": ...}`` (``urls`` a
    string or a list of strings), as the signalling server sends it; raises ValueError for
    anything else, naming the bad entry.
    """
    if isinstance(entry, RTCIceServer):
        return entry
    if not isinstance(entry, Mapping):
        raise ValueError(f"ICE server entry must be an object, got {type(entry).__name__}")
    urls = entry.get("urls")
    if isinstance(urls, str):
        urls = [urls]
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise ValueError(f"ICE server entry needs 'urls' (a string or list of strings): {entry!r}")
    if not all(u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns") for u in urls):
        raise ValueError(f"ICE server URLs must start with stun:, stuns:, turn: or turns: {urls}")
    username = entry.get("username")
    credential = entry.get("credential")
    return RTCIceServer(urls=urls, username=username, credential=credential)


def rtc_configuration(
    ice_servers: Iterable[RTCIceServer | Mapping[str, Any]] = (),
) -> RTCConfiguration:
    """An :class:`RTCConfiguration` with exactly these ICE servers (none by default)."""
    return RTCConfiguration(iceServers=[ice_server(entry) for entry in ice_servers])


def create_peer_connection(
    ice_servers: Iterable[RTCIceServer | Mapping[str, Any]] = (),
) -> RTCPeerConnection:
    """A peer connection configured with ``ice_servers`` only (never aiortc's default STUN)."""
    return RTCPeerConnection(configuration=rtc_configuration(ice_servers))


async def wait_open(channel: RTCDataChannel, timeout: float) -> None:
    """Wait until ``channel`` is open; raises TimeoutError or ConnectionError if it closes."""
    if channel.readyState == "open":
        return
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()

    def on_open() -> None:
        if not opened.done():
            opened.set_result(None)

    def on_close() -> None:
        if not opened.done():
            opened.set_exception(ConnectionError("data channel closed before opening"))

    channel.once("open", on_open)
    channel.once("close", on_close)
    async with asyncio.timeout(timeout):
        await opened


async def connected_pair(
    *,
    ice_servers: Iterable[RTCIceServer | Mapping[str, Any]] = (),
    label: str = CHANNEL_LABEL,
    timeout: float = 10.0,
) -> tuple[tuple[RTCPeerConnection, RTCDataChannel], tuple[RTCPeerConnection, RTCDataChannel]]:
    """Two connected peer connections in this process, each with its end of one open channel.

    SDP is exchanged in-process (no signalling server): for tests and benchmarks. ICE needs a
    non-loopback interface (aioice never offers 127.0.0.1), so run inside ``tests/netns-run``.
    The channel is reliable and ordered (docs/protocol.md §2). On failure both are closed.
    """
    servers = list(ice_servers)
    offerer, answerer = create_peer_connection(servers), create_peer_connection(servers)
    try:
        async with asyncio.timeout(timeout):
            return await _connect(offerer, answerer, label, timeout)
    except BaseException:
        await asyncio.gather(offerer.close(), answerer.close(), return_exceptions=True)
        raise


async def _connect(
    offerer: RTCPeerConnection, answerer: RTCPeerConnection, label: str, timeout: float
) -> tuple[tuple[RTCPeerConnection, RTCDataChannel], tuple[RTCPeerConnection, RTCDataChannel]]:
    incoming: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()

    @answerer.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        if not incoming.done():
            incoming.set_result(channel)

    channel = offerer.createDataChannel(label, ordered=True)
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)
    await wait_open(channel, timeout)
    remote = await incoming
    await wait_open(remote, timeout)
    return (offerer, channel), (answerer, remote)
