"""ICE server lists for clients, with TURN REST-API credentials (coturn ``use-auth-secret``).

The scheme (draft-uberti-behave-turn-rest, implemented by coturn): the username is
``"<expiry unix time>:<peer id>"`` and the password is ``base64(HMAC-SHA1(secret, username))``.
The TURN server recomputes the password from the shared secret and refuses expired usernames,
so the signalling server never talks to the TURN server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from swarmcast.signaling.config import SignalingConfig


def turn_credentials(secret: str, peer_id: str, now: float, ttl: int) -> tuple[str, str]:
    """``(username, credential)`` valid until ``now + ttl``."""
    username = f"{int(now) + ttl}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(config: SignalingConfig, peer_id: str, now: float) -> list[dict[str, Any]]:
    """The ``RTCIceServer`` list for one client (empty when nothing is configured)."""
    servers: list[dict[str, Any]] = []
    if config.stun_urls:
        servers.append({"urls": list(config.stun_urls)})
    if config.turn_urls:
        entry: dict[str, Any] = {"urls": list(config.turn_urls)}
        if config.turn_secret:
            entry["username"], entry["credential"] = turn_credentials(
                config.turn_secret, peer_id, now, config.turn_ttl
            )
        servers.append(entry)
    return servers
