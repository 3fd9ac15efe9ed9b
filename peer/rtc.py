"""RTCPeerConnection helpers: configuration from the signalling server, in-process pairs.

swarmcast never uses aiortc's default configuration: ``RTCPeerConnection()`` without one points
at a public STUN server, which sends traffic off the machine and, where that is blocked (the
test namespace), stalls ICE gathering until the STUN timeout (measured: 9.3 s to open a
channel, against 0.036 s with no ICE servers; see docs/testing.md). The ICE server list always
comes from the caller, i.e. from what the signalling server hands out; empty by default.

**Delayed SACK.** aiortc's SCTP answers every DATA packet with its own SACK, so each 1,200-byte
chunk costs two DTLS records, two datagrams and two trips through the Python stack. Every peer
connection made here uses :func:`install_delayed_sack`: the receiver acknowledges every second
packet at once and the odd one two event-loop iterations later (RFC 4960 §6.2 asks for a SACK
at least every second packet and within 200 ms; this is inside both unless the loop itself
lags that much), and at once whenever it sees a gap or a duplicate. It changes no byte format,
only how often SACKs go out, so Chromium and any SCTP stack interoperate. Set
``SWARMCAST_SCTP_SACK=every-packet`` in the environment to keep aiortc's own behaviour (for
before/after measurements).

**Large SCTP chunks (load generator only).** aiortc cuts messages into ~1,200-byte DATA chunks,
one per packet; between two Python peers on one machine, 16,000-byte chunks cost ~9x less CPU
per byte. That changes what goes on the wire (16 KB UDP datagrams, IP-fragmented) and libwebrtc
cannot take it (it caps DTLS packets at 2,048 bytes), so it is negotiated per link: a peer with
the option adds ``a=x-swarmcast-sctp-chunk:SIZE`` to the SDP it sends
(:func:`advertise_large_chunks`; Chromium and aiortc ignore unknown attributes), reads whole
large DTLS records once its DTLS handshake is done (:func:`accept_large_records`), and sends
large chunks (:func:`send_large_chunks`) only to a peer whose SDP carried the attribute, once that
peer's HELLO arrived (the peer reads large records by then: it started to when its DTLS
handshake completed, before any SCTP data). A Chromium peer never sees a packet larger than usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    rtcsctptransport,
)
from aiortc.rtcsctptransport import RTCSctpTransport

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
    """A peer connection configured with ``ice_servers`` only (never aiortc's default STUN),
    with delayed SACKs (module docstring) unless the environment turns them off."""
    if os.environ.get("SWARMCAST_SCTP_SACK", "") != "every-packet":
        install_delayed_sack()
    return RTCPeerConnection(configuration=rtc_configuration(ice_servers))


_stock_send_sack: Callable[[RTCSctpTransport], Awaitable[None]] | None = None
_deferred: set[asyncio.Task[None]] = set()


def install_delayed_sack() -> bool:
    """Make aiortc's SCTP acknowledge every second DATA packet (module docstring), in this
    process, for every association. Idempotent. Returns False, leaving aiortc as it is, when
    its SCTP transport does not have the internals this relies on (another aiortc version)."""
    global _stock_send_sack
    if _stock_send_sack is not None:
        return True
    needed = ("_sack_needed", "_sack_misordered", "_sack_duplicates")
    if not hasattr(RTCSctpTransport, "_send_sack") or not _has_sack_state(needed):
        log.warning("aiortc's SCTP internals changed: SACK per packet kept (slower)")
        return False
    _stock_send_sack = RTCSctpTransport._send_sack
    RTCSctpTransport._send_sack = _send_sack_delayed  # type: ignore[method-assign]
    return True


def _has_sack_state(names: tuple[str, ...]) -> bool:
    # The SACK state is made in __init__, which needs a DTLS transport: look for the names in
    # its code instead of building one.
    code = RTCSctpTransport.__init__.__code__
    return all(name in code.co_names for name in names)


async def _send_sack_delayed(self: RTCSctpTransport) -> None:
    """Stands in for ``RTCSctpTransport._send_sack``, called after each packet that needs one."""
    assert _stock_send_sack is not None
    held = getattr(self, "_swarmcast_unacked", 0) + 1
    if held >= 2 or self._sack_misordered or self._sack_duplicates:
        self._swarmcast_unacked = 0  # type: ignore[attr-defined]
        await _stock_send_sack(self)
        return
    self._swarmcast_unacked = held  # type: ignore[attr-defined]
    if not getattr(self, "_swarmcast_sack_due", False):
        self._swarmcast_sack_due = True  # type: ignore[attr-defined]
        # Two hops (call_soon, then a task) before the odd packet's SACK: packets that arrive
        # meanwhile are covered by it. Measured on one link: 0.62 SACKs per DATA packet, 0.90
        # with the task alone (its first step comes too early), 0.93 stock.
        asyncio.get_running_loop().call_soon(_spawn_late_sack, self)


def _spawn_late_sack(transport: RTCSctpTransport) -> None:
    task = asyncio.get_running_loop().create_task(_late_sack(transport))
    _deferred.add(task)
    task.add_done_callback(_deferred.discard)


async def _late_sack(transport: RTCSctpTransport) -> None:
    assert _stock_send_sack is not None
    transport._swarmcast_sack_due = False  # type: ignore[attr-defined]
    if not transport._sack_needed:
        return  # an every-second-packet SACK covered it meanwhile
    transport._swarmcast_unacked = 0  # type: ignore[attr-defined]
    with contextlib.suppress(ConnectionError):  # closed in between: nothing to acknowledge
        await _stock_send_sack(transport)


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


# ------------------------------------------------------------------ large chunks (load tests)

#: Largest DATA chunk payload: the SCTP packet (28 bytes of headers more) fits one DTLS record.
LARGE_CHUNK_MAX = 16000
#: aiortc's own chunk payload (``USERDATA_MAX_LENGTH``): sizes at or below it change nothing.
STANDARD_CHUNK = 1200
#: SDP attribute offering large chunks; its value is the largest chunk we can receive.
LARGE_CHUNK_ATTRIBUTE = "x-swarmcast-sctp-chunk"
_ATTRIBUTE_RE = re.compile(rf"^a={LARGE_CHUNK_ATTRIBUTE}:(\d{{1,6}})\r?$", re.MULTILINE)
#: Read size for a whole DTLS record (16 KiB of plaintext + header, MAC, padding).
_RECORD_READ = 16384 + 2048
#: aiortc methods that read ``USERDATA_MAX_LENGTH`` (chunking, burst limit, cwnd steps).
_CHUNKED_METHODS = ("_send", "_transmit", "_receive_sack_chunk", "_t3_expired")
_large_classes: dict[int, type[RTCSctpTransport]] = {}


def check_large_chunk(size: int) -> int:
    """``size`` if it is a valid large-chunk setting, else ValueError saying the range."""
    if not (isinstance(size, int) and STANDARD_CHUNK < size <= LARGE_CHUNK_MAX):
        raise ValueError(
            f"SCTP chunk size must be an integer in {STANDARD_CHUNK + 1}..{LARGE_CHUNK_MAX}, "
            f"got {size!r}"
        )
    return size


def advertise_large_chunks(sdp: str, size: int) -> str:
    """``sdp`` with the large-chunk attribute (value ``size``) at the end of its last media
    section (the data channel's: swarmcast's connections carry nothing else)."""
    check_large_chunk(size)
    newline = "\r\n" if "\r\n" in sdp else "\n"
    body = sdp if sdp.endswith(newline) else sdp + newline
    return f"{body}a={LARGE_CHUNK_ATTRIBUTE}:{size}{newline}"


def advertised_chunk(sdp: str) -> int | None:
    """The large chunk size a remote SDP offers, None without a valid attribute."""
    match = _ATTRIBUTE_RE.search(sdp)
    if match is None:
        return None
    size = int(match.group(1))
    return size if STANDARD_CHUNK < size <= LARGE_CHUNK_MAX else None


class _WholeRecords:
    """Stands in for a DTLS transport's ``SSL.Connection``: aiortc reads at most 1,500 bytes
    of a record or of the outgoing datagram; this reads whole records up to 16 KiB."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def recv(self, bufsiz: int, flags: Any = None) -> bytes:
        return self._conn.recv(max(bufsiz, _RECORD_READ))

    def bio_read(self, bufsiz: int) -> bytes:
        return self._conn.bio_read(max(bufsiz, _RECORD_READ))

    def bio_write(self, buf: bytes) -> int:
        return self._conn.bio_write(buf)

    def send(self, buf: bytes, flags: int = 0) -> int:
        return self._conn.send(buf, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def accept_large_records(pc: RTCPeerConnection) -> None:
    """Let ``pc``'s DTLS transport read records up to 16 KiB, from the end of its handshake
    (the handshake itself keeps aiortc's datagram sizes). Call it once ``pc.sctp`` exists
    (after ``createDataChannel`` or ``setRemoteDescription``)."""
    sctp = pc.sctp
    if sctp is None:
        raise ValueError("accept_large_records: the peer connection has no SCTP transport yet")
    dtls = sctp.transport

    def install() -> None:
        ssl = getattr(dtls, "_ssl", None)
        if dtls.state == "connected" and ssl is not None and not isinstance(ssl, _WholeRecords):
            dtls._ssl = _WholeRecords(ssl)

    if dtls.state == "connected":
        install()
    else:
        dtls.on("statechange", install)


def send_large_chunks(pc: RTCPeerConnection, size: int) -> bool:
    """Make ``pc``'s SCTP association send DATA chunks of up to ``size`` bytes from now on.
    Only for a peer that advertised ``size`` or more and reads large records. False (nothing
    changed) when aiortc's internals are not the expected ones."""
    check_large_chunk(size)
    sctp = pc.sctp
    cls = _large_chunk_class(size)
    if sctp is not None and cls is not None and type(sctp) is cls:
        return True
    if sctp is None or cls is None or type(sctp) is not RTCSctpTransport:
        return False
    sctp.__class__ = cls
    return True


def _large_chunk_class(size: int) -> type[RTCSctpTransport] | None:
    """A subclass whose chunking methods are aiortc's own code run with ``size`` as
    ``USERDATA_MAX_LENGTH`` (a copy of the module's globals): no aiortc code is duplicated."""
    cls = _large_classes.get(size)
    if cls is not None:
        return cls
    scope = dict(vars(rtcsctptransport), USERDATA_MAX_LENGTH=size)
    methods: dict[str, Any] = {}
    for name in _CHUNKED_METHODS:
        func = getattr(RTCSctpTransport, name, None)
        if not isinstance(func, types.FunctionType) or (
            "USERDATA_MAX_LENGTH" not in func.__code__.co_names
        ):
            log.warning("aiortc's SCTP internals changed: large chunks unavailable")
            return None
        methods[name] = types.FunctionType(
            func.__code__, scope, func.__name__, func.__defaults__, func.__closure__
        )
    cls = type(f"RTCSctpTransportChunk{size}", (RTCSctpTransport,), methods)
    _large_classes[size] = cls
    return cls
