"""Fault injection for the development origin: latency, bandwidth caps, failures, outage."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace


class FaultError(ValueError):
    """A fault setting is out of range or of the wrong type."""


@dataclass(frozen=True)
class FaultConfig:
    """What the origin does wrong on purpose. Applies to content, never to admin/metrics routes."""

    latency_ms: float = 0.0
    """Added delay before the first byte of every content response, in milliseconds."""
    bandwidth: float | None = None
    """Per-response rate cap in bytes/s (a slow link to each client); ``None`` = no cap."""
    total_bandwidth: float | None = None
    """Cap on the origin's total egress in bytes/s, shared by all responses; ``None`` = no cap."""
    failure_rate: float = 0.0
    """Probability (0..1) that a content request fails with HTTP 503."""
    down: bool = False
    """When true, every content request gets HTTP 503: the origin is "down"."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.failure_rate <= 1.0:
            raise FaultError(f"failure_rate must be within 0..1, got {self.failure_rate}")
        if self.latency_ms < 0:
            raise FaultError(f"latency_ms must be >= 0, got {self.latency_ms}")
        for name in ("bandwidth", "total_bandwidth"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise FaultError(f"{name} must be > 0 bytes/s or null for no cap, got {value}")

    def to_json(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    def updated(self, changes: dict) -> FaultConfig:
        """A copy with ``changes`` applied; unknown keys or bad types raise :class:`FaultError`."""
        known = {f.name: f for f in fields(self)}
        clean: dict = {}
        for key, value in changes.items():
            if key not in known:
                raise FaultError(f"unknown fault setting {key!r}; known: {', '.join(known)}")
            clean[key] = _coerce(key, value)
        return replace(self, **clean)


def _coerce(key: str, value: object) -> object:
    if key == "down":
        if not isinstance(value, bool):
            raise FaultError(f"down must be true or false, got {value!r}")
        return value
    if value is None and key in ("bandwidth", "total_bandwidth"):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{key} must be a number, got {value!r}")
    return float(value)


class FailureDice:
    """Decides which requests fail, reproducibly from a seed."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)

    def fails(self, rate: float) -> bool:
        """True with probability ``rate``."""
        return rate > 0 and self._rng.random() < rate


class TokenBucket:
    """A token bucket in bytes, sans-IO: callers pass ``now`` and sleep for what it returns.

    Reservations are taken in arrival order and may drive the level negative, so concurrent
    callers queue fairly behind each other instead of polling.
    """

    def __init__(self, rate: float, burst: float | None = None, *, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(16384.0, rate * 0.05)
        self._level = self.burst
        self._stamp = now

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes``; return how many seconds the caller must wait before sending them."""
        self._level = min(self.burst, self._level + (now - self._stamp) * self.rate)
        self._stamp = now
        self._level -= nbytes
        return 0.0 if self._level >= 0 else -self._level / self.rate
