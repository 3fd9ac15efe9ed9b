"""TURN REST credentials against a real coturn (``use-auth-secret``) on loopback."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from aioice import turn as aioice_turn
from signaling_helpers import free_port, wait_port

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.turn import ice_servers, turn_credentials

SECRET = "coturn-shared-secret"


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("turnserver (coturn) is not installed (apt-get install coturn)")
    port = free_port()
    relay_lo = 40000 + (port % 2000) * 10
    log = tmp_path_factory.mktemp("coturn") / "turn.log"
    proc = subprocess.Popen(
        [
            binary,
            "-n",
            "--listening-ip=127.0.0.1",
            f"--listening-port={port}",
            "--relay-ip=127.0.0.1",
            f"--min-port={relay_lo}",
            f"--max-port={relay_lo + 9}",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=test",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-tcp-relay",
            "--allow-loopback-peers",
            f"--log-file={log}",
            "--simple-log",
            "--pidfile",
            str(log.with_suffix(".pid")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, udp=True)
        yield port
    finally:
        proc.terminate()
        proc.wait(5)


async def allocate(port: int, username: str, password: str) -> tuple[str, int]:
    transport, _ = await aioice_turn.create_turn_endpoint(
        asyncio.DatagramProtocol, ("127.0.0.1", port), username, password, lifetime=60
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


def test_credentials_format() -> None:
    user, cred = turn_credentials("k", "peer-1", now=1000.4, ttl=60)
    assert user == "1060:peer-1"
    # printf 1060:peer-1 | openssl dgst -sha1 -hmac k -binary | base64
    assert cred == "TCLG9QR32A8/BJergzT4ryAvMmg="


async def test_coturn_allocates_with_issued_credentials(coturn: int) -> None:
    config = SignalingConfig(turn_urls=(f"turn:127.0.0.1:{coturn}",), turn_secret=SECRET)
    (server,) = ice_servers(config, "peerAAAA", time.time())
    relayed = await asyncio.wait_for(allocate(coturn, server["username"], server["credential"]), 10)
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0


@pytest.mark.parametrize("case", ["wrong-secret", "expired"])
async def test_coturn_refuses_bad_credentials(coturn: int, case: str) -> None:
    if case == "wrong-secret":
        user, cred = turn_credentials("not-the-secret", "peerAAAA", time.time(), 600)
    else:
        user, cred = turn_credentials(SECRET, "peerAAAA", time.time() - 600, 60)
    with pytest.raises(aioice_turn.stun.TransactionFailed) as info:
        await asyncio.wait_for(allocate(coturn, user, cred), 10)
    assert "401" in str(info.value)
