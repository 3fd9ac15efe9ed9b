"""Workers on several hosts: two ``swarmcast loadtest --join`` processes and one coordinator
meet in a real redis-server (started here on a free loopback port) and one report comes out.

HTTP only on loopback (the merge is what is tested; P2P runs are in test_loadtest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from test_loadtest import check_consistent, load, loadtest

REDIS = shutil.which("redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port, no persistence."""
    if REDIS is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import redis

        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_two_joined_workers_merge_into_one_report(
    redis_url: str, tiny_sample: Path, tmp_path: Path
) -> None:
    join = [sys.executable, "-m", "swarmcast.cli", "-q", "loadtest", "--join", redis_url]
    joiners = [
        subprocess.Popen(
            [*join, "--join-timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    out = tmp_path / "merged"
    try:
        proc = loadtest(
            "--media", tiny_sample, "--viewers", 6, "--duration", 10, "--join-spread", 2,
            "--p2p", "off", "--workers", 2, "--local-workers", 0, "--redis", redis_url,
            "--out", out, "--no-plots",
        )  # fmt: skip
        codes = [j.wait(60) for j in joiners]
    finally:
        for j in joiners:
            if j.poll() is None:
                j.kill()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert codes == [0, 0], [j.stderr.read()[-2000:] for j in joiners if j.stderr]
    report, rows, series = load(out)
    s = report["summary"]
    assert report["run"]["redis"] and report["generator"]["valid"]
    # Each joined process ran one worker's share; the report holds both shares.
    assert sorted(r["id"] for r in rows) == [f"v{i:05d}.0" for i in range(6)]
    assert {r["worker"]: 0 for r in rows}.keys() == {0, 1}
    assert set(report["generator"]["workers"]) == {"0", "1"}
    assert s["sessions"] == 6 and s["startup"]["never_started"] == 0
    # Gauges of both workers add up: all six viewers online at once in the series.
    assert max(r["viewers_online"] for r in series) == 6
    check_consistent(report, rows, series)
    # Bytes of both workers against the origin's own count.
    assert s["origin"]["segment_requests"] == sum(r["origin_fetches"] for r in rows)
    assert s["origin"]["segment_bytes"] == pytest.approx(s["bytes"]["http"], rel=0.05)
    # The run's keys are cleaned up.
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        assert not list(client.scan_iter(match="swarmcast:loadtest:*"))
    finally:
        client.close()


def test_join_without_a_run_gives_up_with_a_message(redis_url: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "swarmcast.cli", "-q", "loadtest", "--join", redis_url,
         "--join-timeout", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 4
    assert "no run offered a worker slot" in proc.stderr
