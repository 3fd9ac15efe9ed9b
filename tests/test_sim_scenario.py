"""Scenario format: JSON round trip, distributions, clear errors."""

from __future__ import annotations

import json
import random

import pytest

from swarmcast.sim.scenario import Mixture, Scenario, ScenarioError


def test_json_round_trip(tmp_path):
    sc = Scenario(viewers=3, upload=Mixture.parse("0.2:0,0.8:1-2"), scheduler={"bandwidth": {}})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sc.to_json()))
    assert Scenario.load(path) == sc


def test_mixture_draws_stay_in_their_ranges_and_weights_hold():
    mix = Mixture.parse("0.25:0, 0.75:8-16")
    rng = random.Random(3)
    draws = [mix.draw_bps(rng) for _ in range(4000)]
    zeros = sum(1 for d in draws if d == 0)
    assert all(d == 0 or 1e6 <= d <= 2e6 for d in draws)
    assert 0.22 < zeros / len(draws) < 0.28
    assert mix.mean_bps() == pytest.approx(0.75 * 12e6 / 8)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"viewers": 0}, "viewers"),
        ({"nat_fail": 1.5}, "nat_fail"),
        ({"bogus": 1}, "unknown scenario keys"),
        ({"upload": "1:4-2"}, "low <= high"),
        ({"upload": "fast"}, "WEIGHT:LOW-HIGH"),
        ({"scheduler": {"live_delay_segments": 0}}, "live_delay_segments"),
        ({"scheduler": {"nope": 1}}, "nope"),
        ({"upload_config": {"max_concurrent": 0}}, "max_concurrent"),
        ({"version": 9}, "version"),
        ({"connect_time": [2, 1]}, "connect_time"),
        ({"player_tick": 0}, "player_tick"),
        ({"viewers": "many"}, "wrong type"),
        ({"viewers": 2.5}, "whole numbers"),
        ({"scheduler": 5}, "object of overrides"),
        ({"connect_time": ["a", 1]}, "connect_time"),
        ({"upload": [[1, "x", 2]]}, "must be numbers"),
    ],
)
def test_bad_values_say_what_is_wrong(data, message):
    with pytest.raises(ScenarioError, match=message):
        Scenario.from_json(data)


def test_unreadable_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        Scenario.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        Scenario.load(bad)
