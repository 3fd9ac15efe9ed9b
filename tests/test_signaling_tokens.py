"""Join tokens: round trip, tampering, expiry, scope, and the ``swarmcast token`` command."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from swarmcast.signaling.tokens import TokenError, mint, verify

SECRET = "0123456789abcdef-secret"


def test_round_trip_and_scope() -> None:
    grant = verify(SECRET, mint(SECRET, ["a", "b"], 60, "seed", now=1000), now=1059)
    assert grant.swarms == ("a", "b") and grant.expires == 1060
    assert (
        grant.allows("a", "seed")
        and grant.allows("b", "viewer")
        and not grant.allows("c", "viewer")
    )
    viewer = verify(SECRET, mint(SECRET, ["*"], 60, now=1000), now=1000)
    assert viewer.allows("any", "viewer") and not viewer.allows("any", "seed")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature bit flips
        lambda t: "e30" + t[t.index(".") :],  # payload swapped for {}
        lambda t: t.replace(".", ""),
        lambda t: "",
        lambda t: 42,
        lambda t: "x" * 5000,
    ],
)
def test_tampered_tokens_are_refused(mangle) -> None:
    with pytest.raises(TokenError):
        verify(SECRET, mangle(mint(SECRET, ["a"], 60, now=1000)), now=1000)


def test_expired_and_foreign_tokens_are_refused() -> None:
    token = mint(SECRET, ["a"], 60, now=1000)
    with pytest.raises(TokenError, match="expired"):
        verify(SECRET, token, now=1060)
    with pytest.raises(TokenError, match="signature"):
        verify("some-other-secret!", token, now=1000)


def test_mint_rejects_bad_arguments() -> None:
    for swarms, ttl, role in (
        (["bad id"], 60, "viewer"),
        ([], 60, "viewer"),
        (["a"], 0, "viewer"),
        (["a"], 60, "admin"),
    ):
        with pytest.raises(TokenError):
            mint(SECRET, swarms, ttl, role)


def test_token_command_prints_a_token_the_server_accepts() -> None:
    cmd = [sys.executable, "-m", "swarmcast.cli", "token", "--swarm", "live-1", "--role", "seed"]
    out = subprocess.run([*cmd, "--secret", SECRET], capture_output=True, text=True, check=True)

    assert verify(SECRET, out.stdout.strip(), time.time()).allows("live-1", "seed")
    bare = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert bare.returncode == 2 and "SWARMCAST_AUTH_SECRET" in bare.stderr
