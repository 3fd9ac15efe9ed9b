"""Fluid transfers over shared links: one event per transfer, not per chunk.

Each endpoint (a peer's uplink, a viewer's downlink, the origin's egress) has a capacity in
bytes per second shared **equally** by the transfers crossing it; a transfer runs at the lower
of its two shares::

    rate = min(sender.capacity / sender.flows, receiver.capacity / receiver.flows)

Rates are recomputed for the transfers of both endpoints whenever a transfer starts or ends,
and each transfer has exactly one pending completion event (stale ones carry an old version
and are ignored). Bytes delivered at any instant follow from the rate history
(:meth:`FlowNetwork.settle`). This is the "equal share per endpoint" model, simpler than
max-min fairness: capacity a transfer cannot use because it is limited at its other end is
not handed to the others, so rates are slightly pessimistic when links are mixed. Without
an origin limit, origin transfers are limited by the receiver only and never touch each other.
"""

from __future__ import annotations

import math
from collections.abc import Callable


class Endpoint:
    """A link end: capacity in bytes/s (``inf`` = not a bottleneck) and the transfers on it."""

    __slots__ = ("capacity", "flows")

    def __init__(self, capacity: float) -> None:
        self.capacity = capacity
        self.flows: dict[Flow, None] = {}  # insertion-ordered set: deterministic iteration

    def share(self) -> float:
        """Rate each transfer gets from this end."""
        n = len(self.flows)
        return self.capacity / n if n else self.capacity


class Flow:
    """One transfer of ``size`` bytes from ``src`` to ``dst`` endpoints."""

    __slots__ = (
        "done",
        "dst",
        "owner",
        "rate",
        "size",
        "src",
        "started_at",
        "updated_at",
        "version",
    )

    def __init__(self, src: Endpoint, dst: Endpoint, size: int, owner: object) -> None:
        self.src = src
        self.dst = dst
        self.size = size
        self.owner = owner
        """What the engine attached (its transfer record)."""
        self.done = 0.0
        self.rate = 0.0
        self.started_at = math.nan
        self.updated_at = math.nan
        self.version = 0

    @property
    def remaining(self) -> float:
        """Bytes still to deliver (as of the last settle)."""
        return self.size - self.done


#: ``schedule(when, flow, version)``: the engine queues a completion event.
Scheduler = Callable[[float, "Flow", int], None]
#: ``account(flow, nbytes)``: bytes that just crossed ``flow`` (for the engine's counters).
Accountant = Callable[["Flow", float], None]


class FlowNetwork:
    """Starts, reprices and ends fluid transfers; the engine owns the clock and the queue."""

    def __init__(self, schedule: Scheduler, account: Accountant) -> None:
        self._schedule = schedule
        self._account = account
        self.active = 0
        """Transfers currently running."""

    def start(self, now: float, flow: Flow) -> None:
        """Put ``flow`` on its endpoints at ``now`` and reprice everything that shares them."""
        flow.started_at = flow.updated_at = now
        flow.src.flows[flow] = None
        flow.dst.flows[flow] = None
        self.active += 1
        self._reprice(now, flow.src, flow.dst)
        if flow.rate == 0.0:  # on an unlimited sender only its receiver set its rate
            self._set_rate(now, flow)

    def stop(self, now: float, flow: Flow) -> float:
        """Take ``flow`` off (done or cancelled); returns the bytes it delivered in all."""
        if flow not in flow.src.flows:
            return flow.done
        self.settle(now, flow)
        del flow.src.flows[flow]
        del flow.dst.flows[flow]
        flow.version += 1  # its pending completion event is now stale
        self.active -= 1
        self._reprice(now, flow.src, flow.dst)
        return flow.done

    def settle(self, now: float, flow: Flow) -> float:
        """Bring ``flow.done`` up to ``now`` (and account the bytes); returns the bytes added."""
        if now <= flow.updated_at:
            return 0.0
        added = min(flow.rate * (now - flow.updated_at), flow.size - flow.done)
        flow.updated_at = now
        if added > 0:
            flow.done += added
            self._account(flow, added)
        return added

    def finish(self, now: float, flow: Flow) -> None:
        """Deliver what float rounding left of ``flow`` at its completion event, and stop it."""
        self.settle(now, flow)
        rest = flow.size - flow.done
        if rest > 0:
            flow.done = float(flow.size)
            self._account(flow, rest)
        self.stop(now, flow)

    def _reprice(self, now: float, a: Endpoint, b: Endpoint) -> None:
        for end in (a, b):
            if math.isinf(end.capacity):
                continue  # its share is infinite whatever the count: nobody's rate changed
            for flow in end.flows:
                self._set_rate(now, flow)

    def _set_rate(self, now: float, flow: Flow) -> None:
        rate = min(flow.src.share(), flow.dst.share())
        if rate == flow.rate:
            return
        self.settle(now, flow)
        flow.rate = rate
        flow.version += 1
        if math.isinf(rate):
            self._schedule(now, flow, flow.version)
        else:
            self._schedule(now + max(flow.size - flow.done, 0.0) / rate, flow, flow.version)
