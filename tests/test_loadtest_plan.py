"""The load test's planner: ramp, churn, uplinks, VOD spread, workers (pure, seeded rng)."""

from __future__ import annotations

import itertools
import random

import pytest

from swarmcast.loadtest.plan import (
    SessionKind,
    SessionPlan,
    online_at,
    plan_sessions,
    split_by_worker,
)
from swarmcast.sim.scenario import Scenario


def test_same_scenario_and_seed_give_the_same_plan() -> None:
    sc = Scenario(viewers=30, duration=60, session=20, seeds=1)
    assert plan_sessions(sc, 3) == plan_sessions(sc, 3)
    assert plan_sessions(sc, 3) != plan_sessions(sc.replace(seed=2), 3)


def test_join_ramp_spreads_first_joins_within_join_spread() -> None:
    sc = Scenario(viewers=200, duration=60, join_spread=10)
    plans = plan_sessions(sc, 2)
    joins = [p.join_at for p in plans]
    assert len(plans) == 200
    assert all(0 <= j <= 10 for j in joins)
    # Uniform: both halves of the ramp get a fair share (loose bounds, 200 draws).
    assert 70 < sum(j < 5 for j in joins) < 130
    assert online_at(plans, 10.0) == 200
    assert all(p.leave_at == 60 for p in plans)


def test_churn_replaces_each_leaver_at_once_in_its_slot() -> None:
    sc = Scenario(viewers=20, duration=120, join_spread=5, session=15)
    plans = plan_sessions(sc, 4)
    assert len(plans) > 20 * 3  # ~8 sessions per slot
    by_slot: dict[str, list[SessionPlan]] = {}
    for p in plans:
        by_slot.setdefault(p.id.split(".")[0], []).append(p)
    assert len(by_slot) == 20
    for sessions in by_slot.values():
        sessions.sort(key=lambda p: p.join_at)
        for before, after in itertools.pairwise(sessions):
            assert after.join_at == before.leave_at
        assert sessions[-1].leave_at == 120
        assert len({p.worker for p in sessions}) == 1  # a slot stays on its worker
    for t in (5.0, 30.0, 77.7, 119.9):
        assert online_at(plans, t) == 20


def test_upload_draws_follow_the_scenario_mixture() -> None:
    sc = Scenario(viewers=2000, duration=10, upload=[[0.25, 0, 0], [0.75, 1, 2]])
    plans = plan_sessions(sc, 1)
    off = [p for p in plans if not p.upload_enabled]
    assert 400 < len(off) < 600
    assert all(p.upload_bps is None for p in off)
    on = [p.upload_bps for p in plans if p.upload_enabled]
    assert all(1e6 / 8 <= bps <= 2e6 / 8 for bps in on)


def test_vod_sessions_start_at_spread_positions_live_ones_do_not() -> None:
    vod = plan_sessions(Scenario(viewers=100, duration=30, live=False), 1)
    fractions = [p.vod_start for p in vod]
    assert all(f is not None and 0 <= f < 1 for f in fractions)
    assert min(fractions) < 0.2 and max(fractions) > 0.8  # type: ignore[type-var]
    live = plan_sessions(Scenario(viewers=10, duration=30), 1)
    assert all(p.vod_start is None for p in live)


def test_seeds_run_the_whole_run_and_are_dealt_to_workers() -> None:
    sc = Scenario(viewers=4, duration=30, seeds=3, seed_upload=80)
    plans = plan_sessions(sc, 2)
    seeds = [p for p in plans if p.kind is SessionKind.SEED]
    assert [s.worker for s in seeds] == [0, 1, 0]
    assert all(s.join_at == 0 and s.leave_at == 30 for s in seeds)
    assert seeds[0].upload_bps == 80e6 / 8
    assert plans[:3] == seeds


def test_viewers_go_to_the_least_loaded_worker_a_seed_counting_as_several() -> None:
    plans = plan_sessions(Scenario(viewers=100, duration=10, seeds=1), 2, seed_weight=10)
    per_worker = [
        sum(1 for p in plans if p.worker == w and p.kind is SessionKind.VIEWER) for w in (0, 1)
    ]
    assert per_worker == [45, 55]  # 10 + 45 == 55: equal load
    flat = plan_sessions(Scenario(viewers=100, duration=10, seeds=1), 2, seed_weight=0)
    assert sum(1 for p in flat if p.worker == 0 and p.kind is SessionKind.VIEWER) == 50
    with pytest.raises(ValueError, match="seed_weight"):
        plan_sessions(Scenario(viewers=1, duration=10), 1, seed_weight=-1)


def test_split_by_worker_is_round_robin_over_slots() -> None:
    plans = plan_sessions(Scenario(viewers=9, duration=10), 3)
    shares = split_by_worker(plans, 3)
    assert [len(s) for s in shares] == [3, 3, 3]
    assert all(p.worker == i for i, share in enumerate(shares) for p in share)


def test_injected_rng_is_used() -> None:
    sc = Scenario(viewers=5, duration=10)
    assert plan_sessions(sc, 1, random.Random(7)) == plan_sessions(sc, 1, random.Random(7))
    assert plan_sessions(sc, 1, random.Random(7)) != plan_sessions(sc, 1, random.Random(8))


def test_plans_round_trip_through_json_and_bad_ones_are_refused() -> None:
    for p in plan_sessions(Scenario(viewers=3, duration=10, seeds=1, live=False), 2):
        assert SessionPlan.from_json(p.to_json()) == p
    with pytest.raises(ValueError, match="malformed session plan"):
        SessionPlan.from_json({"id": "x", "kind": "dancer"})
    with pytest.raises(ValueError, match="at least one worker"):
        plan_sessions(Scenario(viewers=3), 0)
