"""``swarmcast loadtest --chromium M``: real Chromium viewers mixed into a run of Python ones.

Needs the test namespace (WebRTC, and a default route so Chromium offers ICE candidates):
``tests/netns-run .venv/bin/pytest tests/test_loadtest_chromium.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import requires_chromium
from test_loadtest import load, loadtest

from swarmcast.loadtest.chromium import plan_chromium, watch_url


def test_chromium_plan_joins_on_the_ramp_and_stays() -> None:
    plans = plan_chromium(3, join_spread=5.0, duration=20.0, seed=1)
    assert [p.id for p in plans] == ["c0", "c1", "c2"]
    assert all(0.0 <= p.join_at <= 5.0 and p.leave_at == 20.0 for p in plans)
    assert [p.join_at for p in plans] == sorted(p.join_at for p in plans)
    assert plans == plan_chromium(3, join_spread=5.0, duration=20.0, seed=1)
    assert plans != plan_chromium(3, join_spread=5.0, duration=20.0, seed=2)
    with pytest.raises(ValueError, match="--chromium"):
        plan_chromium(-1, join_spread=5.0, duration=20.0, seed=1)


def test_watch_url_points_at_the_signalling_servers_page() -> None:
    url = watch_url("ws://198.18.0.1:8790/ws", "http://198.18.0.1:1/live/master.m3u8")
    assert url.startswith("http://198.18.0.1:8790/watch?src=http%3A%2F%2F198.18.0.1%3A1%2F")
    assert "signal=ws%3A%2F%2F198.18.0.1%3A8790%2Fws" in url and url.endswith("p2p=1")
    assert watch_url("wss://h/ws", "https://o/m.m3u8", p2p=False).startswith("https://h/watch?")
    with pytest.raises(ValueError, match="ws://"):
        watch_url("http://h/ws", "http://o/m.m3u8")


def test_a_missing_browser_is_named_with_the_fix(tmp_path: Path) -> None:
    from swarmcast.loadtest.chromium import ChromiumUnavailable, check_available

    with pytest.raises(ChromiumUnavailable, match="apt-get install chromium"):
        check_available(str(tmp_path / "no-chromium"))


@pytest.mark.netns
@pytest.mark.browser
@pytest.mark.slow
@requires_chromium
def test_chromium_viewer_joins_a_loadtest(
    tiny_sample: Path, test_host: str, tmp_path: Path
) -> None:
    out = tmp_path / "mixed"
    proc = loadtest(
        "--media", tiny_sample, "--host", test_host, "--viewers", 4, "--seeds", 1,
        "--chromium", 1, "--duration", 25, "--join-spread", 3, "--workers", 1, "--out", out,
    )  # fmt: skip
    print(proc.stdout, proc.stderr[-3000:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, rows, series = load(out)
    s = report["summary"]
    browsers = [r for r in rows if r["kind"] == "chromium"]
    viewers = [r for r in rows if r["kind"] == "viewer"]
    assert len(browsers) == 1 and len(viewers) == 4
    b = browsers[0]
    assert b["error"] is None, b
    # It played: a startup time, media seconds really played, no stall, bytes received.
    assert b["startup_time"] is not None and 0 < b["startup_time"] < 10, b
    assert b["play_time"] > 10, b
    assert b["stall_count"] == 0 and b["stall_time"] == 0, b
    assert b["http_bytes"] + b["p2p_bytes"] > 100_000, b
    # The summary counts it as a viewer; the time series carries its bytes too.
    everyone = viewers + browsers
    assert s["sessions"] == 5
    assert s["bytes"]["http"] == sum(r["http_bytes"] for r in everyone)
    assert s["bytes"]["p2p"] == sum(r["p2p_bytes"] for r in everyone)
    assert sum(r["http_bytes"] for r in series) == s["bytes"]["http"]
    assert sum(r["p2p_bytes"] for r in series) == s["bytes"]["p2p"]
    assert max(r["viewers_online"] for r in series) == 5
    assert report["run"]["chromium_viewers"] == 1
    c = s["chromium"]
    assert c["sessions"] == 1 and c["never_started"] == 0 and c["errors"] == 0, c
    assert c["startup_p50"] == b["startup_time"] and c["stalls"] == 0
    assert "<th>Chromium viewers</th><td>1: offload" in (out / "index.html").read_text()


@pytest.mark.netns
@pytest.mark.browser
@pytest.mark.slow
@requires_chromium
def test_http_only_run_serves_the_page_and_keeps_browsers_off_p2p(
    tiny_sample: Path, test_host: str, tmp_path: Path
) -> None:
    out = tmp_path / "http"
    proc = loadtest(
        "--media", tiny_sample, "--host", test_host, "--viewers", 2, "--chromium", 1,
        "--duration", 12, "--join-spread", 1, "--workers", 1, "--p2p", "off", "--out", out,
        "--no-plots",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, rows, _ = load(out)
    assert report["run"]["signal_url"] is None  # no P2P, yet the page was served
    (b,) = [r for r in rows if r["kind"] == "chromium"]
    assert b["error"] is None and b["startup_time"] is not None, b
    assert b["p2p_bytes"] == 0 and b["uploaded_bytes"] == 0 and b["http_bytes"] > 50_000, b
    assert report["summary"]["offload"] == 0 and report["summary"]["sessions"] == 3


@pytest.mark.netns
@pytest.mark.browser
@pytest.mark.slow
@requires_chromium
def test_large_sctp_chunks_between_python_peers_leave_chromium_working(
    tiny_sample: Path, test_host: str, tmp_path: Path
) -> None:
    # --sctp-chunk is negotiated per link in the SDP: Python peers use 16 KB chunks among
    # themselves, the browser (which cannot read them) must still get P2P data and play.
    out = tmp_path / "chunks"
    proc = loadtest(
        "--media", tiny_sample, "--host", test_host, "--viewers", 4, "--seeds", 1,
        "--chromium", 1, "--duration", 25, "--join-spread", 3, "--workers", 1, "--out", out,
        "--sctp-chunk", 16000,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report, rows, _series = load(out)
    assert report["run"]["sctp_chunk"] == 16000
    b = next(r for r in rows if r["kind"] == "chromium")
    assert b["error"] is None and b["stall_count"] == 0 and b["play_time"] > 10, b
    assert b["p2p_bytes"] > 0, b  # from Python peers, over standard-size packets
    viewers = [r for r in rows if r["kind"] == "viewer"]
    assert sum(r["p2p_bytes"] for r in viewers) > 0 and all(r["stall_count"] == 0 for r in viewers)
