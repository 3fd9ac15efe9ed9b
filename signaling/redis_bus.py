"""Redis adapter: several signalling nodes share swarms (``swarmcast signal --redis-url``).

Layout in Redis (prefix ``sc:``):

- ``sc:node:<node>``: string with a TTL of ``node_ttl``, refreshed every tick: the node is alive.
- ``sc:st:<node>``: JSON of the node's stats report totals per swarm, same TTL, for ``/stats``.
- ``sc:nodes``: set of node ids that announced themselves (scanned to find dead ones).
- ``sc:m:<swarm>``: hash ``peer -> member record`` of every member on every node.
- ``sc:nm:<node>``: set of ``swarm peer`` pairs a node holds, so survivors can clean up after it.
- channel ``sc:members``: membership events ``J<swarm> <json>`` (join), ``L<swarm> <peer>`` (leave),
  ``G<node>`` (node gone).
- channel ``sc:relay:<node>``: ``<peer> <encoded message>``; the receiving node writes the
  message bytes to its socket as they are, without decoding them.

Every write goes through one connection, in order, so a peer's join reaches other nodes before
any signal sent to it; the subscriber connection is read only after the initial load, so no
event is lost or applied out of order. A node that stops heartbeating for ``node_ttl`` seconds
is declared dead by the first survivor that notices: its members are deleted and every node
tells its own local peers (``peer-left``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.hub import Member, MemberChange, Output
from swarmcast.signaling.messages import encode, loads

if TYPE_CHECKING:
    from swarmcast.signaling.server import SignalingServer

log = logging.getLogger(__name__)

MEMBERS = "sc:members"


def _node_key(node: str) -> str:
    return f"sc:node:{node}"


def _stats_key(node: str) -> str:
    return f"sc:st:{node}"


def _relay_channel(node: str) -> str:
    return f"sc:relay:{node}"


def encode_member(member: Member) -> bytes:
    """The member record stored in ``sc:m:<swarm>`` and sent in join events."""
    return encode(
        {
            "p": member.peer,
            "n": member.node,
            "r": member.role,
            "c": member.capacity,
            "s": member.spare,
            "k": member.net_key,
            "i": member.ip_key,
        }
    )


def decode_member(raw: bytes | str) -> Member:
    """Inverse of :func:`encode_member`."""
    d = loads(raw)
    return Member(d["p"], d["r"], d["c"], d["s"], d["k"], d["i"], d["n"])


class RedisBus:
    """Membership replication and cross-node relay through Redis (see module docstring)."""

    def __init__(self, config: SignalingConfig) -> None:
        if not config.redis_url:
            raise ValueError("RedisBus needs config.redis_url")
        self.config = config
        self.node_id = config.node_id or "n-" + secrets.token_urlsafe(6)
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            config.redis_url, single_connection_client=True
        )
        self._sub_client: aioredis.Redis = aioredis.Redis.from_url(config.redis_url)
        self._pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
        self._queue: list[tuple[Any, ...]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._server: SignalingServer | None = None
        self._known_nodes: set[str] = set()
        self._stopping = False

    # --------------------------------------------------------------------- lifecycle

    async def start(self, server: SignalingServer) -> None:
        """Subscribe, announce this node, load remote members, then start reading events."""
        self._server = server
        await self._pubsub.subscribe(MEMBERS, _relay_channel(self.node_id))
        await self._heartbeat()
        await self._load()
        self._tasks = [
            asyncio.create_task(self._writer(), name="redis-writer"),
            asyncio.create_task(self._reader(), name="redis-reader"),
        ]
        log.info("node %s joined the Redis bus at %s", self.node_id, self.config.redis_url)

    async def stop(self) -> None:
        """Withdraw this node's members (its peers are already closed) and disconnect."""
        # A flag, not Task.cancel(): redis-py can swallow a CancelledError that lands inside
        # a pipeline, which would leave the task looping forever.
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            except (TimeoutError, Exception):
                task.cancel()
        with contextlib.suppress(Exception):
            await self._flush()
            await self._forget_node(self.node_id)
        await self._pubsub.aclose()
        await self._sub_client.aclose()
        await self.redis.aclose()

    # ----------------------------------------------------------------- outgoing

    def relay(self, node: str, peer: str, data: bytes) -> None:
        """Queue a message for ``peer`` on ``node``."""
        self._queue.append(("publish", _relay_channel(node), peer.encode() + b" " + data))
        self._wake.set()

    def member_change(self, change: MemberChange) -> None:
        """Queue the Redis writes and the event for a local join or leave."""
        member, swarm = change.member, change.swarm
        pair = f"{swarm} {member.peer}"
        if change.kind == "join":
            record = encode_member(member)
            self._queue.append(("hset", f"sc:m:{swarm}", member.peer, record))
            self._queue.append(("sadd", f"sc:nm:{self.node_id}", pair))
            self._queue.append(("publish", MEMBERS, f"J{swarm} ".encode() + record))
        else:
            self._queue.append(("hdel", f"sc:m:{swarm}", member.peer))
            self._queue.append(("srem", f"sc:nm:{self.node_id}", pair))
            self._queue.append(("publish", MEMBERS, f"L{pair}".encode()))
        self._wake.set()

    async def _writer(self) -> None:
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except (aioredis.RedisError, OSError) as exc:
                log.warning("Redis write failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                self._wake.set()

    async def _flush(self) -> None:
        """Send queued commands in one pipeline, in order (no MULTI: order is enough)."""
        while self._queue:
            batch, self._queue = self._queue[:5000], self._queue[5000:]
            pipe = self.redis.pipeline(transaction=False)
            for command, *args in batch:
                getattr(pipe, command)(*args)
            try:
                await pipe.execute()
            except BaseException:
                self._queue[:0] = batch  # keep order: retry the same batch first
                raise

    # ----------------------------------------------------------------- incoming

    async def _reader(self) -> None:
        server = self._server
        assert server is not None
        relay_channel = _relay_channel(self.node_id).encode()
        while not self._stopping:
            try:
                msg = await self._pubsub.get_message(timeout=0.25)
            except (aioredis.RedisError, OSError) as exc:
                log.warning("Redis subscription failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if msg is None:
                continue
            try:
                if msg["channel"] == relay_channel:
                    peer, _, data = msg["data"].partition(b" ")
                    await server.send_local(peer.decode(), data)
                else:
                    await server.deliver(self._apply_event(msg["data"]))
            except Exception:  # a bad event must not stop the node from hearing the next
                log.exception("bad event on the Redis bus")

    def _apply_event(self, data: bytes) -> list[Output]:
        hub = self._server.hub  # type: ignore[union-attr]
        kind, body = data[:1], data[1:]
        if kind == b"J":
            swarm, _, record = body.partition(b" ")
            member = decode_member(record)
            if member.node != self.node_id:
                self._known_nodes.add(member.node or "")
                hub.remote_join(swarm.decode(), member)
        elif kind == b"L":
            swarm, _, peer = body.decode().partition(" ")
            member = hub.swarms.get(swarm).members.get(peer) if swarm in hub.swarms else None
            if member is not None and member.node != self.node_id:
                hub.remote_leave(swarm, peer)
        elif kind == b"G":
            node = body.decode()
            if node != self.node_id:
                self._known_nodes.discard(node)
                return hub.drop_node(node)
        return []

    async def _load(self) -> None:
        hub = self._server.hub  # type: ignore[union-attr]
        async for key in self.redis.scan_iter(match="sc:m:*", count=1000):
            swarm = key.decode()[5:]
            for raw in (await self.redis.hgetall(key)).values():
                member = decode_member(raw)
                if member.node != self.node_id:
                    self._known_nodes.add(member.node or "")
                    hub.remote_join(swarm, member)

    # --------------------------------------------------------------- liveness

    async def tick(self, now: float) -> list[Output]:
        """Refresh our heartbeat; declare nodes whose heartbeat expired dead."""
        try:
            await self._heartbeat()
            nodes = {n.decode() for n in await self.redis.smembers("sc:nodes")}
            others = sorted((nodes | self._known_nodes) - {self.node_id, ""})
            if not others:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for node in others:
                pipe.exists(_node_key(node))
            alive = await pipe.execute()
        except (aioredis.RedisError, OSError) as exc:
            log.warning("Redis heartbeat failed: %s", exc)
            return []
        out: list[Output] = []
        for node, is_alive in zip(others, alive, strict=True):
            if not is_alive:
                log.warning("node %s stopped heartbeating: dropping its peers", node)
                self._known_nodes.discard(node)
                out.extend(self._server.hub.drop_node(node))  # type: ignore[union-attr]
                await self._forget_node(node)
        return out

    async def _heartbeat(self) -> None:
        ttl_ms = int(self.config.node_ttl * 1000)
        totals = self._server.hub.report_totals() if self._server is not None else {}
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(_node_key(self.node_id), str(time.time()), px=ttl_ms)
        pipe.set(_stats_key(self.node_id), encode(totals), px=ttl_ms)
        pipe.sadd("sc:nodes", self.node_id)
        await pipe.execute()

    async def other_report_totals(self) -> dict[str, list[int]]:
        """Stats report totals of every other live node, summed per swarm (for ``/stats``).

        A node publishes its totals with each heartbeat, so they lag by up to one tick; the
        totals of a node that died expire with it.
        """
        nodes = sorted(n.decode() for n in await self.redis.smembers("sc:nodes"))
        nodes = [n for n in nodes if n != self.node_id]
        summed: dict[str, list[int]] = {}
        if not nodes:
            return summed
        for raw in await self.redis.mget([_stats_key(n) for n in nodes]):
            for swarm, row in (loads(raw) if raw else {}).items():
                acc = summed.setdefault(swarm, [0] * len(row))
                for i, value in enumerate(row):
                    acc[i] += value
        return summed

    async def _forget_node(self, node: str) -> None:
        """Delete a (dead or stopping) node's members; tell every node. Idempotent."""
        pairs = await self.redis.smembers(f"sc:nm:{node}")
        pipe = self.redis.pipeline(transaction=False)
        for pair in pairs:
            swarm, _, peer = pair.decode().partition(" ")
            pipe.hdel(f"sc:m:{swarm}", peer)
        pipe.delete(f"sc:nm:{node}", _node_key(node), _stats_key(node))
        pipe.srem("sc:nodes", node)
        pipe.publish(MEMBERS, b"G" + node.encode())
        await pipe.execute()
