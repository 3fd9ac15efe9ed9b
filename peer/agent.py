"""One peer: stream following, download scheduling, cache, uploads, origin and swarm, together.

:class:`PeerAgent` is the asyncio adapter around the sans-IO parts (``docs/peer.md``):

- :class:`RenditionFollower` keeps each rendition's :class:`RenditionTimeline` up to date;
- a **viewer** feeds one :class:`SegmentScheduler` per rendition (timeline, playback from the
  :class:`VirtualPlayer`, HAVE/FETCHING from links, transfer progress) and carries out its
  actions: ``FetchFromPeer`` → ``PeerProtocol.request``, ``FetchFromOrigin`` →
  ``OriginClient.fetch`` with a Range after the bytes a peer already sent, ``CancelTransfer``;
- a **seed** never elects: it fetches every new segment of its renditions from the origin as
  soon as the playlist shows it (announcing FETCHING first so viewers wait for it);
- every segment from a peer is checked against the origin's integrity manifest *before* it is
  cached, played or re-shared; a peer whose data fails is banned (link closed with ERROR
  banned, refused for a while) and the scheduler fetches the segment elsewhere;
- verified segments go to the :class:`SegmentCache` (evictions announced with LOST), are
  announced with HAVE on every link, and requests for them are served through the
  :class:`UploadScheduler` (earliest deadline first, optional rate cap).

Time is ``time.monotonic()`` everywhere (the origin client's deadlines use it too). Nothing
busy-waits: the viewer's loop sleeps until the scheduler's ``next_wakeup``, the player's
``next_event_time`` or an event (a segment stored, a HAVE, a transfer ending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from swarmcast.peer.cache import SegmentCache
from swarmcast.peer.connection import (
    BusyReceived,
    ConnectionClosed,
    DontHaveReceived,
    Event,
    FetchAbortedReceived,
    FetchingReceived,
    HaveReceived,
    HaveSetReceived,
    HelloReceived,
    LostReceived,
    RequestCancelled,
    RequestReceived,
    SwarmJoined,
    TransferChunk,
    TransferCompleted,
    TransferFailed,
    TransferStarted,
)
from swarmcast.peer.ids import SegmentKey, SegmentKind
from swarmcast.peer.integrity_check import Verdict
from swarmcast.peer.link import PeerLink
from swarmcast.peer.origin_client import OriginClient, OriginClientConfig, OriginError
from swarmcast.peer.player import PlayerConfig, PlayerState, VirtualPlayer
from swarmcast.peer.protocol import Role
from swarmcast.peer.qoe import QoE
from swarmcast.peer.scheduler import (
    CancelTransfer,
    FailureReason,
    FetchFromOrigin,
    FetchFromPeer,
    SchedulerConfig,
    SegmentInfo,
    SegmentScheduler,
)
from swarmcast.peer.signaling_client import SignalingClientConfig
from swarmcast.peer.stream import (
    FollowerConfig,
    PlaylistError,
    Rendition,
    RenditionFollower,
    Segment,
    StreamInfo,
    TimelineUpdate,
    load_stream,
)
from swarmcast.peer.swarm import PeerSwarm, SwarmConfig
from swarmcast.peer.upload import Accept, DropRequest, SendChunk, UploadConfig, UploadScheduler

log = logging.getLogger(__name__)

#: HAVE_SET/HAVE claims this far outside the known window are ignored (bounded bookkeeping).
_CLAIM_SLACK = 64


@dataclass
class AgentConfig:
    """Everything one peer needs. Seeds and viewers fill it from their own configs."""

    url: str
    """Master (or media) playlist URL on the origin."""
    role: Role = Role.VIEWER
    """Viewer (plays, schedules downloads) or seed (prefetches everything, serves)."""
    signaling_url: str | None = None
    """Signalling WebSocket URL; None = no P2P at all (plain HTTP, a baseline)."""
    renditions: tuple[str, ...] = ()
    """Rendition ids to take part in; empty = all (seed) or the first variant (viewer)."""
    content_id: str | None = None
    """Explicit content id (``docs/protocol.md`` §4.2) instead of the one from the URL."""
    cache_bytes: int = 64 * 1024 * 1024
    """Memory budget of each rendition's segment cache."""
    require_integrity: bool = True
    """Refuse peer data that cannot be verified (no manifest): such a stream is origin-only."""
    refuse_unverified_p2p: bool = False
    """Without manifests and with ``require_integrity`` off, still keep P2P off entirely."""
    origin_timeout: float = 15.0
    """Seconds one origin segment fetch may take, retries included."""
    max_prefetch: int = 4
    """Seeds: origin fetches in flight at once."""
    network: str | None = None
    """Locality hint for the signalling server."""
    token: str | None = None
    """Join token for the signalling server."""
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    """Download scheduler of each rendition (viewers)."""
    upload: UploadConfig = field(default_factory=UploadConfig)
    """Upload side (rate cap, concurrency)."""
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    """Connection budget and policy."""
    origin: OriginClientConfig = field(default_factory=OriginClientConfig)
    """HTTP client settings."""
    follower: FollowerConfig = field(default_factory=FollowerConfig)
    """Playlist/manifest polling."""
    player: PlayerConfig = field(default_factory=PlayerConfig)
    """Virtual player (viewers)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"stream URL must be http:// or https://, got {self.url!r}")
        if self.cache_bytes < 1024 * 1024:
            raise ValueError("cache_bytes must be at least 1 MiB")
        if self.origin_timeout <= 0 or self.max_prefetch < 1:
            raise ValueError("origin_timeout must be > 0 and max_prefetch >= 1")


@dataclass
class _Transfer:
    """One scheduler transfer being carried out."""

    sequence: int
    link: PeerLink | None = None
    request_id: int | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class RenditionState:
    """Everything the agent keeps for one rendition (one swarm)."""

    rendition: Rendition
    """The rendition."""
    follower: RenditionFollower
    """Its playlist follower (holds the timeline)."""
    cache: SegmentCache
    """Its verified segments."""
    scheduler: SegmentScheduler | None = None
    """Download scheduler (viewers only)."""
    p2p: bool = True
    """Whether peers' bytes can be used (integrity available, or verification waived)."""
    transfers: dict[int, _Transfer] = field(default_factory=dict)
    """Scheduler transfers in flight."""
    partial: dict[int, tuple[bytes, str]] = field(default_factory=dict)
    """Bytes of cancelled peer transfers kept for an origin Range resume, with their sender."""
    counters: dict[str, int] = field(
        default_factory=lambda: {"http_bytes": 0, "p2p_bytes": 0, "uploaded_bytes": 0}
    )
    """Cumulative counters reported to signalling in ``stats``."""
    updates: AsyncIterator[TimelineUpdate] | None = None

    @property
    def swarm_id(self) -> str:
        """Its swarm."""
        return self.rendition.swarm_id


class PeerAgent:
    """One seed or viewer (see the module docstring). ``start()``, then ``close()``."""

    def __init__(self, config: AgentConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.origin = OriginClient(config.origin)
        self.stream: StreamInfo | None = None
        self.states: dict[str, RenditionState] = {}
        """Rendition state by swarm id."""
        self.swarm: PeerSwarm | None = None
        self.upload = UploadScheduler(config.upload, now=clock())
        self.player: VirtualPlayer | None = None
        """The virtual player (viewers), created at :meth:`start` (startup counts from it)."""
        self.playing: RenditionState | None = None
        """The rendition the player plays (viewers)."""
        self.qoe = QoE()
        """Delivery figures; the player's figures are merged in by :meth:`report`."""
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        """Player transitions (clock time, kind, detail), for reports and tests."""
        self._wake = asyncio.Event()
        self._upload_wake = asyncio.Event()
        self._uploads: dict[int, tuple[PeerLink, int, Any, RenditionState]] = {}
        self._upload_ids: dict[tuple[PeerLink, int], int] = {}
        self._next_upload = 0
        self._peer_swarms: dict[PeerLink, set[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._prefetch = asyncio.Semaphore(config.max_prefetch)
        self._last_latency_sample = 0.0
        self._closed = False

    # ----------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the stream, join its swarms and start working. Raises :class:`OriginError` or
        :class:`PlaylistError` when the stream cannot be loaded."""
        cfg = self.config
        if cfg.role is Role.VIEWER:
            self.player = VirtualPlayer(cfg.player, now=self.clock())
        self.stream = await load_stream(
            self.origin, cfg.url, content_id=cfg.content_id, timeout=cfg.follower.load_timeout
        )
        for rendition in self._chosen(self.stream):
            await self._add_rendition(rendition)
        if cfg.signaling_url and any(st.p2p for st in self.states.values()):
            await self._start_swarm(cfg.signaling_url)
        for st in self.states.values():
            self._spawn(self._follow(st))
        if self.player is not None:
            self._spawn(self._drive())
        self._spawn(self._pump_uploads())

    def _chosen(self, stream: StreamInfo) -> list[Rendition]:
        wanted = self.config.renditions
        if wanted:
            return [stream.rendition(r) for r in wanted]
        media = [r for r in stream.renditions if r.kind in ("variant", "audio")] or list(
            stream.renditions
        )
        if self.config.role is Role.SEED:
            return media
        return [stream.variants[0] if stream.variants else media[0]]

    async def _add_rendition(self, rendition: Rendition) -> None:
        cfg = self.config
        follower = RenditionFollower(self.origin, rendition.playlist_url, cfg.follower)
        follower.timeline.config.require_integrity = cfg.require_integrity
        st = RenditionState(rendition, follower, SegmentCache(cfg.cache_bytes))
        st.updates = follower.updates()
        first = await anext(st.updates)  # the first load's failure is the caller's error
        self.states[rendition.swarm_id] = st
        timeline = follower.timeline
        if not timeline.integrity_available:
            if cfg.require_integrity or cfg.refuse_unverified_p2p:
                st.p2p = False
                log.warning(
                    "%s has no integrity manifest: peer data cannot be verified, so this "
                    "rendition is served by the origin only",
                    rendition.playlist_url,
                )
            else:
                log.warning(
                    "%s has no integrity manifest: P2P DATA IS UNVERIFIED, any peer can "
                    "corrupt playback (publish manifests with `swarmcast integrity`)",
                    rendition.playlist_url,
                )
        if cfg.role is Role.VIEWER:
            peer_id = "local"  # replaced by the real id once signalling welcomes us
            st.scheduler = SegmentScheduler(cfg.scheduler, peer_id=peer_id)
            if self.playing is None:
                self.playing = st
        self._on_update(st, first)

    async def _start_swarm(self, url: str) -> None:
        cfg = self.config
        swarm_cfg = replace(cfg.swarm, role=cfg.role, upload_enabled=cfg.upload.enabled)
        sig = SignalingClientConfig(url=url, network=cfg.network, token=cfg.token)
        self.swarm = PeerSwarm(swarm_cfg, sig, self)
        await self.swarm.start()
        assert self.swarm.local_id is not None
        for st in self.states.values():
            if st.scheduler is not None:
                # The election hashes our id: it must be the id neighbours see in our HELLO.
                st.scheduler.peer_id = self.swarm.local_id
        self._spawn(self._report_stats())
        for st in self.states.values():
            if st.p2p:
                await self.swarm.join(st.swarm_id)

    async def close(self) -> None:
        """Stop everything: tasks, links (ERROR going_away), signalling, HTTP session."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for st in self.states.values():
            if st.updates is not None:
                with contextlib.suppress(Exception):
                    await st.updates.aclose()  # type: ignore[attr-defined]
        if self.swarm is not None:
            await self.swarm.close()
        await self.origin.close()

    @property
    def finished(self) -> bool:
        """True once the player reached the end of a VOD (viewers)."""
        return self.player is not None and self.player.state is PlayerState.ENDED

    def report(self) -> QoE:
        """The QoE so far: the player's figures plus the bytes counted here."""
        qoe = self.qoe
        if self.player is not None:
            now = self.clock()
            self.player.tick(now)
            p = self.player.qoe
            qoe.startup_time, qoe.stalls = p.startup_time, p.stalls
            qoe.stall_time, qoe.played_time, qoe.switches = p.stall_time, p.played_time, p.switches
        return qoe

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("agent task failed", exc_info=task.exception())

    # ------------------------------------------------------------------------------ timeline

    async def _follow(self, st: RenditionState) -> None:
        assert st.updates is not None
        async for update in st.updates:
            self._on_update(st, update)

    def _on_update(self, st: RenditionState, update: TimelineUpdate) -> None:
        timeline = st.follower.timeline
        segments = timeline.segments
        if st.scheduler is not None:
            st.scheduler.set_timeline(
                [SegmentInfo(s.sequence, s.duration, s.size, s.start) for s in segments],
                live=timeline.live,
            )
            self._start_player(st, segments)
        if self.config.role is Role.SEED:
            for seg in update.added:
                if not st.cache.has(seg.sequence):
                    self._spawn(self._prefetch_segment(st, seg))
            if segments:
                st.cache.set_playhead(segments[-1].sequence)
        self._wake.set()

    def _start_player(self, st: RenditionState, segments: list[Segment]) -> None:
        player = self.player
        if player is None or st is not self.playing or not segments:
            return
        now = self.clock()
        if player.start_position is None:
            assert st.scheduler is not None
            start = st.scheduler.live_start_position() if st.follower.timeline.live else None
            player.start_at(start if start is not None else segments[0].start, now)
        if st.follower.timeline.ended:
            player.set_end(segments[-1].end, now)

    # ------------------------------------------------------------------------------ viewer

    async def _drive(self) -> None:
        """The viewer's loop: player → schedulers → actions, asleep until something is due."""
        while True:
            self._wake.clear()
            now = self.clock()
            wake = self._step(now)
            if self.player is not None and self.player.state is PlayerState.ENDED:
                return
            timeout = 1.0 if wake is None else min(max(wake - now, 0.0), 1.0)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _step(self, now: float) -> float | None:
        player = self.player
        wake: float | None = None
        if player is not None:
            for event in player.tick(now):
                self.events.append((event.at, event.kind, event.detail))
                log.info("player %s at %.2f %s", event.kind, event.at, event.detail or "")
            wake = player.next_event_time(now)
            self._sample_latency(now)
        for st in self.states.values():
            scheduler = st.scheduler
            if scheduler is None or scheduler.live_edge is None:  # no timeline yet
                continue
            if player is not None and st is self.playing and player.start_position is not None:
                pb = player.playback(now)
                scheduler.set_playback(now, pb.position, pb.buffered_until, 1.0, pb.playing)
                st.cache.set_playhead(self._sequence_at(st, pb.position))
            for action in scheduler.poll(now):
                self._execute(st, action, now)
            nxt = scheduler.next_wakeup(now)
            if nxt is not None:
                wake = nxt if wake is None else min(wake, nxt)
        return wake

    def _sample_latency(self, now: float) -> None:
        st, player = self.playing, self.player
        if st is None or player is None or player.state is not PlayerState.PLAYING:
            return
        if now - self._last_latency_sample < 1.0 or st.scheduler is None:
            return
        edge = st.scheduler.live_edge
        if edge is not None and st.follower.timeline.live:
            self._last_latency_sample = now
            self.qoe.add_live_latency(max(edge - player.position(now), 0.0))

    @staticmethod
    def _sequence_at(st: RenditionState, position: float) -> int | None:
        for seg in st.follower.timeline.segments:
            if seg.start <= position < seg.end:
                return seg.sequence
        return None

    def _execute(self, st: RenditionState, action: Any, now: float) -> None:
        if isinstance(action, FetchFromPeer):
            self._fetch_from_peer(st, action, now)
        elif isinstance(action, FetchFromOrigin):
            seg = st.follower.timeline.segment(action.sequence)
            if seg is None:
                assert st.scheduler is not None
                st.scheduler.transfer_failed(now, action.transfer_id, FailureReason.HTTP_ERROR)
                return
            transfer = _Transfer(action.sequence)
            st.transfers[action.transfer_id] = transfer
            transfer.task = self._spawn(
                self._origin_fetch(st, action.transfer_id, seg, action.offset, action.reason)
            )
        elif isinstance(action, CancelTransfer):
            self._cancel(st, action)

    def _fetch_from_peer(self, st: RenditionState, action: FetchFromPeer, now: float) -> None:
        assert st.scheduler is not None
        link = self.swarm.links.get(action.peer_id) if self.swarm else None
        if link is None or link.is_closed or link.protocol.request_slots == 0:
            st.scheduler.transfer_failed(now, action.transfer_id, FailureReason.PEER_GONE)
            self._wake.set()
            return
        try:
            rid = link.protocol.request(st.swarm_id, SegmentKey.media(action.sequence))
        except ValueError:  # it is not (or no longer) in this swarm on the link
            st.scheduler.transfer_failed(now, action.transfer_id, FailureReason.DONT_HAVE)
            self._wake.set()
            return
        st.transfers[action.transfer_id] = _Transfer(action.sequence, link, rid)
        link.flush()

    def _cancel(self, st: RenditionState, action: CancelTransfer) -> None:
        transfer = st.transfers.pop(action.transfer_id, None)
        if transfer is None:
            return
        if transfer.link is not None and transfer.request_id is not None:
            link = transfer.link
            if action.reason in ("switch", "stalled") and link.peer_id is not None:
                kept = link.protocol.partial_data(transfer.request_id)
                if kept:
                    st.partial[transfer.sequence] = (kept, link.peer_id)
            link.protocol.cancel(transfer.request_id)
            link.flush()
        elif transfer.task is not None:
            transfer.task.cancel()

    async def _origin_fetch(
        self, st: RenditionState, tid: int, seg: Segment, offset: int, reason: str
    ) -> None:
        scheduler = st.scheduler
        assert scheduler is not None
        prefix, source = st.partial.pop(seg.sequence, (b"", None))
        if len(prefix) != offset:
            prefix, source = b"", None  # bytes not kept: fetch it whole
        skip = len(prefix)
        announce = skip == 0 and st.p2p
        if announce:
            self._broadcast(st, "fetching", seg.sequence)

        def progress(received: int) -> None:
            scheduler.transfer_progress(self.clock(), tid, received + skip - offset)

        try:
            data = await self._fetch_segment(seg, skip, progress)
        except asyncio.CancelledError:
            if announce and not self._closed:
                self._broadcast(st, "fetch_aborted", seg.sequence)
            raise
        except (OriginError, ValueError) as exc:
            log.warning("origin fetch of %s failed: %s", seg.uri, exc)
            st.transfers.pop(tid, None)
            if announce:
                self._broadcast(st, "fetch_aborted", seg.sequence)
            scheduler.transfer_failed(self.clock(), tid, FailureReason.HTTP_ERROR)
            self._wake.set()
            return
        st.transfers.pop(tid, None)
        self._count(st, "http_bytes", len(data))
        whole = prefix + data if prefix else data
        verdict = st.follower.timeline.check(seg, whole)
        if verdict is Verdict.MISMATCH and source is not None:
            self._reject(st, source, len(prefix), f"bytes of segment {seg.sequence} were bad")
            scheduler.transfer_failed(self.clock(), tid, FailureReason.BAD_DATA)
            self._wake.set()
            return
        if prefix:
            self._count(st, "p2p_bytes", len(prefix))
        scheduler.transfer_done(self.clock(), tid)
        self._store(st, seg, whole, share=verdict is not Verdict.MISMATCH)

    async def _fetch_segment(
        self, seg: Segment, skip: int, progress: Callable[[int], None] | None
    ) -> bytes:
        start, end = skip, None
        if seg.byterange is not None:
            start, end = seg.byterange.offset + skip, seg.byterange.offset + seg.byterange.length
        deadline = time.monotonic() + self.config.origin_timeout
        data = await self.origin.fetch(
            seg.uri, start=start, end=end, deadline=deadline, on_progress=progress
        )
        return data

    # ------------------------------------------------------------------------------- seed

    async def _prefetch_segment(self, st: RenditionState, seg: Segment) -> None:
        async with self._prefetch:
            if st.cache.has(seg.sequence):
                return
            attempt = 0
            while seg.sequence >= st.follower.timeline.window.start:
                self._broadcast(st, "fetching", seg.sequence)
                try:
                    data = await self._fetch_segment(seg, 0, None)
                    break
                except (OriginError, ValueError) as exc:
                    attempt += 1
                    self._broadcast(st, "fetch_aborted", seg.sequence)
                    log.warning("seed: fetching %s failed (%d): %s", seg.uri, attempt, exc)
                    await asyncio.sleep(min(0.5 * 2**attempt, seg.duration))
            else:
                return  # it left the window before the origin gave it to us
        self._count(st, "http_bytes", len(data))
        verdict = st.follower.timeline.check(seg, data)
        if verdict is Verdict.MISMATCH:
            log.error("seed: %s does not match its integrity manifest; not serving it", seg.uri)
            return
        self._store(st, seg, data, share=True)

    # ------------------------------------------------------------------------------ storage

    def _store(self, st: RenditionState, seg: Segment, data: bytes, *, share: bool) -> None:
        now = self.clock()
        if self.player is not None and st is self.playing:
            self.player.add_segment(seg.start, seg.duration, now)
        if st.scheduler is not None:
            st.scheduler.segment_stored(seg.sequence)
        if share:
            result = st.cache.put(seg.sequence, data)
            for key in result.evicted:
                if isinstance(key, int):
                    self._broadcast(st, "lost", key)
                    if st.scheduler is not None:
                        st.scheduler.segment_evicted(key)
            if result.stored:
                self._broadcast(st, "have", seg.sequence)
        self._wake.set()

    def _broadcast(self, st: RenditionState, what: str, sequence: int) -> None:
        if self.swarm is None or not st.p2p:
            return
        key = SegmentKey.media(sequence)
        for link, swarms in list(self._peer_swarms.items()):
            if st.swarm_id not in swarms or link.is_closed:
                continue
            getattr(link.protocol, f"send_{what}")(st.swarm_id, key)
            link.flush()

    def _count(self, st: RenditionState, name: str, n: int) -> None:
        st.counters[name] += n
        setattr(self.qoe, name, getattr(self.qoe, name) + n)

    # -------------------------------------------------------------------- SwarmListener

    def link_opened(self, link: PeerLink, hello: HelloReceived) -> None:
        """Add the peer to the schedulers of shared swarms and tell it what we hold."""
        self._peer_swarms[link] = set(hello.swarms)
        for swarm_id in hello.swarms:
            self._peer_in_swarm(link, hello.peer_id, hello.role, swarm_id)

    def _peer_in_swarm(self, link: PeerLink, peer_id: str, role: Role, swarm_id: str) -> None:
        st = self.states.get(swarm_id)
        if st is None or not st.p2p:
            return
        if st.scheduler is not None:
            st.scheduler.add_peer(peer_id, is_seed=role is Role.SEED)
        link.protocol.send_have_set(swarm_id, st.cache.sequences())
        link.flush()
        self._wake.set()

    def link_event(self, link: PeerLink, event: Event) -> None:
        """Route one link event to the scheduler, the upload side or the storage path."""
        pid = link.peer_id or ""
        if isinstance(event, RequestReceived):
            self._on_request(link, event)
        elif isinstance(event, RequestCancelled):
            uid = self._upload_ids.pop((link, event.request_id), None)
            if uid is not None:
                self._uploads.pop(uid, None)
                self.upload.cancel(uid)
        elif isinstance(event, TransferStarted | TransferChunk):
            self._on_progress(link, event)
        elif isinstance(event, TransferCompleted):
            self._on_completed(link, event)
        elif isinstance(event, TransferFailed | DontHaveReceived | BusyReceived):
            self._on_refused(link, event)
        elif isinstance(event, SwarmJoined):
            self._peer_swarms.setdefault(link, set()).add(event.swarm_id)
            role = link.protocol.peer.role if link.protocol.peer else Role.VIEWER
            self._peer_in_swarm(link, pid, role, event.swarm_id)
        else:
            self._on_availability(pid, event)

    def link_closed(self, link: PeerLink, event: ConnectionClosed) -> None:
        """Forget the peer everywhere; its transfers are rescheduled."""
        self._peer_swarms.pop(link, None)
        pid = link.peer_id or ""
        for uid in self.upload.cancel_peer(pid):
            self._uploads.pop(uid, None)
        self._upload_ids = {k: v for k, v in self._upload_ids.items() if k[0] is not link}
        for st in self.states.values():
            if st.scheduler is not None:
                for tid in st.scheduler.remove_peer(pid):
                    st.transfers.pop(tid, None)
        self._wake.set()

    def _on_availability(self, pid: str, event: Event) -> None:
        if not isinstance(
            event,
            HaveSetReceived | HaveReceived | LostReceived | FetchingReceived | FetchAbortedReceived,
        ):
            return
        st = self.states.get(event.swarm_id)
        if st is None or st.scheduler is None or not st.p2p:
            return
        scheduler, window = st.scheduler, st.follower.timeline.window
        low, high = window.start - _CLAIM_SLACK, window.stop + _CLAIM_SLACK
        if isinstance(event, HaveSetReceived):
            scheduler.peer_has(pid, (s for s in event.sequences() if low <= s < high))
        else:
            key = event.key
            if key.kind is not SegmentKind.MEDIA or not low <= key.number < high:
                return
            if isinstance(event, HaveReceived):
                scheduler.peer_has(pid, (key.number,))
            elif isinstance(event, LostReceived):
                scheduler.peer_lost(pid, (key.number,))
            elif isinstance(event, FetchingReceived):
                scheduler.peer_fetching(pid, key.number)
            else:
                scheduler.peer_fetch_aborted(pid, key.number)
        self._wake.set()

    def _find_transfer(self, link: PeerLink, rid: int) -> tuple[RenditionState, int] | None:
        for st in self.states.values():
            for tid, transfer in st.transfers.items():
                if transfer.link is link and transfer.request_id == rid:
                    return st, tid
        return None

    def _on_progress(self, link: PeerLink, event: TransferStarted | TransferChunk) -> None:
        found = self._find_transfer(link, event.request_id)
        if found is None:
            return
        st, tid = found
        assert st.scheduler is not None
        if isinstance(event, TransferStarted):
            st.scheduler.transfer_progress(self.clock(), tid, 0, event.total_size)
        else:
            progress = link.protocol.progress(event.request_id)
            if progress is not None:
                st.scheduler.transfer_progress(self.clock(), tid, progress[0])

    def _on_completed(self, link: PeerLink, event: TransferCompleted) -> None:
        found = self._find_transfer(link, event.request_id)
        if found is None:
            return
        st, tid = found
        transfer = st.transfers.pop(tid)
        scheduler = st.scheduler
        assert scheduler is not None
        seg = st.follower.timeline.segment(transfer.sequence)
        now = self.clock()
        pid = link.peer_id or ""
        if seg is None:
            scheduler.transfer_failed(now, tid, FailureReason.DONT_HAVE)
        elif event.offset != 0 or not st.follower.timeline.verify(seg, event.data):
            self._reject(st, pid, len(event.data), f"segment {seg.sequence} failed integrity")
            scheduler.transfer_failed(now, tid, FailureReason.BAD_DATA)
        else:
            self._count(st, "p2p_bytes", len(event.data))
            if self.swarm is not None:
                self.swarm.touch(pid)
            scheduler.transfer_done(now, tid)
            self._store(st, seg, event.data, share=True)
        self._wake.set()

    def _reject(self, st: RenditionState, pid: str, nbytes: int, why: str) -> None:
        self.qoe.p2p_rejected_bytes += nbytes
        if self.swarm is not None:
            self.swarm.ban(pid, why)

    def _on_refused(
        self, link: PeerLink, event: TransferFailed | DontHaveReceived | BusyReceived
    ) -> None:
        found = self._find_transfer(link, event.request_id)
        if found is None:
            return
        st, tid = found
        st.transfers.pop(tid)
        assert st.scheduler is not None
        now = self.clock()
        if isinstance(event, BusyReceived):
            retry = event.retry_after_ms / 1000 if event.retry_after_ms else None
            st.scheduler.transfer_failed(now, tid, FailureReason.BUSY, retry)
        elif isinstance(event, DontHaveReceived):
            st.scheduler.transfer_failed(now, tid, FailureReason.DONT_HAVE)
        else:
            st.scheduler.transfer_failed(now, tid, FailureReason.PEER_GONE)
        self._wake.set()

    # ------------------------------------------------------------------------------ upload

    def _on_request(self, link: PeerLink, event: RequestReceived) -> None:
        st = self.states.get(event.swarm_id)
        data = None
        if st is not None and event.key.kind is SegmentKind.MEDIA:
            data = st.cache.get(event.key.number)
        if st is None or data is None or event.offset >= len(data):
            link.protocol.send_dont_have(event.request_id)
            return
        uid = self._next_upload
        self._next_upload += 1
        size = len(data) - event.offset
        if event.length:
            size = min(size, event.length)
        decision = self.upload.offer(self.clock(), uid, link.peer_id or "", event.key.number, size)
        if isinstance(decision, Accept):
            self._uploads[uid] = (link, event.request_id, data, st)
            self._upload_ids[(link, event.request_id)] = uid
            self._upload_wake.set()
        else:
            ms = min(int(decision.retry_after * 1000), 65535)
            link.protocol.send_busy(event.request_id, ms)

    async def _pump_uploads(self) -> None:
        """Hand accepted uploads to their links as the upload scheduler releases them."""
        while True:
            self._upload_wake.clear()
            now = self.clock()
            for action in self.upload.poll(now):
                self._upload_action(action)
            nxt = self.upload.next_wakeup(self.clock())
            timeout = None if nxt is None else max(nxt - self.clock(), 0.001)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._upload_wake.wait()

    def _upload_action(self, action: SendChunk | DropRequest) -> None:
        entry = self._uploads.get(action.request_id)
        if entry is None:
            return
        link, rid, data, st = entry
        if isinstance(action, DropRequest):
            del self._uploads[action.request_id]
            self._upload_ids.pop((link, rid), None)
            link.protocol.send_busy(rid)
        elif action.offset == 0:
            # The protocol sends the whole answer at channel speed; the upload scheduler's
            # bucket still gates when the next request may start (see docs/peer.md).
            if link.protocol.send_segment(rid, data):
                self._count(st, "uploaded_bytes", len(data))
                if self.swarm is not None and link.peer_id:
                    self.swarm.touch(link.peer_id)
            link.flush()
        if isinstance(action, SendChunk) and action.last:
            self._uploads.pop(action.request_id, None)
            self._upload_ids.pop((link, rid), None)

    # ------------------------------------------------------------------------------ stats

    async def _report_stats(self) -> None:
        assert self.swarm is not None
        while True:
            welcome = self.swarm.signaling.welcome
            await asyncio.sleep(welcome.stats_interval if welcome else 10.0)
            stalls = self.player.qoe.stalls if self.player is not None else 0
            for st in self.states.values():
                if st.p2p:
                    self.swarm.signaling.send_stats(st.swarm_id, {**st.counters, "stalls": stalls})


__all__ = ["AgentConfig", "PeerAgent", "PlaylistError", "RenditionState"]
