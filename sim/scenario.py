"""Scenarios: what is simulated, as a typed, JSON-shareable description.

A :class:`Scenario` is the single input of the simulator and is meant to be shared with the
load test (issue #7): the same JSON file describes the stream, the viewers, their links and the
knobs of the peer, so a small scenario can be replayed by real processes and compared.

Rates in JSON and on the command line are in Mbit/s (what operators speak); the engine works in
bytes per second. Capacity distributions are mixtures of uniform ranges, e.g. ``"0.1:0,
0.3:0.3-1, 0.6:1-10"`` = 10 % of viewers do not upload, 30 % upload 0.3 to 1 Mbit/s, 60 % 1 to
10 Mbit/s. A zero range means "upload off" for uploads.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmcast.peer.bandwidth import BandwidthConfig
from swarmcast.peer.scheduler import SchedulerConfig
from swarmcast.peer.upload import UploadConfig

#: Version of the scenario format (bump on incompatible changes).
SCENARIO_VERSION = 1


class ScenarioError(ValueError):
    """A scenario value is malformed or out of range; the message says which and how to fix it."""


@dataclass(frozen=True)
class Mixture:
    """A capacity distribution: weighted uniform ranges, in Mbit/s."""

    parts: tuple[tuple[float, float, float], ...]
    """``(weight, low, high)`` triples; weights need not sum to 1 (they are normalised)."""

    def __post_init__(self) -> None:
        if not self.parts:
            raise ScenarioError("a capacity distribution needs at least one part")
        for weight, low, high in self.parts:
            if not all(math.isfinite(x) for x in (weight, low, high)):
                raise ScenarioError(f"distribution part {(weight, low, high)} is not finite")
            if weight < 0 or low < 0 or high < low:
                raise ScenarioError(
                    f"distribution part {(weight, low, high)}: need weight >= 0, 0 <= low <= high"
                )
        if sum(p[0] for p in self.parts) <= 0:
            raise ScenarioError("distribution weights sum to zero")

    @classmethod
    def parse(cls, text: str) -> Mixture:
        """Parse ``"w:lo-hi, w:x, ..."`` (Mbit/s). A bare ``"lo-hi"`` means weight 1."""
        parts = []
        for raw in text.split(","):
            item = raw.strip()
            if not item:
                continue
            weight_text, _, range_text = item.rpartition(":")
            try:
                weight = float(weight_text) if weight_text else 1.0
                low_text, _, high_text = range_text.partition("-")
                low = float(low_text)
                high = float(high_text) if high_text else low
            except ValueError:
                raise ScenarioError(
                    f"bad distribution part {item!r}: expected WEIGHT:LOW-HIGH in Mbit/s, "
                    "e.g. '0.1:0,0.9:1-4'"
                ) from None
            parts.append((weight, low, high))
        return cls(tuple(parts))

    @classmethod
    def from_json(cls, value: Any) -> Mixture:
        """Accept the string form or a list of ``[weight, low, high]``."""
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, list) and all(isinstance(p, list) and len(p) == 3 for p in value):
            try:
                return cls(tuple((float(w), float(lo), float(hi)) for w, lo, hi in value))
            except (TypeError, ValueError):
                raise ScenarioError(f"distribution parts must be numbers: {value!r}") from None
        raise ScenarioError(f"a distribution is a string or a list of [w, lo, hi]: {value!r}")

    def to_json(self) -> list[list[float]]:
        """The list form."""
        return [list(p) for p in self.parts]

    def draw_bps(self, rng: random.Random) -> float:
        """One draw, in bytes per second."""
        total = sum(p[0] for p in self.parts)
        pick = rng.random() * total
        chosen = self.parts[-1]
        for part in self.parts:
            pick -= part[0]
            if pick < 0:
                chosen = part
                break
        return rng.uniform(chosen[1], chosen[2]) * 1e6 / 8

    def mean_bps(self) -> float:
        """Mean in bytes per second."""
        total = sum(p[0] for p in self.parts)
        return sum(w * (lo + hi) / 2 for w, lo, hi in self.parts) / total * 1e6 / 8


@dataclass(frozen=True)
class Scenario:
    """Everything one simulation run needs. Times in seconds, rates in Mbit/s."""

    viewers: int = 100
    """Concurrent viewers (with churn, departures are replaced to keep this many)."""
    duration: float = 120.0
    """Simulated seconds after the stream starts (viewers leave at the end)."""
    live: bool = True
    """Live (sliding playlist) or VOD (whole timeline known at join)."""
    vod_length: float = 600.0
    """VOD: seconds of content."""
    bitrate_kbps: float = 770.0
    """Media bitrate; every segment is ``bitrate * segment_duration`` bytes."""
    segment_duration: float = 2.0
    """Seconds per segment (also the live playlist refresh interval)."""
    window: int = 6
    """Live playlist window, segments."""
    join_spread: float = 10.0
    """Viewers arrive uniformly within this many seconds after the stream starts."""
    session: float | None = None
    """Churn: mean viewing session (exponential), seconds; a leaver is replaced at once.
    None = everyone stays to the end."""
    seeds: int = 0
    """Seed peers next to the origin (they hold every segment as soon as it is published)."""
    seed_upload: float = 200.0
    """Upload capacity of each seed, Mbit/s."""
    seed_capacity: int = 50
    """Viewers a seed offers to serve (told to the signalling server)."""
    upload: Mixture = field(default_factory=lambda: Mixture.parse("0.1:0,0.3:0.5-2,0.6:2-10"))
    """Viewer upload capacity distribution, Mbit/s (0 = upload off)."""
    download: Mixture = field(default_factory=lambda: Mixture.parse("1:10-50"))
    """Viewer download capacity distribution, Mbit/s."""
    http_latency: float = 0.05
    """Origin time to first byte, seconds."""
    p2p_latency: float = 0.03
    """One-way latency between peers of the same locality, seconds."""
    p2p_latency_remote: float = 0.06
    """One-way latency between peers of different localities, seconds."""
    localities: int = 1
    """Networks viewers are spread over (uniformly); the signalling server prefers the same."""
    connect_time: tuple[float, float] = (0.5, 1.5)
    """WebRTC connection setup time (signalling + ICE + DTLS + SCTP), uniform range, seconds."""
    nat_fail: float = 0.2
    """Share of peer pairs that cannot connect directly (no relay is used for P2P)."""
    origin_capacity: float | None = None
    """Origin/CDN egress capacity, Mbit/s (None = unlimited)."""
    p2p: bool = True
    """False: plain HTTP, no signalling, no peers (the baseline)."""
    sample_size: int | None = None
    """Peers introduced per join; None = the signalling server's default."""
    max_neighbours: int = 40
    """Connections a viewer accepts; further connection attempts to it are refused."""
    min_neighbours: int = 8
    """Below this many neighbours (after departures) a viewer asks for a new sample."""
    player_tick: float | None = None
    """Seconds between the player's progress events (browsers fire ``timeupdate`` ~4 Hz), each
    a scheduler poll; None = polls only on events and ``next_wakeup`` (exposes missing
    wakeups in the scheduler)."""
    cache_mb: float = 64.0
    """Segment cache budget per viewer, MiB."""
    report_interval: float = 5.0
    """Time-series bucket, seconds."""
    seed: int = 1
    """Random seed: the same scenario and seed give the same report."""
    scheduler: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`SchedulerConfig` (``bandwidth`` nested), as in the scheduler vectors."""
    upload_config: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`UploadConfig` for viewers (``enabled`` comes from the upload draw)."""

    def __post_init__(self) -> None:
        for name in ("upload", "download"):
            value = getattr(self, name)
            if not isinstance(value, Mixture):
                # Accept the JSON forms from Python callers too (frozen: set via object).
                object.__setattr__(self, name, Mixture.from_json(value))
        for name in ("scheduler", "upload_config"):
            if not isinstance(getattr(self, name), dict):
                raise ScenarioError(f"scenario: {name} must be an object of overrides")
        try:
            self._check_ranges()
        except TypeError:
            raise ScenarioError(
                "scenario: a value has the wrong type (numbers for counts, rates and times)"
            ) from None
        # Build them once here so a bad override fails with the scenario, not mid-run.
        self.scheduler_config()
        self.viewer_upload_config(True)

    def _check_ranges(self) -> None:
        checks = [
            (self.viewers >= 1, "viewers must be >= 1"),
            (self.duration > 0, "duration must be > 0"),
            (self.vod_length > 0, "vod_length must be > 0"),
            (self.bitrate_kbps > 0, "bitrate_kbps must be > 0"),
            (self.segment_duration > 0, "segment_duration must be > 0"),
            (self.window >= 1, "window must be >= 1"),
            (self.join_spread >= 0, "join_spread must be >= 0"),
            (self.session is None or self.session > 0, "session must be > 0 or null"),
            (self.seeds >= 0, "seeds must be >= 0"),
            (self.seed_upload > 0, "seed_upload must be > 0"),
            (self.seed_capacity >= 1, "seed_capacity must be >= 1"),
            (min(self.http_latency, self.p2p_latency, self.p2p_latency_remote) >= 0, "latency < 0"),
            (self.localities >= 1, "localities must be >= 1"),
            (0 <= self.connect_time[0] <= self.connect_time[1], "connect_time: 0 <= lo <= hi"),
            (0 <= self.nat_fail <= 1, "nat_fail must be in [0, 1]"),
            (self.origin_capacity is None or self.origin_capacity > 0, "origin_capacity > 0"),
            (self.sample_size is None or self.sample_size >= 1, "sample_size must be >= 1"),
            (self.max_neighbours >= 1, "max_neighbours must be >= 1"),
            (self.min_neighbours >= 0, "min_neighbours must be >= 0"),
            (self.cache_mb > 0, "cache_mb must be > 0"),
            (self.player_tick is None or self.player_tick > 0, "player_tick must be > 0"),
            (self.report_interval > 0, "report_interval must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ScenarioError(f"scenario: {message}")
        if self.download.mean_bps() <= 0:
            raise ScenarioError("scenario: download capacities must not all be zero")
        if self.segment_bytes < 1:
            raise ScenarioError("scenario: bitrate x segment_duration is below one byte")
        if not isinstance(self.viewers, int) or not isinstance(self.seeds, int):
            raise ScenarioError("scenario: viewers and seeds are whole numbers")

    # ------------------------------------------------------------------ derived values

    @property
    def segment_bytes(self) -> int:
        """Bytes per segment."""
        return int(self.bitrate_kbps * 1000 / 8 * self.segment_duration)

    @property
    def vod_segments(self) -> int:
        """Number of segments of the VOD content."""
        return max(1, math.ceil(self.vod_length / self.segment_duration - 1e-9))

    def scheduler_config(self) -> SchedulerConfig:
        """The :class:`SchedulerConfig` every viewer runs (defaults + overrides)."""
        overrides = dict(self.scheduler)
        bandwidth = overrides.pop("bandwidth", {})
        try:
            return SchedulerConfig(**overrides, bandwidth=BandwidthConfig(**bandwidth))
        except TypeError as exc:
            raise ScenarioError(f"scenario.scheduler: {exc}") from None
        except ValueError as exc:
            raise ScenarioError(f"scenario.scheduler: {exc}") from None

    def viewer_upload_config(self, enabled: bool) -> UploadConfig:
        """The :class:`UploadConfig` of a viewer whose upload draw is on (``enabled``) or off."""
        try:
            return UploadConfig(**{**self.upload_config, "enabled": enabled})
        except (TypeError, ValueError) as exc:
            raise ScenarioError(f"scenario.upload_config: {exc}") from None

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the shareable scenario format, see docs/simulation.md)."""
        out: dict[str, Any] = {"version": SCENARIO_VERSION}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mixture):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Any) -> Scenario:
        """Build from a dict; unknown keys and bad values raise :class:`ScenarioError`."""
        if not isinstance(data, dict):
            raise ScenarioError("a scenario is a JSON object")
        data = dict(data)
        version = data.pop("version", SCENARIO_VERSION)
        if version != SCENARIO_VERSION:
            raise ScenarioError(f"scenario version {version!r} is not {SCENARIO_VERSION}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ScenarioError(f"unknown scenario keys {unknown}; known: {sorted(names)}")
        for key in ("upload", "download"):
            if key in data:
                data[key] = Mixture.from_json(data[key])
        if "connect_time" in data:
            ct = data["connect_time"]
            if not (isinstance(ct, list | tuple) and len(ct) == 2):
                raise ScenarioError("connect_time is [low, high] in seconds")
            try:
                data["connect_time"] = (float(ct[0]), float(ct[1]))
            except (TypeError, ValueError):
                raise ScenarioError("connect_time is [low, high] in seconds") from None
        try:
            return cls(**data)
        except TypeError as exc:
            raise ScenarioError(f"scenario: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario JSON file."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"scenario {path} is not valid JSON: {exc}") from None
        return cls.from_json(data)

    def replace(self, **changes: Any) -> Scenario:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
