"""The compiled build of the simulator's hot modules (swarmcast.accel): when it is used, when it
is refused, and that it makes exactly the decisions of the pure-Python source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmcast import accel

ROOT = Path(__file__).resolve().parents[1]

#: Prints the accel status, where the scheduler came from, and a digest of a small run.
_PROBE = """
import hashlib, json, sys
from swarmcast import accel
from swarmcast.peer import scheduler
from swarmcast.sim.cli import run_scenario
from swarmcast.sim.scenario import Scenario

digest = hashlib.sha256()
def trace(viewer, now, actions):
    if actions:
        digest.update(f"{viewer}@{now!r}:{actions!r}\\n".encode())
result = run_scenario(Scenario(**json.loads(sys.argv[1])), trace=trace)
run = result["report"]["run"]
for key in ("wall_seconds", "viewer_seconds_per_wall_second", "compiled", "engine"):
    run.pop(key)
print(json.dumps({
    "active": accel.status().active,
    "reason": accel.status().reason,
    "scheduler_file": scheduler.__file__,
    "digest": digest.hexdigest(),
    "result": result,
}))
"""

#: Live with churn, a seed and two election copies; VOD with a player tick and NAT failures.
_SCENARIOS = [
    {"viewers": 60, "duration": 60, "session": 30.0, "seeds": 1, "seed": 7,
     "scheduler": {"election_copies": 2}},
    {"viewers": 40, "duration": 80, "live": False, "vod_length": 120, "player_tick": 0.25,
     "nat_fail": 0.3, "seed": 3},
]  # fmt: skip


def _probe(scenario: dict, *, compiled: bool) -> dict:
    env = dict(os.environ)
    env[accel.ENV] = "1" if compiled else "0"
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(scenario)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    return json.loads(out.stdout)


def test_switch_off_gives_pure_python():
    run = _probe({"viewers": 5, "duration": 10}, compiled=False)
    assert run["active"] is False
    assert run["reason"] == f"{accel.ENV}=0"
    assert run["scheduler_file"].endswith("scheduler.py")


@pytest.mark.parametrize("scenario", _SCENARIOS, ids=["live-churn-seed", "vod-tick-nat"])
def test_compiled_decides_exactly_as_pure_python(scenario):
    paths, reason = accel.check(accel.accel_dir())
    if paths is None:
        pytest.skip(f"no fresh compiled build: {reason}")
    compiled = _probe(scenario, compiled=True)
    pure = _probe(scenario, compiled=False)
    assert compiled["active"], compiled["reason"]
    assert compiled["scheduler_file"].endswith(".so")
    assert not pure["active"]
    assert compiled["digest"] == pure["digest"]  # every action of every poll, with its time
    assert compiled["result"] == pure["result"]  # report, per-viewer rows, time series
    summary = compiled["result"]["report"]["summary"]
    assert summary["sessions"] >= scenario["viewers"] and summary["offload"] > 0.2  # a real run


def _fake_build(folder: Path, *, abi: str | None = None, sha: str | None = None) -> None:
    modules = {
        name: {
            "path": f"{name.replace('.', '/')}.so",
            "sha256": sha or accel.sha256(accel.source_path(name)),
        }
        for name in accel.MODULES
    }
    manifest = {
        "abi": abi or accel.abi(),
        "mypy": "test",
        "group": {"name": f"{accel.GROUP}__mypyc", "path": "group.so"},
        "modules": modules,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / accel.MANIFEST).write_text(json.dumps(manifest))


def test_check_refuses_missing_or_unreadable_builds(tmp_path):
    paths, reason = accel.check(tmp_path / "nothing")
    assert paths is None and "not built" in reason
    (tmp_path / accel.MANIFEST).write_text("{not json")
    paths, reason = accel.check(tmp_path)
    assert paths is None and "unreadable" in reason


def test_check_refuses_another_interpreter(tmp_path):
    _fake_build(tmp_path, abi="cpython-27.so")
    paths, reason = accel.check(tmp_path)
    assert paths is None and "cpython-27.so" in reason


def test_check_refuses_a_build_of_older_sources(tmp_path):
    _fake_build(tmp_path, sha="0" * 64)
    paths, reason = accel.check(tmp_path)
    assert paths is None
    assert f"{accel.MODULES[0]} changed since the build" in reason


def test_check_refuses_an_incomplete_build(tmp_path):
    _fake_build(tmp_path)  # hashes match, but no extension file exists
    paths, reason = accel.check(tmp_path)
    assert paths is None and "incomplete" in reason


def test_check_accepts_a_complete_fresh_build(tmp_path):
    _fake_build(tmp_path)
    for rel in ["group.so", *(f"{n.replace('.', '/')}.so" for n in accel.MODULES)]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    paths, reason = accel.check(tmp_path)
    assert paths is not None, reason
    assert set(paths) == {*accel.MODULES, f"{accel.GROUP}__mypyc"}


def test_stale_build_falls_back_to_pure_python(tmp_path):
    _fake_build(tmp_path, sha="0" * 64)
    env = dict(os.environ, **{accel.ENV_DIR: str(tmp_path), accel.ENV: "1"})
    out = subprocess.run(
        [sys.executable, "-c", "import swarmcast.accel as a, swarmcast.peer.scheduler as s;"
         "print(a.status().describe()); print(s.__file__)"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    status, where = out.stdout.splitlines()
    assert status.startswith("pure Python (") and "changed since the build" in status
    assert where.endswith("scheduler.py")
