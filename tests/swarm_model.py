"""A small time-stepped model of a live swarm that drives the real SegmentScheduler.

Used by the property tests (tests/test_scheduler_properties.py) and as a seed for the
discrete-event simulator: an origin publishing a live HLS window, viewers with a virtual
player, per-viewer HTTP links and peer upload capacities, announcements with a delay, and
faults (peers that stop sending, peers that leave).

Everything is deterministic for a given ``random.Random``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from swarmcast.peer.scheduler import (
    CancelTransfer,
    FetchFromOrigin,
    FetchFromPeer,
    SchedulerConfig,
    SegmentInfo,
    SegmentScheduler,
)


@dataclass
class ModelParams:
    """A scenario. Rates in bytes/s, times in seconds."""

    viewers: int = 4
    duration: float = 60.0
    segment_duration: float = 2.0
    segment_size: int = 192_500  # ~770 kbit/s, the p2p-media-loader comparison stream
    window: int = 6
    http_bps: float = 2_000_000.0
    http_latency: float = 0.05
    p2p_latency: float = 0.03
    upload_bps: tuple[float, float] = (1_000_000.0, 4_000_000.0)
    """Each viewer's upload capacity is drawn uniformly from this range."""
    announce_delay: float = 0.02
    join_spread: float = 2.0
    """Viewers join at uniform times in [0, join_spread) after the stream has 6 segments."""
    dead_transfer_probability: float = 0.0
    """Chance that a peer transfer stops delivering at a random point (a silent peer)."""
    leave_probability: float = 0.0
    """Chance that a viewer leaves the swarm at a random time (its neighbours see it go)."""
    upload_slots: int = 4
    """Uploads a viewer serves at once; more requests get "busy" (UploadConfig.max_concurrent)."""
    busy_retry_after: float = 0.25
    step: float = 0.02
    config: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass
class _Xfer:
    viewer: int
    tid: int
    seq: int
    source: int | None  # None = origin
    remaining: float
    received: int = 0
    starts_at: float = 0.0
    dies_after: float | None = None


@dataclass
class ViewerState:
    """One viewer: its scheduler, its store and its virtual player."""

    index: int
    sched: SegmentScheduler
    upload_bps: float
    joined_at: float
    next_playlist_at: float
    stored: set[int] = field(default_factory=set)
    position: float | None = None
    playing: bool = False
    started_at: float | None = None
    stall_count: int = 0
    stall_time: float = 0.0
    stalled: bool = False
    gone: bool = False
    live_latency: list[float] = field(default_factory=list)


@dataclass
class ModelResult:
    """What a run measured."""

    p2p_bytes: int
    origin_bytes: int
    stalls: int
    stall_time: float
    origin_fetches_per_segment: dict[int, int]
    startup_times: list[float]
    mean_latency: float

    @property
    def offload(self) -> float:
        """Share of bytes that came from peers."""
        total = self.p2p_bytes + self.origin_bytes
        return self.p2p_bytes / total if total else 0.0


class SwarmModel:
    """Step a live stream and its viewers; every viewer sees every other (full mesh)."""

    def __init__(self, params: ModelParams, rng: random.Random) -> None:
        self.p = params
        self.rng = rng
        self.now = 0.0
        self.t0 = params.window * params.segment_duration  # stream already has a full window
        self.viewers: list[ViewerState] = []
        self.xfers: dict[tuple[int, int], _Xfer] = {}
        self.events: list[tuple[float, int, object]] = []
        self._event_seq = 0
        self.origin_fetches: dict[int, int] = {}
        self.origin_bytes = 0
        self.p2p_bytes = 0
        self.partial_p2p: dict[tuple[int, int], int] = {}
        for i in range(params.viewers):
            sched = SegmentScheduler(params.config, peer_id=f"viewer-{i:03d}")
            join = self.t0 + rng.random() * params.join_spread
            up = rng.uniform(*params.upload_bps)
            self.viewers.append(ViewerState(i, sched, up, join, join))
        self.leave_at = {
            v.index: v.joined_at + rng.random() * params.duration
            for v in self.viewers
            if rng.random() < params.leave_probability
        }

    # ----------------------------------------------------------------- origin

    def published(self, t: float) -> int:
        """Number of segments published by time ``t``."""
        return int(t // self.p.segment_duration)

    def playlist(self, t: float) -> list[SegmentInfo]:
        """The live window at time ``t``."""
        n = self.published(t)
        d = self.p.segment_duration
        return [
            SegmentInfo(s, d, self.p.segment_size, s * d)
            for s in range(max(n - self.p.window, 0), n)
        ]

    # ----------------------------------------------------------------- running

    def run(self) -> ModelResult:
        """Run to the end and return the measures."""
        end = self.t0 + self.p.join_spread + self.p.duration
        while self.now < end:
            self.now += self.p.step
            self._deliver_events()
            self._leave()
            self._advance_transfers()
            for v in self.viewers:
                if not v.gone:
                    self._step_viewer(v)
        return self._result()

    def _result(self) -> ModelResult:
        lat = [x for v in self.viewers for x in v.live_latency]
        return ModelResult(
            self.p2p_bytes,
            self.origin_bytes,
            sum(v.stall_count for v in self.viewers),
            sum(v.stall_time for v in self.viewers),
            dict(self.origin_fetches),
            [v.started_at - v.joined_at for v in self.viewers if v.started_at is not None],
            sum(lat) / len(lat) if lat else 0.0,
        )

    def _later(self, delay: float, fn: object) -> None:
        self._event_seq += 1
        self.events.append((self.now + delay, self._event_seq, fn))

    def _deliver_events(self) -> None:
        due = sorted(e for e in self.events if e[0] <= self.now)
        self.events = [e for e in self.events if e[0] > self.now]
        for _, _, fn in due:
            fn()  # type: ignore[operator]

    def _leave(self) -> None:
        for i, t in list(self.leave_at.items()):
            if self.now >= t:
                del self.leave_at[i]
                v = self.viewers[i]
                v.gone = True
                for key in [k for k, x in self.xfers.items() if x.viewer == i]:
                    del self.xfers[key]
                for other in self.viewers:
                    if other.index != i and not other.gone:
                        for tid in other.sched.remove_peer(v.sched.peer_id):
                            self.xfers.pop((other.index, tid), None)

    def _advance_transfers(self) -> None:
        uploads: dict[int, int] = {}
        https: dict[int, int] = {}
        for x in self.xfers.values():
            if x.source is None:
                https[x.viewer] = https.get(x.viewer, 0) + 1
            else:
                uploads[x.source] = uploads.get(x.source, 0) + 1
        for key, x in list(self.xfers.items()):
            if self.now < x.starts_at:
                continue
            if x.source is None:
                rate = self.p.http_bps / https[x.viewer]
            else:
                rate = self.viewers[x.source].upload_bps / uploads[x.source]
                if x.dies_after is not None and x.received >= x.dies_after:
                    rate = 0.0
            got = min(rate * self.p.step, x.remaining)
            if got <= 0:
                continue
            x.remaining -= got
            x.received += int(got)
            v = self.viewers[x.viewer]
            v.sched.transfer_progress(self.now, x.tid, x.received)
            if x.remaining <= 1e-6:
                del self.xfers[key]
                if x.source is None:
                    self.origin_bytes += x.received
                else:
                    self.p2p_bytes += x.received
                v.sched.transfer_done(self.now, x.tid)
                self._store(v, x.seq)

    def _store(self, v: ViewerState, seq: int) -> None:
        v.stored.add(seq)
        v.sched.segment_stored(seq)
        pid = v.sched.peer_id
        for other in self.viewers:
            if other is not v and not other.gone:
                self._later(
                    self.p.announce_delay, lambda o=other, s=seq: o.sched.peer_has(pid, [s])
                )

    # ----------------------------------------------------------------- one viewer

    def _step_viewer(self, v: ViewerState) -> None:
        if self.now < v.joined_at:
            return
        if self.now >= v.next_playlist_at:
            if v.position is None:
                self._join(v)
            v.sched.set_timeline(self.playlist(self.now), live=True)
            v.next_playlist_at += self.p.segment_duration
        self._play(v)
        for action in v.sched.poll(self.now):
            self._apply(v, action)

    def _join(self, v: ViewerState) -> None:
        v.sched.set_timeline(self.playlist(self.now), live=True)
        v.position = v.sched.live_start_position()
        for other in self.viewers:
            if other is not v and not other.gone and other.position is not None:
                v.sched.add_peer(other.sched.peer_id)
                other.sched.add_peer(v.sched.peer_id)
                v.sched.peer_has(other.sched.peer_id, other.stored)
                other.sched.peer_has(v.sched.peer_id, v.stored)

    def _buffered_until(self, v: ViewerState) -> float:
        d = self.p.segment_duration
        assert v.position is not None
        seq = int(v.position // d)
        while seq in v.stored:
            seq += 1
        return max(seq * d, v.position)

    def _play(self, v: ViewerState) -> None:
        if v.position is None:
            return
        buffered = self._buffered_until(v)
        if v.playing:
            new = v.position + self.p.step
            if new > buffered:
                if not v.stalled:
                    v.stall_count += 1
                    v.stalled = True
                v.stall_time += new - max(buffered, v.position)
                new = buffered
            else:
                v.stalled = False
            v.position = new
            edge = self.published(self.now) * self.p.segment_duration
            v.live_latency.append(edge - v.position)
        elif buffered > v.position:
            v.playing = True
            v.started_at = self.now
        v.sched.set_playback(self.now, v.position, self._buffered_until(v), 1.0, v.playing)

    def _apply(self, v: ViewerState, action: object) -> None:
        if isinstance(action, CancelTransfer):
            x = self.xfers.pop((v.index, action.transfer_id), None)
            if x is not None and x.source is not None:
                self.partial_p2p[(v.index, x.seq)] = x.received
        elif isinstance(action, FetchFromOrigin):
            if action.offset > 0:
                # The resumed bytes came from a peer: they count as offloaded.
                self.p2p_bytes += min(
                    action.offset, self.partial_p2p.get((v.index, action.sequence), 0)
                )
            self.origin_fetches[action.sequence] = self.origin_fetches.get(action.sequence, 0) + 1
            x = _Xfer(
                v.index,
                action.transfer_id,
                action.sequence,
                None,
                self.p.segment_size - action.offset,
                starts_at=self.now + self.p.http_latency,
            )
            self.xfers[(v.index, action.transfer_id)] = x
            pid = v.sched.peer_id
            for other in self.viewers:
                if other is not v and not other.gone:
                    self._later(
                        self.p.announce_delay,
                        lambda o=other, s=action.sequence: o.sched.peer_fetching(pid, s),
                    )
        elif isinstance(action, FetchFromPeer):
            src = next(o for o in self.viewers if o.sched.peer_id == action.peer_id)
            if action.sequence not in src.stored or src.gone:
                tid = action.transfer_id
                self._later(
                    self.p.p2p_latency, lambda: v.sched.transfer_failed(self.now, tid, "dont_have")
                )
                return
            serving = sum(1 for x in self.xfers.values() if x.source == src.index)
            if serving >= self.p.upload_slots:
                tid = action.transfer_id
                wait = self.p.busy_retry_after
                self._later(
                    self.p.p2p_latency,
                    lambda: v.sched.transfer_failed(self.now, tid, "busy", retry_after=wait),
                )
                return
            dies = None
            if self.rng.random() < self.p.dead_transfer_probability:
                dies = self.rng.random() * self.p.segment_size
            self.xfers[(v.index, action.transfer_id)] = _Xfer(
                v.index,
                action.transfer_id,
                action.sequence,
                src.index,
                self.p.segment_size,
                starts_at=self.now + self.p.p2p_latency,
                dies_after=dies,
            )
