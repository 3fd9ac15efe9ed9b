"""A virtual player: the playhead and buffer of a viewer that decodes nothing.

Python viewers (load tests, ``swarmcast view``) have no video element, yet what they must
measure is what a real player would live through: when playback starts, when and for how long
it stalls, how much time is played. :class:`VirtualPlayer` models an HLS player's buffer
(hls.js is the reference): segments enter the buffer whole, in any order; the playhead advances
at normal speed through the contiguous buffered range; playback starts once ``startup_buffer``
seconds are buffered ahead of the start position, stalls when the playhead reaches the end of
the contiguous buffer, and resumes once ``resume_buffer`` seconds are buffered again.

Sans-IO: every call takes ``now`` (seconds, monotonic), nothing reads a clock or sleeps. The
player brings itself up to ``now`` on every call, and places each transition at the exact
moment it happened (the buffer running dry between two calls is dated when it ran dry, not when
it was noticed), so figures do not depend on how often the adapter calls :meth:`tick`.
Transitions are queued as :class:`PlayerEvent` and handed out by :meth:`tick`. The adapter arms
a timer at :meth:`next_event_time` instead of polling.

Time accounting is exact: from creation, every second is either played, stalled, or waiting
(before the first frame and after the end), so ``played_time + stall_time + waiting_time`` is
the elapsed time (property-tested).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from swarmcast.peer.qoe import QoE

logger = logging.getLogger(__name__)

#: Tolerance of time comparisons: float sums of segment durations are not exact.
_EPS = 1e-9


@dataclass(frozen=True)
class PlayerConfig:
    """Buffering and rendition-switching rules of the virtual player (seconds of media)."""

    startup_buffer: float = 2.0
    """Seconds buffered ahead of the start position before playback starts (less if the media
    ends sooner)."""

    resume_buffer: float = 2.0
    """Seconds buffered ahead of the playhead before playback resumes after a stall (less if the
    media ends sooner)."""

    max_buffer: float = 30.0
    """The player wants no more than this ahead of the playhead (see ``wants_more``)."""

    abr: bool = False
    """Switch renditions by measured throughput. Off by default for Python viewers: a load test
    usually pins one rendition (one swarm)."""

    abr_safety: float = 0.7
    """ABR picks the highest bandwidth <= abr_safety x measured throughput."""

    abr_min_interval: float = 6.0
    """Seconds between two switches (a down-switch on a low buffer does not wait)."""

    abr_low_buffer: float = 4.0
    """Below this many seconds buffered ahead (or while not playing) a down-switch happens at
    once, without waiting for abr_min_interval: a stall costs more than a lower quality."""

    max_hole: float = 0.1
    """Gaps up to this long between buffered ranges (or before the first one) are played
    through, like hls.js ``maxBufferHole``: segment timestamps rarely line up to the
    microsecond."""

    def __post_init__(self) -> None:
        for name in ("startup_buffer", "resume_buffer", "abr_min_interval", "abr_low_buffer"):
            _check_non_negative(f"PlayerConfig.{name}", getattr(self, name))
        _check_non_negative("PlayerConfig.max_hole", self.max_hole)
        if not (math.isfinite(self.max_buffer) and self.max_buffer > 0):
            raise ValueError(f"PlayerConfig.max_buffer must be > 0, got {self.max_buffer!r}")
        if not 0 < self.abr_safety <= 1:
            raise ValueError(f"PlayerConfig.abr_safety must be in (0, 1], got {self.abr_safety!r}")


class PlayerState(StrEnum):
    """Where the player is."""

    WAITING = "waiting"
    """Before the first frame: start position unknown or not enough buffered yet."""
    PLAYING = "playing"
    """The playhead advances at normal speed."""
    STALLED = "stalled"
    """The playhead reached the end of the buffer after playback had started."""
    ENDED = "ended"
    """The playhead reached the end of a VOD (or ended live) stream."""


@dataclass(frozen=True)
class PlayerEvent:
    """One transition: ``kind`` is started, stall, resume, ended or switch; ``at`` its time."""

    kind: str
    at: float
    detail: dict[str, Any] = field(default_factory=dict)


class Playback(NamedTuple):
    """The player as the download scheduler wants it: ``set_playback(now, *player.playback(now))``.

    ``rate`` is the nominal speed (1.0, never 0: the scheduler derives stalls itself from
    ``buffered_until``); ``playing`` is True once playback started, stalled or not.
    """

    position: float
    buffered_until: float
    rate: float
    playing: bool


class VirtualPlayer:
    """Playhead, buffer and QoE of one viewer; see the module docstring."""

    __slots__ = (
        "_end",
        "_events",
        "_last_switch",
        "_pos",
        "_ranges",
        "_stall_since",
        "_start",
        "_state",
        "_t",
        "config",
        "created_at",
        "qoe",
        "waiting_time",
    )

    def __init__(self, config: PlayerConfig | None = None, *, now: float) -> None:
        _check_time(now)
        self.config = config or PlayerConfig()
        self.created_at = now
        self.qoe = QoE()
        self.waiting_time = 0.0
        """Seconds neither playing nor stalled: before the first frame, and after the end."""
        self._t = now  # the player is up to date until this clock time
        self._pos = 0.0  # playhead (media time) at self._t
        self._start: float | None = None
        self._end = math.inf
        self._state = PlayerState.WAITING
        self._ranges: list[list[float]] = []  # sorted, disjoint [start, end] buffered ranges
        self._events: list[PlayerEvent] = []
        self._stall_since = 0.0
        self._last_switch: float | None = None

    # ------------------------------------------------------------------ inputs

    def start_at(self, position: float, now: float) -> None:
        """Set the media time where playback begins; after the start it is a seek."""
        _check_media_time("start position", position)
        self._advance(now)
        if self._state is PlayerState.ENDED:
            raise RuntimeError("the player has ended; make a new VirtualPlayer to play again")
        self._start = position
        self._pos = position
        self._settle(self._t)

    def add_segment(self, start: float, duration: float, now: float) -> None:
        """A segment covering ``[start, start + duration)`` is fully available (any order)."""
        _check_media_time("segment start", start)
        if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
            raise ValueError(f"segment duration must be a finite number > 0, got {duration!r}")
        self._advance(now)
        self._insert(start, start + duration)
        self._settle(self._t)

    def set_end(self, media_end: float, now: float | None = None) -> None:
        """The media ends at ``media_end`` (VOD, or a live stream that ended): ENDED there.

        ``now`` defaults to the time of the latest call.
        """
        _check_media_time("media end", media_end)
        self._advance(self._t if now is None else now)
        self._end = media_end
        self._settle(self._t)

    def tick(self, now: float) -> list[PlayerEvent]:
        """Bring the player to ``now``; return the transitions since the previous tick."""
        self._advance(now)
        self._settle(self._t)
        events, self._events = self._events, []
        return events

    # ------------------------------------------------------------------ queries

    @property
    def state(self) -> PlayerState:
        """The state as of the latest call."""
        return self._state

    @property
    def rate(self) -> float:
        """Playback speed as of the latest call: 1.0 while playing, 0.0 otherwise."""
        return 1.0 if self._state is PlayerState.PLAYING else 0.0

    @property
    def start_position(self) -> float | None:
        """The media time given to :meth:`start_at`, None before."""
        return self._start

    @property
    def media_end(self) -> float:
        """Where the media ends (inf until :meth:`set_end`)."""
        return self._end

    def position(self, now: float) -> float:
        """The playhead (media time) at ``now``."""
        self._advance(now)
        return self._pos

    def buffered_until(self, now: float) -> float:
        """End of the contiguous buffered range from the playhead (the playhead if none)."""
        self._advance(now)
        return self._contiguous_end(self._pos)

    def buffer_ahead(self, now: float) -> float:
        """Seconds of media buffered ahead of the playhead."""
        self._advance(now)
        return self._contiguous_end(self._pos) - self._pos

    def wants_more(self, now: float) -> bool:
        """True while less than ``max_buffer`` is buffered ahead and the media goes on."""
        self._advance(now)
        until = self._contiguous_end(self._pos)
        return until < self._end - _EPS and until - self._pos < self.config.max_buffer

    def playback(self, now: float) -> Playback:
        """Arguments for ``SegmentScheduler.set_playback(now, ...)``."""
        self._advance(now)
        started = self._state in (PlayerState.PLAYING, PlayerState.STALLED)
        return Playback(self._pos, self._contiguous_end(self._pos), 1.0, started)

    def next_event_time(self, now: float) -> float | None:
        """When the buffer runs dry (or the media ends) if nothing arrives; None if not playing.

        Call :meth:`tick` then: that is when the stall (or the end) happens.
        """
        self._advance(now)
        if self._state is not PlayerState.PLAYING:
            return None
        return self._t + (self._stop_point() - self._pos)

    # ------------------------------------------------------------------ ABR

    def choose_rendition(
        self, now: float, bandwidths: Sequence[int], throughput_bps: float, current: int
    ) -> int:
        """Index into ``bandwidths`` (bits/s) of the rendition to play next.

        The target is the highest bandwidth <= ``abr_safety`` x ``throughput_bps`` (bits/s), the
        lowest if none fits. Going up waits ``abr_min_interval`` after the previous switch; going
        down does too unless the buffer is low (under ``abr_low_buffer``, or not playing), where
        it happens at once. With ``abr`` off, ``current`` is kept. A switch is counted in QoE and
        reported as a ``switch`` event.
        """
        _check_renditions(bandwidths, current)
        if isinstance(throughput_bps, bool) or not (
            isinstance(throughput_bps, int | float)
            and math.isfinite(throughput_bps)
            and throughput_bps >= 0
        ):
            raise ValueError(f"throughput must be a finite number >= 0, got {throughput_bps!r}")
        self._advance(now)
        if not self.config.abr:
            return current
        target = _pick(bandwidths, throughput_bps * self.config.abr_safety)
        if bandwidths[target] == bandwidths[current] or not self._may_switch(
            up=bandwidths[target] > bandwidths[current]
        ):
            return current
        self._last_switch = self._t
        self.qoe.switches += 1
        detail = {
            "from": current,
            "to": target,
            "bandwidth": bandwidths[target],
            "throughput_bps": throughput_bps,
        }
        self._events.append(PlayerEvent("switch", self._t, detail))
        logger.debug("switch %d -> %d at %.3f: %s", current, target, self._t, detail)
        return target

    def _may_switch(self, *, up: bool) -> bool:
        cfg = self.config
        last = self._last_switch
        if last is None or self._t - last >= cfg.abr_min_interval - _EPS:
            return True
        if up:
            return False
        # Down on a low buffer at once: a stall costs more than a lower quality.
        ahead = self._contiguous_end(self._pos) - self._pos
        return self._state is not PlayerState.PLAYING or ahead < cfg.abr_low_buffer

    # ------------------------------------------------------------------ internals

    def _advance(self, now: float) -> None:
        """Move the clock to ``now``, placing a run-dry transition at its exact moment."""
        _check_time(now)
        if now <= self._t:
            if now < self._t:
                logger.debug("clock went back %.6f s; ignored", self._t - now)
            return
        dt = now - self._t
        if self._state is PlayerState.PLAYING:
            stop = self._stop_point()
            run = stop - self._pos
            if run < dt:
                # Ran dry (or reached the end) between two calls: date it when it happened.
                self.qoe.played_time += run
                self._pos = stop
                self._t += run
                self._run_dry(self._t)
                dt = now - self._t
            else:
                self.qoe.played_time += dt
                self._pos += dt
                dt = 0.0
        if dt > 0:
            if self._state is PlayerState.STALLED:
                self.qoe.stall_time += dt
            elif self._state is not PlayerState.PLAYING:
                self.waiting_time += dt
        self._t = now

    def _settle(self, now: float) -> None:
        """Apply the state rules at ``now`` after an input changed the buffer or the end."""
        state = self._state
        if state is PlayerState.WAITING and self._start is not None:
            if self._pos >= self._end - _EPS:
                self._set(PlayerState.ENDED, now, position=self._pos)
            elif self._enough(self.config.startup_buffer):
                self.qoe.startup_time = now - self.created_at
                self._set(
                    PlayerState.PLAYING, now, position=self._pos, startup=self.qoe.startup_time
                )
        elif state is PlayerState.STALLED and self._pos >= self._end - _EPS:
            self._set(PlayerState.ENDED, now, position=self._pos)
        elif state is PlayerState.STALLED and self._enough(self.config.resume_buffer):
            stalled_for = now - self._stall_since
            self._set(PlayerState.PLAYING, now, position=self._pos, stalled_for=stalled_for)
        elif state is PlayerState.PLAYING and self._stop_point() - self._pos <= _EPS:
            self._run_dry(now)

    def _run_dry(self, at: float) -> None:
        if self._pos >= self._end - _EPS:
            self._set(PlayerState.ENDED, at, position=self._pos)
            return
        self.qoe.stalls += 1
        self._stall_since = at
        self._set(PlayerState.STALLED, at, position=self._pos)

    def _set(self, state: PlayerState, at: float, **detail: Any) -> None:
        kind = {
            PlayerState.PLAYING: "resume" if self._state is PlayerState.STALLED else "started",
            PlayerState.STALLED: "stall",
            PlayerState.ENDED: "ended",
        }[state]
        self._state = state
        self._events.append(PlayerEvent(kind, at, detail))
        logger.debug("%s at %.3f %s", kind, at, detail)

    def _enough(self, wanted: float) -> bool:
        """Is ``wanted`` seconds (or everything up to the end) buffered ahead, and not nothing?"""
        until = self._contiguous_end(self._pos)
        if until <= self._pos + _EPS:
            return False
        return until - self._pos >= wanted - _EPS or until >= self._end - _EPS

    def _stop_point(self) -> float:
        """Where the playhead stops if nothing arrives: the buffer's end or the media's."""
        return min(self._contiguous_end(self._pos), max(self._end, self._pos))

    def _contiguous_end(self, pos: float) -> float:
        hole = self.config.max_hole
        for start, end in self._ranges:
            if start - hole > pos + _EPS:
                break
            if pos <= end + _EPS:
                return max(end, pos)
        return pos

    def _insert(self, start: float, end: float) -> None:
        """Add ``[start, end)``, merging ranges that overlap or are at most max_hole apart."""
        hole = self.config.max_hole
        # Ranges wholly behind the playhead are gone from a real player's buffer soon enough;
        # dropping them keeps a long session's bookkeeping small.
        keep = [r for r in self._ranges if r[1] >= self._pos - hole]
        merged: list[list[float]] = []
        new = [start, end]
        for r in keep:
            if r[1] + hole < new[0] - _EPS:
                merged.append(r)
            elif new[1] + hole < r[0] - _EPS:
                merged.append(new)
                new = r
            else:
                new = [min(new[0], r[0]), max(new[1], r[1])]
        merged.append(new)
        self._ranges = merged


def _pick(bandwidths: Sequence[int], budget: float) -> int:
    """Index of the highest bandwidth <= budget, else of the lowest bandwidth."""
    fitting = [i for i, b in enumerate(bandwidths) if b <= budget]
    if fitting:
        return max(fitting, key=lambda i: bandwidths[i])
    return min(range(len(bandwidths)), key=lambda i: bandwidths[i])


def _check_renditions(bandwidths: Sequence[int], current: int) -> None:
    if not bandwidths:
        raise ValueError("choose_rendition needs at least one rendition bandwidth")
    for b in bandwidths:
        if isinstance(b, bool) or not isinstance(b, int) or b <= 0:
            raise ValueError(f"rendition bandwidths must be integers > 0 (bits/s), got {b!r}")
    if isinstance(current, bool) or not isinstance(current, int):
        raise ValueError(f"current rendition must be an index, got {current!r}")
    if not 0 <= current < len(bandwidths):
        raise ValueError(f"current rendition {current} is not an index of {len(bandwidths)}")


def _check_time(now: float) -> None:
    if not isinstance(now, int | float) or not math.isfinite(now):
        raise ValueError(f"now must be a finite number of seconds, got {now!r}")


def _check_media_time(what: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
