"""Throughput and latency estimation for one source (a peer, or the HTTP origin).

Sans-IO: callers pass byte counts and times in seconds; nothing here reads a clock.

The estimator follows the dual-EWMA design of Shaka Player: a fast and a slow exponentially
weighted moving average, each weighted by how long a sample lasted (so a 2 s download counts more
than a 20 ms one), and the *lower* of the two is reported. Going down fast and up slowly is the
safe direction for deadline decisions: an estimate that is too low sends a segment to the origin a
little early, one that is too high makes it late.

Samples come from :class:`TransferMeter`, which groups the progress events of one transfer into
samples of at least ``min_sample_seconds`` so that chunks that arrive back to back (read from a
socket buffer in one go) do not produce absurd rates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BandwidthConfig:
    """Priors and smoothing of the throughput estimators. Rates are in bytes per second."""

    http_prior_bps: float = 500_000.0
    """HTTP throughput assumed before the first sample (4 Mbit/s). Deliberately modest: it only
    decides how early a segment falls back to the origin before anything was measured."""

    http_prior_latency: float = 0.25
    """HTTP time to first byte assumed before the first sample, in seconds."""

    peer_prior_bps: float = 400_000.0
    """Peer throughput assumed before the first sample (3.2 Mbit/s): below HTTP on purpose, so an
    unmeasured peer is tried only when there is time to spare."""

    peer_prior_latency: float = 0.15
    """Peer time to first byte (request over the data channel) assumed before a sample."""

    fast_half_life: float = 2.0
    """Half-life of the fast average, in seconds of transfer time."""

    slow_half_life: float = 6.0
    """Half-life of the slow average, in seconds of transfer time."""

    latency_weight: float = 0.3
    """Weight of a new time-to-first-byte sample in the latency average (0..1)."""

    min_sample_seconds: float = 0.05
    """Progress events are merged into samples at least this long."""

    min_bps: float = 1_000.0
    """Floor of every estimate, so that time = bytes / rate stays finite."""

    max_bps: float = 1e10
    """Ceiling of every estimate (loopback transfers can look infinitely fast)."""

    def __post_init__(self) -> None:
        for name in ("http_prior_bps", "peer_prior_bps", "fast_half_life", "slow_half_life"):
            if not getattr(self, name) > 0:
                raise ValueError(f"BandwidthConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.latency_weight <= 1:
            raise ValueError(
                f"BandwidthConfig.latency_weight must be in (0, 1], got {self.latency_weight!r}"
            )
        if not 0 < self.min_bps <= self.max_bps:
            raise ValueError("BandwidthConfig needs 0 < min_bps <= max_bps")


class ThroughputEstimator:
    """Smoothed throughput (bytes/s) and time to first byte (s) of one source."""

    __slots__ = ("_config", "_fast", "_latency", "_slow", "samples")

    def __init__(self, prior_bps: float, prior_latency: float, config: BandwidthConfig) -> None:
        self._config = config
        self._fast = prior_bps
        self._slow = prior_bps
        self._latency = prior_latency
        self.samples = 0
        """Number of throughput samples taken so far (0 = still on the prior)."""

    @property
    def bytes_per_second(self) -> float:
        """The conservative estimate: the lower of the fast and slow averages."""
        return min(self._fast, self._slow)

    @property
    def latency(self) -> float:
        """Smoothed time to first byte, in seconds."""
        return self._latency

    def transfer_time(self, nbytes: float) -> float:
        """Seconds expected to fetch ``nbytes`` from scratch (latency + bytes / rate)."""
        return self._latency + nbytes / self.bytes_per_second

    def add_sample(self, nbytes: float, seconds: float) -> None:
        """Feed ``nbytes`` received in ``seconds`` of transfer time."""
        if nbytes <= 0 or seconds <= 0:
            return
        cfg = self._config
        rate = min(max(nbytes / seconds, cfg.min_bps), cfg.max_bps)
        self._fast = _ewma(self._fast, rate, seconds, cfg.fast_half_life)
        self._slow = _ewma(self._slow, rate, seconds, cfg.slow_half_life)
        self.samples += 1

    def add_latency(self, seconds: float) -> None:
        """Feed one time-to-first-byte measurement."""
        if seconds < 0:
            return
        w = self._config.latency_weight
        self._latency = (1 - w) * self._latency + w * seconds

    def penalise(self, factor: float) -> None:
        """Scale the estimate down after a timeout (``factor`` in (0, 1])."""
        floor = self._config.min_bps
        self._fast = max(self._fast * factor, floor)
        self._slow = max(self._slow * factor, floor)


def _ewma(estimate: float, value: float, weight: float, half_life: float) -> float:
    alpha = 0.5 ** (weight / half_life)
    return alpha * estimate + (1 - alpha) * value


class TransferMeter:
    """Measures one transfer and feeds its source's :class:`ThroughputEstimator`.

    ``started`` is when the request was sent; the first progress event gives the latency sample,
    later ones throughput samples of at least ``min_sample_seconds``. The bytes of the first event
    travelled during the latency period, so they are left out of the rate (counting them over a
    zero-length interval would inflate it, the unsafe direction).
    """

    __slots__ = (
        "_acc_bytes",
        "_acc_since",
        "_estimator",
        "_first_chunk",
        "_min_sample",
        "_sampled",
        "first_byte_at",
        "last_progress_at",
        "received",
        "started",
    )

    def __init__(self, now: float, estimator: ThroughputEstimator, min_sample: float) -> None:
        self._estimator = estimator
        self._min_sample = min_sample
        self.started = now
        """When the request was issued."""
        self.first_byte_at: float | None = None
        """When the first bytes arrived (None until then)."""
        self.last_progress_at = now
        """When bytes last arrived (or the start time)."""
        self.received = 0
        """Bytes received so far."""
        self._first_chunk = 0
        self._acc_bytes = 0
        self._acc_since = now
        self._sampled = False

    def progress(self, now: float, total_received: int) -> None:
        """Record that ``total_received`` bytes have arrived in all (ignored unless it grew)."""
        delta = total_received - self.received
        if delta <= 0:
            return
        self.received = total_received
        self.last_progress_at = now
        if self.first_byte_at is None:
            self.first_byte_at = now
            self._first_chunk = delta
            self._acc_since = now
            self._estimator.add_latency(now - self.started)
            return
        self._acc_bytes += delta
        if now - self._acc_since >= self._min_sample:
            self._estimator.add_sample(self._acc_bytes, now - self._acc_since)
            self._sampled = True
            self._acc_bytes = 0
            self._acc_since = now

    def finish(self, now: float) -> None:
        """Flush the last sample when the transfer completes."""
        if not self._sampled:
            # Too short to time chunk by chunk (a whole segment in one or two reads): time it
            # from the request, which undercounts the rate, the safe side.
            elapsed = max(now - self.started, self._min_sample)
            self._estimator.add_sample(self.received, elapsed)
        elif self._acc_bytes > 0 and now > self._acc_since:
            self._estimator.add_sample(
                self._acc_bytes, max(now - self._acc_since, self._min_sample)
            )
        self._acc_bytes = 0
        self._sampled = True

    def rate(self, now: float) -> float:
        """Throughput of this transfer so far, or the source estimate if too little was seen."""
        if self.first_byte_at is not None:
            elapsed = now - self.first_byte_at
            if elapsed >= 4 * self._min_sample:
                return max((self.received - self._first_chunk) / elapsed, 1.0)
        return self._estimator.bytes_per_second
