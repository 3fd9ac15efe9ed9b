"""`swarmcast demo` (what `make demo` runs): generates the sample once, serves it, prints URLs."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import m3u8
import pytest


def _start_demo(media: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swarmcast.cli",
            "demo",
            "--media",
            str(media),
            "--duration",
            "4",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    output = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        match = re.search(r"live : (http://\S+/live/master\.m3u8)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    pytest.fail("demo printed no live URL:\n" + "".join(output))


@pytest.mark.slow
def test_demo_generates_once_and_serves_live(tmp_path: Path):
    media = tmp_path / "media"
    proc, url = _start_demo(media)
    try:
        master = m3u8.loads(urllib.request.urlopen(url, timeout=10).read().decode())
        assert master.is_variant and len(master.playlists) == 3
        media_url = url.rsplit("/", 1)[0] + "/" + master.playlists[0].uri
        live = m3u8.loads(urllib.request.urlopen(media_url, timeout=10).read().decode())
        assert not live.is_endlist and live.segments
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    stamp = (media / "sample.json").stat().st_mtime
    proc, _ = _start_demo(media)  # second start reuses the cached sample
    proc.terminate()
    proc.wait(timeout=10)
    assert (media / "sample.json").stat().st_mtime == stamp
