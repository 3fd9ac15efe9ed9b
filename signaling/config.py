"""Configuration of the signalling server: one typed dataclass, loaded from CLI flags and env.

Precedence is defaults < ``SWARMCAST_<FIELD>`` environment variables < command-line flags, so a
container can be configured by its environment and a developer can override one knob by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_PREFIX = "SWARMCAST_"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or out of range; the message says which."""


@dataclass
class SignalingConfig:
    """Everything the signalling server can be told. Defaults suit ``make demo`` on one machine."""

    host: str = "127.0.0.1"
    """Address the HTTP/WebSocket server binds to."""
    port: int = 8790
    """TCP port of the HTTP/WebSocket server (0 picks a free one)."""
    sample_size: int = 20
    """Most peers handed to a joining peer in ``joined.peers``."""
    max_message_bytes: int = 65536
    """Largest accepted WebSocket message; an aiortc offer with every candidate fits in 16 KiB."""
    rate_per_second: float = 50.0
    """Sustained messages per second one connection may send (token bucket refill rate)."""
    rate_burst: int = 200
    """Messages one connection may send in a burst (token bucket size); trickle ICE is bursty."""
    max_swarms_per_peer: int = 8
    """Most swarms one connection may be a member of at the same time."""
    max_peers_per_swarm: int = 10000
    """Most members of one swarm on this node; further joins get ``swarm-full``."""
    max_connections: int = 100000
    """Most WebSocket connections this node accepts; above it upgrades get HTTP 503."""
    max_connections_per_ip: int = 64
    """Most concurrent connections from one source address; above it upgrades get HTTP 429."""
    report_threshold: int = 3
    """Distinct members that must report a peer before it is left out of samples (0: never)."""
    max_errors: int = 10
    """Bad messages a connection may send before it is closed (code 4000)."""
    max_send_buffer: int = 1 << 20
    """Bytes queued towards a peer that does not read before it is dropped as a slow consumer."""
    heartbeat_interval: float = 15.0
    """Seconds between the client's pings, told to clients in ``welcome``."""
    heartbeat_timeout: float = 45.0
    """Seconds of silence after which a connection is closed (code 4002) and cleaned up."""
    hello_timeout: float = 10.0
    """Seconds a new connection has to send ``hello`` before it is closed (code 4002)."""
    stats_interval: float = 10.0
    """Seconds between a peer's ``stats`` reports, told to clients in ``welcome``."""
    tick_interval: float = 1.0
    """Seconds between housekeeping passes (timeouts, Redis heartbeats)."""
    auth_secret: str | None = None
    """HMAC secret of join tokens; when set, every ``join`` needs a valid token for its swarm."""
    allowed_origins: tuple[str, ...] = ()
    """Browser ``Origin`` values allowed to upgrade (empty: any). Clients without Origin pass."""
    trusted_proxies: tuple[str, ...] = ()
    """Networks (CIDR) whose ``X-Forwarded-For`` header is believed for the client address."""
    stun_urls: tuple[str, ...] = ()
    """STUN URLs handed to clients, e.g. ``stun:stun.example.net:3478``."""
    turn_urls: tuple[str, ...] = ()
    """TURN URLs handed to clients, e.g. ``turn:turn.example.net:3478?transport=udp``."""
    turn_secret: str | None = None
    """coturn ``static-auth-secret``; with it each client gets time-limited TURN credentials."""
    turn_ttl: int = 6 * 3600
    """Seconds TURN credentials stay valid."""
    redis_url: str | None = None
    """Redis URL (``redis://host:port/db``) to share swarms between several signalling nodes."""
    node_id: str | None = None
    """Name of this node in Redis (default: random); must be unique among live nodes."""
    node_ttl: float = 10.0
    """Seconds after its last Redis heartbeat a node is declared dead and its peers dropped."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` when a value is out of range."""
        positive = (
            "sample_size",
            "max_message_bytes",
            "rate_per_second",
            "rate_burst",
            "max_swarms_per_peer",
            "max_peers_per_swarm",
            "max_connections",
            "max_connections_per_ip",
            "max_errors",
            "max_send_buffer",
            "heartbeat_interval",
            "heartbeat_timeout",
            "hello_timeout",
            "stats_interval",
            "tick_interval",
            "turn_ttl",
            "node_ttl",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.report_threshold < 0:
            raise ConfigError(f"report_threshold must be >= 0, got {self.report_threshold}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535, got {self.port}")
        if self.heartbeat_timeout < self.heartbeat_interval:
            raise ConfigError("heartbeat_timeout must be >= heartbeat_interval")
        if self.max_message_bytes < 1024:
            raise ConfigError("max_message_bytes must be >= 1024 (an SDP offer does not fit)")
        if self.auth_secret is not None and len(self.auth_secret) < 16:
            raise ConfigError("auth_secret must be at least 16 characters")
        if self.turn_secret is not None and not self.turn_urls:
            raise ConfigError("turn_secret is set but no turn_urls: add --turn-url")


def _public_fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(SignalingConfig) if not f.name.startswith("_")]


def _base_type(annotation: Any) -> type:
    """``int`` for ``int``, ``str`` for ``str | None``, ``tuple`` for ``tuple[str, ...]``."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    return origin or annotation


def _parse(name: str, kind: type, raw: str) -> Any:
    try:
        if kind is tuple:
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: cannot read {raw!r} as {kind.__name__}") from exc


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(SignalingConfig)


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Values given as ``SWARMCAST_<FIELD>`` environment variables (e.g. SWARMCAST_REDIS_URL)."""
    environ = os.environ if environ is None else environ
    hints = _hints()
    out: dict[str, Any] = {}
    for f in _public_fields():
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is not None and raw != "":
            out[f.name] = _parse(ENV_PREFIX + f.name.upper(), _base_type(hints[f.name]), raw)
    return out


#: Repeatable flags read better in the singular: ``--turn-url A --turn-url B``.
_SINGULAR_FLAGS = {
    "allowed_origins": "--allowed-origin",
    "trusted_proxies": "--trusted-proxy",
    "stun_urls": "--stun-url",
    "turn_urls": "--turn-url",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` flag per config field; tuple fields may be repeated."""
    hints = _hints()
    for f in _public_fields():
        kind = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        doc = _field_docs().get(f.name, "")
        env = ENV_PREFIX + f.name.upper()
        help_text = f"{doc} [env {env}, default {f.default!r}]"
        if kind is tuple:
            singular = _SINGULAR_FLAGS.get(f.name, flag)
            parser.add_argument(singular, dest=f.name, action="append", help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> SignalingConfig:
    """Merge defaults, environment and parsed flags into a validated config."""
    values = env_overrides(environ)
    for f in _public_fields():
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return SignalingConfig(**values)


def _field_docs() -> dict[str, str]:
    """Field docstrings, read from the source so ``--help`` and the code never disagree."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(SignalingConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    return docs
