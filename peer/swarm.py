"""Connections to other peers: WebRTC negotiation through signalling, one link per remote peer.

:class:`PeerSwarm` owns the :class:`SignalingClient` and every :class:`PeerLink` of a peer
process. It decides *who* we are connected to; what flows over the links is the agent's
business (:mod:`swarmcast.peer.agent`), which gets every link event through a
:class:`SwarmListener`.

- **One peer connection and one data channel per remote peer**, covering every swarm both
  take part in: our HELLO lists all our swarms, a swarm joined later is added with JOIN.
- **Who offers**: the newcomer offers to the peers in its ``joined`` sample (aiortc gathers
  every candidate first, so one ``sdp`` signal carries them); trickled ``candidate`` signals
  from browsers are accepted too. Glare (both sides offer at once) is resolved by signalling
  id: the lower id is the polite side and drops its own offer.
- **Identity**: the signalling server hands out a new peer id on every connection, so a link
  is known by the id in its HELLO, which is our *first* signalling id (stable for the life of
  the process). After a signalling reconnect the fresh sample may name peers we are already
  linked with under their new ids; the new link's HELLO reveals it and the newer link is
  closed (both sides agree on which: the one that just opened).
- **Budget**: at most ``max_peers`` links and negotiations; an offer beyond it is answered
  with the signal ``{"busy": "full"}`` (the offerer frees that slot at once), and the peers of
  a sample we had no room for are kept as spares, offered when room appears. Links with no
  useful traffic for ``idle_timeout`` are dropped while the budget is full, and a swarm with
  fewer than ``min_peers`` links asks the server for a fresh sample every
  ``resample_interval``.
- **Bans**: :meth:`PeerSwarm.ban` closes the link with ``ERROR banned`` and refuses that peer
  for ``ban_duration``, logs it at WARNING with the peer's ids and reports the peer to the
  signalling server (``report``; enough distinct reporters get it quarantined there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from swarmcast.peer.connection import (
    ConnectionClosed,
    ConnectionConfig,
    Event,
    HelloReceived,
    PeerProtocol,
)
from swarmcast.peer.link import LinkConfig, PeerLink
from swarmcast.peer.protocol import ErrorCode, Role
from swarmcast.peer.rtc import (
    CHANNEL_LABEL,
    accept_large_records,
    advertise_large_chunks,
    advertised_chunk,
    check_large_chunk,
    create_peer_connection,
    send_large_chunks,
)
from swarmcast.peer.signaling_client import (
    SignalingClient,
    SignalingClientConfig,
    SignalingError,
    Welcome,
)

log = logging.getLogger(__name__)


@dataclass
class SwarmConfig:
    """How many peers to keep and how to treat them."""

    max_peers: int = 10
    """Most links (plus negotiations in progress) at once. Seeds want many more."""
    min_peers: int = 3
    """Below this many links, ask the signalling server for a fresh sample of peers."""
    connect_timeout: float = 10.0
    """Seconds from offer (or received offer) to the peer's HELLO before giving up."""
    resample_interval: float = 5.0
    """Seconds between two requests for a fresh sample of one swarm."""
    idle_timeout: float = 30.0
    """A link with no useful traffic (segments either way) for this long is dropped when the
    budget is full, making room for a peer that may be more useful."""
    ban_duration: float = 600.0
    """Seconds a banned peer is refused (bad data, protocol abuse)."""
    maintenance_interval: float = 1.0
    """Seconds between housekeeping passes (idle links, resampling, expired bans)."""
    role: Role = Role.VIEWER
    """What we announce in HELLO (and to signalling: ``seed`` or ``viewer``)."""
    upload_enabled: bool = True
    """Whether we serve segments (announced in HELLO)."""
    capacity: int | None = None
    """Seeds: viewers offered to serve, told to the signalling server on join."""
    max_inbound_requests: int = 16
    """Requests a peer may have outstanding with us (HELLO ``max_requests``)."""
    link: LinkConfig = field(default_factory=LinkConfig)
    """Flow control of each link."""
    sctp_chunk: int | None = None
    """Load generators only: SCTP DATA chunks of up to this many bytes (1201..16000) on links
    to peers that offer the same in their SDP (swarmcast Python peers with this option), ~9x
    less CPU per byte than aiortc's 1,200; other peers (browsers) get standard packets. It
    changes what goes on the wire (large, IP-fragmented UDP datagrams): None (the default)
    keeps every link standard. See ``swarmcast.peer.rtc``."""

    def __post_init__(self) -> None:
        if self.max_peers < 1 or self.min_peers < 0:
            raise ValueError("SwarmConfig: max_peers must be >= 1 and min_peers >= 0")
        if self.sctp_chunk is not None:
            check_large_chunk(self.sctp_chunk)
        for name in ("connect_timeout", "resample_interval", "idle_timeout", "ban_duration"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SwarmConfig.{name} must be > 0")


class SwarmListener(Protocol):
    """What the agent is told about links. Called synchronously: must not block."""

    def link_opened(self, link: PeerLink, hello: HelloReceived) -> None:
        """A link is usable (HELLO received, not a duplicate, not banned)."""

    def link_event(self, link: PeerLink, event: Event) -> None:
        """Any event of an open link except HELLO and the final ConnectionClosed."""

    def link_closed(self, link: PeerLink, event: ConnectionClosed) -> None:
        """An open link ended; no further events for it."""


@dataclass
class _Negotiation:
    remote: str
    swarm: str
    pc: RTCPeerConnection
    offerer: bool
    answer: asyncio.Future[str]
    channel: asyncio.Future[RTCDataChannel]
    link: PeerLink | None = None
    remote_set: bool = False
    candidates: list[dict[str, Any]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    remote_chunk: int | None = None


class PeerSwarm:
    """The peer-to-peer connections of one peer process (see the module docstring)."""

    def __init__(
        self,
        config: SwarmConfig,
        signaling: SignalingClientConfig,
        listener: SwarmListener,
    ) -> None:
        self.config = config
        self.listener = listener
        self.signaling = SignalingClient(signaling, self)
        self.local_id: str | None = None
        """Our id in HELLO: the first id signalling gave us, kept across reconnects."""
        self.links: dict[str, PeerLink] = {}
        """Open links by the remote peer's HELLO id."""
        self.swarms: list[str] = []
        """Swarm ids we take part in, in the order they were joined."""
        self.banned: dict[str, float] = {}
        """Peer ids (HELLO and signalling) refused until the given monotonic time."""
        self.stats = {"offers": 0, "answers": 0, "failed": 0, "duplicates": 0, "bans": 0}
        """Counters: offers sent, offers answered, negotiations failed, duplicates, bans."""
        self._pending: dict[str, _Negotiation] = {}
        self._link_sig: dict[PeerLink, str] = {}
        self._useful: dict[str, float] = {}
        self._resampled: dict[str, float] = {}
        # Peers of the last sample per swarm that we did not offer to (budget full then):
        # tried when a link fails or is refused, before asking signalling again.
        self._spare: dict[str, list[str]] = {}
        # Offers spawned but not started yet (not in _pending): they count against the budget.
        self._offering: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._closing = False

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self, timeout: float = 10.0) -> None:
        """Connect to signalling and wait for the first welcome (TimeoutError if none)."""
        self.signaling.start()
        await self.signaling.wait_ready(timeout)
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def join(self, swarm_id: str) -> None:
        """Take part in ``swarm_id``: JOIN on every link, then join it at signalling (whose
        sample is connected to). Raises SignalingError if the server refuses."""
        if swarm_id in self.swarms:
            return
        self.swarms.append(swarm_id)
        for link in list(self._link_sig):  # open links and those still negotiating
            if not link.is_closed:
                link.protocol.join(swarm_id)
                link.flush()
        role = "seed" if self.config.role is Role.SEED else "viewer"
        await self.signaling.join(swarm_id, role=role, capacity=self.config.capacity)

    async def close(self) -> None:
        """Close every link (ERROR going_away), every negotiation, and the signalling socket."""
        self._closing = True
        if self._maintenance is not None:
            self._maintenance.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for neg in list(self._pending.values()):
            await self._abandon(neg)
        links = list(self.links.values()) + [k for k in self._link_sig if not k.is_closed]
        await asyncio.gather(
            *(link.close(ErrorCode.GOING_AWAY, "leaving") for link in set(links)),
            return_exceptions=True,
        )
        if self._maintenance is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        await self.signaling.close()

    # ----------------------------------------------------------------------------- policy API

    def touch(self, peer_id: str) -> None:
        """Record useful traffic with ``peer_id`` (keeps the link from being dropped as idle)."""
        self._useful[peer_id] = time.monotonic()

    def ban(self, peer_id: str, reason: str, *, report: str = "bad-data") -> None:
        """Refuse ``peer_id`` for ``ban_duration``, close its link with ERROR banned, and report
        it to the signalling server (``report`` is the reason code sent there)."""
        until = time.monotonic() + self.config.ban_duration
        self.banned[peer_id] = until
        self.stats["bans"] += 1
        link = self.links.get(peer_id)
        sig = self._link_sig.get(link) if link is not None else None
        if sig is not None:
            self.banned[sig] = until
        if sig is not None:
            for swarm in self.signaling.swarms:
                self.signaling.send_report(swarm, sig, report)
        log.warning(
            "banning peer %s (signalling id %s) for %.0fs: %s",
            peer_id,
            sig,
            self.config.ban_duration,
            reason,
        )
        if link is not None and not link.is_closed:
            self._spawn(link.close(ErrorCode.BANNED, reason[:200]))

    def is_banned(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is refused right now."""
        until = self.banned.get(peer_id)
        return until is not None and until > time.monotonic()

    # ------------------------------------------------------------------ SignalingHandler

    def on_welcome(self, welcome: Welcome) -> None:
        """Keep our first id as the HELLO identity (docstring above)."""
        if self.local_id is None:
            self.local_id = welcome.peer_id

    def on_joined(self, swarm: str, peers: list[dict[str, Any]]) -> None:
        """Offer to the sampled peers, seeds first, within the budget; keep the rest as spares
        for when a connection fails or is refused."""
        ordered = sorted(peers, key=lambda p: p.get("role") != "seed")
        self._spare[swarm] = [entry["peer"] for entry in ordered]
        self._offer_spares(swarm)

    def _offer_spares(self, swarm: str) -> None:
        spare = self._spare.get(swarm)
        while spare and self._room() > 0 and swarm in self.swarms and not self._closing:
            remote = spare.pop(0)
            if remote == self.signaling.peer_id or remote in self._pending:
                continue
            if remote in self._offering or self.is_banned(remote):
                continue
            if remote in self._link_sig.values():
                continue
            self._offering.add(remote)
            self._spawn(self._offer(remote, swarm))

    def on_peer_joined(self, swarm: str, peer: str, role: str) -> None:
        """Nothing to do: the newcomer does the connecting."""

    def on_peer_left(self, swarm: str, peer: str) -> None:
        """An unfinished negotiation with a peer that left is abandoned at once."""
        neg = self._pending.get(peer)
        if neg is not None and neg.link is None and neg.task is not None:
            neg.task.cancel()

    def on_signal(self, sender: str, swarm: str, data: dict[str, Any]) -> None:
        """Offers, answers and trickled candidates from other peers."""
        if "sdp" in data and isinstance(data["sdp"], dict):
            sdp = data["sdp"]
            kind, text = sdp.get("type"), sdp.get("sdp")
            if not isinstance(text, str):
                return
            if kind == "offer":
                self._on_offer(sender, swarm, text)
            elif kind == "answer":
                neg = self._pending.get(sender)
                if neg is not None and neg.offerer and not neg.answer.done():
                    neg.answer.set_result(text)
        elif "candidate" in data:
            self._on_candidate(sender, data["candidate"])
        elif "busy" in data:
            neg = self._pending.get(sender)
            if neg is not None and neg.offerer and not neg.answer.done():
                neg.answer.set_exception(ConnectionRefusedError("peer busy: its budget is full"))

    def on_disconnected(self) -> None:
        """Links stay up; the client reconnects and rejoins on its own."""
        log.info("signalling lost; %d peer links stay open", len(self.links))

    # ------------------------------------------------------------------------- negotiation

    def _room(self) -> int:
        return self.config.max_peers - len(self.links) - len(self._pending) - len(self._offering)

    def _on_offer(self, sender: str, swarm: str, sdp: str) -> None:
        if self._closing or self.is_banned(sender) or swarm not in self.swarms:
            return
        existing = self._pending.get(sender)
        if existing is not None:
            mine = self.signaling.peer_id or ""
            if not existing.offerer or mine > sender:
                return  # impolite side of a glare (or a repeated offer): keep ours
            self._spawn(self._abandon(existing))  # polite: drop our offer, answer theirs
        elif self._room() <= 0:
            # Say so at once: the offerer moves on to another peer instead of waiting for its
            # connect timeout with a slot of its budget taken.
            log.debug("offer from %s refused: %d links, budget full", sender, len(self.links))
            self.signaling.signal(sender, swarm, {"busy": "full"})
            return
        self._spawn(self._answer(sender, swarm, sdp))

    def _on_candidate(self, sender: str, candidate: object) -> None:
        neg = self._pending.get(sender)
        if neg is None or not isinstance(candidate, dict):
            return  # null = end of candidates; aiortc needs nothing for it
        if neg.remote_set:
            self._spawn(_add_candidate(neg.pc, candidate))
        elif len(neg.candidates) < 64:
            neg.candidates.append(candidate)

    def _new_negotiation(self, remote: str, swarm: str, offerer: bool) -> _Negotiation:
        loop = asyncio.get_running_loop()
        neg = _Negotiation(
            remote,
            swarm,
            create_peer_connection(self._ice_servers()),
            offerer,
            loop.create_future(),
            loop.create_future(),
        )
        neg.task = asyncio.current_task()  # type: ignore[assignment]
        self._pending[remote] = neg
        return neg

    async def _offer(self, remote: str, swarm: str) -> None:
        self._offering.discard(remote)
        neg = self._new_negotiation(remote, swarm, offerer=True)
        self.stats["offers"] += 1
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                channel = neg.pc.createDataChannel(CHANNEL_LABEL, ordered=True)
                neg.link = self._make_link(channel, neg.pc, remote)
                self._large_records(neg)
                await neg.pc.setLocalDescription(await neg.pc.createOffer())
                offer = {"type": "offer", "sdp": self._local_sdp(neg)}
                self.signaling.signal(remote, swarm, {"sdp": offer})
                answer = await neg.answer
                neg.remote_chunk = advertised_chunk(answer)
                await neg.pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
                await self._remote_set(neg)
                await neg.link.hello
        except (Exception, asyncio.CancelledError) as exc:
            await self._failed(neg, exc)
            if isinstance(exc, asyncio.CancelledError) and self._closing:
                raise
        finally:
            if self._pending.get(remote) is neg:
                del self._pending[remote]

    async def _answer(self, remote: str, swarm: str, sdp: str) -> None:
        neg = self._new_negotiation(remote, swarm, offerer=False)
        self.stats["answers"] += 1

        @neg.pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            # Attach the link now: the peer's HELLO may be the very next message.
            if neg.link is None:
                neg.link = self._make_link(channel, neg.pc, remote)
                if not neg.channel.done():
                    neg.channel.set_result(channel)

        try:
            async with asyncio.timeout(self.config.connect_timeout):
                neg.remote_chunk = advertised_chunk(sdp)
                await neg.pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
                self._large_records(neg)
                await self._remote_set(neg)
                await neg.pc.setLocalDescription(await neg.pc.createAnswer())
                answer = {"type": "answer", "sdp": self._local_sdp(neg)}
                self.signaling.signal(remote, swarm, {"sdp": answer})
                await neg.channel
                assert neg.link is not None
                await neg.link.hello
        except (Exception, asyncio.CancelledError) as exc:
            await self._failed(neg, exc)
            if isinstance(exc, asyncio.CancelledError) and self._closing:
                raise
        finally:
            if self._pending.get(remote) is neg:
                del self._pending[remote]

    def _large_records(self, neg: _Negotiation) -> None:
        """With ``sctp_chunk``: read large DTLS records once the handshake is done (before any
        peer could send one: it must first see our SDP and our HELLO)."""
        if self.config.sctp_chunk is not None:
            accept_large_records(neg.pc)

    def _local_sdp(self, neg: _Negotiation) -> str:
        sdp: str = neg.pc.localDescription.sdp
        chunk = self.config.sctp_chunk
        return sdp if chunk is None else advertise_large_chunks(sdp, chunk)

    def _use_large_chunks(self, link: PeerLink) -> None:
        """Send large chunks to a peer whose SDP offered them (its HELLO just arrived, so it
        reads large records already)."""
        mine = self.config.sctp_chunk
        neg = self._pending.get(self._link_sig.get(link, ""))
        if mine is None or neg is None or neg.link is not link or neg.remote_chunk is None:
            return
        if link.pc is not None and send_large_chunks(link.pc, min(mine, neg.remote_chunk)):
            log.debug("link to %s: %d-byte SCTP chunks", link.peer_id, min(mine, neg.remote_chunk))

    async def _remote_set(self, neg: _Negotiation) -> None:
        neg.remote_set = True
        buffered, neg.candidates = neg.candidates, []
        for candidate in buffered:
            await _add_candidate(neg.pc, candidate)

    async def _failed(self, neg: _Negotiation, exc: BaseException) -> None:
        if neg.link is not None and neg.link.peer_id is not None and not neg.link.is_closed:
            return  # it got as far as HELLO: the link is alive (or was refused on purpose)
        self.stats["failed"] += 1
        what = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        log.info("connection to %s failed: %s", neg.remote, what)
        await self._abandon(neg)

    async def _abandon(self, neg: _Negotiation) -> None:
        if self._pending.get(neg.remote) is neg:
            del self._pending[neg.remote]
        if neg.task is not None and neg.task is not asyncio.current_task():
            neg.task.cancel()
        if neg.link is not None:
            await neg.link.close(ErrorCode.GOING_AWAY, "connection abandoned")
        with contextlib.suppress(Exception):
            await neg.pc.close()

    def _ice_servers(self) -> list[dict[str, Any]]:
        welcome = self.signaling.welcome
        return welcome.ice_servers if welcome else []

    # ------------------------------------------------------------------------------- links

    def _make_link(self, channel: RTCDataChannel, pc: RTCPeerConnection, remote: str) -> PeerLink:
        assert self.local_id is not None
        config = ConnectionConfig(
            peer_id=self.local_id,
            swarms=tuple(self.swarms),
            role=self.config.role,
            upload_enabled=self.config.upload_enabled,
            max_inbound_requests=self.config.max_inbound_requests,
        )
        link = PeerLink(
            channel, PeerProtocol(config), pc=pc, on_event=self._on_event, config=self.config.link
        )
        self._link_sig[link] = remote
        return link

    def _on_event(self, link: PeerLink, event: Event) -> None:
        if isinstance(event, HelloReceived):
            self._on_hello(link, event)
        elif isinstance(event, ConnectionClosed):
            self._link_sig.pop(link, None)
            if self.links.get(link.peer_id or "") is link:
                del self.links[link.peer_id or ""]
                self.listener.link_closed(link, event)
        elif self.links.get(link.peer_id or "") is link:
            self.listener.link_event(link, event)

    def _on_hello(self, link: PeerLink, hello: HelloReceived) -> None:
        pid = hello.peer_id
        refusal: tuple[ErrorCode, str] | None = None
        if pid == self.local_id:
            refusal = (ErrorCode.GOING_AWAY, "connected to myself")
        elif self.is_banned(pid) or self.is_banned(self._link_sig.get(link, "")):
            refusal = (ErrorCode.BANNED, "banned")
        elif pid in self.links:
            self.stats["duplicates"] += 1
            refusal = (ErrorCode.GOING_AWAY, "duplicate link")
        elif len(self.links) >= self.config.max_peers:
            refusal = (ErrorCode.GOING_AWAY, "too many peers")
        if refusal is not None:
            log.debug("refusing link from %s: %s", pid, refusal[1])
            self._spawn(link.close(*refusal))
            return
        self.links[pid] = link
        self._useful[pid] = time.monotonic()
        self._use_large_chunks(link)
        log.debug("link to %s open (%s, swarms %s)", pid, hello.role.name, hello.swarms)
        self.listener.link_opened(link, hello)
        link.flush()

    # ------------------------------------------------------------------------- maintenance

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self.config.maintenance_interval)
            try:
                self._maintain_once(time.monotonic())
            except Exception:  # housekeeping must go on
                log.exception("swarm maintenance failed")

    def _maintain_once(self, now: float) -> None:
        for pid in [p for p, until in self.banned.items() if until <= now]:
            del self.banned[pid]
        if len(self.links) + len(self._pending) >= self.config.max_peers:
            idle = self._idle_links(now)
            if idle:
                log.info("dropping idle link to %s to make room", idle[0].peer_id)
                self._spawn(idle[0].close(ErrorCode.GOING_AWAY, "idle"))
        if len(self.links) < self.config.min_peers and self.signaling.connected:
            for swarm_id in self.swarms:
                if now - self._resampled.get(swarm_id, 0.0) >= self.config.resample_interval:
                    self._resampled[swarm_id] = now
                    self._spawn(self._resample(swarm_id))
        for swarm_id in self.swarms:
            self._offer_spares(swarm_id)

    def _idle_links(self, now: float) -> Sequence[PeerLink]:
        cutoff = now - self.config.idle_timeout
        idle = [
            link
            for pid, link in self.links.items()
            if self._useful.get(pid, now) < cutoff and not link.is_closed
        ]
        return sorted(idle, key=lambda link: self._useful.get(link.peer_id or "", now))

    async def _resample(self, swarm_id: str) -> None:
        with contextlib.suppress(SignalingError, ConnectionError, TimeoutError):
            await self.signaling.resample(swarm_id)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


async def _add_candidate(pc: RTCPeerConnection, init: dict[str, Any]) -> None:
    text = init.get("candidate")
    if not isinstance(text, str) or not text:
        return
    try:
        candidate = candidate_from_sdp(
            text.split(":", 1)[1] if text.startswith("candidate:") else text
        )
        mid, index = init.get("sdpMid"), init.get("sdpMLineIndex")
        candidate.sdpMid = mid if isinstance(mid, str) else None
        candidate.sdpMLineIndex = index if isinstance(index, int) else None
        if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
            candidate.sdpMLineIndex = 0
        await pc.addIceCandidate(candidate)
    except Exception as exc:  # a bad candidate from a peer costs us that candidate only
        log.debug("ignoring ICE candidate %r: %s", text[:100], exc)
