"""bench/sim_validate.py: the simulator against a real load test of the same scenario (issue #8).

The pure parts (figures, tolerance verdict, shared scenario, table, flags) run anywhere on
made-up figures and a real simulator report. The end-to-end check (one real load test against
the simulator over several seeds, small N) needs the test namespace:
``tests/netns-run .venv/bin/pytest tests/test_sim_validation.py``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from swarmcast.sim.scenario import Scenario

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "sim_validate.py"


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sim_validate", ROOT / "bench" / "sim_validate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


sv = _load_bench()

FACTS = sv.NetnsFacts(
    http_ttfb=0.0015,
    http_mbps=1300.0,
    connect_low=0.03,
    connect_high=0.04,
    p2p_latency=0.0002,
    segment_bytes=236_654.4,
)


def fig(offload: float = 0.6, req: float = 1.3, **kw: object) -> object:
    """Figures of a real run with sensible defaults."""
    base = {"stalls": 0, "startup_p50": 0.02, "live_latency": 5.0, "valid": True}
    base.update(kw)
    return sv.Figures(offload=offload, requests_per_segment=req, **base)


def sim(offload: float = 0.6, req: float = 1.3, **kw: object) -> object:
    """Figures of a simulator run: its live latency is sampled at playlist reloads, one half
    segment duration above the real run's (module docstring of the bench)."""
    return fig(offload, req, **{"live_latency": 6.0, **kw})


# ------------------------------------------------------------------ scenario


def test_the_shared_scenario_loads_and_fixes_what_both_sides_must_mean_alike() -> None:
    sc = sv.scenario_for(
        {"duration": 60, "segment_duration": 2.0}, FACTS, viewers=6, seed=3, upload_mbps=4,
        max_peers=10,
    )  # fmt: skip
    loaded = Scenario.from_json(json.loads(json.dumps(sc)))  # what both commands read
    assert loaded.viewers == 6 and loaded.seed == 3 and loaded.duration == 60
    assert loaded.nat_fail == 0 and loaded.seeds == 0 and loaded.session is None
    assert loaded.upload.parts == ((1.0, 4.0, 4.0),)  # one cap for everyone
    assert loaded.max_neighbours == 10  # = the load test's --max-peers
    # 236 654 bytes per 2 s segment is 946.6 kbit/s: the simulator's segment has that size.
    assert loaded.bitrate_kbps == pytest.approx(946.618, abs=0.001)
    assert loaded.http_latency == pytest.approx(0.0015)
    assert loaded.connect_time == (0.03, 0.04)


# ------------------------------------------------------------------ figures and verdict


def test_figures_come_from_a_real_simulator_report(tmp_path: Path) -> None:
    sc = sv.scenario_for({"duration": 20}, FACTS, viewers=3, seed=1, upload_mbps=4, max_peers=10)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc))
    report = sv.run_sim(path, tmp_path / "sim")
    f = sv.figures(report)
    s = report["summary"]
    assert f.offload == s["offload"] and 0 < f.offload < 2 / 3  # below the (N-1)/N bound
    assert f.requests_per_segment == s["origin_requests_per_segment"] >= 1.0
    assert f.startup_p50 == s["startup"]["p50"] and f.valid and f.lag_p95 == 0.0
    # Deterministic for a seed: the report is kept, and a fresh run gives the same figures.
    assert sv.figures(sv.run_sim(path, tmp_path / "sim2")) == f


def test_figures_refuse_something_that_is_not_a_qoe_report() -> None:
    with pytest.raises(ValueError, match="qoe-report"):
        sv.figures({"schema": "swarmcast.sweep/1"})


def test_close_means_agree_and_the_latency_offset_is_half_a_segment() -> None:
    real = [fig(0.62, 1.30, live_latency=5.0), fig(0.66, 1.20, live_latency=5.1)]
    sims = [sim(0.60, 1.35), sim(0.64, 1.25, live_latency=6.2)]
    c = sv.compare(4, real, sims, sv.Tolerance(), segment_duration=2.0)
    assert c.agrees, c.failures
    assert c.latency_offset == 1.0
    # Without the offset the same latencies are 1 s apart: more than the tolerance.
    c = sv.compare(4, real, sims, sv.Tolerance(), segment_duration=0.0)
    assert not c.agrees and c.failures[0].startswith("live latency")


def test_each_tolerance_can_be_missed() -> None:
    t = sv.Tolerance()
    real = [fig()]
    assert "offload" in sv.compare(4, real, [sim(offload=0.66)], t, 2.0).failures[0]
    # 5 points of offload in requests: 0.2 per segment at N=4, 1.0 at N=20.
    assert sv.compare(4, real, [sim(req=1.45)], t, 2.0).agrees
    assert "origin requests" in sv.compare(4, real, [sim(req=1.55)], t, 2.0).failures[0]
    assert sv.compare(20, real, [sim(req=2.2)], t, 2.0).agrees
    assert "startup" in sv.compare(4, real, [sim(startup_p50=0.2)], t, 2.0).failures[0]
    assert "stalls" in sv.compare(4, real, [sim(stalls=1)], t, 2.0).failures[0]
    assert "stalls" in sv.compare(4, [fig(stalls=2)], [sim()], t, 2.0).failures[0]


def test_invalid_real_runs_are_left_out_and_said() -> None:
    t = sv.Tolerance()
    real = [fig(0.2, valid=False), fig(0.6)]
    c = sv.compare(4, real, [sim(0.6)], t, 2.0)
    assert c.failures == ["1 real run(s) invalid (generator overloaded)"]
    c = sv.compare(4, [fig(valid=False)], [sim()], t, 2.0)
    assert "no valid real run" in c.failures


def test_table_shows_both_sides_and_the_verdict() -> None:
    ok = sv.compare(2, [fig(0.40)], [sim(0.35), sim(0.38)], sv.Tolerance(), 2.0)
    bad = sv.compare(6, [fig(0.70)], [sim(0.50)], sv.Tolerance(), 2.0)
    text = sv.table([ok, bad])
    lines = text.splitlines()
    assert len(lines) == 4 and all(line.count("|") == 15 for line in lines)
    assert "| 2 | 1/1 / 2 | 40.0% | 36.5% [35.0%-38.0%] |" in lines[2]
    assert lines[2].endswith("agree |") and lines[3].endswith("DISAGREE |")


# ------------------------------------------------------------------ flags


def test_flags_parse_lists_and_ranges_and_refuse_nonsense(capsys: pytest.CaptureFixture) -> None:
    args = sv.parse_args(["--viewers", "2,4", "--sim-seeds", "1-4", "--real-seeds", "7"])
    assert args.viewers == [2, 4] and args.sim_seeds == [1, 2, 3, 4] and args.real_seeds == [7]
    for bad in (["--viewers", "two"], ["--viewers", "0"], ["--repeat", "0"]):
        with pytest.raises(SystemExit) as exc:
            sv.parse_args(bad)
        assert exc.value.code == 2
    assert "integers" in capsys.readouterr().err


def test_outside_the_namespace_it_refuses_to_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.delenv("SWARMCAST_NETNS", raising=False)
    assert sv.main(["--out", str(tmp_path)]) == 2
    assert "tests/netns-run" in capsys.readouterr().err


# ------------------------------------------------------------------ end to end (namespace)


@pytest.mark.netns
@pytest.mark.slow
def test_simulator_agrees_with_a_real_load_test_at_4_viewers(
    tiny_sample: Path, test_host: str, tmp_path: Path
) -> None:
    """One real 4-viewer run against the simulator's mean over 10 seeds, same scenario.

    The tolerance is the bench's (5 points of offload, ...). At 4 viewers the bench measured
    real runs at 66.4-68.4 % and the simulator at 63.6-67.7 % over 10 seeds (60 s runs), a gap
    of 1.8 points: one real run sits well inside 5 points. Not at 6-10 viewers, where the
    simulator's playlist-reload phase costs it 6-8 points (docs/simulation.md, Validation).
    """
    from swarmcast.runtime import run as run_loop

    rendition = "90p/index.m3u8"
    facts = run_loop(sv.measure_netns(test_host, tiny_sample, rendition, rounds=5))
    base = {"duration": 30, "join_spread": 5}
    real = None
    sims = []
    for seed in range(1, 11):
        sc = sv.scenario_for(base, facts, viewers=4, seed=seed, upload_mbps=4, max_peers=10)
        path = tmp_path / f"seed{seed}.json"
        path.write_text(json.dumps(sc))
        sims.append(sv.figures(sv.run_sim(path, tmp_path / f"sim{seed}")))
        if seed == 1:
            args = sv.parse_args(
                ["--media", str(tiny_sample), "--rendition", rendition, "--host", test_host]
            )
            real = sv.figures(sv.run_real(args, path, tmp_path / "real"))
    assert real is not None and real.valid, "the load generator was overloaded: rerun"
    c = sv.compare(4, [real], sims, sv.Tolerance(), segment_duration=2.0)
    print(sv.table([c]))
    assert c.agrees, c.failures
