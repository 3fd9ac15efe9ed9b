"""The download scheduler of one swarm (one rendition): where each segment comes from, and when.

Sans-IO state machine (see docs/scheduler.md): the adapter feeds events (timeline, playback,
neighbour announcements, transfer progress) and calls :meth:`SegmentScheduler.poll` to get
actions (fetch from a peer, fetch from the origin, cancel). Time is a float ``now`` passed in.
Nothing here does I/O and nothing is random: the same inputs give the same actions, here, in the
JS twin and in the simulator (ties are broken by hashing, see :func:`hrw_score`).

The rules, in the order they are applied to every segment the player will need:

1. **Deadline first.** A segment whose deadline is closer than the time the origin needs to
   deliver it (measured HTTP latency and throughput, times a safety factor, plus a margin) is
   fetched from the origin at once. A P2P transfer still running at the last moment HTTP could
   deliver the rest in time is cancelled and resumed over HTTP from the bytes received.
2. **Peers when there is time.** A segment a neighbour holds is pulled from the neighbour that is
   projected to deliver it soonest (seeds first), if that still leaves time for the HTTP fallback.
3. **Election for new segments.** A segment nobody around holds or fetches is bootstrapped by
   ``election_copies`` viewers chosen by rendezvous hashing of (peer id, sequence); the others
   wait for their HAVE and take it over P2P. If the elected viewers stay silent, the next ranks
   step in one by one every ``election_backoff`` seconds, and the deadline rule bounds the wait.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from mypy_extensions import i64

from swarmcast.peer.bandwidth import BandwidthConfig, ThroughputEstimator, TransferMeter

logger = logging.getLogger(__name__)

#: A segment counts as in the player's buffer when it ends at most this far past the buffered
#: range (timestamps of appended media are rounded by the demuxer).
BUFFER_TOLERANCE = 0.1


@dataclass(frozen=True)
class SchedulerConfig:
    """Every knob of :class:`SegmentScheduler`. Times in seconds, rates in bytes per second."""

    live_delay_segments: int = 3
    """Live: play this many segment durations behind the end of the newest segment (hls.js
    ``liveSyncDurationCount``). Each extra segment adds one duration of latency and the same
    time for a new segment to spread peer to peer before its deadline; 3 leaves two durations
    minus the playlist refresh lag."""

    prefetch_seconds: float = 30.0
    """How far past the playhead segments are fetched (from peers, or by the elected viewer)."""

    http_safety_factor: float = 1.5
    """Multiplier on the estimated origin download time when deciding the HTTP deadline."""

    http_safety_margin: float = 1.0
    """Seconds added to the (scaled) origin download time: a segment whose deadline is closer
    than that goes to the origin. Covers event-loop jitter and playlist lag."""

    p2p_safety_factor: float = 1.25
    """Multiplier on projected peer transfer times (peer throughput is noisier than HTTP)."""

    min_p2p_time_budget: float = 0.3
    """A peer fetch starts only if at least this much time (or the projected transfer time, if
    larger) remains before the HTTP deadline."""

    max_parallel_p2p: int = 4
    """Peer transfers in flight at once."""

    max_parallel_http: int = 1
    """Origin fetches in flight for bootstrap/prefetch; deadline-forced fetches ignore it
    (fallback is never held back)."""

    max_inflight_per_peer: int = 2
    """Transfers in flight to one neighbour at once."""

    election_copies: int = 1
    """Viewers expected to fetch a new segment from the origin (rendezvous-hash winners)."""

    election_backoff: float = 0.5
    """Seconds each further rank waits before stepping in when nobody fetches a segment."""

    seed_grace: float = 0.5
    """With a seed connected, election winners wait this long for it to announce the segment."""

    stall_timeout: float = 1.5
    """A peer transfer with no bytes for this long is cancelled and counted as a timeout."""

    busy_penalty: float = 1.0
    """Seconds a neighbour that answered busy is not asked again (unless it said how long)."""

    timeout_penalty: float = 5.0
    """Seconds a neighbour that timed out is not asked again."""

    timeout_throughput_factor: float = 0.5
    """A timeout scales the neighbour's throughput estimate by this factor."""

    max_timeouts: int = 3
    """Timeouts in a row after which a neighbour is banned for ``ban_duration``."""

    ban_duration: float = 600.0
    """Seconds a neighbour is not used after bad data or ``max_timeouts`` timeouts."""

    origin_retry_delay: float = 0.25
    """First wait after an origin error; doubles per consecutive error of the same segment."""

    origin_retry_max_delay: float = 4.0
    """Longest wait between origin retries."""

    assumed_bitrate_bps: float = 750_000.0
    """Bytes per second of media assumed for segments of unknown size (6 Mbit/s, on the high
    side so that the deadline rule errs early)."""

    prefer_seeds: bool = True
    """Among peers that can deliver in time, ask seeds first (they exist to carry load)."""

    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    """Priors and smoothing of the throughput estimators."""

    def __post_init__(self) -> None:
        positive_ints = (
            "max_parallel_p2p",
            "max_parallel_http",
            "max_inflight_per_peer",
            "election_copies",
            "max_timeouts",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"SchedulerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.live_delay_segments < 1:
            raise ValueError("SchedulerConfig.live_delay_segments must be >= 1")
        if self.http_safety_factor < 1 or self.p2p_safety_factor < 1:
            raise ValueError("SchedulerConfig safety factors must be >= 1")
        non_negative = (
            "prefetch_seconds",
            "http_safety_margin",
            "min_p2p_time_budget",
            "election_backoff",
            "seed_grace",
            "busy_penalty",
            "timeout_penalty",
            "ban_duration",
            "origin_retry_delay",
            "origin_retry_max_delay",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"SchedulerConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.stall_timeout <= 0 or self.assumed_bitrate_bps <= 0:
            raise ValueError("SchedulerConfig.stall_timeout and assumed_bitrate_bps must be > 0")


@dataclass(frozen=True)
class SegmentInfo:
    """One media segment of the swarm's playlist."""

    sequence: int
    """Media sequence number."""
    duration: float
    """Seconds of media."""
    size: int | None
    """Bytes, when the integrity manifest gives it (None = unknown, estimated)."""
    start: float
    """Media time of the first frame, seconds (the player's timeline)."""

    @property
    def end(self) -> float:
        """Media time just after the last frame."""
        return self.start + self.duration


class FailureReason(StrEnum):
    """Why a transfer failed (reported by the adapter through ``transfer_failed``)."""

    TIMEOUT = "timeout"
    BUSY = "busy"
    DONT_HAVE = "dont_have"
    BAD_DATA = "bad_data"
    PEER_GONE = "peer_gone"
    HTTP_ERROR = "http_error"


_Timeline = tuple[dict[int, SegmentInfo], list[int], list[float], list[float], bool]
#: The last tuple given to set_timeline and what was derived from it (a simulator hands the
#: same playlist to thousands of schedulers; a real peer pays one derivation per reload).
_timeline_memo: tuple[tuple[SegmentInfo, ...], _Timeline] | None = None


def _derive_timeline(segments: Sequence[SegmentInfo]) -> _Timeline:
    """Validate a playlist; by sequence: segments, order, starts, ends, and whether both rise."""
    for seg in segments:
        if not (0 < seg.duration < math.inf and math.isfinite(seg.start)) or (
            seg.size is not None and seg.size < 0
        ):
            raise ValueError(f"segment {seg.sequence}: bad duration or size in timeline")
    by_seq = {s.sequence: s for s in segments}
    order = sorted(by_seq)
    starts = [by_seq[s].start for s in order]
    ends = [by_seq[s].end for s in order]
    monotonic = all(a <= b for a, b in itertools.pairwise(starts)) and all(
        a <= b for a, b in itertools.pairwise(ends)
    )
    return by_seq, order, starts, ends, monotonic


@dataclass(frozen=True)
class FetchFromPeer:
    """Request segment ``sequence`` from neighbour ``peer_id``, bytes from ``offset`` on."""

    transfer_id: int
    sequence: int
    peer_id: str
    offset: int


@dataclass(frozen=True)
class FetchFromOrigin:
    """Fetch segment ``sequence`` over HTTP; ``offset`` > 0 means a Range request resuming
    after the bytes already received (keep them). ``reason``: deadline, bootstrap, switch."""

    transfer_id: int
    sequence: int
    offset: int
    reason: str


@dataclass(frozen=True)
class CancelTransfer:
    """Abort transfer ``transfer_id`` (reason: switch, stalled, not_needed, banned)."""

    transfer_id: int
    reason: str


Action = FetchFromPeer | FetchFromOrigin | CancelTransfer


@dataclass
class SchedulerStats:
    """Counters for metrics and tests."""

    p2p_fetches: int = 0
    """Peer transfers started."""
    origin_fetches: int = 0
    """Origin transfers started (any reason)."""
    bootstraps: int = 0
    """Origin fetches started because this viewer was elected."""
    switches: int = 0
    """Peer transfers moved to the origin to meet a deadline."""
    p2p_bytes: int = 0
    """Bytes received from peers in completed or switched transfers."""
    origin_bytes: int = 0
    """Bytes received from the origin in completed transfers."""


#: Sequence -> the neighbours that announced it (HAVE, or FETCHING), by peer id.
_SegmentIndex = dict[int, dict[str, "_Peer"]]


class _Peer:
    __slots__ = (
        "_fetchers",
        "_holders",
        "banned_until",
        "blocked_until",
        "estimator",
        "hrw_state",
        "inflight",
        "is_seed",
        "pair_state",
        "pid",
        "timeouts",
    )

    def __init__(
        self,
        pid: str,
        me: str,
        is_seed: bool,
        estimator: ThroughputEstimator,
        index: tuple[_SegmentIndex, _SegmentIndex],
    ) -> None:
        self.pid = pid
        self.is_seed = is_seed
        self.estimator = estimator
        self.inflight = 0
        self.blocked_until = float("-inf")
        self.banned_until = float("-inf")
        self.timeouts = 0
        # The hashes of rendezvous scores share their prefix for every segment: keep the FNV
        # state after it (election: "<peer>/", source pick: "<me>><peer>/").
        self.hrw_state = _fnv1a(_FNV_OFFSET, f"{pid}/")
        self.pair_state = _fnv1a(_FNV_OFFSET, f"{me}>{pid}/")
        self._holders, self._fetchers = index

    # What the neighbour announced lives in the scheduler's per-segment index (the hot loops
    # ask "who holds segment s", never "what does p hold"); these views are for inspection.

    @property
    def has(self) -> frozenset[int]:
        """Segments this neighbour announced it holds."""
        return frozenset(s for s, who in self._holders.items() if self.pid in who)

    @property
    def fetching(self) -> frozenset[int]:
        """Segments this neighbour announced it is fetching from the origin."""
        return frozenset(s for s, who in self._fetchers.items() if self.pid in who)


class _Transfer:
    # A plain class rather than a dataclass: a compiled build (swarmcast.accel) runs a
    # dataclass's generated __init__ as interpreted Python, and one is made per transfer.
    __slots__ = ("meter", "offset", "peer_id", "reason", "sequence", "transfer_id")

    def __init__(
        self,
        transfer_id: int,
        sequence: int,
        peer_id: str | None,
        offset: int,
        meter: TransferMeter,
        reason: str,
    ) -> None:
        self.transfer_id = transfer_id
        self.sequence = sequence
        self.peer_id = peer_id
        self.offset = offset
        self.meter = meter
        self.reason = reason

    @property
    def done_bytes(self) -> int:
        return self.offset + self.meter.received


class SegmentScheduler:
    """Download decisions for one swarm, seen from the viewer ``peer_id``."""

    def __init__(self, config: SchedulerConfig | None = None, *, peer_id: str) -> None:
        if not peer_id:
            raise ValueError("SegmentScheduler needs a non-empty peer_id")
        self.config = config or SchedulerConfig()
        self._peer_id = peer_id
        bw = self.config.bandwidth
        self.http = ThroughputEstimator(bw.http_prior_bps, bw.http_prior_latency, bw)
        """Throughput estimate of the origin."""
        self.stats = SchedulerStats()
        self._segments: dict[int, SegmentInfo] = {}
        self._order: list[int] = []
        # Starts and ends of _order's segments, and whether both rise with the sequence
        # (then _needed can bisect to the playhead instead of walking a long VOD timeline).
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._monotonic = False
        self._live = False
        self._learned_size: dict[int, int] = {}
        self._peers: dict[str, _Peer] = {}
        self._seed_peers = 0  # how many of _peers are seeds
        # Mutated in place only: every _Peer keeps a reference for its `has`/`fetching` views.
        self._holders: _SegmentIndex = {}
        self._fetchers: _SegmentIndex = {}
        self._hrw_state = _fnv1a(_FNV_OFFSET, f"{peer_id}/")  # kept in step by the setter
        self._stored: set[int] = set()
        self._transfers: dict[int, _Transfer] = {}
        self._by_seq: dict[int, int] = {}
        # Of _transfers (kept in step by _new_transfer/_end_transfer; polls read them often):
        self._p2p_running = 0  # from peers
        self._http_running = 0  # from the origin
        self._http_optional = 0  # from the origin for another reason than a deadline
        self._next_tid = 1
        self._failed_peers: dict[int, set[str]] = {}
        self._partial: dict[int, tuple[int, str | None]] = {}
        self._origin_errors: dict[int, tuple[int, float]] = {}
        self._first_wanted: dict[int, float] = {}
        self._ranks: dict[int, int] = {}  # election ranks, kept in step with the neighbours
        self._wakeup: float | None = None
        # Playback: position at time _t_ref, and whether it advances.
        self._t_ref = 0.0
        self._position = 0.0
        self._beyond_horizon: float | None = None  # start of the first segment past prefetch
        self._buffered_until = 0.0
        self._rate = 1.0
        self._playing = False

    @property
    def peer_id(self) -> str:
        """Our id as neighbours see it in our HELLO: the election and the source pick hash it."""
        return self._peer_id

    @peer_id.setter
    def peer_id(self, value: str) -> None:
        # An adapter may create the scheduler before signalling gives it an id (the Python
        # agent starts with "local"): every hash prefix and cached rank derived from the old
        # id must follow, or this viewer would rank itself with a stale hash.
        if not value:
            raise ValueError("SegmentScheduler needs a non-empty peer_id")
        if value == self._peer_id:
            return
        self._peer_id = value
        self._hrw_state = _fnv1a(_FNV_OFFSET, f"{value}/")
        for peer in self._peers.values():
            peer.pair_state = _fnv1a(_FNV_OFFSET, f"{value}>{peer.pid}/")
        self._ranks.clear()

    # ----------------------------------------------------------------- inputs: timeline, player

    def set_timeline(self, segments: Sequence[SegmentInfo], *, live: bool = False) -> None:
        """Replace the playlist (a live window slides; forgotten segments are dropped).

        Passing the same *tuple* again (or to another scheduler) reuses what was derived from
        it: a tuple of frozen :class:`SegmentInfo` cannot change. Nothing here mutates the
        derived tables, so schedulers may share them.
        """
        global _timeline_memo
        memo = _timeline_memo
        if memo is not None and memo[0] is segments:
            derived = memo[1]
        else:
            derived = _derive_timeline(segments)
            if isinstance(segments, tuple):
                _timeline_memo = (segments, derived)
        self._segments, self._order, self._starts, self._ends, self._monotonic = derived
        self._live = live
        if self._order:
            self._forget_before(self._order[0])

    def _forget_before(self, oldest: int) -> None:
        # A live window slides forever: drop what refers to segments gone from the playlist.
        stale = [s for s in self._stored if s < oldest]
        if stale:
            self._stored.difference_update(stale)
        for table in (
            self._ranks,
            self._first_wanted,
            self._failed_peers,
            self._origin_errors,
            self._learned_size,
            self._partial,
            self._holders,
            self._fetchers,
        ):
            for seq in [s for s in table if s < oldest]:
                del table[seq]

    @property
    def is_live(self) -> bool:
        """Whether the last timeline was a live (sliding) playlist."""
        return self._live

    @property
    def live_edge(self) -> float | None:
        """Media time at the end of the newest segment (None without a timeline)."""
        return self._segments[self._order[-1]].end if self._order else None

    def live_start_position(self) -> float | None:
        """Where a live player should start: ``live_delay_segments`` durations behind the edge."""
        if not self._order:
            return None
        index = max(len(self._order) - self.config.live_delay_segments, 0)
        return self._segments[self._order[index]].start

    def set_playback(
        self,
        now: float,
        position: float,
        buffered_until: float,
        rate: float = 1.0,
        playing: bool = True,
    ) -> None:
        """Report the player: media ``position``, end of the contiguous buffer, speed, state.

        ``playing`` False (not started yet, paused) makes deadlines float with the clock: only
        the segment at the playhead is urgent, the rest wait for peers.
        """
        isfinite = math.isfinite
        finite = (
            isfinite(now) and isfinite(position) and isfinite(buffered_until) and isfinite(rate)
        )
        if not finite or rate <= 0 or position < 0 or buffered_until < 0:
            raise ValueError(
                f"bad playback state: position={position} buffered={buffered_until} rate={rate}"
            )
        self._t_ref = now
        self._position = position
        self._buffered_until = max(buffered_until, position)
        self._rate = rate
        self._playing = playing

    def deadline(self, sequence: int, now: float) -> float:
        """Clock time at which the player will need ``sequence`` (may be in the past)."""
        seg = self._segments[sequence]
        ahead = max(seg.start - self._position, 0.0) / self._rate
        if not self._playing:
            return now + ahead
        playhead = self._position + (now - self._t_ref) * self._rate
        if playhead > self._buffered_until + BUFFER_TOLERANCE:
            # Stalled at the end of the buffer: playback resumes when the missing segment lands,
            # so the next segment is due now and the later ones shift with it.
            return now + max(seg.start - self._buffered_until, 0.0) / self._rate
        return self._t_ref + ahead

    # ----------------------------------------------------------------- inputs: neighbours

    def add_peer(self, peer_id: str, *, is_seed: bool = False) -> None:
        """A neighbour joined (data channel open). Re-adding keeps its state."""
        if peer_id == self.peer_id or peer_id in self._peers:
            return
        bw = self.config.bandwidth
        peer = _Peer(
            peer_id,
            self.peer_id,
            is_seed,
            ThroughputEstimator(bw.peer_prior_bps, bw.peer_prior_latency, bw),
            (self._holders, self._fetchers),
        )
        self._peers[peer_id] = peer
        self._seed_peers += is_seed
        self._rerank(peer, 1)

    def remove_peer(self, peer_id: str) -> list[int]:
        """A neighbour left. Its transfers are forgotten (the adapter aborts them); returns the
        ids of those transfers. Their segments are rescheduled at the next poll."""
        peer = self._peers.pop(peer_id, None)
        if peer is None:
            return []
        self._seed_peers -= peer.is_seed
        self._rerank(peer, -1)
        self._forget_announcements(peer_id)
        for who in self._fetchers.values():
            who.pop(peer_id, None)
        gone = [t.transfer_id for t in self._transfers.values() if t.peer_id == peer_id]
        for tid in gone:
            self._keep_partial(self._transfers[tid])
            self._end_transfer(tid)
        return gone

    def peer_has(self, peer_id: str, sequences: Iterable[int]) -> None:
        """``peer_id`` announced it holds ``sequences`` (HAVE)."""
        if peer_id not in self._peers:
            logger.debug("HAVE from unknown peer %s ignored", peer_id)
            return
        for seq in sequences:
            self.peer_has_one(peer_id, seq)

    def peer_has_one(self, peer_id: str, sequence: int) -> None:
        """``peer_id`` announced one segment (a HAVE message): ``peer_has`` of one sequence,
        without the iteration (the hottest input of a large simulated swarm)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            logger.debug("HAVE from unknown peer %s ignored", peer_id)
            return
        who = self._holders.get(sequence)
        if who is None:
            self._holders[sequence] = {peer_id: peer}
        else:
            who[peer_id] = peer
        fetching = self._fetchers.get(sequence)
        if fetching:
            fetching.pop(peer_id, None)

    def peer_lost(self, peer_id: str, sequences: Iterable[int]) -> None:
        """``peer_id`` no longer holds ``sequences`` (LOST, evicted)."""
        if peer_id in self._peers:
            holders = self._holders
            for seq in sequences:
                who = holders.get(seq)
                if who:
                    who.pop(peer_id, None)

    def peer_fetching(self, peer_id: str, sequence: int) -> None:
        """``peer_id`` announced it is fetching ``sequence`` from the origin (FETCHING)."""
        peer = self._peers.get(peer_id)
        if peer is not None and peer_id not in self._holders.get(sequence, ()):
            self._fetchers.setdefault(sequence, {})[peer_id] = peer

    def peer_fetch_aborted(self, peer_id: str, sequence: int) -> None:
        """``peer_id`` gave up fetching ``sequence``."""
        fetching = self._fetchers.get(sequence)
        if fetching:
            fetching.pop(peer_id, None)

    # ----------------------------------------------------------------- inputs: own storage

    def segment_stored(self, sequence: int) -> None:
        """``sequence`` is in the cache (verified), whatever brought it there."""
        self._stored.add(sequence)
        self._partial.pop(sequence, None)

    def segment_evicted(self, sequence: int) -> None:
        """``sequence`` left the cache."""
        self._stored.discard(sequence)

    def has(self, sequence: int) -> bool:
        """Whether ``sequence`` is stored."""
        return sequence in self._stored

    # ----------------------------------------------------------------- inputs: transfers

    def transfer_progress(
        self, now: float, transfer_id: int, bytes_received: int, total_size: int | None = None
    ) -> None:
        """``bytes_received`` bytes of the transfer arrived so far (counted from its offset);
        ``total_size`` is the whole segment's size if the source told it."""
        t = self._transfers.get(transfer_id)
        if t is None:
            return
        t.meter.progress(now, bytes_received)
        if total_size is not None and total_size > 0:
            self._learned_size[t.sequence] = total_size

    def transfer_done(self, now: float, transfer_id: int) -> None:
        """The transfer completed and the segment verified; it counts as stored."""
        t = self._transfers.get(transfer_id)
        if t is None:
            return
        t.meter.finish(now)
        if t.peer_id is None:
            self.stats.origin_bytes += t.meter.received
            self._origin_errors.pop(t.sequence, None)
        else:
            self.stats.p2p_bytes += t.meter.received
            peer = self._peers.get(t.peer_id)
            if peer is not None:
                peer.timeouts = 0
        self._end_transfer(transfer_id)
        self.segment_stored(t.sequence)

    def transfer_failed(
        self,
        now: float,
        transfer_id: int,
        reason: FailureReason | str,
        retry_after: float | None = None,
    ) -> None:
        """The transfer failed; the segment is rescheduled at the next poll.

        ``retry_after`` (seconds) comes with BUSY when the neighbour said how long.
        """
        if type(reason) is not FailureReason:
            reason = FailureReason(reason)  # ValueError names the bad reason
        t = self._transfers.get(transfer_id)
        if t is None:
            return
        self._end_transfer(transfer_id)
        if t.peer_id is None:
            self._origin_failed(now, t, reason)
        else:
            self._peer_failed(now, t, reason, retry_after)

    # ----------------------------------------------------------------- outputs

    def poll(self, now: float) -> list[Action]:
        """Decide what to do now. Call after feeding events and at :meth:`next_wakeup`."""
        self._wakeup = None
        actions: list[Action] = []
        self._check_transfers(now, actions)
        self._schedule(now, actions)
        return actions

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`poll` should run again if no event comes first (None: only on events)."""
        if self._wakeup is None:
            return None
        return max(self._wakeup, now)

    def transfers(self) -> dict[int, tuple[int, str | None]]:
        """Transfers in flight: id -> (sequence, peer id or None for the origin)."""
        return {tid: (t.sequence, t.peer_id) for tid, t in self._transfers.items()}

    # ----------------------------------------------------------------- estimates

    def segment_size(self, sequence: int) -> int:
        """Bytes of ``sequence``: from the timeline, else learned, else from the assumed rate."""
        seg = self._segments[sequence]
        if seg.size is not None:
            return seg.size
        learned = self._learned_size.get(sequence)
        if learned is not None:
            return learned
        return int(seg.duration * self.config.assumed_bitrate_bps)

    def http_time_needed(self, nbytes: float) -> float:
        """Seconds to reserve for fetching ``nbytes`` from the origin, safety included."""
        return self._http_time(nbytes, self._http_backlog())

    def _http_backlog(self) -> int:
        """Bytes the running origin transfers still have to deliver."""
        if not self._http_running:
            return 0
        return sum(
            self.segment_size(t.sequence) - t.done_bytes
            for t in self._transfers.values()
            if t.peer_id is None
        )

    def _http_time(self, nbytes: float, backlog: int) -> float:
        cfg = self.config
        raw = self.http.transfer_time(nbytes + max(backlog, 0))
        return raw * cfg.http_safety_factor + cfg.http_safety_margin

    # ----------------------------------------------------------------- internals: running

    def _check_transfers(self, now: float, actions: list[Action]) -> None:
        if not self._transfers:
            return
        # Drop what the player no longer needs first (a seek, a live window that slid past),
        # so the estimates below only count transfers that matter.
        for t in list(self._transfers.values()):
            seg = self._segments.get(t.sequence)
            if seg is None or seg.end <= self._position:
                actions.append(CancelTransfer(t.transfer_id, "not_needed"))
                self._end_transfer(t.transfer_id)
            elif t.peer_id is not None and self._banned(t.peer_id, now):
                # It sent bad data on another transfer: nothing it sends is worth waiting for.
                actions.append(CancelTransfer(t.transfer_id, "banned"))
                self._end_transfer(t.transfer_id)
        for t in [t for t in self._transfers.values() if t.peer_id is not None]:
            self._check_p2p(now, t, actions)

    def _check_p2p(self, now: float, t: _Transfer, actions: list[Action]) -> None:
        cfg = self.config
        pid = t.peer_id
        assert pid is not None  # only peer transfers come here
        remaining = max(self.segment_size(t.sequence) - t.done_bytes, 0)
        http_need = self.http_time_needed(remaining)
        switch_at = self.deadline(t.sequence, now) - http_need
        stall_at = t.meter.last_progress_at + cfg.stall_timeout
        if now >= stall_at:
            logger.debug("transfer %d of %d from %s stalled", t.transfer_id, t.sequence, t.peer_id)
            actions.append(CancelTransfer(t.transfer_id, "stalled"))
            self._end_transfer(t.transfer_id)
            self._keep_partial(t)
            self._penalise_timeout(now, t.sequence, pid)
            return
        if now >= switch_at:
            # The last moment the origin can still deliver the rest in time. Keeping the peer
            # beyond it would be a bet that it does not stall in the last second: never take
            # it. The Range resume keeps what the peer sent, so switching late costs little.
            self._switch_to_origin(now, t, actions)
            return
        self._wake(min(stall_at, switch_at))

    def _switch_to_origin(self, now: float, t: _Transfer, actions: list[Action]) -> None:
        logger.debug(
            "transfer %d of %d: %s too slow, switching to origin at byte %d",
            t.transfer_id,
            t.sequence,
            t.peer_id,
            t.done_bytes,
        )
        actions.append(CancelTransfer(t.transfer_id, "switch"))
        self.stats.switches += 1
        self.stats.p2p_bytes += t.meter.received
        self._end_transfer(t.transfer_id)
        self._keep_partial(t)
        actions.append(self._start_origin(now, t.sequence, "switch"))

    # ----------------------------------------------------------------- internals: new fetches

    def _needed(self, now: float) -> list[int]:
        # The window moves with the playhead extrapolated to `now`, as deadlines do, so an
        # adapter that polls without a fresh set_playback still sees segments enter it.
        playhead = self._position
        if self._playing:
            playhead += max(0.0, now - self._t_ref) * self._rate
        horizon = playhead + self.config.prefetch_seconds
        out = []
        self._beyond_horizon = None
        order = self._order
        first = 0
        if self._monotonic:
            # Every segment before both the first one ending past the buffer and the first one
            # starting past the horizon would be skipped below: start the walk there.
            first = min(
                bisect.bisect_right(self._ends, self._buffered_until + BUFFER_TOLERANCE),
                bisect.bisect_right(self._starts, horizon),
            )
        segments = self._segments
        for i in range(first, len(order)):
            seq = order[i]
            seg = segments[seq]
            if seg.start > horizon:
                self._beyond_horizon = seg.start
                break
            if (
                seg.end <= self._buffered_until + BUFFER_TOLERANCE
                or seq in self._stored
                or seq in self._by_seq
            ):
                continue
            out.append(seq)
        return out

    def _schedule(self, now: float, actions: list[Action]) -> None:
        cfg = self.config
        p2p_slots = cfg.max_parallel_p2p - self._p2p_running
        http_slots = cfg.max_parallel_http - self._http_optional
        backlog = None  # of origin transfers: changes only when one starts in this loop
        for seq in self._needed(now):
            self._first_wanted.setdefault(seq, now)
            size = self.segment_size(seq)
            offset = self._partial.get(seq, (0, None))[0]
            if backlog is None:
                backlog = self._http_backlog()
            urgent_at = self.deadline(seq, now) - self._http_time(size - offset, backlog)
            retry_at = self._origin_retry_at(seq)
            if now >= urgent_at:
                if now >= retry_at:
                    actions.append(self._start_origin(now, seq, "deadline"))
                    backlog = None
                else:
                    self._wake(retry_at)
                continue
            if self._playing:
                # Paused or not started: deadlines float with the clock, no timer needed.
                self._wake(urgent_at)
            if p2p_slots > 0:
                action = self._try_peer(now, seq, size, urgent_at - now)
                if action is not None:
                    actions.append(action)
                    p2p_slots -= 1
                    continue
            if http_slots > 0 and now >= retry_at and self._should_bootstrap(now, seq):
                actions.append(self._start_origin(now, seq, "bootstrap"))
                backlog = None
                http_slots -= 1
        if self._playing and self._beyond_horizon is not None:
            # Wake when the next segment enters the prefetch window: without it, a VOD viewer
            # that receives no events would only fetch it once the player stalls (found by the
            # simulator).
            lead = self._beyond_horizon - self.config.prefetch_seconds - self._position
            self._wake(self._t_ref + lead / self._rate)

    def _try_peer(self, now: float, seq: int, size: int, budget: float) -> FetchFromPeer | None:
        cfg = self.config
        holders = self._holders.get(seq)
        if not holders:
            return None
        failed = self._failed_peers.get(seq, ())
        best: list[tuple[tuple[bool, float], str]] = []
        # Candidates come out in announcement order, not neighbour order: the sort below is on
        # (rank, eta, peer id), a total order, so the pick does not depend on it.
        for pid, peer in holders.items():
            if (
                pid in failed
                or peer.blocked_until > now
                or peer.inflight >= cfg.max_inflight_per_peer
            ):
                if peer.blocked_until > now:
                    self._wake(peer.blocked_until)
                continue
            est = peer.estimator
            eta = est.latency + size * (peer.inflight + 1) / est.bytes_per_second
            eta *= cfg.p2p_safety_factor
            if max(eta, cfg.min_p2p_time_budget) > budget:
                continue
            best.append(((not peer.is_seed if cfg.prefer_seeds else False, eta), pid))
        if not best:
            return None
        best.sort()
        # Spread load among the candidates nearly as good as the best one. The pick is a hash
        # of (me, candidate, segment): each downloader spreads its requests, different
        # downloaders pick different sources, and the JS twin picks exactly the same.
        top_seed, top_eta = best[0][0]
        near = [pid for (seed, eta), pid in best if seed == top_seed and eta <= top_eta * 1.25]
        if len(near) == 1:
            pid = near[0]
        else:
            # hrw_score(f"{self.peer_id}>{c}", seq), from the hashed prefix kept per peer.
            peers = self._peers
            pid = max(near, key=lambda c: _hrw_finish(peers[c].pair_state, seq))
        self._partial.pop(seq, None)
        return self._start_peer(now, seq, pid)

    def _should_bootstrap(self, now: float, seq: int) -> bool:
        """Whether this viewer should bring ``seq`` into the swarm from the origin now."""
        cfg = self.config
        for index in (self._holders, self._fetchers):
            for peer in index.get(seq, {}).values():
                # A banned peer's claims do not count: they would hold us back until urgent.
                if peer.banned_until <= now:
                    return False
        start = self._first_wanted[seq] + (cfg.seed_grace if self._seed_peers else 0.0)
        rank = self.election_rank(seq)
        start += max(rank - cfg.election_copies + 1, 0) * cfg.election_backoff
        if now >= start:
            return True
        self._wake(start)
        return False

    def _rerank(self, peer: _Peer, step: int) -> None:
        # A neighbour came (step 1) or went (-1): a cached rank moves by one if it ranks above
        # us, the same count election_rank would make again. Ranks of segments already played
        # are dropped instead (recomputed if ever asked), so VOD does not carry them forever.
        if peer.is_seed or not self._ranks:
            return
        ranks = self._ranks
        for seq in [
            s for s in ranks if s in self._segments and self._segments[s].end <= self._position
        ]:
            del ranks[seq]
        mine_state, me, pid = self._hrw_state, self.peer_id, peer.pid
        for seq, rank in ranks.items():
            theirs, mine = _hrw_finish(peer.hrw_state, seq), _hrw_finish(mine_state, seq)
            if theirs > mine or (theirs == mine and pid > me):  # (score, id) above ours
                ranks[seq] = rank + step

    def election_rank(self, seq: int) -> int:
        """0-based rank of this viewer among itself and its non-seed neighbours for ``seq``."""
        cached = self._ranks.get(seq)
        if cached is not None:
            return cached
        # hrw_score(pid, seq) for each, from the hashed "<pid>/" prefixes; (score, id) pairs
        # compared without building them.
        mine, me = _hrw_finish(self._hrw_state, seq), self.peer_id
        rank = 0
        for pid, peer in self._peers.items():
            if not peer.is_seed:
                score = _hrw_finish(peer.hrw_state, seq)
                if score > mine or (score == mine and pid > me):
                    rank += 1
        self._ranks[seq] = rank
        return rank

    def _start_peer(self, now: float, seq: int, peer_id: str) -> FetchFromPeer:
        peer = self._peers[peer_id]
        tid = self._new_transfer(now, seq, peer_id, 0, peer.estimator, "p2p")
        peer.inflight += 1
        self.stats.p2p_fetches += 1
        self._wake(now + self.config.stall_timeout)
        return FetchFromPeer(tid, seq, peer_id, 0)

    def _start_origin(self, now: float, seq: int, reason: str) -> FetchFromOrigin:
        offset = self._partial.get(seq, (0, None))[0]
        tid = self._new_transfer(now, seq, None, offset, self.http, reason)
        self.stats.origin_fetches += 1
        if reason == "bootstrap":
            self.stats.bootstraps += 1
        return FetchFromOrigin(tid, seq, offset, reason)

    def _new_transfer(
        self,
        now: float,
        seq: int,
        peer_id: str | None,
        offset: int,
        estimator: ThroughputEstimator,
        reason: str,
    ) -> int:
        tid = self._next_tid
        self._next_tid += 1
        meter = TransferMeter(now, estimator, self.config.bandwidth.min_sample_seconds)
        self._transfers[tid] = _Transfer(tid, seq, peer_id, offset, meter, reason)
        self._by_seq[seq] = tid
        self._count_transfer(peer_id, reason, 1)
        return tid

    def _count_transfer(self, peer_id: str | None, reason: str, step: int) -> None:
        if peer_id is not None:
            self._p2p_running += step
        else:
            self._http_running += step
            if reason != "deadline":
                self._http_optional += step

    def _end_transfer(self, tid: int) -> None:
        t = self._transfers.pop(tid)
        self._count_transfer(t.peer_id, t.reason, -1)
        if self._by_seq.get(t.sequence) == tid:
            del self._by_seq[t.sequence]
        if t.peer_id is not None and t.peer_id in self._peers:
            self._peers[t.peer_id].inflight -= 1

    def _keep_partial(self, t: _Transfer) -> None:
        # Bytes already received stay useful only for an origin Range resume (peers serve
        # whole segments); remember who sent them in case the assembled segment is bad.
        # A count at or past the expected size means the size was wrong or the source lied:
        # start over rather than ask for an empty or negative range.
        if t.sequence in self._segments and 0 < t.done_bytes < self.segment_size(t.sequence):
            self._partial[t.sequence] = (t.done_bytes, t.peer_id)
        else:
            self._partial.pop(t.sequence, None)

    # ----------------------------------------------------------------- internals: failures

    def _peer_failed(
        self, now: float, t: _Transfer, reason: FailureReason, retry_after: float | None
    ) -> None:
        cfg = self.config
        pid = t.peer_id
        assert pid is not None
        peer = self._peers.get(pid)
        self._failed_peers.setdefault(t.sequence, set()).add(pid)
        if peer is None:
            return
        if reason is FailureReason.BUSY:
            wait = cfg.busy_penalty if retry_after is None else min(max(retry_after, 0.0), 60.0)
            peer.blocked_until = max(peer.blocked_until, now + wait)
            self._failed_peers[t.sequence].discard(pid)
        elif reason is FailureReason.DONT_HAVE:
            self._holders.get(t.sequence, {}).pop(pid, None)
        elif reason is FailureReason.BAD_DATA:
            self._ban(now, pid, "sent bad data")
        elif reason is FailureReason.TIMEOUT:
            self._keep_partial(t)
            self._penalise_timeout(now, t.sequence, pid)
        elif reason is FailureReason.PEER_GONE:
            self._keep_partial(t)
            self._forget_announcements(pid)

    def _origin_failed(self, now: float, t: _Transfer, reason: FailureReason) -> None:
        count = self._origin_errors.get(t.sequence, (0, 0.0))[0] + 1
        cfg = self.config
        # The exponent is capped: 2 ** 1024 overflows a float after that many errors in a row.
        delay = min(cfg.origin_retry_delay * 2 ** min(count - 1, 64), cfg.origin_retry_max_delay)
        self._origin_errors[t.sequence] = (count, now + delay)
        if reason is FailureReason.BAD_DATA:
            # The assembled segment did not verify: drop the resumed bytes and blame their peer.
            _, source = self._partial.pop(t.sequence, (0, None))
            if source is not None:
                self._ban(now, source, "contributed bytes to a segment that failed verification")
        else:
            self._keep_partial(t)
        logger.debug("origin fetch of %d failed (%s), retry in %.2fs", t.sequence, reason, delay)

    def _origin_retry_at(self, seq: int) -> float:
        return self._origin_errors.get(seq, (0, float("-inf")))[1]

    def _penalise_timeout(self, now: float, seq: int, pid: str) -> None:
        peer = self._peers.get(pid)
        self._failed_peers.setdefault(seq, set()).add(pid)
        if peer is None:
            return
        peer.timeouts += 1
        peer.estimator.penalise(self.config.timeout_throughput_factor)
        if peer.timeouts >= self.config.max_timeouts:
            self._ban(now, pid, f"{peer.timeouts} timeouts in a row")
        else:
            peer.blocked_until = max(peer.blocked_until, now + self.config.timeout_penalty)

    def _ban(self, now: float, pid: str, why: str) -> None:
        peer = self._peers.get(pid)
        if peer is None:
            return
        logger.info("not using peer %s for %.0fs: %s", pid, self.config.ban_duration, why)
        peer.banned_until = max(peer.banned_until, now + self.config.ban_duration)
        peer.blocked_until = max(peer.blocked_until, peer.banned_until)
        self._forget_announcements(pid)

    def _forget_announcements(self, pid: str) -> None:
        """Forget every HAVE of ``pid`` (not its FETCHINGs)."""
        for who in self._holders.values():
            who.pop(pid, None)

    def _banned(self, pid: str, now: float) -> bool:
        peer = self._peers.get(pid)
        return peer is not None and peer.banned_until > now

    def _wake(self, when: float) -> None:
        if self._wakeup is None or when < self._wakeup:
            self._wakeup = when


_FNV_OFFSET = 0x811C9DC5
_DIGITS: dict[int, bytes] = {}


def hrw_score(peer_id: str, sequence: int) -> int:
    """Rendezvous-hash weight of (peer, segment): FNV-1a 32-bit then the murmur3 finaliser.

    Chosen to be ported to JS exactly (Math.imul); the finaliser fixes FNV's weak low bits.
    """
    return _hrw_finish(_fnv1a(_FNV_OFFSET, f"{peer_id}/"), sequence)


def _fnv1a(h: int, text: str) -> int:
    """FNV-1a 32-bit state ``h`` after the UTF-8 bytes of ``text``."""
    state: i64 = h
    for byte in text.encode():
        state = ((state ^ byte) * 0x01000193) & 0xFFFFFFFF
    return state


def _hrw_finish(h: int, sequence: int) -> int:
    """:func:`hrw_score` from the FNV state after ``"<peer_id>/"`` (hashing is incremental, so a
    prefix shared by every segment is hashed once).

    ``i64`` is ``int`` to Python; a compiled build (swarmcast.accel) keeps the state in a
    machine word, where the 32x32-bit products wrap modulo 2**64 and the mask keeps their exact
    low 32 bits (7x faster than its arbitrary-precision path; the same scores).
    """
    digits = _DIGITS.get(sequence)
    if digits is None:
        digits = str(sequence).encode()
        if len(_DIGITS) < 1_000_000:  # a bounded memo: sequences of one process's streams
            _DIGITS[sequence] = digits
    state: i64 = h
    for byte in digits:
        state = ((state ^ byte) * 0x01000193) & 0xFFFFFFFF
    state ^= state >> 16
    state = (state * 0x85EBCA6B) & 0xFFFFFFFF
    state ^= state >> 13
    state = (state * 0xC2B2AE35) & 0xFFFFFFFF
    state ^= state >> 16
    return state
