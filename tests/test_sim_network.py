"""Fluid transfers: equal shares per endpoint, exact completion times, byte accounting."""

from __future__ import annotations

import math

import pytest

from swarmcast.sim.network import Endpoint, Flow, FlowNetwork


class Clock:
    def __init__(self) -> None:
        self.events: dict[Flow, tuple[float, int]] = {}
        self.bytes: dict[Flow, float] = {}
        self.net = FlowNetwork(self.schedule, self.account)

    def schedule(self, when: float, flow: Flow, version: int) -> None:
        self.events[flow] = (when, version)

    def account(self, flow: Flow, nbytes: float) -> None:
        self.bytes[flow] = self.bytes.get(flow, 0.0) + nbytes


def test_one_flow_runs_at_the_narrower_end():
    c = Clock()
    up, down = Endpoint(100.0), Endpoint(50.0)
    f = Flow(up, down, 1000, None)
    c.net.start(0.0, f)
    assert f.rate == 50.0
    assert c.events[f][0] == pytest.approx(20.0)


def test_sharing_an_uplink_reprices_and_reschedules():
    c = Clock()
    up = Endpoint(100.0)
    a = Flow(up, Endpoint(1e9), 1000, None)
    b = Flow(up, Endpoint(1e9), 1000, None)
    c.net.start(0.0, a)
    c.net.start(5.0, b)  # a has 500 left, now at 50/s
    assert a.done == pytest.approx(500.0)
    assert a.rate == b.rate == 50.0
    assert c.events[a][0] == pytest.approx(15.0)
    c.net.finish(15.0, a)
    assert b.rate == 100.0
    assert c.events[b][0] == pytest.approx(15.0 + 500 / 100)
    assert c.bytes[a] == pytest.approx(1000.0)
    assert c.net.active == 1


def test_stop_counts_partial_bytes_and_makes_the_event_stale():
    c = Clock()
    f = Flow(Endpoint(10.0), Endpoint(math.inf), 100, None)
    c.net.start(0.0, f)
    _, version = c.events[f]
    assert c.net.stop(4.0, f) == pytest.approx(40.0)
    assert f.version != version
    assert c.bytes[f] == pytest.approx(40.0)
    assert c.net.stop(5.0, f) == pytest.approx(40.0)  # idempotent


def test_unlimited_sender_does_not_reprice_its_other_flows():
    c = Clock()
    origin = Endpoint(math.inf)
    flows = [Flow(origin, Endpoint(10.0 * (i + 1)), 100, None) for i in range(3)]
    for f in flows:
        c.net.start(0.0, f)
    assert [f.rate for f in flows] == [10.0, 20.0, 30.0]
    assert all(f.version == 1 for f in flows)
