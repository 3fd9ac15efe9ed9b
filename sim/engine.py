"""The discrete-event engine: real peers over a modelled network, in simulated seconds.

Every viewer owns the real sans-IO parts of a peer: a :class:`SegmentScheduler` (download
decisions), an :class:`UploadScheduler` (admission of neighbours' requests) and a
:class:`SegmentCache`. The engine is their adapter, like the aiortc one: it feeds them events
and carries out their actions over fluid links (:mod:`swarmcast.sim.network`). Peer
introduction is the signalling server's own sampling (:meth:`SwarmHub.sample`).

Granularity (see docs/simulation.md): one event per segment transfer (not per 64 KiB chunk);
wire messages (HAVE, FETCHING, LOST, REQUEST, BUSY, DONT_HAVE) are events that carry their
one-way latency but are not encoded. A scheduler is polled when an event concerns it (at most
once per instant) and at its own ``next_wakeup()``, never on a fixed tick.
"""

from __future__ import annotations

import gc
import heapq
import logging
import math
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from swarmcast.peer.cache import SegmentCache
from swarmcast.peer.scheduler import (
    Action,
    CancelTransfer,
    FetchFromOrigin,
    FetchFromPeer,
    SegmentInfo,
    SegmentScheduler,
)
from swarmcast.peer.upload import Busy, UploadConfig, UploadScheduler
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.hub import Member, Swarm, SwarmHub
from swarmcast.sim.network import Endpoint, Flow, FlowNetwork
from swarmcast.sim.scenario import Scenario

logger = logging.getLogger(__name__)

#: Shortest gap between two polls of one scheduler asking to be woken "now" (guards loops).
MIN_WAKE_GAP = 0.001
#: Bytes a receiver reports at first byte (one data-channel message / socket read).
FIRST_READ = 16 * 1024
#: Floor of a drawn download capacity, bytes/s (a zero draw would never finish anything).
MIN_DOWNLOAD_BPS = 1000.0
#: Garbage-collector thresholds during a run (the default is (700, 10, 10)). A run allocates
#: millions of short-lived event tuples next to 10^5-10^7 long-lived objects, and the default
#: rescans the long-lived ones often enough to cost ~10 % of the run. Rarer, not off: a
#: transfer and its flow refer to each other, so some garbage is cyclic.
GC_THRESHOLDS = (50_000, 20, 100)


class Node:
    """A peer of the swarm (viewer or seed): what its neighbours see."""

    __slots__ = (
        "active",
        "gone",
        "index",
        "is_seed",
        "locality",
        "neighbours",
        "next_request_id",
        "pid",
        "queue",
        "stored",
        "up",
        "upload",
        "upload_on",
        "uploaded",
    )

    def __init__(self, index: int, pid: str, up_bps: float, upload: UploadScheduler) -> None:
        self.index = index
        self.pid = pid
        self.is_seed = False
        self.up = Endpoint(up_bps if up_bps > 0 else math.inf)
        self.upload = upload
        self.upload_on = upload.config.enabled
        self.neighbours: dict[int, Node] = {}
        self.stored: set[int] = set()
        self.locality = 0
        self.gone = False
        self.uploaded = 0.0
        self.next_request_id = 1
        self.active: dict[int, Transfer] = {}  # uploads being sent, by request id
        self.queue: dict[int, Transfer] = {}  # accepted, waiting for a sending slot


class Viewer(Node):
    """A viewer: a node with a scheduler, a cache and a virtual player."""

    __slots__ = (
        "buffer_version",
        "cache",
        "down",
        "finished",
        "http_bytes",
        "joined_at",
        "last_seq",
        "latency_samples",
        "latency_sum",
        "left_at",
        "p2p_bytes",
        "play_time",
        "playing",
        "poll_queued",
        "pos_ref",
        "sched",
        "seq_tid",
        "stall_count",
        "stall_since",
        "stall_time",
        "started_at",
        "t_ref",
        "transfers",
        "wake_at",
    )

    def __init__(self, index: int, pid: str, up_bps: float, upload: UploadScheduler) -> None:
        super().__init__(index, pid, up_bps, upload)
        self.sched: SegmentScheduler
        self.cache: SegmentCache
        self.down = Endpoint(0.0)
        self.joined_at = 0.0
        self.left_at: float | None = None
        self.transfers: dict[int, Transfer] = {}  # incoming, by scheduler transfer id
        self.seq_tid: dict[int, int] = {}
        self.poll_queued = False
        self.wake_at: float | None = None
        self.last_seq = -1  # newest sequence in the scheduler's timeline
        # Player: media position pos_ref at clock t_ref, advancing while playing.
        self.pos_ref = 0.0
        self.t_ref = 0.0
        self.playing = False
        self.started_at: float | None = None
        self.stall_since: float | None = None
        self.stall_count = 0
        self.stall_time = 0.0
        self.play_time = 0.0
        self.finished = False
        self.buffer_version = 0
        self.http_bytes = 0.0
        self.p2p_bytes = 0.0
        self.latency_sum = 0.0
        self.latency_samples = 0


class Transfer:
    """One download of a viewer, from the origin (``source`` None) or a peer."""

    __slots__ = ("flow", "offset", "reported_first", "request_id", "seq", "source", "tid", "viewer")

    def __init__(self, viewer: Viewer, tid: int, seq: int, source: Node | None) -> None:
        self.viewer = viewer
        self.tid = tid
        self.seq = seq
        self.source = source
        self.flow: Flow | None = None
        self.request_id = 0
        self.offset = 0
        self.reported_first = False


class Counters:
    """Swarm-wide byte and event counters (cumulative)."""

    __slots__ = (
        "connect_attempts",
        "connect_nat_failed",
        "connect_refused",
        "connections",
        "http_bytes",
        "origin_requests",
        "p2p_bytes",
        "seed_ingest_bytes",
        "stalls",
    )

    def __init__(self) -> None:
        self.http_bytes = 0.0
        self.p2p_bytes = 0.0
        self.seed_ingest_bytes = 0.0
        self.origin_requests = 0
        self.connect_attempts = 0
        self.connect_nat_failed = 0
        self.connect_refused = 0
        self.connections = 0
        self.stalls = 0


Callback = Callable[[Any, Any], None]


class Simulation:
    """One run of a :class:`Scenario`; :meth:`run` returns the raw results for the report."""

    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario
        self.rng = random.Random(scenario.seed)
        self.now = 0.0
        # Future events: a heap of the distinct times, and each time's events in insertion
        # order (see `at`).
        self._times: list[float] = []
        self._at: dict[float, list[tuple[Callback, Any, Any]]] = {}
        # Events due at the current instant, in insertion order (see `at`).
        self._due: deque[tuple[Callback, Any, Any]] = deque()
        self.net = FlowNetwork(self._schedule_flow, self._account)
        cap = scenario.origin_capacity
        self.origin = Endpoint(math.inf if cap is None else cap * 1e6 / 8)
        self.counters = Counters()
        self.config = scenario.scheduler_config()
        self.seg_bytes = scenario.segment_bytes
        self.d = scenario.segment_duration
        self.nodes: dict[str, Node] = {}
        self.viewers: list[Viewer] = []
        self.seeds: list[Node] = []
        self.online = 0
        self.events = 0
        self._buffer = memoryview(bytes(self.seg_bytes))  # one shared payload for every cache
        self._published = scenario.window if scenario.live else scenario.vod_segments
        self._timeline: tuple[SegmentInfo, ...] = ()
        self._timeline_for = -1
        self._series: list[dict[str, float]] = []
        self._last_sample: tuple[float, ...] = (0.0, 0.0, 0.0, 0, 0.0)
        self._origin_by_seq: dict[int, int] = {}
        self.segments_stored: set[int] = set()
        """Every segment some viewer stored (the denominator of origin requests per segment)."""
        sample_size = scenario.sample_size or SignalingConfig().sample_size
        self.hub = SwarmHub(
            SignalingConfig(sample_size=sample_size), rng=random.Random(scenario.seed + 1)
        )
        self.swarm = Swarm("sim")
        self.progress: Callable[[float], None] | None = None
        self.trace: Callable[[str, float, list[Action]], None] | None = None
        """Called with (viewer id, clock, actions) after every scheduler poll (checks, tests)."""

    # ------------------------------------------------------------------ event queue

    def at(self, when: float, fn: Callback, a: Any = None, b: Any = None) -> None:
        """Run ``fn(a, b)`` at simulated time ``when``.

        Events run in (time, insertion) order. The heap holds times only (float comparisons
        are cheaper than tuple ones), each with the list of its events in insertion order. A
        third of all events are due at once (polls queued by an event): those skip the heap
        for a FIFO, which keeps the order because every event listed for this instant was
        queued before the clock got here, so before them.
        """
        if when == self.now:
            self._due.append((fn, a, b))
            return
        events = self._at.get(when)
        if events is None:
            self._at[when] = [(fn, a, b)]
            heapq.heappush(self._times, when)
        else:
            events.append((fn, a, b))

    def _schedule_flow(self, when: float, flow: Flow, version: int) -> None:
        self.at(when, self._flow_done, flow, version)

    def run(self) -> None:
        """Run the scenario to its end."""
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            self._run()
        finally:
            gc.set_threshold(*thresholds)

    def _run(self) -> None:
        sc = self.sc
        for seed_index in range(sc.seeds):
            self._add_seed(seed_index)
        for i in range(sc.viewers):
            self.at(self.rng.random() * sc.join_spread, self._arrive, i)
        if sc.live:
            self.at(self.d, self._publish)
        self.at(sc.report_interval, self._sample)
        end = sc.duration
        next_progress = 0.0
        times, by_time, due = self._times, self._at, self._due
        pop, popleft = heapq.heappop, due.popleft
        progress = self.progress
        now = self.now  # only this loop moves the clock
        events = 0
        current: list[tuple[Callback, Any, Any]] = []  # the events listed for `now`
        i = 0
        while True:
            if i < len(current):
                fn, a, b = current[i]
                i += 1
            elif due:
                fn, a, b = popleft()
            elif times and times[0] <= end:
                when = pop(times)
                current, i = by_time.pop(when), 0
                if when != now:
                    now = self.now = when
                    if progress is not None and now >= next_progress:
                        progress(now)
                        next_progress = now + 1.0
                continue
            else:
                break
            events += 1
            fn(a, b)
        self.events += events
        self.now = end
        for v in self.viewers:
            if not v.gone:
                self._finish_viewer(v)
        if not self._series or self._series[-1]["t"] < end:
            self._sample(None, None, reschedule=False)
        if self.progress is not None:
            self.progress(end)

    # ------------------------------------------------------------------ stream and seeds

    def timeline(self) -> tuple[SegmentInfo, ...]:
        """The current playlist, shared by every viewer: a tuple, so that the schedulers derive
        their tables from it once (see ``SegmentScheduler.set_timeline``)."""
        if self._timeline_for != self._published:
            d, size = self.d, self.seg_bytes
            first = max(self._published - self.sc.window, 0) if self.sc.live else 0
            self._timeline = tuple(
                SegmentInfo(s, d, size, s * d) for s in range(first, self._published)
            )
            self._timeline_for = self._published
        return self._timeline

    def _publish(self, _a: Any, _b: Any) -> None:
        seq = self._published
        self._published += 1
        oldest = self._published - self.sc.window
        for seed in self.seeds:
            # A seed sits next to the origin: it has the segment one origin latency later.
            self.at(self.now + self.sc.http_latency, self._seed_ingest, seed, seq)
            seed.stored.discard(oldest - 1)
        self.at(self.now + self.d, self._publish)

    def _seed_ingest(self, seed: Node, seq: int) -> None:
        seed.stored.add(seq)
        self.counters.seed_ingest_bytes += self.seg_bytes
        self._announce(seed, seq, "have")

    def _add_seed(self, index: int) -> None:
        sc = self.sc
        up = UploadScheduler(UploadConfig(max_concurrent=64, max_queued=256))
        seed = Node(-1 - index, f"seed-{index:03d}", sc.seed_upload * 1e6 / 8, up)
        seed.is_seed = True
        if sc.live:
            seed.stored = set(range(self._published))
        else:
            seed.stored = set(range(sc.vod_segments))
        self.counters.seed_ingest_bytes += len(seed.stored) * self.seg_bytes
        self.nodes[seed.pid] = seed
        self.seeds.append(seed)
        if sc.p2p:
            member = Member(seed.pid, "seed", sc.seed_capacity, sc.seed_capacity, None, "a:seed")
            self.swarm.add(member)

    # ------------------------------------------------------------------ arrivals, departures

    def _arrive(self, _a: Any, _b: Any) -> None:
        sc = self.sc
        index = len(self.viewers)
        up_bps = sc.upload.draw_bps(self.rng)
        down_bps = max(sc.download.draw_bps(self.rng), MIN_DOWNLOAD_BPS)
        upload_on = sc.p2p and up_bps > 0
        upload = UploadScheduler(sc.viewer_upload_config(upload_on), now=self.now)
        if upload.config.rate_limit_bps:
            # The peer's own cap binds before the link does (fluid: a lower uplink).
            up_bps = min(up_bps, upload.config.rate_limit_bps)
        v = Viewer(index, f"viewer-{index:06d}", up_bps if upload_on else 0.0, upload)
        v.down.capacity = down_bps
        v.locality = self.rng.randrange(sc.localities)
        v.joined_at = self.now
        v.sched = SegmentScheduler(self.config, peer_id=v.pid)
        v.cache = SegmentCache(int(sc.cache_mb * 1024 * 1024))
        self.viewers.append(v)
        self.nodes[v.pid] = v
        self.online += 1
        session_end = math.inf
        if sc.session is not None:
            session_end = self.now + self.rng.expovariate(1.0 / sc.session)
            if session_end < sc.duration:
                self.at(session_end, self._leave, v)
        v.sched.set_timeline(self.timeline(), live=sc.live)
        v.last_seq = self._published - 1
        v.pos_ref = (v.sched.live_start_position() or 0.0) if sc.live else 0.0
        v.t_ref = self.now
        if sc.live:
            # The join loaded the playlist (the timeline above): reload one target duration
            # after it, as real players do. The reload phase is the join's phase, which also
            # set the playhead; an independent random phase made viewers far ahead learn of
            # new segments late (5-9 points of offload lost against real runs at 6-20
            # viewers, bench/sim_validate.py).
            self.at(self.now + self.d, self._refresh, v)
        if sc.p2p:
            self._introduce(v, first=True)
        if sc.player_tick is not None:
            self.at(self.now + sc.player_tick, self._player_tick, v)
        self._queue_poll(v)

    def _introduce(self, v: Viewer, *, first: bool) -> None:
        """Ask the signalling server for a sample and start connecting to it."""
        sc = self.sc
        member = Member(v.pid, "viewer", 0, 0, None, f"a:10.{v.locality}.0")
        for seed in self.seeds:
            # Seeds report their spare capacity every stats interval; model it as fresh.
            m = self.swarm.members.get(seed.pid)
            if m is not None:
                m.spare = max(sc.seed_capacity - len(seed.neighbours), 0)
        sample = self.hub.sample(self.swarm, member)
        if first:
            self.swarm.add(member)
        lo, hi = sc.connect_time
        for entry in sample:
            other = self.nodes.get(entry["peer"])
            if other is None or other is v or other.index in v.neighbours or other.gone:
                continue
            self.counters.connect_attempts += 1
            if self.rng.random() < sc.nat_fail:
                self.counters.connect_nat_failed += 1
                continue
            self.at(self.now + self.rng.uniform(lo, hi), self._connect, v, other)

    def _connect(self, v: Viewer, other: Node) -> None:
        if v.gone or other.gone or other.index in v.neighbours:
            return
        limit = self.sc.seed_capacity if other.is_seed else self.sc.max_neighbours
        if len(other.neighbours) >= limit or len(v.neighbours) >= self.sc.max_neighbours:
            self.counters.connect_refused += 1
            return
        self.counters.connections += 1
        v.neighbours[other.index] = other
        other.neighbours[v.index] = v
        self._link_up(v, other)
        if isinstance(other, Viewer):
            self._link_up(other, v)

    def _link_up(self, v: Viewer, other: Node) -> None:
        # A peer that announced "no upload" in its HELLO is no source and must not count in
        # elections: the adapter does not tell the scheduler about it at all.
        if not other.upload_on:
            return
        v.sched.add_peer(other.pid, is_seed=other.is_seed)
        oldest = self.timeline()[0].sequence if self.sc.live else 0
        held = sorted(s for s in other.stored if s >= oldest)
        if held:
            v.sched.peer_has(other.pid, held)
            # A new source only matters for a segment this viewer lacks and is not fetching.
            if any(s not in v.stored and s not in v.seq_tid for s in held):
                self._queue_poll(v)

    def _leave(self, v: Viewer, _b: Any = None) -> None:
        if v.gone:
            return
        self._finish_viewer(v)
        self.swarm.remove(v.pid)
        for other in list(v.neighbours.values()):
            del other.neighbours[v.index]
            if isinstance(other, Viewer):
                for tid in other.sched.remove_peer(v.pid):
                    self._drop_transfer(other, tid)
                self._queue_poll(other)
                if len(other.neighbours) < self.sc.min_neighbours and not other.gone:
                    self._introduce(other, first=False)
        v.neighbours.clear()
        # Its downloads end too, which frees the neighbours' upload slots.
        for tid in list(v.transfers):
            self._drop_transfer(v, tid)
        if self.sc.session is not None:
            self.at(self.now, self._arrive)  # keep the audience size: a newcomer replaces it

    def _finish_viewer(self, v: Viewer) -> None:
        self._advance_player(v)
        if v.stall_since is not None:
            v.stall_time += self.now - v.stall_since
            v.stall_since = None
        v.gone = True
        v.left_at = self.now
        self.online -= 1

    # ------------------------------------------------------------------ wire messages

    def _latency(self, a: Node, b: Node) -> float:
        if a.is_seed or b.is_seed or a.locality == b.locality:
            return self.sc.p2p_latency
        return self.sc.p2p_latency_remote

    def _announce(self, node: Node, seq: int, kind: str) -> None:
        """HAVE / FETCHING / LOST to every neighbour, delivered one latency later."""
        if not node.upload_on or not node.neighbours:
            return
        self.at(self.now + self.sc.p2p_latency, self._deliver_announce, node, (seq, kind))

    def _deliver_announce(self, node: Node, msg: tuple[int, str]) -> None:
        # The hottest loop of a large swarm (every HAVE reaches ~20-40 schedulers): locals.
        # Only viewers have a scheduler (seeds are plain nodes).
        seq, kind = msg
        pid = node.pid
        if kind == "have":
            now = self.now
            seq_end = (seq + 1) * self.d
            for w in node.neighbours.values():
                if not isinstance(w, Viewer):
                    continue
                w.sched.peer_has_one(pid, seq)
                # Only a segment this viewer still needs can change its decisions.
                if seq in w.stored or seq in w.seq_tid or seq > w.last_seq or w.poll_queued:
                    continue
                position = w.pos_ref
                if w.playing and w.stall_since is None:
                    position += now - w.t_ref  # _position(w), inlined
                if seq_end > position:
                    self._queue_poll(w)
        elif kind == "fetching":
            for w in node.neighbours.values():
                if isinstance(w, Viewer):
                    w.sched.peer_fetching(pid, seq)
        else:
            for w in node.neighbours.values():
                if isinstance(w, Viewer):
                    w.sched.peer_lost(pid, (seq,))

    # ------------------------------------------------------------------ polling

    def _queue_poll(self, v: Viewer) -> None:
        if not v.poll_queued and not v.gone:
            v.poll_queued = True
            self.at(self.now, self._poll, v)

    def _wake(self, v: Viewer, when: float) -> None:
        if v.wake_at == when:
            v.wake_at = None
            if not v.poll_queued:  # else the queued poll runs at this instant anyway
                self._poll(v)

    def _poll(self, v: Viewer, _b: Any = None) -> None:
        v.poll_queued = False
        if v.gone:
            return
        now = self.now
        sched = v.sched
        self._advance_player(v)  # from here on _position(v) is v.pos_ref
        sched.set_playback(now, v.pos_ref, self._buffered_until(v), 1.0, v.playing)
        for t in v.transfers.values():
            if t.flow is not None:
                self._report(t, now)
        actions = sched.poll(now)
        if self.trace is not None:
            self.trace(v.pid, now, actions)
        for action in actions:
            if type(action) is FetchFromPeer:
                self._fetch_peer(v, action)
            elif type(action) is FetchFromOrigin:
                self._fetch_origin(v, action)
            elif type(action) is CancelTransfer:
                self._drop_transfer(v, action.transfer_id)
        wake = sched.next_wakeup(now)
        if wake is not None:
            wake = max(wake, now + MIN_WAKE_GAP)
            if v.wake_at is None or wake < v.wake_at or v.wake_at <= now:
                v.wake_at = wake
                self.at(wake, self._wake, v, wake)

    def _report(self, t: Transfer, now: float) -> None:
        """Tell the scheduler how many bytes arrived, as a real receiver would see them."""
        flow = t.flow
        assert flow is not None
        self.net.settle(now, flow)
        if flow.done <= 0:
            return
        sched = t.viewer.sched
        if not t.reported_first:
            # The first read happened at first byte: report it at that time so the latency
            # sample and the rate samples come out as a chunk-by-chunk receiver measures them.
            t.reported_first = True
            first = min(float(FIRST_READ), flow.size)
            first_at = flow.started_at + first / flow.rate if flow.rate > 0 else now
            if first_at < now:
                sched.transfer_progress(first_at, t.tid, int(first))
        sched.transfer_progress(now, t.tid, int(flow.done))

    # ------------------------------------------------------------------ fetching

    def _fetch_origin(self, v: Viewer, action: FetchFromOrigin) -> None:
        t = Transfer(v, action.transfer_id, action.sequence, None)
        t.offset = action.offset
        v.transfers[t.tid] = t
        v.seq_tid[t.seq] = t.tid
        self.counters.origin_requests += 1
        self._origin_by_seq[t.seq] = self._origin_by_seq.get(t.seq, 0) + 1
        self._announce(v, t.seq, "fetching")
        self.at(self.now + self.sc.http_latency, self._start_origin_flow, t)

    def _start_origin_flow(self, t: Transfer, _b: Any) -> None:
        if t.viewer.transfers.get(t.tid) is not t:
            return  # cancelled while the request was on its way
        size = max(self.seg_bytes - t.offset, 1)
        t.flow = Flow(self.origin, t.viewer.down, size, t)
        self.net.start(self.now, t.flow)

    def _fetch_peer(self, v: Viewer, action: FetchFromPeer) -> None:
        src = self.nodes.get(action.peer_id)
        t = Transfer(v, action.transfer_id, action.sequence, src)
        v.transfers[t.tid] = t
        v.seq_tid[t.seq] = t.tid
        if src is None:
            self.at(self.now, self._refused, t, ("peer_gone", None))
            return
        self.at(self.now + self._latency(v, src), self._request_arrives, t)

    def _request_arrives(self, t: Transfer, _b: Any) -> None:
        v, src = t.viewer, t.source
        assert src is not None
        if v.transfers.get(t.tid) is not t or src.gone:
            return
        back = self.now + self._latency(v, src)
        if t.seq not in src.stored:
            self.at(back, self._refused, t, ("dont_have", None))
            return
        rid = src.next_request_id
        src.next_request_id += 1
        answer = src.upload.offer(self.now, rid, v.pid, t.seq, self.seg_bytes)
        if isinstance(answer, Busy):
            self.at(back, self._refused, t, ("busy", answer.retry_after))
            return
        t.request_id = rid
        if len(src.active) < src.upload.config.max_concurrent:
            self._start_upload(src, t)
        else:
            src.queue[rid] = t

    def _start_upload(self, src: Node, t: Transfer) -> None:
        src.active[t.request_id] = t
        t.flow = Flow(src.up, t.viewer.down, self.seg_bytes, t)
        self.net.start(self.now, t.flow)

    def _refused(self, t: Transfer, why: tuple[str, float | None]) -> None:
        v = t.viewer
        if v.transfers.get(t.tid) is not t:
            return
        self._forget(v, t)
        v.sched.transfer_failed(self.now, t.tid, why[0], retry_after=why[1])
        self._queue_poll(v)

    def _forget(self, v: Viewer, t: Transfer) -> None:
        del v.transfers[t.tid]
        if v.seq_tid.get(t.seq) == t.tid:
            del v.seq_tid[t.seq]

    def _release_upload(self, t: Transfer) -> None:
        src = t.source
        if src is None or not t.request_id:
            return
        src.upload.cancel(t.request_id)
        src.queue.pop(t.request_id, None)
        if src.active.pop(t.request_id, None) is not None and src.queue and not src.gone:
            # Next accepted request in the upload scheduler's order (no deadline: FIFO).
            rid = min(src.queue)
            self._start_upload(src, src.queue.pop(rid))

    def _drop_transfer(self, v: Viewer, tid: int) -> None:
        """The scheduler cancelled or forgot ``tid``: stop it and keep the byte counts."""
        t = v.transfers.get(tid)
        if t is None:
            return
        self._forget(v, t)
        if t.flow is not None:
            self.net.stop(self.now, t.flow)
        self._release_upload(t)

    # ------------------------------------------------------------------ transfer completion

    def _account(self, flow: Flow, added: float) -> None:
        if added <= 0:
            return
        t: Transfer = flow.owner  # type: ignore[assignment]
        if t.source is None:
            t.viewer.http_bytes += added
            self.counters.http_bytes += added
        else:
            t.viewer.p2p_bytes += added
            t.source.uploaded += added
            self.counters.p2p_bytes += added

    def _flow_done(self, flow: Flow, version: int) -> None:
        if version != flow.version:
            return
        t: Transfer = flow.owner  # type: ignore[assignment]
        v = t.viewer
        self.net.finish(self.now, flow)
        self._release_upload(t)
        if v.transfers.get(t.tid) is not t:
            return
        self._forget(v, t)
        self._report(t, self.now)
        v.sched.transfer_done(self.now, t.tid)
        self._store(v, t.seq)
        self._queue_poll(v)

    def _store(self, v: Viewer, seq: int) -> None:
        if seq in v.stored:
            return
        result = v.cache.put(seq, self._buffer)
        if not result.stored:
            return
        for key in result.evicted:
            if isinstance(key, int):
                v.stored.discard(key)
                v.sched.segment_evicted(key)
                self._announce(v, key, "lost")
        v.stored.add(seq)
        self.segments_stored.add(seq)
        v.sched.segment_stored(seq)
        self._announce(v, seq, "have")
        self._buffer_changed(v)

    # ------------------------------------------------------------------ player

    def _position(self, v: Viewer) -> float:
        if v.playing and v.stall_since is None:
            return v.pos_ref + (self.now - v.t_ref)
        return v.pos_ref

    def _buffered_until(self, v: Viewer) -> float:
        pos = v.pos_ref if not v.playing else self._position(v)
        seq = int(pos // self.d)
        stored = v.stored
        while seq in stored:
            seq += 1
        return max(seq * self.d, pos)

    def _content_end(self) -> float:
        return math.inf if self.sc.live else self.sc.vod_segments * self.d

    def _advance_player(self, v: Viewer) -> None:
        """Bring the player to ``now``: time played, latency samples."""
        if v.playing and v.stall_since is None:
            played = self.now - v.t_ref
            v.play_time += played
            v.pos_ref += played
        v.t_ref = self.now

    def _buffer_changed(self, v: Viewer) -> None:
        """A segment landed: start, resume, and re-arm the underrun timer."""
        self._advance_player(v)
        v.cache.set_playhead(int(v.pos_ref // self.d))
        buffered = self._buffered_until(v)
        if v.finished or buffered <= v.pos_ref + 1e-9:
            return
        if not v.playing:
            v.playing = True
            v.started_at = self.now
        elif v.stall_since is not None:
            v.stall_time += self.now - v.stall_since
            v.stall_since = None
        v.buffer_version += 1
        end = min(buffered, self._content_end())
        self.at(self.now + (end - v.pos_ref), self._underrun, v, v.buffer_version)

    def _underrun(self, v: Viewer, version: int) -> None:
        if version != v.buffer_version or v.gone:
            return
        self._advance_player(v)
        if v.pos_ref >= self._content_end() - 1e-9:
            v.finished = True
            v.playing = False
            return
        v.stall_since = self.now
        v.stall_count += 1
        self.counters.stalls += 1
        self._queue_poll(v)

    def _player_tick(self, v: Viewer, _b: Any) -> None:
        if not v.gone:
            self._queue_poll(v)
            self.at(self.now + self.sc.player_tick, self._player_tick, v)  # type: ignore[operator]

    def _refresh(self, v: Viewer, _b: Any) -> None:
        """Live playlist reload (every target duration, each viewer at its own phase)."""
        if v.gone:
            return
        timeline = self.timeline()
        v.sched.set_timeline(timeline, live=True)
        v.last_seq = timeline[-1].sequence
        self._advance_player(v)
        if v.playing:
            v.latency_sum += timeline[-1].end - v.pos_ref
            v.latency_samples += 1
        if v.pos_ref < timeline[0].start:
            # Fell out of the window (long stall): jump back to the live point, as hls.js does.
            v.pos_ref = v.sched.live_start_position() or timeline[0].start
            self._buffer_changed(v)
        self._queue_poll(v)
        self.at(self.now + self.d, self._refresh, v)

    # ------------------------------------------------------------------ time series

    def _sample(self, _a: Any, _b: Any, *, reschedule: bool = True) -> None:
        c = self.counters
        t0, http0, p2p0, stalls0, seed0 = self._last_sample
        http, p2p = c.http_bytes, c.p2p_bytes
        dt = max(self.now - t0, 1e-9)
        received = (http - http0) + (p2p - p2p0)
        self._series.append(
            {
                "t": round(self.now, 6),
                "viewers_online": self.online,
                "playing": sum(
                    1 for v in self.viewers if not v.gone and v.playing and v.stall_since is None
                ),
                "stalled": sum(1 for v in self.viewers if not v.gone and v.stall_since is not None),
                "http_bytes": http - http0,
                "p2p_bytes": p2p - p2p0,
                "offload": (p2p - p2p0) / received if received > 0 else 0.0,
                "origin_egress_bps": ((http - http0) + (c.seed_ingest_bytes - seed0)) / dt,
                "stalls": c.stalls - stalls0,
                "transfers_active": self.net.active,
            }
        )
        self._last_sample = (self.now, http, p2p, c.stalls, c.seed_ingest_bytes)
        if reschedule:
            self.at(self.now + self.sc.report_interval, self._sample)

    @property
    def series(self) -> list[dict[str, float]]:
        """The time series recorded so far (one entry per ``report_interval``)."""
        return self._series

    @property
    def origin_fetches_by_segment(self) -> dict[int, int]:
        """Origin requests made by viewers, per segment."""
        return self._origin_by_seq
