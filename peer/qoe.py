"""Quality of experience of one viewer session: startup, stalls, bytes by source.

A :class:`QoE` is a plain counter record. The virtual player (:mod:`swarmcast.peer.player`)
keeps the playback figures (startup, stalls, time played); the viewer adds the bytes it
received from the origin and from peers, and what it uploaded. The load test runs hundreds of
viewers per process, so this is a slotted dataclass with no behaviour beyond arithmetic.

Two serialisations:

- :meth:`QoE.to_json` / :meth:`QoE.from_json`: every field under its own name, plus the derived
  ``offload`` and ``rebuffer_ratio``; this is the viewer's own report (``swarmcast view``).
- :meth:`QoE.to_report_row`: the per-viewer figures under the names of the simulator's
  ``viewers.json`` rows (``sim/report.py``: ``play_time``, ``stall_count``, ...), so a load test
  can feed its viewers to the same ``summarise`` and produce a report comparable with a
  simulation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from typing import Any

logger = logging.getLogger(__name__)

_INT_FIELDS = ("stalls", "http_bytes", "p2p_bytes", "uploaded_bytes", "p2p_rejected_bytes")
_INT_FIELDS += ("switches", "live_latency_samples")
_FLOAT_FIELDS = ("stall_time", "played_time", "live_latency_sum")


@dataclass(slots=True)
class QoE:
    """Playback and delivery figures of one viewer session (seconds and bytes)."""

    startup_time: float | None = None
    """Seconds from the player's creation (the viewer's start) to the first frame; None until
    playback starts (or if it never does)."""

    stalls: int = 0
    """Times the playhead reached the end of the buffer while playing (after startup)."""

    stall_time: float = 0.0
    """Seconds spent stalled, counted up to the player's latest update."""

    played_time: float = 0.0
    """Seconds of media played at normal speed."""

    http_bytes: int = 0
    """Bytes received from the HTTP origin/CDN (including Range resumes of peer transfers)."""

    p2p_bytes: int = 0
    """Bytes received from peers that passed the integrity check."""

    uploaded_bytes: int = 0
    """Bytes sent to peers."""

    p2p_rejected_bytes: int = 0
    """Bytes received from peers that failed the integrity check (not counted in p2p_bytes)."""

    switches: int = 0
    """Rendition switches made by ABR."""

    live_latency_sum: float = 0.0
    """Sum of the live-latency samples (seconds behind the live edge), see add_live_latency."""

    live_latency_samples: int = 0
    """Number of live-latency samples."""

    @property
    def offload(self) -> float:
        """Share of the received bytes that came from peers; 0.0 when nothing was received."""
        received = self.http_bytes + self.p2p_bytes
        return self.p2p_bytes / received if received > 0 else 0.0

    @property
    def rebuffer_ratio(self) -> float:
        """Stalled time over stalled plus played time; 0.0 before anything played or stalled."""
        total = self.played_time + self.stall_time
        return self.stall_time / total if total > 0 else 0.0

    @property
    def live_latency(self) -> float | None:
        """Mean distance behind the live edge over the samples, None without samples."""
        if not self.live_latency_samples:
            return None
        return self.live_latency_sum / self.live_latency_samples

    def add_live_latency(self, seconds: float) -> None:
        """Record one sample of the distance between the playhead and the live edge."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"live latency sample must be a finite number >= 0, got {seconds!r}")
        self.live_latency_sum += seconds
        self.live_latency_samples += 1

    def to_json(self) -> dict[str, Any]:
        """Every field plus ``offload``, ``rebuffer_ratio`` and ``live_latency``, JSON-ready."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["offload"] = self.offload
        out["rebuffer_ratio"] = self.rebuffer_ratio
        out["live_latency"] = self.live_latency
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QoE:
        """Rebuild a record written by :meth:`to_json`; derived keys are ignored.

        Missing keys take their defaults (records from an older version still load); a key with
        a wrong type or value raises ValueError naming it.
        """
        if not isinstance(data, dict):
            raise ValueError(f"QoE record must be a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for name in _INT_FIELDS:
            kwargs[name] = _count(data, name)
        for name in _FLOAT_FIELDS:
            kwargs[name] = _seconds(data, name)
        startup = data.get("startup_time")
        kwargs["startup_time"] = None if startup is None else _seconds(data, "startup_time")
        return cls(**kwargs)

    def to_report_row(self) -> dict[str, Any]:
        """The per-viewer figures under the simulator's ``viewers.json`` names (sim/report.py).

        Only the QoE part: the caller adds ``id``, ``joined_at``, ``left_at``, link capacities
        and scheduler counters, which a QoE record does not know.
        """
        return {
            "http_bytes": self.http_bytes,
            "p2p_bytes": self.p2p_bytes,
            "uploaded_bytes": self.uploaded_bytes,
            "startup_time": self.startup_time,
            "play_time": self.played_time,
            "stall_count": self.stalls,
            "stall_time": self.stall_time,
            "live_latency": self.live_latency,
            "switches": self.switches,
        }


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name, 0)
    # bool is an int subclass; a True byte count is a bug in the writer, not a count of one.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"QoE field {name!r} must be an integer >= 0, got {value!r}")
    return value


def _seconds(data: dict[str, Any], name: str) -> float:
    value = data.get(name, 0.0)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0:
        raise ValueError(f"QoE field {name!r} must be a finite number >= 0, got {value!r}")
    return float(value)
