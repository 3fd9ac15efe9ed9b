"""The aiohttp layer of the signalling server: sockets in, :class:`SwarmHub` decisions out.

``create_app(config)`` returns an ``aiohttp.web.Application`` with ``/ws`` (the signalling
WebSocket), ``/healthz``, ``/metrics`` and ``/stats``; later features add their routes to the
same app. Everything this file does is I/O: upgrade checks (origin, per-IP and total connection
limits), the read loop, delivery of the hub's outputs, housekeeping ticks and the optional
Redis bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from aiohttp import WSMessage, WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from swarmcast.signaling import messages as m
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.hub import Close, MemberChange, Output, Send, SwarmHub
from swarmcast.signaling.metrics import SignalingMetrics

log = logging.getLogger(__name__)

#: One received frame in 16 is timed for the relay latency histogram.
LATENCY_SAMPLE_MASK = 15


class Bus(Protocol):
    """What the server needs from a multi-node adapter (see redis_bus.RedisBus)."""

    node_id: str

    async def start(self, server: SignalingServer) -> None:
        """Connect, load remote membership, start listening."""

    async def stop(self) -> None:
        """Withdraw this node's members and disconnect."""

    def relay(self, node: str, peer: str, data: bytes) -> None:
        """Forward an encoded message to ``peer`` on ``node``."""

    def member_change(self, change: MemberChange) -> None:
        """Publish a local join or leave."""

    async def tick(self, now: float) -> list[Output]:
        """Heartbeat this node, detect dead ones; outputs for the hub's local peers."""

    async def other_report_totals(self) -> dict[str, list[int]]:
        """Sum of the other live nodes' stats report totals, per swarm."""


class SignalingServer:
    """Per-app state: the hub, open sockets, counters per source address, the optional bus."""

    def __init__(self, config: SignalingConfig, bus: Bus | None = None) -> None:
        self.config = config
        self.bus = bus
        self.hub = SwarmHub(config, node_id=bus.node_id if bus else None, replicate=bus is not None)
        self.metrics = SignalingMetrics(self.hub)
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.transports: dict[str, asyncio.Transport] = {}
        self.per_ip: dict[str, int] = {}
        self._trusted = [ipaddress.ip_network(n, strict=False) for n in config.trusted_proxies]
        self._closing: dict[str, asyncio.Task[Any]] = {}
        self._seq = 0  # frames received, for latency sampling

    # ---------------------------------------------------------------------- upgrade

    def client_address(self, request: web.Request) -> str:
        """Source address; ``X-Forwarded-For`` is believed only from trusted proxies."""
        remote = request.remote or "?"
        if not self._trusted or not self._is_trusted(remote):
            return remote
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            if not self._is_trusted(hop):
                return hop
        return remote

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._trusted)

    def _refuse(self, reason: str, status: int, text: str) -> web.Response:
        self.metrics.rejected.labels(reason).inc()
        return web.Response(status=status, text=text + "\n")

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: check the upgrade, then run the connection until it ends."""
        origin = request.headers.get("Origin")
        if self.config.allowed_origins and origin and origin not in self.config.allowed_origins:
            return self._refuse("origin", 403, f"origin {origin[:100]!r} is not allowed")
        if len(self.sockets) >= self.config.max_connections:
            return self._refuse("capacity", 503, "server is at its connection limit")
        address = self.client_address(request)
        if self.per_ip.get(address, 0) >= self.config.max_connections_per_ip:
            return self._refuse("per-ip", 429, "too many connections from your address")
        # timeout bounds the wait for the client's close reply: a peer that stopped reading
        # must not hold a shutdown or a slow-consumer close for aiohttp's default 10 s.
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_bytes, autoping=True, compress=False, timeout=2.0
        )
        self.per_ip[address] = self.per_ip.get(address, 0) + 1
        try:
            await ws.prepare(request)
            await self._run(ws, request.transport, address)
        finally:
            left = self.per_ip.pop(address) - 1
            if left:
                self.per_ip[address] = left
        return ws

    # ------------------------------------------------------------------- connection

    async def _run(
        self, ws: web.WebSocketResponse, transport: asyncio.Transport | None, address: str
    ) -> None:
        hub = self.hub
        peer = hub.connect(time.time(), address)
        self.sockets[peer] = ws
        if transport is not None:
            self.transports[peer] = transport
            # Pause (and so block senders in drain) only well past the slow-consumer limit:
            # send_local drops a peer over max_send_buffer before its transport would pause.
            transport.set_write_buffer_limits(high=2 * self.config.max_send_buffer)
        try:
            # One call per frame: nothing of a handled message (frame, reply bytes) stays
            # referenced from this frame while the connection idles, which on 50k idle
            # connections is worth ~8 KB each.
            while await self._handle(peer, await ws.receive()):
                pass
        finally:
            self.sockets.pop(peer, None)
            self.transports.pop(peer, None)
            await self.deliver(hub.disconnect(peer, time.time()))
            closing = self._closing.get(peer)
            if closing is not None:  # the server closed it with a code: let that finish
                with contextlib.suppress(Exception):
                    await asyncio.shield(closing)
            elif not ws.closed:
                await ws.close()

    async def _handle(self, peer: str, msg: WSMessage) -> bool:
        """Handle one frame; False when the read loop must end."""
        hub = self.hub
        if msg.type is WSMsgType.TEXT:
            self._seq += 1
            if self._seq & LATENCY_SAMPLE_MASK:
                out = hub.receive(peer, msg.data, time.time())
                if out:
                    await self.deliver(out)
            else:  # a sampled message: time it (Histogram.observe costs a lock and a search)
                t0 = time.perf_counter()
                out = hub.receive(peer, msg.data, time.time())
                if out:
                    await self.deliver(out)
                    if len(out) == 1 and out[0].peer != peer:
                        self.metrics.relay_latency.observe(time.perf_counter() - t0)
        elif msg.type is WSMsgType.BINARY:
            await self.deliver(hub.reject_binary(peer, time.time()))
        else:  # CLOSE, CLOSING, CLOSED or ERROR (e.g. 1009 message too big)
            return False
        return peer in hub.connections  # False when the hub closed it

    async def deliver(self, outputs: list[Output]) -> None:
        """Carry out the hub's decisions."""
        for out in outputs:
            if type(out) is Send:
                if out.node is None or self.bus is None or out.node == self.bus.node_id:
                    await self.send_local(out.peer, out.data)
                else:
                    self.metrics.remote_relays.inc()
                    self.bus.relay(out.node, out.peer, out.data)
            elif type(out) is Close:
                self._close_socket(out.peer, out.code, out.reason)
            elif self.bus is not None:
                self.bus.member_change(out)

    async def send_local(self, peer: str, data: bytes) -> None:
        """Write one text frame to a local peer; drop it when it no longer reads."""
        ws = self.sockets.get(peer)
        if ws is None or ws.closed:
            return
        transport = self.transports.get(peer)
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() > self.config.max_send_buffer:
            log.info("dropping slow consumer %s", peer)
            await self.deliver(self.hub.disconnect(peer, time.time()))
            self._close_socket(peer, m.CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        try:
            await ws.send_frame(data, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError) as exc:
            log.debug("send to %s failed: %s", peer, exc)

    def _close_socket(self, peer: str, code: int, reason: str) -> None:
        """Close without waiting: the caller is often another peer's read loop."""
        ws = self.sockets.pop(peer, None)
        self.transports.pop(peer, None)
        self.metrics.closes.labels(str(code)).inc()
        if ws is None or ws.closed:
            return
        task = asyncio.ensure_future(ws.close(code=code, message=reason.encode()[:120]))
        self._closing[peer] = task
        task.add_done_callback(lambda _: self._closing.pop(peer, None))

    # ------------------------------------------------------------------ lifecycle

    async def ticker(self) -> None:
        """Housekeeping: timeouts and, with a bus, node heartbeats."""
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                now = time.time()
                await self.deliver(self.hub.tick(now))
                if self.bus is not None:
                    await self.deliver(await self.bus.tick(now))
            except Exception:  # keep ticking: one bad pass must not stop timeouts for good
                log.exception("housekeeping pass failed")

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: start the bus and ticker; on exit, close every socket."""
        if self.bus is not None:
            await self.bus.start(self)
        task = asyncio.create_task(self.ticker())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.bus is not None:
            await self.bus.stop()

    async def shutdown(self, app: web.Application) -> None:
        """aiohttp on_shutdown: tell every client we are going away, so handlers can end."""
        closes = [
            ws.close(code=1001, message=b"server shutting down") for ws in self.sockets.values()
        ]
        await asyncio.gather(*closes, return_exceptions=True)

    # ------------------------------------------------------------------ HTTP views

    async def healthz(self, request: web.Request) -> web.Response:
        """``GET /healthz``: 200 with a small JSON body while the node serves."""
        body = {"ok": True, "connections": len(self.sockets), "swarms": len(self.hub.swarms)}
        if self.bus is not None:
            body["node"] = self.bus.node_id
        return web.json_response(body)

    async def metrics_view(self, request: web.Request) -> web.Response:
        """``GET /metrics``: Prometheus text format."""
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stats(self, request: web.Request) -> web.Response:
        """``GET /stats``: per-swarm aggregates of the peers' reports (JSON)."""
        others = await self.bus.other_report_totals() if self.bus is not None else None
        return web.json_response({"swarms": self.hub.swarm_stats(others)})


SERVER: web.AppKey[SignalingServer] = web.AppKey("signaling", SignalingServer)


def create_app(config: SignalingConfig, *, bus: Bus | None = None) -> web.Application:
    """The signalling application; mount more routes on it freely."""
    server = SignalingServer(config, bus)
    app = web.Application()
    app[SERVER] = server
    app.router.add_get("/ws", server.websocket)
    app.router.add_get("/healthz", server.healthz)
    app.router.add_get("/metrics", server.metrics_view)
    app.router.add_get("/stats", server.stats)
    app.cleanup_ctx.append(server.lifecycle)
    app.on_shutdown.append(server.shutdown)
    return app
