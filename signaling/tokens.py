"""HMAC-signed join tokens, and ``swarmcast token`` to mint them.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is compact
JSON ``{"swarms": [...], "role": "viewer"|"seed", "exp": <unix seconds>}``; ``"*"`` in
``swarms`` covers every swarm. The signature is HMAC-SHA256 over the payload's base64 text with
the server's ``auth_secret``. A seed token also admits viewers; a viewer token does not admit
seeds, so only holders of seed tokens can advertise capacity that samples prefer.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import sys
import time
from dataclasses import dataclass

from swarmcast.signaling.messages import MAX_TOKEN_LEN, ROLES, SWARM_ID_RE


class TokenError(ValueError):
    """The token is malformed, forged, expired or does not cover the request."""


@dataclass(frozen=True)
class JoinGrant:
    """What a verified token allows."""

    swarms: tuple[str, ...]
    """Swarm ids the token covers; ``("*",)`` covers every swarm."""
    role: str
    """Highest role granted: ``seed`` also allows ``viewer``."""
    expires: int
    """Unix time after which the token is refused."""

    def allows(self, swarm: str, role: str) -> bool:
        """True when this grant covers joining ``swarm`` as ``role``."""
        in_scope = "*" in self.swarms or swarm in self.swarms
        return in_scope and (role == "viewer" or self.role == "seed")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, payload_b64: str) -> str:
    return _b64(hmac.new(secret.encode(), payload_b64.encode(), hashlib.sha256).digest())


def mint(
    secret: str,
    swarms: list[str] | tuple[str, ...],
    ttl: float,
    role: str = "viewer",
    now: float | None = None,
) -> str:
    """A token for ``swarms`` (or ``["*"]``) valid ``ttl`` seconds from ``now``."""
    if role not in ROLES:
        raise TokenError(f"role must be one of {ROLES}")
    if not swarms or any(s != "*" and not SWARM_ID_RE.fullmatch(s) for s in swarms):
        raise TokenError("swarms must be '*' or ids matching ^[A-Za-z0-9_-]{1,64}$")
    if ttl <= 0:
        raise TokenError("ttl must be > 0 seconds")
    now = time.time() if now is None else now
    claims = {"swarms": list(swarms), "role": role, "exp": int(now + ttl)}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{payload}.{_sign(secret, payload)}"


def verify(secret: str, token: object, now: float) -> JoinGrant:
    """Check signature and expiry and return the grant; raise :class:`TokenError` otherwise."""
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LEN:
        raise TokenError("token must be a non-empty string")
    payload, sep, signature = token.partition(".")
    if not sep or not hmac.compare_digest(_sign(secret, payload), signature):
        raise TokenError("token signature does not match")
    try:
        claims = json.loads(_unb64(payload))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("token payload is not base64url JSON") from exc
    # The signature is ours, so a bad shape means a bug or a rotated format: still refuse.
    if not isinstance(claims, dict):
        raise TokenError("token payload is not an object")
    swarms, role, exp = claims.get("swarms"), claims.get("role"), claims.get("exp")
    if not isinstance(swarms, list) or not all(isinstance(s, str) for s in swarms):
        raise TokenError("token has no swarm list")
    if role not in ROLES or not isinstance(exp, int):
        raise TokenError("token has no valid role/exp")
    if exp <= now:
        raise TokenError("token expired")
    return JoinGrant(tuple(swarms), role, exp)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``swarmcast token``."""
    parser.add_argument(
        "--secret",
        help="HMAC secret shared with the server (default: env SWARMCAST_AUTH_SECRET)",
    )
    parser.add_argument(
        "--swarm", action="append", required=True, help="swarm id the token covers ('*': all)"
    )
    parser.add_argument("--ttl", type=float, default=3600.0, help="validity in seconds")
    parser.add_argument("--role", choices=ROLES, default="viewer", help="granted role")


def run(args: argparse.Namespace) -> int:
    """Print one token on stdout."""
    secret = args.secret or os.environ.get("SWARMCAST_AUTH_SECRET")
    if not secret:
        sys.stderr.write("swarmcast token: give --secret or set SWARMCAST_AUTH_SECRET\n")
        return 2
    try:
        sys.stdout.write(mint(secret, args.swarm, args.ttl, args.role) + "\n")
    except TokenError as exc:
        sys.stderr.write(f"swarmcast token: {exc}\n")
        return 2
    return 0
