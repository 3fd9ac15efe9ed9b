"""The engine's event queue: (time, insertion) order, with same-instant events on a FIFO."""

from __future__ import annotations

import gc
import random

from swarmcast.sim.engine import Simulation
from swarmcast.sim.scenario import Scenario


def test_events_run_in_time_then_insertion_order_whatever_queue_holds_them():
    sim = Simulation(Scenario(viewers=3, duration=20))
    rng = random.Random(4)
    ran: list[tuple[float, int]] = []
    made = [0]

    def schedule(when: float) -> None:
        made[0] += 1
        sim.at(when, event, (when, made[0]))

    def event(key: tuple[float, int], _b: object) -> None:
        assert sim.now == key[0]
        ran.append(key)
        if made[0] < 3000:
            # Same instant (the FIFO), a tie with events already queued, and the future.
            for _ in range(rng.randrange(3)):
                schedule(sim.now)
            if rng.random() < 0.5:
                schedule(sim.now + rng.choice([0.0, 0.25, 0.5, 1.0]))
            schedule(round(sim.now + rng.random(), 1))

    for t in (0.0, 0.0, 1.0, 1.0, 2.5):
        schedule(t)
    sim.run()
    assert len(ran) > 1000
    assert ran == sorted(ran)  # times never go back; at one instant, first queued first
    assert [k for k in ran if k[0] <= 20] == ran


def test_run_restores_the_garbage_collector_thresholds():
    before = gc.get_threshold()
    sim = Simulation(Scenario(viewers=2, duration=5))
    sim.run()
    assert gc.get_threshold() == before
    assert sim.events > 0
