"""The live terminal view of a running load test (rich), and its plain-log fallback.

Shows, refreshed every second from the workers' latest samples: a progress bar of the run,
viewers online / playing / stalled, the P2P share of the last second and of the whole run, the
origin's egress, stalls so far, and each worker's event-loop lag (red past the limit: that
worker's figures would not be trustworthy).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from swarmcast.loadtest.runner import RunState

log = logging.getLogger(__name__)


class LiveView:
    """A rich ``Live`` display fed by :meth:`update` (pass it as ``on_update``)."""

    def __init__(self, max_lag: float, console: Console | None = None) -> None:
        self.max_lag = max_lag
        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self._egress = 0.0

    def __enter__(self) -> LiveView:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)

    def update(self, state: RunState) -> None:
        """Redraw from the run state."""
        self._track_egress(state)
        self.live.update(self.render(state))

    def _track_egress(self, state: RunState) -> None:
        points = state.origin_points
        if len(points) >= 2 and points[-1][0] > points[-2][0]:
            (t0, b0), (t1, b1) = points[-2], points[-1]
            self._egress = (b1 - b0) / (t1 - t0)

    def render(self, state: RunState) -> Group:
        """The display for one moment of the run."""
        elapsed = min(state.elapsed(), state.duration)
        bar = ProgressBar(total=state.duration, completed=elapsed, width=50)
        head = Text(f" {elapsed:5.0f} / {state.duration:.0f} s")
        latest = list(state.latest.values())
        http = sum(s.http_bytes for s in latest)
        p2p = sum(s.p2p_bytes for s in latest)
        total = state.totals["http"] + state.totals["p2p"]
        overall = state.totals["p2p"] / total if total else 0.0
        now_share = p2p / (http + p2p) if http + p2p else 0.0
        summary = Table.grid(padding=(0, 2))
        summary.add_row(
            f"online {sum(s.online for s in latest)}",
            f"playing {sum(s.playing for s in latest)}",
            f"stalled {sum(s.stalled for s in latest)}",
            f"P2P now {now_share:.0%} / run {overall:.0%}",
            f"origin {self._egress * 8 / 1e6:.1f} Mbit/s",
            f"stalls {state.totals['stalls']}",
            f"sessions done {state.totals['sessions']}",
        )
        workers = Table(title=None, show_edge=False, pad_edge=False)
        for col in ("worker", "online", "playing", "stalled", "neighbours", "loop lag"):
            workers.add_column(col, justify="right")
        for i in range(state.workers):
            s = state.latest.get(i)
            if s is None:
                workers.add_row(str(i), "-", "-", "-", "-", "-")
                continue
            style = "bold red" if s.lag_max > self.max_lag else ""
            workers.add_row(
                str(i),
                str(s.online),
                str(s.playing),
                str(s.stalled),
                f"{s.neighbours / s.online:.1f}" if s.online else "-",
                Text(f"{s.lag_max * 1000:.0f} ms", style=style),
            )
        return Group(_row(bar, head), summary, workers)


def _row(*items: Any) -> Table:
    grid = Table.grid()
    grid.add_row(*items)
    return grid


class LogView:
    """Without a terminal: one log line per ``every`` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._next = 0.0

    def update(self, state: RunState) -> None:
        """Log the run's progress now and then."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        latest = list(state.latest.values())
        total = state.totals["http"] + state.totals["p2p"]
        log.info(
            "t=%.0f s online=%d stalled=%d p2p=%.0f%% stalls=%d worst lag=%.0f ms",
            state.elapsed(),
            sum(s.online for s in latest),
            sum(s.stalled for s in latest),
            100 * state.totals["p2p"] / total if total else 0.0,
            state.totals["stalls"],
            1000 * max((s.lag_max for s in latest), default=0.0),
        )
