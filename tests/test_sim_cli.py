"""``swarmcast simulate`` end to end: report folder, sweep plot, errors."""

from __future__ import annotations

import json

from swarmcast.cli import main


def test_run_writes_a_report_folder(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["simulate", "--viewers", "4", "--duration", "20", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["viewers"] == 4
    assert len(json.loads((out / "viewers.json").read_text())) == 4
    assert json.loads((out / "timeseries.json").read_text())
    assert "offload" in capsys.readouterr().out


def test_config_file_and_flags_combine(tmp_path):
    cfg = tmp_path / "s.json"
    assert main(["simulate", "--vod", "--seeds", "2", "--write-scenario", str(cfg)]) == 0
    out = tmp_path / "r"
    assert (
        main(
            [
                "simulate",
                "--config",
                str(cfg),
                "--viewers",
                "3",
                "--duration",
                "10",
                "--set",
                "live_delay_segments=4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    sc = json.loads((out / "report.json").read_text())["scenario"]
    assert (sc["live"], sc["seeds"], sc["viewers"]) == (False, 2, 3)
    assert sc["scheduler"] == {"live_delay_segments": 4}


def test_sweep_writes_a_plot(tmp_path):
    out = tmp_path / "s"
    argv = ["simulate", "--duration", "20", "--sweep", "viewers=2,4", "--out", str(out)]
    assert main(argv) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert [r["viewers"] for r in sweep["runs"]] == [2, 4]
    assert (out / "offload.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "run-01" / "report.json").exists()


def _without_wall_clock(report: dict) -> dict:
    for key in ("wall_seconds", "viewer_seconds_per_wall_second"):
        report["run"].pop(key)
    return report


def test_parallel_sweep_gives_the_sequential_results(tmp_path):
    base = ["simulate", "--duration", "30", "--sweep", "viewers=3,6,9", "--seed", "4"]
    assert main([*base, "--out", str(tmp_path / "seq")]) == 0
    assert main([*base, "--jobs", "2", "--out", str(tmp_path / "par")]) == 0
    for i in range(3):
        seq, par = (
            _without_wall_clock(
                json.loads((tmp_path / m / f"run-{i:02d}" / "report.json").read_text())
            )
            for m in ("seq", "par")
        )
        assert par == seq and par["scenario"]["viewers"] == 3 * (i + 1)
        for name in ("viewers.json", "timeseries.json"):
            assert (tmp_path / "par" / f"run-{i:02d}" / name).read_text() == (
                tmp_path / "seq" / f"run-{i:02d}" / name
            ).read_text()
    sweeps = [json.loads((tmp_path / m / "sweep.json").read_text()) for m in ("seq", "par")]
    strip = [
        {k: v for k, v in r.items() if k != "viewer_seconds_per_wall_second"}
        for r in sweeps[0]["runs"]
    ]
    assert strip == [
        {k: v for k, v in r.items() if k != "viewer_seconds_per_wall_second"}
        for r in sweeps[1]["runs"]
    ]
    assert main([*base, "--jobs", "0", "--out", str(tmp_path / "bad")]) == 2


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["simulate", "--nat-fail", "2", "--out", str(tmp_path)]) == 2
    assert "nat_fail" in capsys.readouterr().err
    assert main(["simulate", "--sweep", "colour=1,2", "--out", str(tmp_path)]) == 2
    assert "not a scenario field" in capsys.readouterr().err
    assert main(["simulate", "--set", "live_delay_segments", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--config", str(tmp_path / "none.json")]) == 2
