"""Sweeps: one scenario run at several values of one field, and the offload plot.

``--sweep viewers=10,100,1000`` runs the scenario once per value (same seed) and plots offload
against swarm size next to the (N-1)/N bound, the most any seedless swarm can offload when
each segment enters it once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarmcast.sim.scenario import Mixture, Scenario, ScenarioError

logger = logging.getLogger(__name__)


def parse_sweep(text: str) -> tuple[str, list[Any]]:
    """``"viewers=10,100"`` -> ``("viewers", [10, 100])``, values typed like the field."""
    name, sep, values_text = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(Scenario)}
    if not sep or not values_text.strip():
        raise ScenarioError(f"--sweep wants NAME=V1,V2,... (e.g. viewers=10,100), got {text!r}")
    if name not in fields:
        raise ScenarioError(f"--sweep: {name!r} is not a scenario field; known: {sorted(fields)}")
    default = getattr(Scenario(), name)
    values: list[Any] = []
    for raw in values_text.split(";" if isinstance(default, Mixture) else ","):
        raw = raw.strip()
        try:
            if isinstance(default, bool):
                values.append(raw.lower() in ("1", "true", "yes", "on"))
            elif isinstance(default, int):
                values.append(int(raw))
            elif isinstance(default, float) or default is None:
                values.append(None if raw.lower() in ("none", "null") else float(raw))
            elif isinstance(default, Mixture):
                values.append(Mixture.parse(raw))
            else:
                raise ScenarioError(f"--sweep cannot vary {name!r}")
        except ValueError:
            raise ScenarioError(f"--sweep {name}: bad value {raw!r}") from None
    return name, values


def run_sweep(
    base: Scenario,
    name: str,
    values: list[Any],
    run_one: Callable[[Scenario], dict[str, Any]],
) -> list[dict[str, Any]]:
    """Run ``base`` with ``name`` set to each value; returns one row per run."""
    rows = []
    for value in values:
        scenario = base.replace(**{name: value})
        result = run_one(scenario)
        summary = result["report"]["summary"]
        rows.append(
            {
                name: value.to_json() if isinstance(value, Mixture) else value,
                "viewers": scenario.viewers,
                "offload": summary["offload"],
                "offload_bound": summary["offload_bound"],
                "origin_egress": summary["bytes"]["origin_egress"],
                "rebuffering_ratio": summary["rebuffering_ratio"],
                "stall_count": summary["stalls"]["count"],
                "startup_p50": summary["startup"]["p50"],
                "live_latency_mean": summary["live_latency"]["mean"],
                "viewer_seconds_per_wall_second": result["report"]["run"][
                    "viewer_seconds_per_wall_second"
                ],
            }
        )
    return rows


def plot_sweep(
    rows: list[dict[str, Any]],
    name: str,
    path: str | Path,
    title: str = "",
    *,
    compare: dict[str, list[dict[str, Any]]] | None = None,
    label: str = "offload (simulated)",
) -> Path:
    """Offload (and the (N-1)/N bound when the swarm size varies) against the swept value.

    ``compare`` adds one more labelled line per entry (e.g. a proposed configuration).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r[name] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.plot(xs, [100 * r["offload"] for r in rows], "o-", label=label)
    for label, other in (compare or {}).items():
        ax.plot([r[name] for r in other], [100 * r["offload"] for r in other], "s-", label=label)
    if name == "viewers":
        ax.plot(xs, [100 * r["offload_bound"] for r in rows], "k--", label="(N-1)/N bound")
        ax.set_xscale("log")
        ax.set_xlabel("concurrent viewers N")
    else:
        ax.set_xlabel(name)
    ax.set_ylabel("offload, % of bytes from peers")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_sweep(folder: str | Path, name: str, rows: list[dict[str, Any]], base: Scenario) -> Path:
    """Write ``sweep.json`` and ``offload.png`` into ``folder``; returns the plot path."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"schema": "swarmcast.sweep/1", "vary": name, "scenario": base.to_json(), "runs": rows}
    (out / "sweep.json").write_text(json.dumps(doc, indent=1) + "\n")
    mode = "live" if base.live else "VOD"
    title = f"{mode}, {base.bitrate_kbps:g} kbit/s, {base.duration:g} s, seeds={base.seeds}"
    return plot_sweep(rows, name, out / "offload.png", title)
