"""QoE record: derived ratios, JSON round trip, the simulator's row names."""

from __future__ import annotations

import json
import math
from dataclasses import fields

import pytest

from swarmcast.peer.qoe import QoE


def test_offload_is_zero_when_nothing_received() -> None:
    assert QoE().offload == 0.0
    assert QoE(uploaded_bytes=500).offload == 0.0


@pytest.mark.parametrize(
    ("http", "p2p", "expected"),
    [(0, 100, 1.0), (100, 0, 0.0), (300, 100, 0.25), (1, 3, 0.75)],
)
def test_offload_share_of_peer_bytes(http: int, p2p: int, expected: float) -> None:
    assert QoE(http_bytes=http, p2p_bytes=p2p).offload == pytest.approx(expected)


def test_rejected_peer_bytes_do_not_count_as_offload() -> None:
    q = QoE(http_bytes=100, p2p_bytes=100, p2p_rejected_bytes=10_000)
    assert q.offload == pytest.approx(0.5)


def test_rebuffer_ratio_edges() -> None:
    assert QoE().rebuffer_ratio == 0.0
    assert QoE(stall_time=3.0).rebuffer_ratio == 1.0  # stalled and never played
    assert QoE(played_time=9.0, stall_time=1.0).rebuffer_ratio == pytest.approx(0.1)
    assert QoE(played_time=5.0).rebuffer_ratio == 0.0


def test_live_latency_mean_and_validation() -> None:
    q = QoE()
    assert q.live_latency is None
    q.add_live_latency(6.0)
    q.add_live_latency(8.0)
    assert q.live_latency == pytest.approx(7.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="live latency"):
            q.add_live_latency(bad)
    assert q.live_latency_samples == 2


def test_to_json_has_every_field_and_derived_values() -> None:
    q = QoE(
        startup_time=0.42,
        stalls=2,
        stall_time=1.5,
        played_time=13.5,
        http_bytes=1000,
        p2p_bytes=3000,
        uploaded_bytes=2500,
        p2p_rejected_bytes=7,
        switches=1,
    )
    q.add_live_latency(6.25)
    data = q.to_json()
    expected = {f.name for f in fields(QoE)} | {"offload", "rebuffer_ratio", "live_latency"}
    assert set(data) == expected
    assert data["offload"] == pytest.approx(0.75)
    assert data["rebuffer_ratio"] == pytest.approx(0.1)
    assert data["live_latency"] == pytest.approx(6.25)
    # JSON-ready: survives a real encode/decode, and rebuilds an equal record.
    decoded = json.loads(json.dumps(data))
    assert decoded == data
    assert QoE.from_json(decoded) == q


def test_round_trip_without_startup() -> None:
    q = QoE(http_bytes=5)
    data = json.loads(json.dumps(q.to_json()))
    assert data["startup_time"] is None
    assert QoE.from_json(data) == q


def test_from_json_missing_keys_take_defaults() -> None:
    assert QoE.from_json({"stalls": 3}) == QoE(stalls=3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("stalls", -1),
        ("stalls", 1.5),
        ("http_bytes", True),
        ("p2p_bytes", "12"),
        ("stall_time", -0.1),
        ("played_time", float("nan")),
        ("startup_time", "fast"),
        ("startup_time", float("inf")),
    ],
)
def test_from_json_rejects_bad_values_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=key):
        QoE.from_json({key: value})


def test_from_json_rejects_non_objects() -> None:
    with pytest.raises(ValueError, match="JSON object"):
        QoE.from_json([1, 2])  # type: ignore[arg-type]


def test_report_row_uses_the_simulator_names() -> None:
    q = QoE(startup_time=0.3, stalls=1, stall_time=0.5, played_time=10.0, http_bytes=10)
    q.add_live_latency(4.0)
    row = q.to_report_row()
    assert row["play_time"] == 10.0
    assert row["stall_count"] == 1
    assert row["stall_time"] == 0.5
    assert row["startup_time"] == 0.3
    assert row["live_latency"] == 4.0
    assert row["http_bytes"] == 10


def test_report_row_feeds_the_simulator_summary() -> None:
    """The load test can use sim/report.py's summarise on QoE rows, with the same meaning."""
    report = pytest.importorskip("swarmcast.sim.report")
    a = QoE(startup_time=0.2, stalls=1, stall_time=1.0, played_time=9.0, http_bytes=100)
    b = QoE(startup_time=0.4, played_time=10.0, http_bytes=100, p2p_bytes=300)
    rows = []
    for i, q in enumerate((a, b)):
        row = q.to_report_row()
        row.update({"id": str(i), "joined_at": 0.0, "left_at": 10.0, "neighbours": 1})
        rows.append(row)
    summary = report.summarise(
        rows,
        origin_egress=200,
        seed_ingest=0,
        peak_online=2,
        concurrent=2,
        segments=5,
        origin_requests=2,
    )
    assert summary["offload"] == pytest.approx(300 / 500)
    assert summary["rebuffering_ratio"] == pytest.approx(1.0 / 20.0)
    assert summary["stalls"]["count"] == 1
    assert summary["startup"]["max"] == pytest.approx(0.4)
