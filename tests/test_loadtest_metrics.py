"""Load-test metrics: the merger, lag verdict, thresholds and report building (pure)."""

from __future__ import annotations

import pytest

from swarmcast.loadtest.metrics import (
    LagMonitor,
    Thresholds,
    WorkerSample,
    build_report,
    distinct_segments,
    generator_verdict,
    merge_timeseries,
)
from swarmcast.loadtest.worker import stall_durations
from swarmcast.sim.scenario import Scenario


def _s(worker: int, t: float, **kw: float) -> WorkerSample:
    return WorkerSample(worker=worker, t=t, **kw)  # type: ignore[arg-type]


def test_merge_sums_counters_and_takes_each_workers_last_gauge_per_bucket() -> None:
    samples = [
        _s(0, 1.0, online=1, http_bytes=100, p2p_bytes=0, lag_max=0.01),
        _s(0, 2.0, online=2, playing=2, http_bytes=50, p2p_bytes=150, stalls=1),
        _s(1, 1.5, online=3, playing=3, http_bytes=10, p2p_bytes=90, lag_max=0.2),
        _s(1, 2.5, online=4, playing=3, stalled=1, p2p_bytes=100, neighbours=8),
        _s(1, 4.0, online=4, playing=4, p2p_bytes=400, neighbours=12),
    ]
    rows = merge_timeseries(samples, [], interval=2.0, duration=4.0)
    assert [r["t"] for r in rows] == [2.0, 4.0]
    first, second = rows
    assert first["http_bytes"] == 160 and first["p2p_bytes"] == 240
    assert first["offload"] == pytest.approx(240 / 400)
    assert first["stalls"] == 1
    assert first["viewers_online"] == 2 + 3  # worker 0 at t=2, worker 1 at t=1.5
    assert first["playing"] == 5
    assert first["lag_max"] == 0.2
    assert first["http_only_bps"] == pytest.approx(400 / 2.0)
    assert second["viewers_online"] == 4  # only worker 1 reported in (2, 4]
    assert second["stalled"] == 0  # its last sample in the bucket, not the earlier one
    assert second["p2p_bytes"] == 500 and second["offload"] == 1.0
    assert second["mean_neighbours"] == 3.0


def test_origin_egress_is_counter_growth_over_the_time_between_readings() -> None:
    points = [(1.0, 1000), (2.0, 3000), (3.0, 3500), (4.0, 9500)]
    rows = merge_timeseries([], points, interval=2.0, duration=4.0)
    assert rows[0]["origin_egress_bps"] == pytest.approx(3000 / 2.0)
    assert rows[1]["origin_egress_bps"] == pytest.approx((9500 - 3000) / 2.0)
    with pytest.raises(ValueError):
        merge_timeseries([], [], interval=0, duration=4.0)


def test_samples_past_the_end_land_in_the_last_bucket() -> None:
    rows = merge_timeseries([_s(0, 6.3, http_bytes=7)], [], interval=2.0, duration=6.0)
    assert len(rows) == 3 and rows[-1]["http_bytes"] == 7


def test_lag_monitor_and_the_generator_verdict() -> None:
    ok, slow = LagMonitor(), LagMonitor()
    for i in range(100):
        ok.record(i, i + 0.002)
        slow.record(i, i + (0.3 if i % 10 == 0 else 0.001))
    assert ok.take_interval_max() == pytest.approx(0.002)
    assert ok.take_interval_max() == 0.0
    assert ok.record(5.0, 4.0) == 0.0  # early wake-ups are not negative lag
    verdict = generator_verdict({0: ok.summary(), 1: slow.summary()}, max_lag=0.1)
    assert not verdict["valid"]
    assert len(verdict["reasons"]) == 1 and "worker 1" in verdict["reasons"][0]
    assert generator_verdict({0: ok.summary()}, max_lag=0.1)["valid"]
    # Isolated spikes (1 %) are reported but do not invalidate a run; sustained lag does.
    spiky = LagMonitor()
    for i in range(100):
        spiky.record(i, i + (0.5 if i == 50 else 0.001))
    assert spiky.summary()["max"] == pytest.approx(0.5)
    assert generator_verdict({0: spiky.summary()}, max_lag=0.1)["valid"]
    silent = generator_verdict({0: ok.summary(), 1: {}}, max_lag=0.1)
    assert not silent["valid"] and "worker 1" in silent["reasons"][0]


def _summary(offload: float, rebuffer: float, p95: float | None, never: int = 0) -> dict:
    return {
        "offload": offload,
        "rebuffering_ratio": rebuffer,
        "startup": {"p95": p95, "never_started": never},
    }


def test_thresholds() -> None:
    t = Thresholds(min_offload=0.8, max_rebuffer=0.01, max_startup_p95=2.0, max_never_started=0)
    assert t.check(_summary(0.85, 0.0, 1.0)) == []
    missed = t.check(_summary(0.5, 0.02, 3.0, never=2))
    assert len(missed) == 4
    assert "offload 50.0% < minimum 80.0%" in missed[0]
    assert t.check(_summary(0.9, 0.0, None)) == ["startup p95 none started > maximum 2.00 s"]
    assert Thresholds().check(_summary(0.0, 1.0, None)) == []
    with pytest.raises(ValueError, match="min_offload"):
        Thresholds(min_offload=80)


def test_distinct_segments_is_the_union_of_ranges() -> None:
    rows = [
        {"segment_range": [10, 20]},
        {"segment_range": [15, 25]},
        {"segment_range": [30, 31]},
        {"segment_range": None},
    ]
    assert distinct_segments(rows) == 16 + 2
    assert distinct_segments([]) == 0


def test_stall_durations_from_player_events() -> None:
    events = [(1.0, "started", {}), (5.0, "stall", {}), (5.5, "resume", {}), (9.0, "stall", {})]
    assert stall_durations(events, now=10.0) == [0.5, 1.0]
    assert stall_durations([], now=3.0) == []


def _row(i: str, http: int, p2p: int, **kw: object) -> dict:
    row = {
        "id": i,
        "kind": "viewer",
        "joined_at": 0.0,
        "left_at": 10.0,
        "http_bytes": http,
        "p2p_bytes": p2p,
        "uploaded_bytes": 0,
        "startup_time": 0.5,
        "play_time": 9.0,
        "stall_count": 0,
        "stall_time": 0.0,
        "live_latency": 6.0,
        "origin_fetches": 1,
        "segment_range": [0, 4],
        "mean_neighbours": 2.0,
    }
    row.update(kw)
    return row


def test_build_report_keeps_seeds_out_of_the_audience() -> None:
    sc = Scenario(viewers=2, duration=10, seeds=1, report_interval=5).to_json()
    rows = [
        _row("v0", 100, 300),
        _row("v1", 200, 400, stall_count=1, stall_time=1.0, play_time=8.0),
        {**_row("s0", 500, 0, uploaded_bytes=700), "kind": "seed", "startup_time": None},
    ]
    result = build_report(
        scenario=sc,
        rows=rows,
        samples=[_s(0, 5.0, online=2, http_bytes=300, p2p_bytes=700)],
        origin_points=[(5.0, 900)],
        origin={"measured": True, "bytes": 900},
        lags={0: {"samples": 50, "p95": 0.01}},
        max_lag=0.1,
        run={"duration": 10},
    )
    report = result["report"]
    s = report["summary"]
    assert report["schema"] == "swarmcast.qoe-report/1" and report["source"] == "loadtest"
    assert s["sessions"] == 2 and s["peak_online"] == 2
    assert s["offload"] == pytest.approx(700 / 1000)
    assert s["bytes"]["seed_ingest"] == 500 and s["bytes"]["seed_uploaded"] == 700
    assert s["bytes"]["origin_egress"] == 900
    assert s["http_only_egress"] == 1000
    assert s["rebuffering_ratio"] == pytest.approx(1.0 / 18.0)
    assert s["origin_requests_per_segment"] == pytest.approx(2 / 5)
    assert report["generator"]["valid"]
    assert len(result["timeseries"]) == 2
