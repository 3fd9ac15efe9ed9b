"""Tests of peer/upload.py: EDF order, rate cap, concurrency limit, busy answers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarmcast.peer.upload import (
    Accept,
    Busy,
    DropRequest,
    SendChunk,
    UploadConfig,
    UploadScheduler,
)

KIB = 1024

#: The queue shape most tests exercise (the defaults are 1 sending and 2 queued).
WIDE = {"max_concurrent": 4, "max_queued": 16}


def chunks(actions):
    return [a for a in actions if isinstance(a, SendChunk)]


def test_unlimited_sends_everything_in_chunks():
    up = UploadScheduler(UploadConfig(**WIDE, chunk_size=64 * KIB))
    assert up.offer(0.0, 1, "a", 7, 150 * KIB, 5.0) == Accept(1)
    out = chunks(up.poll(0.0))
    assert [(c.offset, c.nbytes, c.last) for c in out] == [
        (0, 64 * KIB, False),
        (64 * KIB, 64 * KIB, False),
        (128 * KIB, 22 * KIB, True),
    ]
    assert all(c.sequence == 7 and c.peer_id == "a" for c in out)
    assert up.poll(0.1) == [] and up.next_wakeup(0.1) is None


def test_earliest_deadline_first():
    up = UploadScheduler(UploadConfig(**WIDE, chunk_size=10))
    up.offer(0.0, 1, "late", 1, 10, 9.0)
    up.offer(0.0, 2, "soon", 2, 10, 3.0)
    up.offer(0.0, 3, "none", 3, 10, None)
    assert [c.request_id for c in chunks(up.poll(0.0))] == [2, 1, 3]


def test_max_bytes_bounds_one_poll():
    up = UploadScheduler(UploadConfig(**WIDE, chunk_size=100))
    up.offer(0.0, 1, "a", 1, 1000)
    out = chunks(up.poll(0.0, max_bytes=250))
    assert sum(c.nbytes for c in out) == 250


def test_disabled_is_always_busy():
    up = UploadScheduler(UploadConfig(enabled=False))
    assert isinstance(up.offer(0.0, 1, "a", 1, 10), Busy)


def test_busy_when_slots_and_queue_are_full():
    up = UploadScheduler(UploadConfig(max_concurrent=1, max_queued=1))
    assert isinstance(up.offer(0.0, 1, "a", 1, 10), Accept)
    assert isinstance(up.offer(0.0, 2, "b", 1, 10), Accept)
    busy = up.offer(0.0, 3, "c", 1, 10)
    assert isinstance(busy, Busy) and busy.retry_after > 0


def test_refuses_a_deadline_it_cannot_meet_under_the_cap():
    cfg = UploadConfig(**WIDE, rate_limit_bps=100_000, chunk_size=10_000, burst_seconds=0.25)
    up = UploadScheduler(cfg)  # 25 kB of burst, then 100 kB/s
    assert isinstance(up.offer(0.0, 1, "a", 1, 200_000, 2.5), Accept)  # done at 1.75 s
    assert isinstance(up.offer(0.0, 2, "b", 2, 300_000, 1.0), Busy)  # cannot make it alone
    # Would fit alone, but served first it would push request 1 past its deadline (2.75 s).
    busy = up.offer(0.0, 3, "c", 3, 100_000, 2.0)
    assert isinstance(busy, Busy)
    assert busy.retry_after == pytest.approx(2.0, rel=0.01)  # the backlog drains in 2 s
    # A small earlier request keeps every promise (request 1 then ends at 1.95 s).
    assert isinstance(up.offer(0.0, 4, "d", 4, 20_000, 2.4), Accept)
    assert [c.request_id for c in chunks(up.poll(0.0))] == [4, 4]


def test_queued_request_past_its_deadline_is_dropped():
    up = UploadScheduler(
        UploadConfig(max_concurrent=1, chunk_size=10, rate_limit_bps=10.0, refuse_late=False)
    )
    up.offer(0.0, 1, "a", 1, 100, 100.0)
    up.offer(0.0, 2, "b", 2, 10, 0.5)  # waits for a slot that frees after ~9 s
    drops = [a for a in up.poll(1.0) if isinstance(a, DropRequest)]
    assert drops == [DropRequest(2, "b", "deadline")]


def test_cancel_and_cancel_peer():
    up = UploadScheduler(UploadConfig(**WIDE))
    up.offer(0.0, 1, "a", 1, 10)
    up.offer(0.0, 2, "b", 1, 10)
    up.offer(0.0, 3, "a", 2, 10)
    assert up.cancel(2) and not up.cancel(2)
    assert sorted(up.cancel_peer("a")) == [1, 3]
    assert up.poll(0.0) == []


def test_bad_requests_raise_clear_errors():
    up = UploadScheduler(UploadConfig(**WIDE))
    with pytest.raises(ValueError, match="negative size"):
        up.offer(0.0, 1, "a", 1, -5)
    up.offer(0.0, 1, "a", 1, 5)
    with pytest.raises(ValueError, match="already in use"):
        up.offer(0.0, 1, "a", 1, 5)
    with pytest.raises(ValueError):
        UploadConfig(**WIDE, rate_limit_bps=0)


def test_next_wakeup_follows_the_bucket():
    up = UploadScheduler(
        UploadConfig(**WIDE, rate_limit_bps=10_000, chunk_size=5_000, burst_seconds=0)
    )
    up.offer(0.0, 1, "a", 1, 20_000)
    assert sum(c.nbytes for c in chunks(up.poll(0.0))) == 5_000  # the bucket holds one chunk
    assert up.next_wakeup(0.0) == pytest.approx(0.5)
    assert chunks(up.poll(0.4)) == []
    assert sum(c.nbytes for c in chunks(up.poll(0.5))) == 5_000


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1_000, 1_000_000),
    chunk=st.integers(100, 70_000),
    concurrent=st.integers(1, 4),
    requests=st.lists(
        st.tuples(st.floats(0, 5), st.integers(0, 300_000), st.floats(0.1, 20) | st.none()),
        max_size=20,
    ),
    steps=st.lists(st.floats(0.001, 0.5), min_size=1, max_size=60),
)
def test_rate_cap_and_concurrency_respected(rate, chunk, concurrent, requests, steps):
    cfg = UploadConfig(
        rate_limit_bps=rate, chunk_size=chunk, max_concurrent=concurrent, max_queued=4
    )
    up = UploadScheduler(cfg)
    burst = max(rate * cfg.burst_seconds, chunk)
    pending = sorted(requests, key=lambda r: r[0])
    now, sent, rid = 0.0, 0, 0
    started: set[int] = set()
    finished: set[int] = set()
    for step in steps:
        now += step
        while pending and pending[0][0] <= now:
            _, size, deadline = pending.pop(0)
            rid += 1
            up.offer(
                now, rid, f"p{rid % 3}", rid, size, None if deadline is None else now + deadline
            )
        for a in up.poll(now):
            if isinstance(a, SendChunk):
                sent += a.nbytes
                started.add(a.request_id)
                if a.last:
                    finished.add(a.request_id)
                assert len(started - finished) <= concurrent
        # Token bucket: never more than the burst plus the rate times the elapsed time.
        assert sent <= burst + rate * now + 1e-6


def test_defaults_send_one_at_a_time_and_answer_busy_beyond_two_waiting():
    up = UploadScheduler(UploadConfig(chunk_size=10))
    decisions = [up.offer(0.0, rid, "p", rid, 100, None) for rid in range(1, 5)]
    assert [type(d).__name__ for d in decisions] == ["Accept", "Accept", "Accept", "Busy"]
    assert {c.request_id for c in chunks(up.poll(0.0, max_bytes=50))} == {1}
