"""The peer's side of the signalling protocol (``docs/signaling.md``) over an aiohttp WebSocket.

One :class:`SignalingClient` per peer process. It keeps one WebSocket to the server alive:
``hello`` → ``welcome`` (peer id, ICE servers, heartbeat), ``join``/``leave`` with request ids,
``signal`` relays, ``stats`` reports and ``ping`` heartbeats. When the socket drops it
reconnects with exponential backoff and jitter, and **rejoins every swarm it was in**: the
server assigns a new peer id on every connection (there is no resume), so the swarms must be
entered again under the new id. Peer-to-peer links made earlier do not depend on the socket
and keep working (they identify peers by their HELLO, not by signalling ids).

Everything the server says is delivered to a :class:`SignalingHandler`; nothing it sends can
raise into the caller: malformed messages are logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

log = logging.getLogger(__name__)


class SignalingError(Exception):
    """The server answered a request with an ``error`` message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        """The error code (``docs/signaling.md``, e.g. ``swarm-full``)."""


@dataclass
class SignalingClientConfig:
    """How to reach the signalling server and how hard to keep at it."""

    url: str
    """WebSocket URL of the server, e.g. ``ws://127.0.0.1:8790/ws``."""
    network: str | None = None
    """Locality hint sent in ``hello`` (peers with the same hint are sampled together)."""
    client_name: str = "swarmcast-py/0.1"
    """Free-form client name sent in ``hello`` (server logs)."""
    token: str | None = None
    """Join token, when the server requires one (``swarmcast token``)."""
    connect_timeout: float = 5.0
    """Seconds to open the WebSocket and get ``welcome``."""
    request_timeout: float = 5.0
    """Seconds to wait for the answer to ``join``/``leave``/``ping``."""
    reconnect_initial: float = 0.25
    """First wait before reconnecting, seconds; doubles on each failure in a row."""
    reconnect_max: float = 10.0
    """Longest wait between reconnection attempts, seconds."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError(f"signalling URL must be ws:// or wss://, got {self.url!r}")
        for name in ("connect_timeout", "request_timeout", "reconnect_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SignalingClientConfig.{name} must be > 0")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ValueError("reconnect_initial must be within (0, reconnect_max]")


@dataclass(frozen=True)
class Welcome:
    """What the server said in ``welcome`` on the current connection."""

    peer_id: str
    """Our peer id on this connection (a new one after every reconnect)."""
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    """``RTCConfiguration.iceServers`` to use for new peer connections."""
    heartbeat: float = 15.0
    """Seconds between pings when there is nothing else to say."""
    stats_interval: float = 10.0
    """Seconds between ``stats`` reports."""


@dataclass(frozen=True)
class Membership:
    """A swarm we are in, with what we joined it as (to rejoin after a reconnect)."""

    swarm: str
    """Swarm id."""
    role: str = "viewer"
    """``viewer`` or ``seed``."""
    capacity: int | None = None
    """Viewers a seed offers to serve."""


class SignalingHandler(Protocol):
    """Receives what the server tells us. Methods must not block (schedule work instead)."""

    def on_welcome(self, welcome: Welcome) -> None:
        """A (re)connection was welcomed: a new peer id, before swarms are rejoined."""

    def on_joined(self, swarm: str, peers: list[dict[str, Any]]) -> None:
        """We are in ``swarm`` (first join, rejoin or resample); ``peers`` is the sample."""

    def on_peer_joined(self, swarm: str, peer: str, role: str) -> None:
        """Someone joined a small swarm we are in."""

    def on_peer_left(self, swarm: str, peer: str) -> None:
        """Someone left a small swarm we are in."""

    def on_signal(self, sender: str, swarm: str, data: dict[str, Any]) -> None:
        """A WebRTC negotiation message from ``sender``."""

    def on_disconnected(self) -> None:
        """The WebSocket dropped; a reconnection is under way."""


class SignalingClient:
    """Keeps a signalling session alive for one peer (see the module docstring)."""

    def __init__(
        self,
        config: SignalingClientConfig,
        handler: SignalingHandler,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.handler = handler
        self.welcome: Welcome | None = None
        """The current connection's welcome, None while disconnected."""
        self.connections = 0
        """Connections welcomed so far (1 + reconnects)."""
        self._rng = rng or random.Random()
        self._memberships: dict[str, Membership] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 1
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def peer_id(self) -> str | None:
        """Our id on the current connection."""
        return self.welcome.peer_id if self.welcome else None

    @property
    def connected(self) -> bool:
        """True while a welcomed WebSocket is open."""
        return self._ready.is_set()

    @property
    def swarms(self) -> list[str]:
        """Swarms we are (or will be, after a reconnect) members of."""
        return list(self._memberships)

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        if self._task is None:
            self._session = aiohttp.ClientSession()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="signaling")

    async def wait_ready(self, timeout: float | None = None) -> Welcome:
        """Wait until a connection is welcomed; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()
        assert self.welcome is not None
        return self.welcome

    async def close(self) -> None:
        """Leave (by closing the socket) and stop reconnecting."""
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
        self._fail_pending(ConnectionError("signalling client closed"))

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self._session_once()
                failures = 0  # it was welcomed and ran: start the backoff afresh
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure leads to a reconnect, never a crash
                failures += 1
                log.warning("signalling %s: %s", self.config.url, exc or type(exc).__name__)
            if self._closing:
                break
            delay = self._backoff(failures)
            log.info("signalling: reconnecting in %.2fs", delay)
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        cfg = self.config
        base = min(cfg.reconnect_max, cfg.reconnect_initial * 2 ** max(failures - 1, 0))
        # Jitter: a restarted server must not see every peer come back in the same instant.
        return base * self._rng.uniform(0.5, 1.0)

    async def _session_once(self) -> None:
        cfg = self.config
        assert self._session is not None
        async with asyncio.timeout(cfg.connect_timeout):
            ws = await self._session.ws_connect(cfg.url, heartbeat=None, autoping=True)
        try:
            self._ws = ws
            hello: dict[str, Any] = {"type": "hello", "id": 0, "client": cfg.client_name}
            if cfg.network:
                hello["network"] = cfg.network
            await ws.send_str(json.dumps(hello))
            async with asyncio.timeout(cfg.connect_timeout):
                welcome = await self._receive_welcome(ws)
            self._on_welcome(welcome)
            heartbeat = self._spawn(self._heartbeat(ws, welcome.heartbeat))
            self._spawn(self._rejoin())
            try:
                await self._read(ws)
            finally:
                heartbeat.cancel()
        finally:
            self._ws = None
            was_ready = self._ready.is_set()
            self._ready.clear()
            self.welcome = None
            self._fail_pending(ConnectionError("signalling connection lost"))
            if not ws.closed:
                await ws.close()
            if was_ready and not self._closing:
                self.handler.on_disconnected()

    async def _receive_welcome(self, ws: aiohttp.ClientWebSocketResponse) -> Welcome:
        msg = await ws.receive()
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected welcome, got {msg.type.name} {msg.extra or ''}")
        data = _parse(msg.data)
        if data is None or data.get("type") != "welcome" or not isinstance(data.get("peer"), str):
            raise ConnectionError(f"expected welcome, got {str(msg.data)[:200]}")
        ice = data.get("ice_servers")
        return Welcome(
            peer_id=data["peer"],
            ice_servers=ice if isinstance(ice, list) else [],
            heartbeat=_positive(data.get("heartbeat"), 15.0),
            stats_interval=_positive(data.get("stats_interval"), 10.0),
        )

    def _on_welcome(self, welcome: Welcome) -> None:
        self.welcome = welcome
        self.connections += 1
        log.info("signalling: welcomed as %s (connection %d)", welcome.peer_id, self.connections)
        self._ready.set()
        self.handler.on_welcome(welcome)

    async def _rejoin(self) -> None:
        for membership in list(self._memberships.values()):
            try:
                await self._join(membership)
            except (SignalingError, ConnectionError, TimeoutError) as exc:
                log.warning("signalling: rejoining %s failed: %s", membership.swarm, exc)

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse, interval: float) -> None:
        # Any message is a heartbeat; a ping every interval is the simple, always-right choice.
        while not ws.closed:
            await asyncio.sleep(interval)
            await self._send({"type": "ping"})

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                data = _parse(msg.data)
                if data is None:
                    log.warning("signalling: dropping a non-JSON message")
                    continue
                try:
                    self._dispatch(data)
                except Exception:  # a handler bug must not take the session down
                    log.exception("signalling: handling %s failed", data.get("type"))
            elif msg.type is aiohttp.WSMsgType.ERROR:
                raise ConnectionError(f"WebSocket error: {ws.exception()}")
        if ws.close_code is not None and not self._closing:
            log.warning("signalling: server closed the connection (%s)", ws.close_code)

    # ------------------------------------------------------------------------------- inbound

    def _dispatch(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind in ("joined", "left", "pong"):
            self._resolve(data.get("id"), data)
        elif kind == "error":
            self._on_error(data)
        elif kind == "signal":
            sender, swarm, payload = data.get("from"), data.get("swarm"), data.get("data")
            if isinstance(sender, str) and isinstance(swarm, str) and isinstance(payload, dict):
                self.handler.on_signal(sender, swarm, payload)
        elif kind == "peer-joined":
            if isinstance(data.get("peer"), str) and isinstance(data.get("swarm"), str):
                self.handler.on_peer_joined(data["swarm"], data["peer"], str(data.get("role")))
        elif kind == "peer-left":
            if isinstance(data.get("peer"), str) and isinstance(data.get("swarm"), str):
                self.handler.on_peer_left(data["swarm"], data["peer"])
        else:
            log.debug("signalling: ignoring message type %r", kind)

    def _on_error(self, data: dict[str, Any]) -> None:
        code, message = str(data.get("code")), str(data.get("message", ""))
        ref = data.get("ref")
        if isinstance(ref, int) and ref in self._pending:
            self._pending.pop(ref).set_exception(SignalingError(code, message))
        elif code == "unknown-peer":
            log.debug("signalling: %s", message)  # normal churn: the target just left
        else:
            log.warning("signalling error %s: %s", code, message)

    def _resolve(self, ref: object, data: dict[str, Any]) -> None:
        if isinstance(ref, int):
            future = self._pending.pop(ref, None)
            if future is not None and not future.done():
                future.set_result(data)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: the requester may be gone

    # ------------------------------------------------------------------------------ outbound

    async def join(self, swarm: str, *, role: str = "viewer", capacity: int | None = None) -> None:
        """Join ``swarm`` (and rejoin it after every reconnect); the sample goes to
        :meth:`SignalingHandler.on_joined`. Raises :class:`SignalingError` if refused."""
        membership = Membership(swarm, role, capacity)
        self._memberships[swarm] = membership
        if self.connected:
            try:
                await self._join(membership)
            except SignalingError:
                del self._memberships[swarm]
                raise

    async def resample(self, swarm: str) -> None:
        """Leave and rejoin ``swarm`` to be handed a fresh sample of peers to connect to."""
        membership = self._memberships.get(swarm)
        if membership is None or not self.connected:
            return
        with contextlib.suppress(SignalingError):
            await self._request({"type": "leave", "swarm": swarm})
        await self._join(membership)

    async def leave(self, swarm: str) -> None:
        """Leave ``swarm`` (and do not rejoin it after a reconnect)."""
        if self._memberships.pop(swarm, None) is not None and self.connected:
            with contextlib.suppress(SignalingError, ConnectionError, TimeoutError):
                await self._request({"type": "leave", "swarm": swarm})

    async def _join(self, membership: Membership) -> None:
        message: dict[str, Any] = {"type": "join", "swarm": membership.swarm}
        if membership.role != "viewer":
            message["role"] = membership.role
        if membership.capacity is not None:
            message["capacity"] = membership.capacity
        if self.config.token:
            message["token"] = self.config.token
        try:
            answer = await self._request(message)
        except SignalingError as exc:
            if exc.code != "already-joined":
                raise
            return
        peers = answer.get("peers")
        peers = peers if isinstance(peers, list) else []
        valid = [p for p in peers if isinstance(p, dict) and isinstance(p.get("peer"), str)]
        self.handler.on_joined(membership.swarm, valid)

    def signal(self, to: str, swarm: str, data: Mapping[str, Any]) -> None:
        """Relay negotiation ``data`` (``{"sdp": ...}`` or ``{"candidate": ...}``) to ``to``."""
        self._spawn(self._send({"type": "signal", "to": to, "swarm": swarm, "data": dict(data)}))

    def send_stats(self, swarm: str, counters: Mapping[str, int]) -> None:
        """Report cumulative counters for ``swarm`` (``http_bytes``, ``p2p_bytes``, ...)."""
        if self.connected:
            self._spawn(self._send({"type": "stats", "swarm": swarm, **counters}))

    def send_report(self, swarm: str, peer: str, reason: str) -> None:
        """Report ``peer`` (its signalling id) for misbehaving in ``swarm`` (docs/signaling.md).

        ``reason`` is ``bad-data``, ``protocol``, ``flood`` or ``unresponsive``. Best effort:
        nothing is sent while disconnected, and the server answers nothing on success.
        """
        if self.connected:
            message = {"type": "report", "swarm": swarm, "peer": peer, "reason": reason}
            self._spawn(self._send(message))

    async def ping(self) -> float:
        """Round-trip time of a ping, seconds."""
        started = time.monotonic()
        await self._request({"type": "ping"})
        return time.monotonic() - started

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self.connected:
            raise ConnectionError("not connected to the signalling server")
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self._send({**message, "id": request_id})
        try:
            async with asyncio.timeout(self.config.request_timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            log.debug("signalling: not connected, dropping %s", message.get("type"))
            return
        try:
            await ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionError, RuntimeError) as exc:  # closing under us: the reader notices
            log.debug("signalling: send failed: %s", exc)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task


def _parse(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _positive(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default
