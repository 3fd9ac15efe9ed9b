"""SignalingConfig: defaults < SWARMCAST_* environment < flags, and clear errors."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from swarmcast.signaling.config import (
    ConfigError,
    SignalingConfig,
    add_config_arguments,
    config_from_args,
)


def parse(argv: list[str], env: dict[str, str]) -> SignalingConfig:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv), env)


def test_flags_override_environment_which_overrides_defaults() -> None:
    env = {
        "SWARMCAST_SAMPLE_SIZE": "7",
        "SWARMCAST_PORT": "9000",
        "SWARMCAST_TURN_URLS": "turn:a:3478, turn:b:3478",
        "SWARMCAST_TURN_SECRET": "x",
    }
    config = parse(["--port", "9100", "--stun-url", "stun:s:1", "--stun-url", "stun:t:2"], env)
    assert (config.port, config.sample_size) == (9100, 7)
    assert config.turn_urls == ("turn:a:3478", "turn:b:3478")
    assert config.stun_urls == ("stun:s:1", "stun:t:2")
    assert parse([], {}) == SignalingConfig()


@pytest.mark.parametrize(
    ("argv", "env", "match"),
    [
        (["--sample-size", "0"], {}, "sample_size must be > 0"),
        ([], {"SWARMCAST_PORT": "http"}, "SWARMCAST_PORT: cannot read 'http' as int"),
        (["--auth-secret", "short"], {}, "at least 16"),
        (["--turn-secret", "s"], {}, "no turn_urls"),
        (["--heartbeat-timeout", "1"], {}, "heartbeat_timeout must be >= heartbeat_interval"),
    ],
)
def test_bad_values_say_what_is_wrong(argv: list[str], env: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse(argv, env)


def test_signal_command_reports_config_errors_without_a_traceback() -> None:
    cmd = [sys.executable, "-m", "swarmcast.cli", "signal", "--max-errors", "-1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "max_errors must be > 0" in out.stderr
    assert "Traceback" not in out.stderr
    helped = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, timeout=60)
    assert "--turn-url" in helped.stdout and "SWARMCAST_REDIS_URL" in helped.stdout
