"""QoE report of a run: the JSON folder format shared with the load test (docs/simulation.md).

A report folder holds three files:

- ``report.json``: schema tag, the scenario, the summary (offload, origin egress, startup,
  rebuffering, stalls, live latency, connectivity) and run facts (wall time, speed);
- ``viewers.json``: one summary per viewer session;
- ``timeseries.json``: one entry per reporting interval.

The summary is computed from per-viewer figures only (plus origin counters), so a load test
that measures the same per-viewer figures produces the same summary with :func:`summarise`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from swarmcast import accel
from swarmcast.sim.engine import Simulation

#: Schema tag of ``report.json``; the load test writes the same with ``"source": "loadtest"``.
REPORT_SCHEMA = "swarmcast.qoe-report/1"


def viewer_rows(sim: Simulation) -> list[dict[str, Any]]:
    """Per-viewer session summaries (the ``viewers.json`` rows)."""
    rows = []
    for v in sim.viewers:
        stats = v.sched.stats
        rows.append(
            {
                "id": v.pid,
                "joined_at": round(v.joined_at, 6),
                "left_at": round(v.left_at if v.left_at is not None else sim.now, 6),
                "upload_bps": round(v.up.capacity, 1) if v.upload_on else 0.0,
                "download_bps": round(v.down.capacity, 1),
                "upload_enabled": v.upload_on,
                "http_bytes": round(v.http_bytes),
                "p2p_bytes": round(v.p2p_bytes),
                "uploaded_bytes": round(v.uploaded),
                "startup_time": (
                    None if v.started_at is None else round(v.started_at - v.joined_at, 6)
                ),
                "play_time": round(v.play_time, 6),
                "stall_count": v.stall_count,
                "stall_time": round(v.stall_time, 6),
                "live_latency": (
                    round(v.latency_sum / v.latency_samples, 6) if v.latency_samples else None
                ),
                "neighbours": len(v.neighbours),
                "origin_fetches": stats.origin_fetches,
                "p2p_fetches": stats.p2p_fetches,
                "bootstraps": stats.bootstraps,
                "switches": stats.switches,
            }
        )
    return rows


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


def summarise(
    rows: list[dict[str, Any]],
    *,
    origin_egress: float,
    seed_ingest: float,
    peak_online: int,
    concurrent: int,
    segments: int,
    origin_requests: int,
) -> dict[str, Any]:
    """The ``summary`` object of ``report.json`` from per-viewer rows and origin counters.

    ``concurrent`` is the audience size the (N-1)/N bound refers to; ``segments`` the number
    of distinct segments viewers stored (for origin requests per segment).
    """
    http = sum(r["http_bytes"] for r in rows)
    p2p = sum(r["p2p_bytes"] for r in rows)
    received = http + p2p
    play = sum(r["play_time"] for r in rows)
    stall = sum(r["stall_time"] for r in rows)
    startups = [r["startup_time"] for r in rows if r["startup_time"] is not None]
    latencies = [r["live_latency"] for r in rows if r["live_latency"] is not None]
    viewer_seconds = sum(r["left_at"] - r["joined_at"] for r in rows)
    stall_count = sum(r["stall_count"] for r in rows)
    return {
        "sessions": len(rows),
        "concurrent_viewers": concurrent,
        "peak_online": peak_online,
        "viewer_seconds": round(viewer_seconds, 3),
        "offload": p2p / received if received else 0.0,
        "offload_bound": (concurrent - 1) / concurrent if concurrent else 0.0,
        "bytes": {
            "received": round(received),
            "http": round(http),
            "p2p": round(p2p),
            "uploaded": round(sum(r["uploaded_bytes"] for r in rows)),
            "origin_egress": round(origin_egress),
            "seed_ingest": round(seed_ingest),
        },
        "origin_requests": origin_requests,
        "origin_requests_per_segment": origin_requests / segments if segments else 0.0,
        "startup": {
            "mean": sum(startups) / len(startups) if startups else None,
            "p50": _quantile(startups, 0.5),
            "p95": _quantile(startups, 0.95),
            "max": max(startups) if startups else None,
            "never_started": len(rows) - len(startups),
        },
        "rebuffering_ratio": stall / (play + stall) if play + stall > 0 else 0.0,
        "stalls": {
            "count": stall_count,
            "duration": round(stall, 6),
            "viewers_with_stalls": sum(1 for r in rows if r["stall_count"]),
            "per_viewer_hour": stall_count / (viewer_seconds / 3600) if viewer_seconds else 0.0,
        },
        "live_latency": {
            "mean": sum(latencies) / len(latencies) if latencies else None,
            "p95": _quantile(latencies, 0.95),
        },
    }


def build_report(sim: Simulation, wall_seconds: float) -> dict[str, Any]:
    """Everything of one run: ``{"report": ..., "viewers": [...], "timeseries": [...]}``."""
    rows = viewer_rows(sim)
    c = sim.counters
    sc = sim.sc
    summary = summarise(
        rows,
        origin_egress=c.http_bytes + c.seed_ingest_bytes,
        seed_ingest=c.seed_ingest_bytes,
        peak_online=max((int(s["viewers_online"]) for s in sim.series), default=0),
        concurrent=sc.viewers,
        segments=len(sim.segments_stored),
        origin_requests=c.origin_requests,
    )
    summary["connections"] = {
        "attempts": c.connect_attempts,
        "nat_failed": c.connect_nat_failed,
        "refused_full": c.connect_refused,
        "established": c.connections,
        "mean_neighbours": (sum(r["neighbours"] for r in rows) / len(rows) if rows else 0.0),
    }
    report = {
        "schema": REPORT_SCHEMA,
        "source": "simulate",
        "scenario": sc.to_json(),
        "summary": summary,
        "run": {
            "wall_seconds": round(wall_seconds, 3),
            "events": sim.events,
            "compiled": accel.status().active,
            "engine": accel.status().describe(),
            "simulated_seconds": sc.duration,
            "viewer_seconds_per_wall_second": (
                summary["viewer_seconds"] / wall_seconds if wall_seconds > 0 else math.inf
            ),
        },
    }
    return {"report": report, "viewers": rows, "timeseries": sim.series}


def write_report(folder: str | Path, result: dict[str, Any]) -> Path:
    """Write ``report.json``, ``viewers.json`` and ``timeseries.json`` into ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("report", "viewers", "timeseries"):
        (out / f"{name}.json").write_text(json.dumps(result[name], indent=1) + "\n")
    return out
