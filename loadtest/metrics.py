"""Load-test metrics: worker samples, event-loop lag, the merger and the report (sans-IO).

Workers (processes, possibly on other hosts) send a :class:`WorkerSample` every second and one
row per finished session; the coordinator merges them here into the simulator's report format
(``swarmcast.qoe-report/1``, docs/simulation.md) with ``"source": "loadtest"``. Nothing here
does I/O or reads a clock: times are passed in, so the merger is unit-tested with made-up
samples.

**Event-loop lag** is how late a periodic ``sleep(tick)`` wakes up. A worker whose loop lags
is a CPU-saturated *generator*: its viewers see late timers and slow reads that the system
under test did not cause. :class:`LagMonitor` keeps the samples; :func:`generator_verdict`
marks the whole run invalid when any worker's 95th percentile lag passes the limit: a
saturated loop lags most of the time, while a loaded machine (or a burst of DTLS handshakes
when many viewers join at once) gives a few isolated spikes that the peer's deadlines absorb;
p99 and max are reported too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from swarmcast.sim.report import REPORT_SCHEMA, summarise


@dataclass(slots=True)
class WorkerSample:
    """What one worker saw during one sample interval (counters are deltas since the last)."""

    worker: int
    """Worker index."""
    t: float
    """End of the interval, seconds since the start of the run."""
    online: int = 0
    """Viewer sessions running at ``t``."""
    playing: int = 0
    """Of those, playing at ``t``."""
    stalled: int = 0
    """Of those, stalled at ``t``."""
    http_bytes: int = 0
    """Bytes viewers received from the origin during the interval."""
    p2p_bytes: int = 0
    """Bytes viewers received from peers during the interval."""
    uploaded_bytes: int = 0
    """Bytes viewers and seeds sent to peers during the interval."""
    seed_ingest: int = 0
    """Bytes seeds fetched from the origin during the interval."""
    stalls: int = 0
    """New stalls during the interval."""
    neighbours: int = 0
    """Peer links of the online viewers at ``t``, summed."""
    lag_max: float = 0.0
    """Worst event-loop lag seen during the interval, seconds."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerSample:
        """Inverse of :meth:`to_json`; unknown or missing keys raise ValueError."""
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"malformed worker sample {data!r}: {exc}") from None


@dataclass
class LagMonitor:
    """Event-loop lag samples of one worker (seconds late of a periodic timer)."""

    samples: list[float] = field(default_factory=list)
    """Every lag measured so far."""
    _interval_max: float = 0.0

    def record(self, expected: float, actual: float) -> float:
        """A timer due at ``expected`` fired at ``actual``; returns the lag (>= 0)."""
        lag = max(actual - expected, 0.0)
        self.samples.append(lag)
        self._interval_max = max(self._interval_max, lag)
        return lag

    def take_interval_max(self) -> float:
        """Worst lag since the previous call (resets it)."""
        worst, self._interval_max = self._interval_max, 0.0
        return worst

    def summary(self) -> dict[str, float | int]:
        """``{"samples", "mean", "p50", "p95", "p99", "max"}``, seconds (zeros if no samples)."""
        if not self.samples:
            return {"samples": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        ordered = sorted(self.samples)
        return {
            "samples": len(ordered),
            "mean": sum(ordered) / len(ordered),
            "p50": _quantile(ordered, 0.5),
            "p95": _quantile(ordered, 0.95),
            "p99": _quantile(ordered, 0.99),
            "max": ordered[-1],
        }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def generator_verdict(lags: dict[int, dict[str, Any]], max_lag: float) -> dict[str, Any]:
    """``{"valid", "max_lag", "workers", "reasons"}``: invalid when a worker's p95 lag > max_lag.

    ``lags`` maps worker index to :meth:`LagMonitor.summary`. A worker that sent no lag at all
    (it died) also makes the run invalid: its viewers' figures are missing.
    """
    reasons = []
    for worker, lag in sorted(lags.items()):
        if not lag.get("samples"):
            reasons.append(f"worker {worker} reported no event-loop samples (did it crash?)")
        elif lag["p95"] > max_lag:
            reasons.append(
                f"worker {worker}: event-loop lag p95 {lag['p95'] * 1000:.0f} ms > "
                f"{max_lag * 1000:.0f} ms: the load generator was CPU-saturated, so its "
                "viewers' QoE says nothing about the system under test (use fewer viewers "
                "per worker, or more workers/hosts)"
            )
    return {
        "valid": not reasons,
        "max_lag": max_lag,
        "workers": {str(k): v for k, v in sorted(lags.items())},
        "reasons": reasons,
    }


def merge_timeseries(
    samples: list[WorkerSample],
    origin_points: list[tuple[float, int]],
    interval: float,
    duration: float,
) -> list[dict[str, Any]]:
    """The ``timeseries.json`` rows: worker samples summed per ``interval`` bucket.

    A sample at ``t`` belongs to the bucket ``(k * interval, (k + 1) * interval]``; the row's
    ``t`` is the bucket's end (the simulator's convention). Counters are summed; gauges
    (online, playing, stalled, neighbours) are each worker's last sample in the bucket, summed
    over workers. ``origin_points`` are ``(t, cumulative origin bytes)`` readings of the
    origin's own counters; a bucket's egress is the growth between the last readings of the
    previous bucket and of this one, over the time between them, in bytes/s.
    """
    if interval <= 0:
        raise ValueError("interval must be > 0")
    buckets = max(1, math.ceil(duration / interval - 1e-9))
    rows = [_empty_row((k + 1) * interval) for k in range(buckets)]
    last: dict[tuple[int, int], WorkerSample] = {}
    for s in sorted(samples, key=lambda s: (s.t, s.worker)):
        k = _bucket(s.t, interval, buckets)
        row = rows[k]
        row["http_bytes"] += s.http_bytes
        row["p2p_bytes"] += s.p2p_bytes
        row["uploaded_bytes"] += s.uploaded_bytes
        row["seed_ingest"] += s.seed_ingest
        row["stalls"] += s.stalls
        row["lag_max"] = max(row["lag_max"], s.lag_max)
        last[(k, s.worker)] = s
    for (k, _worker), s in last.items():
        for key in ("online", "playing", "stalled", "neighbours"):
            rows[k]["viewers_online" if key == "online" else key] += getattr(s, key)
    _origin_egress(rows, origin_points, interval, buckets)
    for row in rows:
        received = row["http_bytes"] + row["p2p_bytes"]
        row["offload"] = row["p2p_bytes"] / received if received else 0.0
        # Without P2P there are no seeds either: every byte a viewer got would be origin egress.
        row["http_only_bps"] = received / interval
        row["mean_neighbours"] = (
            row["neighbours"] / row["viewers_online"] if row["viewers_online"] else 0.0
        )
    return rows


def _empty_row(t: float) -> dict[str, Any]:
    return {
        "t": round(t, 6),
        "viewers_online": 0,
        "playing": 0,
        "stalled": 0,
        "http_bytes": 0,
        "p2p_bytes": 0,
        "uploaded_bytes": 0,
        "seed_ingest": 0,
        "offload": 0.0,
        "origin_egress_bps": 0.0,
        "http_only_bps": 0.0,
        "stalls": 0,
        "neighbours": 0,
        "mean_neighbours": 0.0,
        "lag_max": 0.0,
    }


def _bucket(t: float, interval: float, buckets: int) -> int:
    k = math.ceil(t / interval - 1e-9) - 1
    return min(max(k, 0), buckets - 1)


def _origin_egress(
    rows: list[dict[str, Any]], points: list[tuple[float, int]], interval: float, buckets: int
) -> None:
    by_bucket: dict[int, tuple[float, int]] = {}
    for t, total in sorted(points):
        by_bucket[_bucket(t, interval, buckets)] = (t, total)
    prev_t, prev_total = 0.0, 0
    for k in range(buckets):
        if k not in by_bucket:
            continue
        t, total = by_bucket[k]
        if t > prev_t:
            rows[k]["origin_egress_bps"] = max(total - prev_total, 0) / (t - prev_t)
        prev_t, prev_total = t, total


@dataclass(frozen=True)
class Thresholds:
    """Pass/fail limits for CI; None = not checked."""

    min_offload: float | None = None
    """Lowest acceptable offload (P2P bytes / all bytes viewers received), 0..1."""
    max_rebuffer: float | None = None
    """Highest acceptable rebuffering ratio (stall time / (play + stall time)), 0..1."""
    max_startup_p95: float | None = None
    """Highest acceptable 95th percentile startup time, seconds."""
    max_never_started: int | None = None
    """Most sessions allowed to never show a frame."""

    def __post_init__(self) -> None:
        for name in ("min_offload", "max_rebuffer"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.max_startup_p95 is not None and not self.max_startup_p95 > 0:
            raise ValueError(f"max_startup_p95 must be > 0 s, got {self.max_startup_p95}")
        if self.max_never_started is not None and self.max_never_started < 0:
            raise ValueError("max_never_started must be >= 0")

    def check(self, summary: dict[str, Any]) -> list[str]:
        """The thresholds ``summary`` (a report summary) misses, as sentences; [] = all met."""
        missed = []
        if self.min_offload is not None and summary["offload"] < self.min_offload:
            missed.append(f"offload {summary['offload']:.1%} < minimum {self.min_offload:.1%}")
        ratio = summary["rebuffering_ratio"]
        if self.max_rebuffer is not None and ratio > self.max_rebuffer:
            missed.append(f"rebuffering {ratio:.2%} > maximum {self.max_rebuffer:.2%}")
        p95 = summary["startup"]["p95"]
        if self.max_startup_p95 is not None and (p95 is None or p95 > self.max_startup_p95):
            shown = "none started" if p95 is None else f"{p95:.2f} s"
            missed.append(f"startup p95 {shown} > maximum {self.max_startup_p95:.2f} s")
        never = summary["startup"]["never_started"]
        if self.max_never_started is not None and never > self.max_never_started:
            missed.append(f"{never} sessions never started > maximum {self.max_never_started}")
        return missed

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def distinct_segments(rows: list[dict[str, Any]]) -> int:
    """Segments any viewer stored, from each row's ``segment_range`` ``[first, last]``.

    Viewers store contiguous runs from where they start, so the union of their ranges is the
    set of distinct segments (a viewer that skipped ahead after a long stall overcounts by the
    skipped ones, which only makes "origin requests per segment" smaller).
    """
    ranges = sorted(tuple(r["segment_range"]) for r in rows if r.get("segment_range"))
    total, end = 0, None
    for first, last in ranges:
        if end is None or first > end:
            total += last - first + 1
            end = last
        elif last > end:
            total += last - end
            end = last
    return total


def build_report(
    *,
    scenario: dict[str, Any],
    rows: list[dict[str, Any]],
    samples: list[WorkerSample],
    origin_points: list[tuple[float, int]],
    origin: dict[str, Any],
    lags: dict[int, dict[str, Any]],
    max_lag: float,
    run: dict[str, Any],
) -> dict[str, Any]:
    """``{"report", "viewers", "timeseries"}`` in the shared report format (source loadtest).

    ``rows`` are viewer rows (``viewers.json``) plus seed rows (``"kind": "seed"``), which
    count as seed ingest and uploads but not as viewers. ``origin`` is the origin's own
    counter growth over the run: ``{"bytes", "requests", "segment_bytes", "segment_requests"}``.
    """
    # Real Chromium viewers count as viewers in every summary figure and threshold.
    viewers = [r for r in rows if r.get("kind", "viewer") in ("viewer", "chromium")]
    seeds = [r for r in rows if r.get("kind") == "seed"]
    seed_ingest = sum(r["http_bytes"] for r in seeds)
    series = merge_timeseries(samples, origin_points, scenario["report_interval"], run["duration"])
    summary = summarise(
        viewers,
        origin_egress=origin.get("bytes", 0),
        seed_ingest=seed_ingest,
        peak_online=max((r["viewers_online"] for r in series), default=0),
        concurrent=scenario["viewers"],
        segments=distinct_segments(viewers),
        origin_requests=sum(r.get("origin_fetches", 0) for r in viewers),
    )
    summary["bytes"]["seed_uploaded"] = sum(r["uploaded_bytes"] for r in seeds)
    summary["origin"] = dict(origin)
    summary["http_only_egress"] = summary["bytes"]["received"]
    summary["connections"] = {
        "mean_neighbours": (
            sum(r.get("mean_neighbours", 0.0) for r in viewers) / len(viewers) if viewers else 0.0
        ),
        "errors": sum(1 for r in rows if r.get("error")),
    }
    report = {
        "schema": REPORT_SCHEMA,
        "source": "loadtest",
        "scenario": scenario,
        "summary": summary,
        "generator": generator_verdict(lags, max_lag),
        "run": run,
    }
    return {"report": report, "viewers": rows, "timeseries": series}
