"""Tests of peer/bandwidth.py: dual EWMA estimator and per-transfer meter."""

import pytest

from swarmcast.peer.bandwidth import BandwidthConfig, ThroughputEstimator, TransferMeter

CFG = BandwidthConfig()


def make(prior: float = 100_000.0, latency: float = 0.2) -> ThroughputEstimator:
    return ThroughputEstimator(prior, latency, CFG)


def test_prior_until_first_sample():
    est = make()
    assert est.bytes_per_second == 100_000.0
    assert est.samples == 0
    assert est.transfer_time(50_000) == pytest.approx(0.2 + 0.5)


def test_converges_to_a_steady_rate():
    est = make()
    for _ in range(40):
        est.add_sample(1_000_000, 1.0)  # 1 MB/s for 40 s
    assert est.bytes_per_second == pytest.approx(1_000_000, rel=0.01)


def test_drops_fast_rises_slowly():
    up, down = make(1_000_000), make(1_000_000)
    up.add_sample(4_000_000, 1.0)
    down.add_sample(250_000, 1.0)
    rise = up.bytes_per_second - 1_000_000
    fall = 1_000_000 - down.bytes_per_second
    # The reported figure is the lower of the two averages: a drop shows through the fast one,
    # a rise only as fast as the slow one lets it.
    assert rise / 3_000_000 < fall / 750_000


def test_long_samples_weigh_more_than_short_ones():
    short, long_ = make(), make()
    short.add_sample(20_000, 0.02)  # 1 MB/s for 20 ms
    long_.add_sample(2_000_000, 2.0)  # 1 MB/s for 2 s
    assert long_.bytes_per_second > short.bytes_per_second > 100_000


def test_ignores_empty_samples_and_clamps():
    est = make()
    est.add_sample(0, 1.0)
    est.add_sample(10, 0.0)
    assert est.samples == 0
    est.add_sample(10**15, 0.001)
    assert est.bytes_per_second <= CFG.max_bps


def test_penalise_scales_down_with_floor():
    est = make()
    est.penalise(0.5)
    assert est.bytes_per_second == pytest.approx(50_000)
    for _ in range(100):
        est.penalise(0.1)
    assert est.bytes_per_second == CFG.min_bps


def test_latency_average():
    est = make(latency=0.2)
    est.add_latency(1.2)
    assert est.latency == pytest.approx(0.2 + CFG.latency_weight * 1.0)


def test_meter_latency_then_rate():
    est = make()
    meter = TransferMeter(10.0, est, 0.05)
    meter.progress(10.1, 10_000)  # first byte after 100 ms
    assert meter.first_byte_at == 10.1
    assert est.latency == pytest.approx(0.2 * 0.7 + 0.1 * 0.3)
    for i in range(1, 11):
        meter.progress(10.1 + i * 0.1, 10_000 + i * 50_000)  # 500 kB/s
    assert meter.rate(11.1) == pytest.approx(500_000, rel=0.01)
    assert est.samples == 10
    assert est.bytes_per_second > 100_000


def test_meter_one_shot_transfer_is_timed_from_the_request():
    est = make()
    meter = TransferMeter(0.0, est, 0.05)
    meter.progress(0.2, 200_000)
    meter.finish(0.2)
    assert est.samples == 1
    # 200 kB over the 0.2 s since the request: 1 MB/s, not infinity.
    assert est.bytes_per_second < 1_000_000


def test_meter_ignores_non_monotonic_progress():
    est = make()
    meter = TransferMeter(0.0, est, 0.05)
    meter.progress(0.1, 1000)
    meter.progress(0.2, 500)
    assert meter.received == 1000


def test_meter_rate_falls_when_a_transfer_stalls():
    meter = TransferMeter(0.0, make(), 0.05)
    meter.progress(0.1, 1000)
    meter.progress(0.5, 201_000)
    before = meter.rate(0.5)
    assert meter.rate(5.0) < before / 5


@pytest.mark.parametrize(
    "kwargs",
    [{"http_prior_bps": 0}, {"latency_weight": 0}, {"min_bps": 10.0, "max_bps": 1.0}],
)
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        BandwidthConfig(**kwargs)
