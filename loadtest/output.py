"""The report folder: JSON (the shared format), plots (matplotlib, Agg) and a one-page HTML.

Plots, each a PNG in the folder and embedded in ``index.html``:

- ``p2p_share.png`` — offload per reporting interval and viewers online;
- ``origin_egress.png`` — what the origin actually sent vs. what it would have sent without
  P2P (all bytes viewers received), Mbit/s;
- ``startup_cdf.png`` — cumulative distribution of startup times;
- ``stalls.png`` — histogram of stall durations (or "no stalls");
- ``neighbours.png`` — histogram of each viewer's mean number of connected peers.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

from swarmcast.sim.report import write_report

log = logging.getLogger(__name__)

PLOTS = ("p2p_share", "origin_egress", "startup_cdf", "stalls", "neighbours")


def write_folder(folder: Path, result: dict[str, Any], *, plots: bool = True) -> Path:
    """Write the JSON files, and unless ``plots`` is False the PNGs and ``index.html``."""
    out = write_report(folder, result)
    if plots:
        written = write_plots(out, result)
        (out / "index.html").write_text(render_html(result, {n: out / f"{n}.png" for n in written}))
    return out


def write_plots(folder: Path, result: dict[str, Any]) -> list[str]:
    """Draw every plot into ``folder``; returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["timeseries"]
    # Chromium viewers are viewers too; the startup CDF marks them.
    viewers = [r for r in result["viewers"] if r.get("kind", "viewer") in ("viewer", "chromium")]
    drawers = {
        "p2p_share": lambda ax: _p2p_share(ax, series),
        "origin_egress": lambda ax: _origin_egress(ax, series),
        "startup_cdf": lambda ax: _startup_cdf(ax, viewers),
        "stalls": lambda ax: _stalls(ax, viewers),
        "neighbours": lambda ax: _neighbours(ax, viewers),
    }
    for name, draw in drawers.items():
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        try:
            draw(ax)
            ax.grid(True, alpha=0.3)
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png")
        finally:
            plt.close(fig)
    return list(drawers)


def _p2p_share(ax: Any, series: list[dict[str, Any]]) -> None:
    t = [r["t"] for r in series]
    ax.plot(t, [100 * r["offload"] for r in series], marker=".", label="P2P share of bytes")
    ax.set_ylim(0, 100)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P2P share (%)")
    ax.set_title("P2P share of received bytes per interval")
    twin = ax.twinx()
    twin.plot(t, [r["viewers_online"] for r in series], color="grey", ls="--", label="online")
    twin.set_ylabel("viewers online")
    twin.set_ylim(bottom=0)


def _origin_egress(ax: Any, series: list[dict[str, Any]]) -> None:
    t = [r["t"] for r in series]
    ax.plot(t, [r["origin_egress_bps"] * 8 / 1e6 for r in series], label="origin egress")
    ax.plot(t, [r["http_only_bps"] * 8 / 1e6 for r in series], ls="--", label="HTTP-only cost")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.set_ylim(bottom=0)
    ax.set_title("Origin egress vs. the same audience without P2P")
    ax.legend(loc="best")


def _startup_cdf(ax: Any, viewers: list[dict[str, Any]]) -> None:
    times = sorted(r["startup_time"] for r in viewers if r["startup_time"] is not None)
    if times:
        n = len(times)
        ax.step(times, [(i + 1) / n * 100 for i in range(n)], where="post")
        browsers = [r["startup_time"] for r in viewers if r.get("kind") == "chromium"]
        marks = [(t, (times.index(t) + 1) / n * 100) for t in browsers if t is not None]
        if marks:
            ax.plot(*zip(*marks, strict=True), "rx", label="Chromium viewers")
            ax.legend(loc="lower right")
    never = sum(1 for r in viewers if r["startup_time"] is None)
    ax.set_xlabel("startup time (s)")
    ax.set_ylabel("sessions (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.set_title(f"Startup time CDF ({len(times)} sessions, {never} never started)")


def _stalls(ax: Any, viewers: list[dict[str, Any]]) -> None:
    durations = [d for r in viewers for d in r.get("stall_durations", [])]
    if durations:
        ax.hist(durations, bins=min(30, max(5, len(durations))))
        ax.set_title(f"Stall durations ({len(durations)} stalls)")
    else:
        ax.text(0.5, 0.5, "no stalls", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Stall durations")
    ax.set_xlabel("stall duration (s)")
    ax.set_ylabel("stalls")


def _neighbours(ax: Any, viewers: list[dict[str, Any]]) -> None:
    means = [r.get("mean_neighbours", 0.0) for r in viewers]
    if means:
        ax.hist(means, bins=min(20, max(5, len(set(round(m) for m in means)) + 1)))
    ax.set_xlabel("mean connected peers during the session")
    ax.set_ylabel("viewers")
    ax.set_title("Connected peers per viewer")


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>swarmcast load test: {{ title }}</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:1320px;color:#222}
 table{border-collapse:collapse;margin:1em 0}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;
 text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}
 .plots{display:grid;grid-template-columns:1fr 1fr;gap:1em}img{max-width:100%}
</style></head><body>
<h1>swarmcast load test</h1>
<p>{{ title }} &mdash; {{ run.workers }} workers, rendition <code>{{ run.rendition }}</code>,
{{ "%.0f"|format(run.wall_seconds) }} s wall time.</p>
{% if not generator.valid %}<p class="bad">RUN INVALID: the load generator, not the system
under test, was the bottleneck:</p><ul>{% for r in generator.reasons %}<li>{{ r }}</li>
{% endfor %}</ul>{% endif %}
{% if verdict.missed %}<p class="bad">Thresholds missed:</p><ul>{% for m in verdict.missed %}
<li>{{ m }}</li>{% endfor %}</ul>{% elif generator.valid %}<p class="ok">All thresholds met.</p>
{% endif %}
<table>
{% for name, value in figures %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
<div class="plots">
{% for name, data in images %}<img alt="{{ name }}" src="data:image/png;base64,{{ data }}">
{% endfor %}</div>
<p>Data: <a href="report.json">report.json</a>, <a href="viewers.json">viewers.json</a>,
<a href="timeseries.json">timeseries.json</a>. Definitions: docs/loadtest.md.</p>
</body></html>
"""


def _fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The headline figures of a report as (name, formatted value) rows."""
    s = report["summary"]
    sc = report["scenario"]
    b = s["bytes"]
    lag = report["generator"]["workers"]
    worst = max((w.get("p95", 0.0) for w in lag.values()), default=0.0)
    spike = max((w.get("max", 0.0) for w in lag.values()), default=0.0)
    return [
        ("viewers (concurrent / sessions)", f"{s['concurrent_viewers']} / {s['sessions']}"),
        (
            "mode",
            f"{'live' if sc['live'] else 'VOD'}, P2P {'on' if sc['p2p'] else 'off'}, "
            f"{sc['seeds']} seeds",
        ),
        ("offload", f"{s['offload']:.1%} (bound {s['offload_bound']:.1%})"),
        (
            "origin egress",
            f"{b['origin_egress'] / 1e6:.2f} MB "
            f"(HTTP-only cost {s['http_only_egress'] / 1e6:.2f} MB)",
        ),
        (
            "received by viewers",
            f"{b['received'] / 1e6:.2f} MB (HTTP {b['http'] / 1e6:.2f}, P2P {b['p2p'] / 1e6:.2f})",
        ),
        ("startup p50 / p95", f"{_fmt_s(s['startup']['p50'])} / {_fmt_s(s['startup']['p95'])}"),
        ("never started", str(s["startup"]["never_started"])),
        ("rebuffering ratio", f"{s['rebuffering_ratio']:.3%}"),
        (
            "stalls",
            f"{s['stalls']['count']} ({s['stalls']['duration']:.2f} s, "
            f"{s['stalls']['viewers_with_stalls']} viewers)",
        ),
        ("live latency mean", _fmt_s(s["live_latency"]["mean"])),
        ("mean connected peers", f"{s['connections']['mean_neighbours']:.1f}"),
        *_chromium_figures(s),
        ("worker event-loop lag p95 / max", f"{worst * 1000:.0f} / {spike * 1000:.0f} ms"),
    ]


def _chromium_figures(summary: dict[str, Any]) -> list[tuple[str, str]]:
    c = summary.get("chromium")
    if not c:
        return []
    return [
        (
            "Chromium viewers",
            f"{c['sessions']}: offload {c['offload']:.1%}, startup p50 {_fmt_s(c['startup_p50'])}"
            f", {c['stalls']} stalls, {c['errors']} errors",
        )
    ]


def render_html(result: dict[str, Any], images: dict[str, Path]) -> str:
    """The one-page summary with the plots inlined (the page is self-contained)."""
    import jinja2

    report = result["report"]
    sc = report["scenario"]
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    embedded = [
        (name, base64.b64encode(path.read_bytes()).decode("ascii"))
        for name, path in images.items()
        if path.exists()
    ]
    title = f"{sc['viewers']} viewers, {sc['duration']:.0f} s"
    return env.from_string(_TEMPLATE).render(
        title=title,
        run=report["run"],
        generator=report["generator"],
        verdict=report.get("verdict", {"missed": []}),
        figures=figures(report),
        images=embedded,
    )
