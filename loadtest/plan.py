"""The load test's plan: who joins when, on which worker, with what uplink (sans-IO).

:func:`plan_sessions` turns a shared :class:`~swarmcast.sim.scenario.Scenario` into a list of
:class:`SessionPlan` s before anything runs, from one injected ``random.Random``: the same
scenario and seed give the same plan, so a run can be replayed and a P2P run and its HTTP-only
twin (``--p2p off``) see exactly the same audience.

- **Join ramp**: each of the ``viewers`` audience slots is first filled at a uniform time within
  ``join_spread`` seconds (as in the simulator).
- **Churn**: with ``session`` set, each session lasts an exponential time of that mean and is
  replaced at once by a newcomer in the same slot (the audience stays at ``viewers``).
- **Uplinks**: each session draws its upload capacity from ``scenario.upload``; a zero draw
  is "upload off", any other is applied as the upload scheduler's rate cap.
- **VOD**: each session starts at a uniform fraction of the content, so viewers are spread
  over the timeline instead of all watching the first segments together.
- **Workers**: seeds are dealt round-robin; each viewer slot then goes to the worker with the
  least load so far, a seed counting as ``seed_weight`` viewers (a seed uploads to many peers:
  with 100 viewers one seed moved as many bytes as ~19 viewers did, and a worker that hosted it
  plus half the audience lagged 2.7x more than the other; weighted as 10 viewers it still
  lagged more in four 70-viewer runs out of four). A slot's newcomers stay on its
  worker, so each worker carries the same audience all along.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from swarmcast.sim.scenario import Scenario

#: A seed's share of a worker's load, in viewers (see the module docstring).
SEED_WEIGHT = 20.0


class SessionKind(StrEnum):
    """What a planned session runs."""

    VIEWER = "viewer"
    """A viewer: virtual player, download scheduler, uploads (``PeerAgent`` role viewer)."""
    SEED = "seed"
    """A Python seed next to the origin (``PeerAgent`` role seed)."""


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """One planned session. Times are seconds since the start of the run."""

    id: str
    """Unique id in the run (``v00003.1`` = slot 3, second session of that slot; ``s0`` seed)."""
    kind: SessionKind
    """Viewer or seed."""
    worker: int
    """Index of the worker process that runs it."""
    join_at: float
    """When it starts."""
    leave_at: float
    """When it stops (at most the run's duration)."""
    upload_enabled: bool
    """Whether it serves other peers."""
    upload_bps: float | None
    """Upload cap in bytes/s (None: as fast as the links go)."""
    vod_start: float | None = None
    """VOD viewers: where to start, as a fraction [0, 1) of the content; None = the start."""

    def to_json(self) -> dict[str, object]:
        """JSON-ready dict (sent to workers, which may be on other hosts)."""
        return {
            "id": self.id,
            "kind": self.kind.value,
            "worker": self.worker,
            "join_at": self.join_at,
            "leave_at": self.leave_at,
            "upload_enabled": self.upload_enabled,
            "upload_bps": self.upload_bps,
            "vod_start": self.vod_start,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SessionPlan:
        """Inverse of :meth:`to_json`; a malformed entry raises ValueError naming the problem."""
        try:
            upload = data["upload_bps"]
            vod = data.get("vod_start")
            return cls(
                id=str(data["id"]),
                kind=SessionKind(data["kind"]),
                worker=int(data["worker"]),  # type: ignore[call-overload]
                join_at=float(data["join_at"]),  # type: ignore[arg-type]
                leave_at=float(data["leave_at"]),  # type: ignore[arg-type]
                upload_enabled=bool(data["upload_enabled"]),
                upload_bps=None if upload is None else float(upload),  # type: ignore[arg-type]
                vod_start=None if vod is None else float(vod),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed session plan {data!r}: {exc}") from None


def plan_sessions(
    scenario: Scenario,
    workers: int,
    rng: random.Random | None = None,
    *,
    seed_weight: float = SEED_WEIGHT,
) -> list[SessionPlan]:
    """Every session of a run, sorted by join time (seeds first).

    ``rng`` defaults to ``random.Random(scenario.seed)``. ``seed_weight``: a seed's load in
    viewers when dealing slots to workers (0 = plain round-robin). Raises ValueError for
    ``workers < 1`` or a negative weight.
    """
    if workers < 1:
        raise ValueError(f"a load test needs at least one worker, got {workers}")
    if not seed_weight >= 0:
        raise ValueError(f"seed_weight must be >= 0, got {seed_weight}")
    rng = rng if rng is not None else random.Random(scenario.seed)
    duration = scenario.duration
    plans = [
        SessionPlan(
            id=f"s{i}",
            kind=SessionKind.SEED,
            worker=i % workers,
            join_at=0.0,
            leave_at=duration,
            upload_enabled=True,
            upload_bps=scenario.seed_upload * 1e6 / 8,
        )
        for i in range(scenario.seeds)
    ]
    load = [seed_weight * len(range(w, scenario.seeds, workers)) for w in range(workers)]
    for slot in range(scenario.viewers):
        worker = min(range(workers), key=lambda w: (load[w], w))
        load[worker] += 1
        join = rng.uniform(0.0, min(scenario.join_spread, duration))
        generation = 0
        while join < duration:
            leave = duration
            if scenario.session is not None:
                leave = min(join + rng.expovariate(1.0 / scenario.session), duration)
            upload = scenario.upload.draw_bps(rng)
            plans.append(
                SessionPlan(
                    id=f"v{slot:05d}.{generation}",
                    kind=SessionKind.VIEWER,
                    worker=worker,
                    join_at=join,
                    leave_at=leave,
                    upload_enabled=upload > 0,
                    upload_bps=upload if upload > 0 else None,
                    vod_start=None if scenario.live else rng.random(),
                )
            )
            join, generation = leave, generation + 1
    plans.sort(key=lambda p: (p.kind is not SessionKind.SEED, p.join_at, p.id))
    return plans


def split_by_worker(plans: list[SessionPlan], workers: int) -> list[list[SessionPlan]]:
    """The plans of each worker, in join order."""
    out: list[list[SessionPlan]] = [[] for _ in range(workers)]
    for plan in plans:
        out[plan.worker].append(plan)
    return out


def online_at(plans: list[SessionPlan], t: float) -> int:
    """Viewer sessions online at time ``t`` (joined at or before, leaving after)."""
    return sum(1 for p in plans if p.kind is SessionKind.VIEWER and p.join_at <= t < p.leave_at)
