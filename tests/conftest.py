"""Shared fixtures: test network, tiny sample content, free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

#: True inside the private network namespace made by tests/netns-run (make test).
IN_NETNS = os.environ.get("SWARMCAST_NETNS") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``netns`` outside the namespace, saying how to run them."""
    if IN_NETNS:
        return
    skip = pytest.mark.skip(reason="needs the test network namespace: run via `make test`")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def test_host() -> str:
    """Address to bind test servers to: 198.18.0.1 inside the namespace, loopback outside."""
    return os.environ.get("SWARMCAST_TEST_HOST", "127.0.0.1") if IN_NETNS else "127.0.0.1"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated stream (MPEG-TS, two renditions, 2 s segments) shared by the session."""
    from swarmcast.samples.generate import Rendition, SampleConfig, generate

    out = tmp_path_factory.mktemp("sample") / "ts"
    config = SampleConfig(
        duration=12.0,
        segment_duration=2.0,
        fps=15,
        renditions=(Rendition("90p", 160, 90, 150), Rendition("180p", 320, 180, 300)),
    )
    return generate(out, config, progress=False)


@pytest.fixture(scope="session")
def tiny_sample_fmp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like :func:`tiny_sample`, with fMP4 segments and an init segment."""
    from swarmcast.samples.generate import Rendition, SampleConfig, generate

    out = tmp_path_factory.mktemp("sample") / "fmp4"
    config = SampleConfig(
        duration=6.0,
        segment_duration=2.0,
        fps=15,
        renditions=(Rendition("90p", 160, 90, 150),),
        fmp4=True,
    )
    return generate(out, config, progress=False)
