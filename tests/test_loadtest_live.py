"""The live terminal view renders what the workers report (no terminal needed)."""

from __future__ import annotations

import io
import time

from rich.console import Console

from swarmcast.loadtest.live import LiveView
from swarmcast.loadtest.metrics import WorkerSample
from swarmcast.loadtest.runner import RunState


def test_live_view_shows_totals_and_flags_a_lagging_worker() -> None:
    state = RunState(duration=60, workers=2, started=time.time() - 30)
    for msg in (
        WorkerSample(0, 30, online=5, playing=5, http_bytes=100, p2p_bytes=300, neighbours=10),
        WorkerSample(1, 30, online=4, playing=3, stalled=1, p2p_bytes=100, stalls=1, lag_max=0.4),
    ):
        state.handle({"type": "sample", "sample": msg.to_json()})
    state.origin_points += [(29.0, 1000), (30.0, 126_000)]
    out = io.StringIO()
    view = LiveView(max_lag=0.1, console=Console(file=out, width=140, color_system=None))
    view._track_egress(state)
    view.console.print(view.render(state))
    text = out.getvalue()
    assert "online 9" in text and "playing 8" in text and "stalled 1" in text
    assert "P2P now 80% / run 80%" in text
    assert "origin 1.0 Mbit/s" in text
    assert "400 ms" in text and "stalls 1" in text
    assert "30 / 60 s" in text
