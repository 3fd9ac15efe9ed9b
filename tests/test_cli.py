"""The `swarmcast` command front: help output, subcommand discovery, clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from swarmcast.cli import COMMANDS, _find_spec_safe, main

SWARMCAST = [sys.executable, "-m", "swarmcast.cli"]
PRESENT = [c.name for c in COMMANDS if _find_spec_safe(c.module)]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWARMCAST, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_lists_every_present_subcommand():
    result = _run("--help")
    assert result.returncode == 0
    for name in PRESENT:
        assert name in result.stdout
    assert {"demo", "sample", "origin"} <= set(PRESENT)


@pytest.mark.parametrize("name", PRESENT)
def test_each_subcommand_has_help(name: str):
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: swarmcast " + name in result.stdout


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error():
    result = _run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_origin_on_missing_folder_says_what_to_do(tmp_path: Path):
    result = _run("origin", str(tmp_path / "nope"), "--port", "0")
    assert result.returncode == 2
    assert "swarmcast sample" in result.stderr
    assert "Traceback" not in result.stderr


def test_origin_rejects_bad_rates():
    result = _run("origin", ".", "--bandwidth", "fast")
    assert result.returncode == 2
    assert "not a rate" in result.stderr
