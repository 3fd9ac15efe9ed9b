"""Fault settings and the token bucket behind the origin's bandwidth caps."""

from __future__ import annotations

import pytest

from swarmcast.samples.faults import FailureDice, FaultConfig, FaultError, TokenBucket


def test_updated_applies_known_settings():
    faults = FaultConfig().updated({"latency_ms": 50, "down": True, "bandwidth": 1e6})
    assert faults == FaultConfig(latency_ms=50.0, down=True, bandwidth=1e6)
    assert faults.updated({"bandwidth": None}).bandwidth is None


@pytest.mark.parametrize(
    "changes",
    [
        {"nope": 1},
        {"failure_rate": 1.5},
        {"failure_rate": "0.5"},
        {"down": "yes"},
        {"latency_ms": -1},
        {"bandwidth": 0},
        {"latency_ms": True},
    ],
)
def test_bad_settings_are_refused(changes):
    with pytest.raises(FaultError):
        FaultConfig().updated(changes)


def test_failure_dice_rate_and_replay():
    a, b = FailureDice(7), FailureDice(7)
    rolls = [a.fails(0.3) for _ in range(2000)]
    assert rolls == [b.fails(0.3) for _ in range(2000)]
    assert 0.25 < sum(rolls) / len(rolls) < 0.35
    assert not any(FailureDice(1).fails(0.0) for _ in range(100))
    assert all(FailureDice(1).fails(1.0) for _ in range(100))


def test_token_bucket_holds_the_rate_over_time():
    bucket = TokenBucket(rate=1000.0, burst=100.0, now=0.0)
    now, sent = 0.0, 0
    # Send 100-byte pieces as fast as the bucket allows for 10 s of simulated time.
    while now < 10.0:
        now += bucket.reserve(100, now)
        sent += 100
    assert sent == pytest.approx(1000 * 10 + 100, abs=200)


def test_token_bucket_queues_concurrent_reservations_in_order():
    bucket = TokenBucket(rate=100.0, burst=0.0, now=0.0)
    waits = [bucket.reserve(50, 0.0) for _ in range(4)]
    assert waits == pytest.approx([0.5, 1.0, 1.5, 2.0])
