"""The upload side of a peer: which request to serve, how fast, and when to say "busy".

Sans-IO: requests come in through :meth:`UploadScheduler.offer`, chunks to send come out of
:meth:`UploadScheduler.poll`; the adapter reads the bytes from its cache and writes them to the
data channel. Time is passed in as ``now`` (seconds).

Policy:

- earliest deadline first: the requester that will stall soonest is served first;
- at most ``max_concurrent`` requests are being sent at once, at most ``max_queued`` wait;
- a token bucket caps the upload rate (``rate_limit_bps``, bytes/s) with a small burst;
- a request that cannot be served before its deadline is refused at once with ``Busy`` (the
  requester then asks another peer or the origin) instead of being queued to fail later; a queued
  request whose deadline passes before it started is dropped with :class:`DropRequest`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadConfig:
    """Limits of the upload side. Rates are in bytes per second."""

    enabled: bool = True
    """False turns uploading off: every request gets ``Busy``."""

    rate_limit_bps: float | None = None
    """Upload rate cap (token bucket); None = unlimited (the data channel paces itself)."""

    burst_seconds: float = 0.25
    """Bucket depth in seconds of ``rate_limit_bps`` (never less than one chunk)."""

    max_concurrent: int = 1
    """Requests being sent at the same time. One at a time finishes each segment sooner, so the
    receiver can re-share it sooner: store-and-forward spreads faster than parallel trickles
    (the simulator measured 66 % -> 81 % offload at 200-1000 viewers, docs/simulation.md)."""

    max_queued: int = 2
    """Accepted requests waiting for a sending slot; beyond that the answer is ``Busy`` and the
    requester asks another holder: a short queue spreads load over the swarm."""

    chunk_size: int = 64 * 1024
    """Bytes per :class:`SendChunk` (64 KiB is the interoperable data-channel message size)."""

    busy_retry_after: float = 1.0
    """``retry_after`` of a Busy answer when no better estimate exists, seconds."""

    refuse_late: bool = True
    """Refuse (Busy) a request whose deadline cannot be met given the backlog and the cap."""

    def __post_init__(self) -> None:
        if self.rate_limit_bps is not None and not self.rate_limit_bps > 0:
            raise ValueError("UploadConfig.rate_limit_bps must be > 0 or None")
        for name in ("max_concurrent", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"UploadConfig.{name} must be >= 1")
        if self.max_queued < 0 or self.burst_seconds < 0 or self.busy_retry_after < 0:
            raise ValueError("UploadConfig: max_queued, burst_seconds, busy_retry_after >= 0")


@dataclass(frozen=True)
class Accept:
    """The request was accepted; chunks will come out of :meth:`UploadScheduler.poll`."""

    request_id: int


@dataclass(frozen=True)
class Busy:
    """The request was refused; the requester may come back after ``retry_after`` seconds."""

    request_id: int
    retry_after: float


@dataclass(frozen=True)
class SendChunk:
    """Send bytes ``[offset, offset + nbytes)`` of segment ``sequence`` to ``peer_id``."""

    request_id: int
    peer_id: str
    sequence: int
    offset: int
    nbytes: int
    last: bool
    """True for the final chunk of the request (the request is then forgotten)."""


@dataclass(frozen=True)
class DropRequest:
    """A queued request was abandoned (its deadline passed before it could start)."""

    request_id: int
    peer_id: str
    reason: str


@dataclass
class _Request:
    request_id: int
    peer_id: str
    sequence: int
    size: int
    deadline: float
    sent: int = 0

    @property
    def remaining(self) -> int:
        return self.size - self.sent


_NO_DEADLINE = float("inf")


class UploadScheduler:
    """Earliest-deadline-first upload queue with a rate cap and a concurrency limit."""

    def __init__(self, config: UploadConfig | None = None, *, now: float = 0.0) -> None:
        self.config = config or UploadConfig()
        cap = self.config.rate_limit_bps
        self._burst = (
            max(cap * self.config.burst_seconds, float(self.config.chunk_size)) if cap else 0.0
        )
        self._tokens = self._burst
        self._refilled_at = now
        self._active: dict[int, _Request] = {}
        self._queued: dict[int, _Request] = {}
        self.bytes_sent = 0
        """Total bytes handed out in :class:`SendChunk` actions."""

    @property
    def backlog_bytes(self) -> int:
        """Bytes accepted but not yet sent."""
        return sum(r.remaining for r in self._active.values()) + sum(
            r.remaining for r in self._queued.values()
        )

    def offer(
        self,
        now: float,
        request_id: int,
        peer_id: str,
        sequence: int,
        size: int,
        deadline: float | None = None,
    ) -> Accept | Busy:
        """A neighbour asks for ``size`` bytes of ``sequence``, wanted by ``deadline`` (or None).

        Raises ValueError for a malformed request (negative size, reused ``request_id``).
        """
        if size < 0:
            raise ValueError(f"upload request {request_id}: negative size {size}")
        if request_id in self._active or request_id in self._queued:
            raise ValueError(f"upload request id {request_id} is already in use")
        cfg = self.config
        if not cfg.enabled:
            return Busy(request_id, cfg.busy_retry_after)
        req = _Request(
            request_id, peer_id, sequence, size, _NO_DEADLINE if deadline is None else deadline
        )
        slots_full = len(self._active) >= cfg.max_concurrent
        if slots_full and len(self._queued) >= cfg.max_queued:
            return Busy(request_id, self._retry_after())
        if cfg.refuse_late and cfg.rate_limit_bps and not self._feasible(now, req):
            return Busy(request_id, self._retry_after())
        if slots_full:
            self._queued[request_id] = req
        else:
            self._active[request_id] = req
        return Accept(request_id)

    def cancel(self, request_id: int) -> bool:
        """Forget a request (the requester cancelled or went away); True if it was known."""
        return (
            self._active.pop(request_id, None) is not None
            or self._queued.pop(request_id, None) is not None
        )

    def cancel_peer(self, peer_id: str) -> list[int]:
        """Forget every request of ``peer_id`` (it disconnected); returns their ids."""
        gone = [r.request_id for r in self._all() if r.peer_id == peer_id]
        for rid in gone:
            self.cancel(rid)
        return gone

    def poll(self, now: float, max_bytes: int | None = None) -> list[SendChunk | DropRequest]:
        """Chunks to send now, earliest deadline first, within the rate cap.

        ``max_bytes`` lets the adapter bound the output by the room left in its send buffers.
        """
        self._refill(now)
        out: list[SendChunk | DropRequest] = self._drop_expired(now)
        budget = -1 if max_bytes is None else max_bytes  # -1: no bound
        while budget != 0:
            self._promote()
            if not self._active:
                break
            req = min(self._active.values(), key=_edf_key)
            n = min(req.remaining, self.config.chunk_size)
            if budget > 0:
                n = min(n, budget)
            if self.config.rate_limit_bps and n > self._tokens:
                break
            out.append(self._send(req, n))
            if budget > 0:
                budget -= n
        return out

    def next_wakeup(self, now: float) -> float | None:
        """When :meth:`poll` may have something new to send, or None when idle."""
        if not self._active and not self._queued:
            return None
        cap = self.config.rate_limit_bps
        if not cap:
            return now
        reqs = self._active.values() or self._queued.values()
        need = min(min(r.remaining for r in reqs), self.config.chunk_size)
        return now + max(need - self._tokens, 0.0) / cap

    def _feasible(self, now: float, new: _Request) -> bool:
        """Whether, served earliest deadline first under the cap, ``new`` and every accepted
        request with a deadline still finish in time (admitting must not break promises)."""
        cap = self.config.rate_limit_bps
        assert cap
        self._refill(now)
        backlog = -self._tokens
        for req in sorted([*self._all(), new], key=_edf_key):
            backlog += req.remaining
            if req.deadline != _NO_DEADLINE and now + max(backlog, 0.0) / cap > req.deadline:
                return False
        return True

    def _all(self) -> list[_Request]:
        return [*self._active.values(), *self._queued.values()]

    def _send(self, req: _Request, n: int) -> SendChunk:
        chunk = SendChunk(
            req.request_id, req.peer_id, req.sequence, req.sent, n, req.sent + n >= req.size
        )
        req.sent += n
        self.bytes_sent += n
        if self.config.rate_limit_bps:
            self._tokens -= n
        if chunk.last:
            del self._active[req.request_id]
        return chunk

    def _promote(self) -> None:
        while self._queued and len(self._active) < self.config.max_concurrent:
            req = min(self._queued.values(), key=_edf_key)
            del self._queued[req.request_id]
            self._active[req.request_id] = req

    def _drop_expired(self, now: float) -> list[SendChunk | DropRequest]:
        late = [r for r in self._queued.values() if r.deadline < now]
        for r in late:
            del self._queued[r.request_id]
            logger.debug(
                "dropping upload %d to %s: deadline passed in queue", r.request_id, r.peer_id
            )
        return [DropRequest(r.request_id, r.peer_id, "deadline") for r in late]

    def _refill(self, now: float) -> None:
        cap = self.config.rate_limit_bps
        if cap and now > self._refilled_at:
            self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * cap)
        self._refilled_at = max(self._refilled_at, now)

    def _retry_after(self) -> float:
        cap = self.config.rate_limit_bps
        if not cap:
            return self.config.busy_retry_after
        # Time until the current backlog drains: a fair guess of when a slot frees up.
        return max(self.backlog_bytes / cap, 0.05)


def _edf_key(req: _Request) -> tuple[float, int]:
    return (req.deadline, req.request_id)
