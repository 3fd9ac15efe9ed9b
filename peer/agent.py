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
- **ABR** (viewers, ``player.abr``): a :class:`DownloadMeter` measures throughput over every
  download; after each one the player's ``choose_rendition`` may pick another variant, whose
  swarm is joined and which takes over at the next segment boundary (``docs/peer.md``);
- **init segments** (fMP4) are fetched once (from a peer that has them, else the origin),
  verified against the manifest, pinned in the cache and served like segments;
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
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from swarmcast.peer.cache import SegmentCache
from swarmcast.peer.connection import (
    BusyReceived,
    ConnectionClosed,
    ConnectionStateError,
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
from swarmcast.peer.signaling_client import SignalingClientConfig, SignalingError
from swarmcast.peer.stream import (
    FollowerConfig,
    InitSegment,
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
    """Virtual player (viewers). ``player.abr`` turns rendition switching by measured
    throughput on; the viewer then starts on the lowest variant unless ``renditions`` names one."""
    abr_leave_after: float = 20.0
    """ABR: seconds a rendition switched away from keeps its cache, serving peers that still
    play it, before its swarm is left and its cache dropped."""
    init_peer_wait: float = 0.0
    """Seconds to wait for a peer to announce an init segment (EXT-X-MAP) before fetching it
    from the origin. 0 (the default) asks a peer only if one already has it: an init is ~1 KB
    and the player cannot start without it, so startup time matters more than its offload."""
    init_peer_timeout: float = 2.0
    """Seconds a peer gets to deliver an init segment before the origin is asked instead."""
    start_position: float | None = None
    """VOD viewers: where playback starts, in seconds from the start of the content (snapped
    back to the start of the segment holding it, as a player seeks; past the end: the last
    segment). None = the first segment. Live streams ignore it (the live start rule decides)."""
    start_fraction: float | None = None
    """VOD viewers: where playback starts as a fraction [0, 1) of the content, leaving a few
    segments after it (load tests spread viewers over the timeline with it). Exclusive with
    ``start_position``."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"stream URL must be http:// or https://, got {self.url!r}")
        if self.cache_bytes < 1024 * 1024:
            raise ValueError("cache_bytes must be at least 1 MiB")
        if self.origin_timeout <= 0 or self.max_prefetch < 1:
            raise ValueError("origin_timeout must be > 0 and max_prefetch >= 1")
        for name in ("abr_leave_after", "init_peer_wait", "init_peer_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"AgentConfig.{name} must be a finite number >= 0, got {value!r}")
        if self.init_peer_timeout <= 0:
            raise ValueError("AgentConfig.init_peer_timeout must be > 0")
        self._check_start()

    def _check_start(self) -> None:
        pos, frac = self.start_position, self.start_fraction
        if pos is not None and frac is not None:
            raise ValueError("AgentConfig: give start_position or start_fraction, not both")
        if pos is not None and not (
            isinstance(pos, int | float) and math.isfinite(pos) and pos >= 0
        ):
            raise ValueError(f"AgentConfig.start_position must be seconds >= 0, got {pos!r}")
        if frac is not None and not (isinstance(frac, int | float) and 0 <= frac < 1):
            raise ValueError(f"AgentConfig.start_fraction must be within [0, 1), got {frac!r}")


@dataclass
class _Transfer:
    """One scheduler transfer being carried out."""

    sequence: int
    link: PeerLink | None = None
    request_id: int | None = None
    task: asyncio.Task[None] | None = None
    metered: bool = False
    """Counted as running by the :class:`DownloadMeter` (ended exactly once)."""


class DownloadMeter:
    """Download throughput of one viewer, all sources together, for ABR (sans-IO).

    The rate is bytes over *busy time*: seconds during which at least one transfer (origin or
    peer) was running. Parallel transfers therefore add up instead of each looking slow, and
    idle time (a full buffer, waiting for the live edge) does not count as slowness. A sample is
    taken each time a transfer ends with bytes; failed or cancelled transfers add busy time and
    no bytes, which lowers the estimate (they were slow, or wasted).

    Samples feed two exponentially weighted averages (weights = busy seconds, half-lives
    ``fast`` and ``slow`` like hls.js' live defaults), corrected for their zero start so the
    first sample counts in full; the estimate is the lower of the two: down fast, up slowly.
    """

    def __init__(self, fast: float = 3.0, slow: float = 9.0, min_busy: float = 0.005) -> None:
        if not (fast > 0 and slow > 0 and min_busy > 0):
            raise ValueError("DownloadMeter half-lives and min_busy must be > 0")
        self._half_lives = (fast, slow)
        self._min_busy = min_busy
        self._avg = [0.0, 0.0]
        self._weight = 0.0
        self._active = 0
        self._busy_since = 0.0
        self._busy = 0.0
        self._bytes = 0
        self.samples = 0
        """Samples taken so far."""

    def begin(self, now: float) -> None:
        """A transfer starts."""
        if self._active == 0:
            self._busy_since = now
        self._active += 1

    def end(self, now: float, nbytes: int) -> None:
        """A transfer ends (``nbytes`` 0 if it failed or was cancelled)."""
        if self._active == 0:
            raise RuntimeError("DownloadMeter.end without a matching begin")
        busy = self._busy + max(now - self._busy_since, 0.0)
        self._active -= 1
        self._bytes += max(nbytes, 0)
        if nbytes > 0:
            self._sample(self._bytes, busy)
            self._bytes, self._busy, self._busy_since = 0, 0.0, now
        elif self._active == 0:
            self._busy = busy  # close the busy interval; its bytes come with a later sample

    def _sample(self, nbytes: int, busy: float) -> None:
        seconds = max(busy, self._min_busy)
        rate = nbytes * 8 / seconds
        for i, half_life in enumerate(self._half_lives):
            alpha = 0.5 ** (seconds / half_life)
            self._avg[i] = alpha * self._avg[i] + (1 - alpha) * rate
        self._weight += seconds
        self.samples += 1

    @property
    def bits_per_second(self) -> float | None:
        """The estimate in bits/s, None before the first sample."""
        if self.samples == 0:
            return None
        estimates = [
            avg / (1 - 0.5 ** (self._weight / half_life))
            for avg, half_life in zip(self._avg, self._half_lives, strict=True)
        ]
        return min(estimates)


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
    """The follower's update stream."""
    follow_task: asyncio.Task[None] | None = None
    """The task consuming :attr:`updates`."""
    windows: list[tuple[int, int | None]] = field(default_factory=lambda: [(0, None)])
    """Viewers: the media sequence ranges ``[first, end)`` this rendition is played (and
    fetched) for; ``end`` None = open. ABR closes the range at a switch and opens one on the
    rendition switched to, so two renditions never fetch the same sequence."""
    time_offset: float = 0.0
    """Added to this rendition's media times to get the player's (timelines count from the
    first segment each saw; the same sequence number is the same instant in every rendition)."""
    active: bool = True
    """Viewers: its scheduler is polled (it is played, or finishing transfers after a switch)."""
    leave_at: float | None = None
    """When an inactive rendition leaves its swarm and drops its cache (ABR)."""
    init_holders: dict[int, set[str]] = field(default_factory=dict)
    """Init id -> peers that announced it."""
    init_tasks: dict[int, asyncio.Task[None]] = field(default_factory=dict)
    """Init fetches in progress (or done, until the init leaves the timeline), by init id."""
    init_playable: set[int] = field(default_factory=set)
    """Init ids held for playback (shared ones are also pinned in :attr:`cache`)."""
    held_back: list[Segment] = field(default_factory=list)
    """Segments stored before their init segment: given to the player once the init is held."""

    @property
    def swarm_id(self) -> str:
        """Its swarm."""
        return self.rendition.swarm_id

    def plays(self, sequence: int) -> bool:
        """Whether ``sequence`` is fetched and played from this rendition."""
        return any(lo <= sequence and (hi is None or sequence < hi) for lo, hi in self.windows)

    @property
    def switched_away(self) -> bool:
        """ABR left this rendition: every range it plays is closed."""
        return all(hi is not None for _, hi in self.windows)

    def has_init(self, init: InitSegment) -> bool:
        """Whether the init segment is held (the player can decode segments that need it)."""
        return init.key.number in self.init_playable


#: Segments a fractional VOD start leaves after it (a start at 99 % still plays a little).
_START_TAIL = 4


def vod_start_position(
    segments: list[Segment], *, seconds: float | None = None, fraction: float | None = None
) -> float:
    """Media time where a VOD player starts: the start of the segment holding ``seconds``
    (from the first segment), or of the one at ``fraction`` of the content leaving a few
    segments after it; the first segment's start when neither is given. ``segments`` must
    not be empty."""
    first = segments[0].start
    if fraction is not None:
        last = segments[max(0, len(segments) - _START_TAIL)]
        wanted = first + fraction * (last.start - first)
    elif seconds is not None:
        wanted = min(first + seconds, segments[-1].start)
    else:
        return first
    for seg in segments:
        if seg.start <= wanted < seg.end:
            return seg.start
    return first


SegmentStoredCallback = Callable[["RenditionState", Segment], None]
"""``on_segment_stored(state, segment)``: a verified media segment was stored (from the origin
or a peer) in ``state``'s rendition."""


def init_cache_key(init_id: int) -> str:
    """The cache key under which an init segment is pinned."""
    return f"init:{init_id}"


class PeerAgent:
    """One seed or viewer (see the module docstring). ``start()``, then ``close()``."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_segment_stored: SegmentStoredCallback | None = None,
    ):
        """``on_segment_stored`` is called (synchronously: it must not block) each time a
        verified media segment is stored, e.g. to count what a load-test viewer fetched."""
        self.config = config
        self.clock = clock
        self.on_segment_stored = on_segment_stored
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
        self.meter = DownloadMeter()
        """Download throughput of the viewer (ABR input)."""
        self.init_stats = {"http_bytes": 0, "p2p_bytes": 0, "verified": 0, "rejected": 0}
        """Init segments: bytes from the origin and from peers (also counted in QoE), inits
        that verified against the manifest, and peer inits rejected."""
        self._switch_task: asyncio.Task[None] | None = None
        self._abr_off_logged = False
        self._init_waiters: dict[tuple[PeerLink, int], asyncio.Future[bytes | None]] = {}
        self._init_news = asyncio.Event()  # replaced each time a peer announces an init

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
            st.follow_task = self._spawn(self._follow(st))
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
        if self.config.player.abr and stream.variants:
            # ABR climbs from the bottom: the first segments come fast and measure the network.
            return [min(stream.variants, key=lambda r: r.bandwidth or 0)]
        return [stream.variants[0] if stream.variants else media[0]]

    async def _add_rendition(self, rendition: Rendition, *, playing: bool = True) -> RenditionState:
        """Load a rendition and keep its state; ``playing`` False (ABR) plays nothing of it
        until a cut-over gives it a range of segments."""
        cfg = self.config
        follower = RenditionFollower(self.origin, rendition.playlist_url, cfg.follower)
        follower.timeline.config.require_integrity = cfg.require_integrity
        st = RenditionState(rendition, follower, SegmentCache(cfg.cache_bytes))
        if not playing:
            st.windows, st.active = [], False
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
            # "local" is replaced by the real id once signalling welcomes us.
            peer_id = self.swarm.local_id if self.swarm and self.swarm.local_id else "local"
            st.scheduler = SegmentScheduler(cfg.scheduler, peer_id=peer_id)
            if self.playing is None:
                self.playing = st
        self._on_update(st, first)
        return st

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
            self._feed_timeline(st)
            self._start_player(st, segments)
        self._forget_inits(st, segments)
        self._want_inits(st)
        if self.config.role is Role.SEED:
            for seg in update.added:
                if not st.cache.has(seg.sequence):
                    self._spawn(self._prefetch_segment(st, seg))
            if segments:
                st.cache.set_playhead(segments[-1].sequence)
        self._wake.set()

    @staticmethod
    def _feed_timeline(st: RenditionState) -> None:
        """Give the scheduler the segments this rendition plays, in the player's time."""
        assert st.scheduler is not None
        timeline, offset = st.follower.timeline, st.time_offset
        st.scheduler.set_timeline(
            [
                SegmentInfo(s.sequence, s.duration, s.size, s.start + offset)
                for s in timeline.segments
                if st.plays(s.sequence)
            ],
            live=timeline.live,
        )

    def _start_player(self, st: RenditionState, segments: list[Segment]) -> None:
        player = self.player
        if player is None or st is not self.playing or not segments:
            return
        now = self.clock()
        if player.start_position is None:
            assert st.scheduler is not None
            if st.follower.timeline.live:
                start = st.scheduler.live_start_position()
                player.start_at(start if start is not None else segments[0].start, now)
            else:
                cfg = self.config
                position = vod_start_position(
                    segments, seconds=cfg.start_position, fraction=cfg.start_fraction
                )
                player.start_at(position, now)
        if st.follower.timeline.ended:
            player.set_end(segments[-1].end + st.time_offset, now)

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
        for st in list(self.states.values()):
            scheduler = st.scheduler
            if scheduler is None:
                continue
            if not st.active:
                if st.leave_at is not None and now >= st.leave_at:
                    st.leave_at = None
                    self._spawn(self._leave(st))
                elif st.leave_at is not None:
                    wake = st.leave_at if wake is None else min(wake, st.leave_at)
                continue
            if scheduler.live_edge is None:  # no timeline (yet, or no longer)
                self._check_drained(st, now)
                continue
            if player is not None and player.start_position is not None and self._feeds_player(st):
                pb = player.playback(now)
                scheduler.set_playback(now, pb.position, pb.buffered_until, 1.0, pb.playing)
                st.cache.set_playhead(self._sequence_at(st, pb.position))
            for action in scheduler.poll(now):
                self._execute(st, action, now)
            nxt = scheduler.next_wakeup(now)
            if nxt is not None:
                wake = nxt if wake is None else min(wake, nxt)
            self._check_drained(st, now)
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
        """The sequence of ``st`` playing at the player's ``position``."""
        position -= st.time_offset
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
            self._meter_begin(transfer, now)
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
        transfer = _Transfer(action.sequence, link, rid)
        st.transfers[action.transfer_id] = transfer
        self._meter_begin(transfer, now)
        link.flush()

    def _meter_begin(self, transfer: _Transfer, now: float) -> None:
        self.meter.begin(now)
        transfer.metered = True

    def _meter_end(self, transfer: _Transfer | None, nbytes: int = 0) -> None:
        if transfer is not None and transfer.metered:
            transfer.metered = False
            self.meter.end(self.clock(), nbytes)

    def _cancel(self, st: RenditionState, action: CancelTransfer) -> None:
        transfer = st.transfers.pop(action.transfer_id, None)
        if transfer is None:
            return
        self._meter_end(transfer)
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
            self._meter_end(st.transfers.pop(tid, None))
            if announce:
                self._broadcast(st, "fetch_aborted", seg.sequence)
            scheduler.transfer_failed(self.clock(), tid, FailureReason.HTTP_ERROR)
            self._wake.set()
            return
        self._meter_end(st.transfers.pop(tid, None), len(data))
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
        self._consider_switch()

    async def _fetch_segment(
        self, seg: Segment | InitSegment, skip: int, progress: Callable[[int], None] | None
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
        if self._feeds_player(st) and st.plays(seg.sequence):
            assert self.player is not None
            if seg.init is not None and not st.has_init(seg.init):
                st.held_back.append(seg)  # a player cannot decode it before its init segment
            else:
                self.player.add_segment(seg.start + st.time_offset, seg.duration, now)
        if st.scheduler is not None:
            st.scheduler.segment_stored(seg.sequence)
        if share and self._cache_put(st, seg.sequence, data):
            self._broadcast(st, "have", seg.sequence)
        if self.on_segment_stored is not None:
            self.on_segment_stored(st, seg)
        self._wake.set()

    def _feeds_player(self, st: RenditionState) -> bool:
        """The player plays this rendition now, or until its last segments (ABR)."""
        if self.player is None:
            return False
        return st is self.playing or (st.active and st.switched_away)

    def _cache_put(self, st: RenditionState, key: int | str, data: bytes) -> bool:
        """Cache ``data`` (init segments pinned), announcing evictions; True if stored."""
        result = st.cache.put(key, data, pinned=isinstance(key, str))
        for evicted in result.evicted:
            if isinstance(evicted, int):
                self._broadcast(st, "lost", evicted)
                if st.scheduler is not None:
                    st.scheduler.segment_evicted(evicted)
        return result.stored

    def _broadcast(self, st: RenditionState, what: str, key: int | SegmentKey) -> None:
        """Send HAVE/LOST/FETCHING/FETCH_ABORTED for ``key`` (a media sequence or a key)."""
        if self.swarm is None or not st.p2p:
            return
        if isinstance(key, int):
            key = SegmentKey.media(key)
        for link, swarms in list(self._peer_swarms.items()):
            if st.swarm_id not in swarms or link.is_closed:
                continue
            getattr(link.protocol, f"send_{what}")(st.swarm_id, key)
            link.flush()

    def _count(self, st: RenditionState, name: str, n: int) -> None:
        st.counters[name] += n
        setattr(self.qoe, name, getattr(self.qoe, name) + n)

    # ------------------------------------------------------------------------------ ABR

    def _consider_switch(self) -> None:
        """After a download: ask the player whether to change rendition (ABR)."""
        player, playing, stream = self.player, self.playing, self.stream
        if player is None or playing is None or stream is None or not self.config.player.abr:
            return
        if self._switch_task is not None and not self._switch_task.done():
            return
        throughput = self.meter.bits_per_second
        variants = list(stream.variants)
        if throughput is None or playing.rendition not in variants:
            return
        bandwidths = [v.bandwidth for v in variants]
        if any(b is None or b <= 0 for b in bandwidths):
            if not self._abr_off_logged:
                self._abr_off_logged = True
                log.warning("ABR off: a variant of %s has no BANDWIDTH", stream.url)
            return
        current = variants.index(playing.rendition)
        now = self.clock()
        target = player.choose_rendition(now, bandwidths, throughput, current)  # type: ignore[arg-type]
        if target != current:
            self._switch_task = self._spawn(self._switch(playing, variants[target]))

    async def _switch(self, old: RenditionState, target: Rendition) -> None:
        """Play ``target`` from the next segment boundary on (``docs/peer.md``, ABR)."""
        new = self.states.get(target.swarm_id)
        try:
            if new is None:
                new = await self._add_rendition(target, playing=False)
                new.follow_task = self._spawn(self._follow(new))
            await self._join_swarm(new)
        except (OriginError, PlaylistError) as exc:
            log.warning(
                "ABR: cannot load %s, staying on %s: %s",
                target.rendition_id,
                old.rendition.rendition_id,
                exc,
            )
            self._switch_abandoned()
            return
        if self.playing is not old or self._closed:
            self._switch_abandoned()
            return
        self._cut_over(old, new)

    def _switch_abandoned(self) -> None:
        if self.player is not None:
            self.player.qoe.switches -= 1  # counted by choose_rendition; it did not happen

    async def _join_swarm(self, st: RenditionState) -> None:
        """Take part in a rendition added while running: its swarm, and the peers in it."""
        swarm = self.swarm
        if swarm is None or not st.p2p:
            return
        sid = st.swarm_id
        linked = [link for link, s in self._peer_swarms.items() if sid in s and not link.is_closed]
        if st.scheduler is not None:
            # Known to the scheduler before our JOIN makes them send their HAVE_SET.
            for link in linked:
                if self._serves(link):
                    st.scheduler.add_peer(link.peer_id or "", is_seed=self._is_seed(link))
        try:
            if sid in swarm.swarms:
                # Left earlier: the links still carry it (the wire has no LEAVE), signalling
                # forgot us.
                await swarm.signaling.join(sid, role="viewer")
            else:
                await swarm.join(sid)
        except SignalingError as exc:
            log.warning(
                "signalling refused swarm %s (%s): peers already linked still serve", sid, exc
            )
        for link in linked:
            if not link.is_closed:
                self._peer_in_swarm(link, link.peer_id or "", self._role(link), sid)

    @staticmethod
    def _role(link: PeerLink) -> Role:
        return link.protocol.peer.role if link.protocol.peer else Role.VIEWER

    def _is_seed(self, link: PeerLink) -> bool:
        return self._role(link) is Role.SEED

    @staticmethod
    def _serves(link: PeerLink) -> bool:
        # A neighbour that announced "upload off" never serves: in the scheduler it would win
        # elections and suppress the others' with its FETCHING (docs/simulation.md, adapter
        # rule). It still gets our HAVE_SET: it may download from us.
        return link.protocol.peer is None or link.protocol.peer.upload_enabled

    def _cut_over(self, old: RenditionState, new: RenditionState) -> None:
        """Old plays what it has or is fetching; new plays from the first segment after that."""
        assert self.player is not None and old.scheduler is not None and new.scheduler is not None
        now = self.clock()
        offset = _offset_between(old, new)
        if offset is None:
            log.warning(
                "ABR: %s and %s share no segment; not switching",
                old.rendition.rendition_id,
                new.rendition.rendition_id,
            )
            self._switch_abandoned()
            return
        new.time_offset = offset
        cut = self._cutover_sequence(old, self.player.position(now))
        first_new = min((s.sequence for s in new.follower.timeline.segments), default=cut)
        cut = max(cut, first_new)
        old.windows = [(lo, cut if hi is None else min(hi, cut)) for lo, hi in old.windows]
        old.windows = [(lo, hi) for lo, hi in old.windows if hi is None or lo < hi]
        new.windows.append((cut, None))
        new.active, new.leave_at = True, None
        for seq in old.cache.sequences():
            if seq >= cut:  # already in the player's buffer: no need to fetch it again
                new.scheduler.segment_stored(seq)
        self.playing = new
        self._feed_timeline(old)
        self._feed_timeline(new)
        self._want_inits(new)
        log.info(
            "ABR: %s -> %s from segment %d (throughput %.0f bit/s)",
            old.rendition.rendition_id,
            new.rendition.rendition_id,
            cut,
            self.meter.bits_per_second or 0.0,
        )
        self.events.append(
            (
                now,
                "rendition",
                {
                    "from": old.rendition.rendition_id,
                    "to": new.rendition.rendition_id,
                    "from_segment": cut,
                },
            )
        )
        self._wake.set()

    @staticmethod
    def _cutover_sequence(st: RenditionState, position: float) -> int:
        """First sequence at/after ``position`` that ``st`` neither holds nor is fetching."""
        assert st.scheduler is not None
        inflight = {seq for seq, _ in st.scheduler.transfers().values()}
        last = None
        for seg in st.follower.timeline.segments:
            last = seg.sequence
            if seg.end + st.time_offset <= position or not st.plays(seg.sequence):
                continue
            if not st.scheduler.has(seg.sequence) and seg.sequence not in inflight:
                return seg.sequence
        return 0 if last is None else last + 1

    def _check_drained(self, st: RenditionState, now: float) -> None:
        """A rendition switched away from stops being polled once its last transfer ended."""
        if st is self.playing or not st.switched_away or st.transfers or self.player is None:
            return
        assert st.scheduler is not None
        position = self.player.position(now)
        for seg in st.follower.timeline.segments:
            if (
                st.plays(seg.sequence)
                and seg.end + st.time_offset > position
                and not st.scheduler.has(seg.sequence)
            ):
                return
        st.active = False
        st.leave_at = now + self.config.abr_leave_after
        log.debug("%s drained; leaving its swarm at %.1f", st.rendition.rendition_id, st.leave_at)

    async def _leave(self, st: RenditionState) -> None:
        """Stop following a rendition no longer played: drop its cache, leave its swarm."""
        if st.active or st is self.playing or self.states.get(st.swarm_id) is not st:
            return
        del self.states[st.swarm_id]
        for task in [st.follow_task, *st.init_tasks.values()]:
            if task is not None:
                task.cancel()
        if st.updates is not None:
            with contextlib.suppress(Exception):
                await st.updates.aclose()  # type: ignore[attr-defined]
        for link, swarms in list(self._peer_swarms.items()):
            if st.swarm_id in swarms and not link.is_closed and st.p2p:
                link.protocol.send_have_set(st.swarm_id, ())  # "we hold nothing there now"
                link.flush()
        if self.swarm is not None and st.p2p:
            await self.swarm.signaling.leave(st.swarm_id)
        log.info(
            "left %s (%d cached bytes dropped)", st.rendition.rendition_id, st.cache.used_bytes
        )

    # ------------------------------------------------------------------------ init segments

    def _want_inits(self, st: RenditionState) -> None:
        """Start fetching every init segment the rendition needs and does not have yet."""
        if st.scheduler is not None and not st.active:
            return
        for seg in st.follower.timeline.segments:
            init = seg.init
            if init is None or init.key.number in st.init_tasks:
                continue
            if st.scheduler is not None and not st.plays(seg.sequence):
                continue
            st.init_tasks[init.key.number] = self._spawn(self._get_init(st, init))

    def _forget_inits(self, st: RenditionState, segments: list[Segment]) -> None:
        """Unpin init segments no segment of the timeline refers to any more (LOST)."""
        used = {s.init.key.number for s in segments if s.init is not None}
        for init_id in [i for i in st.init_tasks if i not in used]:
            st.init_tasks.pop(init_id).cancel()
            st.init_playable.discard(init_id)
            if st.cache.evict(init_cache_key(init_id)):
                self._broadcast(st, "lost", SegmentKey.init(init_id))
        for init_id in [i for i in st.init_holders if i not in used]:
            del st.init_holders[init_id]

    def _held_inits(self, st: RenditionState) -> list[int]:
        return [i for i in st.init_tasks if st.cache.has(init_cache_key(i))]

    async def _get_init(self, st: RenditionState, init: InitSegment) -> None:
        """Fetch one init segment: from a peer that has it, else from the origin."""
        data = None
        if self.swarm is not None and st.p2p and st.scheduler is not None:
            data = await self._init_from_peers(st, init)
        share = True
        if data is None:
            data = await self._init_from_origin(st, init)
            verdict = st.follower.timeline.check(init, data)
            if verdict is Verdict.VERIFIED:
                self.init_stats["verified"] += 1
            elif verdict is Verdict.MISMATCH:
                log.error("%s does not match its integrity manifest; not serving it", init.uri)
                share = False
        self._init_ready(st, init, data, share=share)

    async def _init_from_peers(self, st: RenditionState, init: InitSegment) -> bytes | None:
        deadline = self.clock() + self.config.init_peer_wait
        tried: set[str] = set()
        while True:
            link = self._init_source(st, init, tried)
            if link is None:
                remaining = deadline - self.clock()
                if remaining <= 0 or tried:  # after a failed peer, no more waiting
                    return None
                news = self._init_news
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await news.wait()
                continue
            pid = link.peer_id or ""
            tried.add(pid)
            data = await self._request_init(st, init, link)
            if data is None:
                continue
            if st.follower.timeline.verify(init, data):
                self.init_stats["verified"] += 1
                self.init_stats["p2p_bytes"] += len(data)
                self._count(st, "p2p_bytes", len(data))
                return data
            self.init_stats["rejected"] += 1
            self._reject(st, pid, len(data), f"init segment {init.playlist_uri} failed integrity")

    def _init_source(
        self, st: RenditionState, init: InitSegment, tried: set[str]
    ) -> PeerLink | None:
        if self.swarm is None:
            return None
        candidates = []
        for pid in st.init_holders.get(init.key.number, ()):
            link = self.swarm.links.get(pid)
            if pid in tried or link is None or link.is_closed or self.swarm.is_banned(pid):
                continue
            if link.protocol.request_slots > 0:
                candidates.append((not self._is_seed(link), pid, link))
        return min(candidates, key=lambda c: c[:2])[2] if candidates else None

    async def _request_init(
        self, st: RenditionState, init: InitSegment, link: PeerLink
    ) -> bytes | None:
        try:
            rid = link.protocol.request(st.swarm_id, init.key)
        except (ValueError, ConnectionStateError):
            return None
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._init_waiters[(link, rid)] = future
        link.flush()
        try:
            async with asyncio.timeout(self.config.init_peer_timeout):
                data = await future
        except TimeoutError:
            data = None
            log.info("peer %s did not deliver init %s in time", link.peer_id, init.playlist_uri)
        finally:
            self._init_waiters.pop((link, rid), None)
        if data is None and not link.is_closed:
            link.protocol.cancel(rid)
            link.flush()
        return data

    async def _init_from_origin(self, st: RenditionState, init: InitSegment) -> bytes:
        attempt = 0
        while True:
            try:
                data = await self._fetch_segment(init, 0, None)
            except (OriginError, ValueError) as exc:
                attempt += 1
                log.warning("fetching init %s failed (%d): %s", init.uri, attempt, exc)
                await asyncio.sleep(min(0.25 * 2**attempt, 4.0))
                continue
            self.init_stats["http_bytes"] += len(data)
            self._count(st, "http_bytes", len(data))
            return data

    def _init_ready(
        self, st: RenditionState, init: InitSegment, data: bytes, *, share: bool
    ) -> None:
        # Held for our own playback even when it may not be shared (origin bytes that fail
        # the manifest: the origin is the authority, but peers must not get them from us).
        st.init_playable.add(init.key.number)
        if share and self._cache_put(st, init_cache_key(init.key.number), data):
            self._broadcast(st, "have", init.key)
        waiting = [s for s in st.held_back if s.init is not None and s.init.key == init.key]
        st.held_back = [s for s in st.held_back if s not in waiting]
        if self.player is not None:
            now = self.clock()
            for seg in waiting:
                if st.plays(seg.sequence):
                    self.player.add_segment(seg.start + st.time_offset, seg.duration, now)
        self._wake.set()

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
        if st.scheduler is not None and self._serves(link):
            st.scheduler.add_peer(peer_id, is_seed=role is Role.SEED)
        try:
            link.protocol.send_have_set(swarm_id, st.cache.sequences(), self._held_inits(st))
        except ValueError:
            return  # a rendition being added (ABR): _join_swarm announces it after the JOIN
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
        elif isinstance(
            event, TransferCompleted | TransferFailed | DontHaveReceived | BusyReceived
        ):
            waiter = self._init_waiters.pop((link, event.request_id), None)
            if waiter is not None:
                if not waiter.done():
                    ok = isinstance(event, TransferCompleted)
                    waiter.set_result(event.data if ok else None)  # type: ignore[union-attr]
            elif isinstance(event, TransferCompleted):
                self._on_completed(link, event)
            else:
                self._on_refused(link, event)
        elif isinstance(event, SwarmJoined):
            self._peer_swarms.setdefault(link, set()).add(event.swarm_id)
            self._peer_in_swarm(link, pid, self._role(link), event.swarm_id)
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
            for holders in st.init_holders.values():
                holders.discard(pid)
            if st.scheduler is not None:
                for tid in st.scheduler.remove_peer(pid):
                    self._meter_end(st.transfers.pop(tid, None))
        for key in [k for k in self._init_waiters if k[0] is link]:
            waiter = self._init_waiters.pop(key)
            if not waiter.done():
                waiter.set_result(None)
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
            self._init_claims(st, pid, event.init_ids, replace_all=True)
            scheduler.peer_has(pid, (s for s in event.sequences() if low <= s < high))
        else:
            key = event.key
            if key.kind is SegmentKind.INIT:
                if isinstance(event, HaveReceived | LostReceived):
                    lost = isinstance(event, LostReceived)
                    self._init_claims(st, pid, (key.number,), replace_all=False, lost=lost)
                return
            if not low <= key.number < high:
                return
            if isinstance(event, HaveReceived):
                scheduler.peer_has_one(pid, key.number)
            elif isinstance(event, LostReceived):
                scheduler.peer_lost(pid, (key.number,))
            elif isinstance(event, FetchingReceived):
                scheduler.peer_fetching(pid, key.number)
            else:
                scheduler.peer_fetch_aborted(pid, key.number)
        self._wake.set()

    def _init_claims(
        self,
        st: RenditionState,
        pid: str,
        init_ids: tuple[int, ...],
        *,
        replace_all: bool,
        lost: bool = False,
    ) -> None:
        """Track which peers hold which init segments (only inits our timeline refers to)."""
        if replace_all:
            for holders in st.init_holders.values():
                holders.discard(pid)
        known = {s.init.key.number for s in st.follower.timeline.segments if s.init is not None}
        added = False
        for init_id in init_ids:
            if init_id not in known:
                continue
            holders = st.init_holders.setdefault(init_id, set())
            if lost:
                holders.discard(pid)
            else:
                holders.add(pid)
                added = True
        if added:
            news, self._init_news = self._init_news, asyncio.Event()
            news.set()

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
            self._meter_end(transfer)
            scheduler.transfer_failed(now, tid, FailureReason.DONT_HAVE)
        elif event.offset != 0 or not st.follower.timeline.verify(seg, event.data):
            self._meter_end(transfer)
            self._reject(st, pid, len(event.data), f"segment {seg.sequence} failed integrity")
            scheduler.transfer_failed(now, tid, FailureReason.BAD_DATA)
        else:
            self._meter_end(transfer, len(event.data))
            self._count(st, "p2p_bytes", len(event.data))
            if self.swarm is not None:
                self.swarm.touch(pid)
            scheduler.transfer_done(now, tid)
            self._store(st, seg, event.data, share=True)
            self._consider_switch()
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
        self._meter_end(st.transfers.pop(tid))
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
        elif st is not None:
            data = st.cache.get(init_cache_key(event.key.number))
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


def _offset_between(old: RenditionState, new: RenditionState) -> float | None:
    """Seconds to add to ``new``'s media times to get the player's, from the newest sequence
    both timelines hold (aligned renditions: one sequence number is one instant)."""
    common = {s.sequence for s in old.follower.timeline.segments} & {
        s.sequence for s in new.follower.timeline.segments
    }
    if not common:
        return None
    seq = max(common)
    old_seg, new_seg = old.follower.timeline.segment(seq), new.follower.timeline.segment(seq)
    assert old_seg is not None and new_seg is not None
    return old_seg.start + old.time_offset - new_seg.start


__all__ = [
    "AgentConfig",
    "DownloadMeter",
    "PeerAgent",
    "PlaylistError",
    "RenditionState",
    "SegmentStoredCallback",
    "init_cache_key",
    "vod_start_position",
]
