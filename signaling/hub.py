"""``SwarmHub``: swarm membership, peer introduction and signal relay as pure state (sans-IO).

Inputs are calls: :meth:`SwarmHub.connect`, :meth:`SwarmHub.receive` (one raw text frame),
:meth:`SwarmHub.disconnect` and :meth:`SwarmHub.tick`, each with the current time. Outputs are
lists of small records: :class:`Send` (bytes for one peer, maybe on another node),
:class:`Close` and, when a multi-node bus is attached, :class:`MemberChange`. No sockets, no
asyncio: the aiohttp layer (server.py) and the Redis adapter (redis_bus.py) are thin drivers,
and tests drive the hub directly with a fake clock.
"""

from __future__ import annotations

import logging
import math
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from swarmcast.signaling import messages as m
from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.tokens import TokenError, verify
from swarmcast.signaling.turn import ice_servers

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Send:
    """Deliver ``data`` (one encoded JSON message) to ``peer``."""

    peer: str
    """Target peer id."""
    data: bytes
    """The encoded message, sent as one text frame."""
    node: str | None = None
    """Node that holds the peer's connection; None for this node."""


@dataclass(slots=True)
class Close:
    """Close ``peer``'s connection; the hub has already forgotten it."""

    peer: str
    """Peer whose connection is closed."""
    code: int
    """WebSocket close code (see messages.CLOSE_*)."""
    reason: str
    """Human-readable reason sent in the close frame (<= 120 bytes)."""


@dataclass(slots=True)
class MemberChange:
    """A local membership changed; other nodes must learn it (only emitted with a bus)."""

    kind: str
    """``join`` or ``leave``."""
    swarm: str
    """Swarm id."""
    member: Member
    """The member record (its ``node`` is this node)."""


Output = Send | Close | MemberChange

#: Errors a well-behaved client meets in normal churn (its target left a moment ago): they are
#: answered but do not count towards ``max_errors``.
BENIGN_ERRORS = frozenset({"unknown-peer"})


@dataclass(slots=True, eq=False)
class Member:
    """One peer's membership of one swarm, as every node sees it."""

    peer: str
    """Peer id."""
    role: str
    """``viewer`` or ``seed``."""
    capacity: int
    """Viewers a seed offers to serve (0 for viewers)."""
    spare: int
    """Estimated free seed slots: last reported, minus introductions made since."""
    net_key: str | None
    """Locality from the client's ``network`` hint, or None."""
    ip_key: str
    """Locality from the source address prefix (/24 or /48)."""
    node: str | None = None
    """Node holding the connection; None for this node."""
    counters: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Last cumulative stats report (http, p2p, uploaded bytes, stalls)."""
    reported_by: set[str] | None = None
    """Distinct members that reported this one for misbehaving (see ``report_threshold``)."""
    quarantined: bool = False
    """Reported by enough distinct members: no longer handed out in samples."""

    def public(self) -> dict[str, Any]:
        """The member as listed to other peers."""
        return {"peer": self.peer, "role": self.role}


class IndexedSet:
    """A set with O(1) add/remove and O(k) uniform random sampling (list + index map)."""

    __slots__ = ("index", "items")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: str) -> None:
        """Insert ``item`` (no-op when present)."""
        if item not in self.index:
            self.index[item] = len(self.items)
            self.items.append(item)

    def discard(self, item: str) -> None:
        """Remove ``item`` by swapping the last element into its slot."""
        pos = self.index.pop(item, None)
        if pos is None:
            return
        last = self.items.pop()
        if pos < len(self.items):
            self.items[pos] = last
            self.index[last] = pos

    def sample(self, k: int, rng: random.Random) -> list[str]:
        """Up to ``k`` distinct random items."""
        n = len(self.items)
        if n <= k:
            return list(self.items)
        return [self.items[i] for i in rng.sample(range(n), k)]


@dataclass(slots=True)
class SwarmStats:
    """Aggregated reports of one swarm: every report of current and departed members."""

    http_bytes: int = 0
    """Bytes peers fetched from HTTP (origin/CDN)."""
    p2p_bytes: int = 0
    """Bytes peers received from other peers."""
    uploaded_bytes: int = 0
    """Bytes peers sent to other peers."""
    stalls: int = 0
    """Playback stalls reported."""
    reports: int = 0
    """Stats messages received."""
    abuse_reports: int = 0
    """``report`` messages received (a member caught another misbehaving)."""
    quarantined: int = 0
    """Members taken out of samples after ``report_threshold`` distinct reports."""

    def add(self, delta: tuple[int, int, int, int]) -> None:
        """Add one report's increase."""
        self.http_bytes += delta[0]
        self.p2p_bytes += delta[1]
        self.uploaded_bytes += delta[2]
        self.stalls += delta[3]
        self.reports += 1


class Swarm:
    """Members of one swarm (local and remote) with the pools sampling draws from."""

    __slots__ = ("id", "local", "locality", "members", "pool", "seeds", "stats")

    def __init__(self, swarm_id: str) -> None:
        self.id = swarm_id
        self.members: dict[str, Member] = {}
        self.pool = IndexedSet()
        self.seeds = IndexedSet()
        self.locality: dict[str, IndexedSet] = {}
        self.stats = SwarmStats()
        self.local = 0  # members connected to this node (the per-node limit counts these)

    def add(self, member: Member) -> None:
        """Insert a member into every pool it belongs to."""
        self.members[member.peer] = member
        self.pool.add(member.peer)
        if member.role == "seed":
            self.seeds.add(member.peer)
        for key in (member.net_key, member.ip_key):
            if key is not None:
                self.locality.setdefault(key, IndexedSet()).add(member.peer)

    def remove(self, peer: str) -> Member | None:
        """Forget a member; empty locality pools are dropped so churn cannot leak them."""
        member = self.members.pop(peer, None)
        if member is None:
            return None
        self._unpool(member)
        return member

    def quarantine(self, member: Member) -> None:
        """Keep ``member`` in the swarm (its links may stay up) but never sample it again."""
        member.quarantined = True
        self._unpool(member)

    def _unpool(self, member: Member) -> None:
        peer = member.peer
        self.pool.discard(peer)
        self.seeds.discard(peer)
        for key in (member.net_key, member.ip_key):
            pool = self.locality.get(key) if key is not None else None
            if pool is not None:
                pool.discard(peer)
                if not pool:
                    del self.locality[key]  # type: ignore[arg-type]


@dataclass(slots=True, eq=False)
class Connection:
    """State of one local client connection."""

    id: str
    """Server-assigned peer id."""
    ip_key: str
    """Source address prefix (locality)."""
    connected_at: float
    """When the connection was accepted."""
    last_seen: float
    """When the last message arrived (heartbeat)."""
    tokens: float
    """Rate-limit bucket level."""
    bucket_at: float
    """When the bucket was last refilled."""
    hello: bool = False
    """True once ``hello`` was received."""
    net_key: str | None = None
    """Locality from the ``network`` hint."""
    errors: int = 0
    """Bad messages so far."""
    swarms: dict[str, Member] = field(default_factory=dict)
    """Swarm id -> this peer's membership."""


def locality_prefix(address: str) -> str:
    """``a:1.2.3`` for IPv4 /24, ``a:2001:db8:1`` for IPv6 /48 (best effort on bad input)."""
    if "." in address and ":" not in address:
        return "a:" + address.rsplit(".", 1)[0]
    if ":" in address:
        import ipaddress

        try:
            net = ipaddress.ip_network(f"{address.split('%')[0]}/48", strict=False)
        except ValueError:
            return "a:?"
        return "a:" + str(net.network_address)
    return "a:?"


class SwarmHub:
    """Membership and relay decisions of one signalling node (see module docstring)."""

    def __init__(
        self,
        config: SignalingConfig,
        *,
        node_id: str | None = None,
        replicate: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.node_id = node_id
        self.replicate = replicate
        self.rng = rng or random.Random()
        self.connections: dict[str, Connection] = {}
        self.swarms: dict[str, Swarm] = {}
        self.counts: dict[str, int] = {}  # messages received by type, for metrics
        self.report_reasons: dict[str, int] = {}  # report messages by reason, for metrics
        self.errors: dict[str, int] = {}  # errors sent by code, for metrics
        self._welcome_limits = {
            "max_message_bytes": config.max_message_bytes,
            "max_swarms": config.max_swarms_per_peer,
            "rate_per_second": config.rate_per_second,
            "rate_burst": config.rate_burst,
            "sample_size": config.sample_size,
        }

    # ---------------------------------------------------------------- connection lifecycle

    def connect(self, now: float, address: str) -> str:
        """Register a new connection from ``address``; return its fresh peer id."""
        peer = secrets.token_urlsafe(12)  # 96 random bits: unguessable, never client-chosen
        self.connections[peer] = Connection(
            id=peer,
            ip_key=locality_prefix(address),
            connected_at=now,
            last_seen=now,
            tokens=float(self.config.rate_burst),
            bucket_at=now,
        )
        return peer

    def disconnect(self, peer: str, now: float) -> list[Output]:
        """The connection is gone: leave every swarm. Unknown ids are ignored."""
        conn = self.connections.pop(peer, None)
        if conn is None:
            return []
        out: list[Output] = []
        for swarm_id in list(conn.swarms):
            self._leave(conn, swarm_id, out)
        return out

    def tick(self, now: float) -> list[Output]:
        """Close connections that missed their hello or heartbeat deadline."""
        out: list[Output] = []
        hb_deadline = now - self.config.heartbeat_timeout
        hello_deadline = now - self.config.hello_timeout
        for conn in list(self.connections.values()):
            if conn.last_seen < hb_deadline:
                self._close(conn, m.CLOSE_TIMEOUT, "heartbeat timeout", now, out)
            elif not conn.hello and conn.connected_at < hello_deadline:
                self._close(conn, m.CLOSE_TIMEOUT, "no hello in time", now, out)
        return out

    def _close(
        self, conn: Connection, code: int, reason: str, now: float, out: list[Output]
    ) -> None:
        out.extend(self.disconnect(conn.id, now))
        out.append(Close(conn.id, code, reason))

    # ---------------------------------------------------------------------- messages in

    def receive(self, peer: str, frame: str | bytes, now: float) -> list[Output]:
        """Handle one text frame from ``peer``."""
        conn = self.connections.get(peer)
        if conn is None:
            return []
        out: list[Output] = []
        conn.last_seen = now
        if not self._take_token(conn, now):
            self._reject(conn, m.ProtocolError("rate-limited", "slow down"), now, out)
            return out
        try:
            message = m.decode(frame, self.config.max_message_bytes)
            kind = message["type"]
            self.counts[kind] = self.counts.get(kind, 0) + 1
            if kind == "signal":  # the hot path first
                self._signal(conn, message, out)
            elif not conn.hello and kind != "hello":
                raise m.ProtocolError("hello-first", "send hello first", m.request_id(message))
            else:
                self._HANDLERS[kind](self, conn, message, now, out)
        except m.ProtocolError as exc:
            self._reject(conn, exc, now, out)
        return out

    def reject_binary(self, peer: str, now: float) -> list[Output]:
        """A binary frame arrived: same treatment as any bad message."""
        conn = self.connections.get(peer)
        out: list[Output] = []
        if conn is not None:
            self._reject(conn, m.ProtocolError("binary-frame", "send JSON text frames"), now, out)
        return out

    def _take_token(self, conn: Connection, now: float) -> bool:
        """Token bucket: ``rate_burst`` deep, refilled at ``rate_per_second``."""
        cfg = self.config
        refill = (now - conn.bucket_at) * cfg.rate_per_second
        conn.bucket_at = now
        conn.tokens = min(float(cfg.rate_burst), conn.tokens + refill)
        if conn.tokens < 1.0:
            return False
        conn.tokens -= 1.0
        return True

    def _reject(
        self, conn: Connection, exc: m.ProtocolError, now: float, out: list[Output]
    ) -> None:
        self.errors[exc.code] = self.errors.get(exc.code, 0) + 1
        if exc.code not in BENIGN_ERRORS:
            conn.errors += 1
        if conn.errors >= self.config.max_errors:
            self._close(
                conn, m.CLOSE_TOO_MANY_ERRORS, f"too many errors (last: {exc.code})", now, out
            )
            return
        out.append(Send(conn.id, m.encode(m.error(exc.code, exc.message, exc.ref))))

    # ------------------------------------------------------------------------ handlers

    def _hello(self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]) -> None:
        ref = m.request_id(msg)
        if conn.hello:
            raise m.ProtocolError("already-hello", "hello was already sent", ref)
        try:
            network = m.optional_str(msg, "network", m.MAX_NETWORK_LEN)
            m.optional_str(msg, "client", m.MAX_NETWORK_LEN)
        except m.ProtocolError as exc:
            exc.ref = ref
            raise
        conn.hello = True
        conn.net_key = None if not network else "n:" + network
        reply: dict[str, Any] = {
            "type": "welcome",
            "peer": conn.id,
            "ice_servers": ice_servers(self.config, conn.id, now),
            "heartbeat": self.config.heartbeat_interval,
            "stats_interval": self.config.stats_interval,
            "limits": self._welcome_limits,
        }
        if ref is not None:
            reply["id"] = ref
        out.append(Send(conn.id, m.encode(reply)))

    def _join(self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]) -> None:
        ref = m.request_id(msg)
        try:
            swarm_id = m.swarm_field(msg)
            role = m.role_field(msg)
            capacity = m.optional_int(msg, "capacity", 0, 100000, 0) if role == "seed" else 0
            self._authorize(msg, swarm_id, role, now)
        except m.ProtocolError as exc:
            exc.ref = ref
            raise
        if swarm_id in conn.swarms:
            raise m.ProtocolError("already-joined", f"already in swarm {swarm_id}", ref)
        if len(conn.swarms) >= self.config.max_swarms_per_peer:
            raise m.ProtocolError("too-many-swarms", "leave a swarm first", ref)
        swarm = self.swarms.get(swarm_id)
        if swarm is None:
            swarm = self.swarms[swarm_id] = Swarm(swarm_id)
        elif swarm.local >= self.config.max_peers_per_swarm:
            raise m.ProtocolError("swarm-full", f"swarm {swarm_id} is full on this node", ref)
        member = Member(conn.id, role, capacity, capacity, conn.net_key, conn.ip_key, self.node_id)
        sample = self.sample(swarm, member)
        reply: dict[str, Any] = {"type": "joined", "swarm": swarm_id, "peers": sample}
        if ref is not None:
            reply["id"] = ref
        out.append(Send(conn.id, m.encode(reply)))
        self._notify(swarm, {"type": "peer-joined", "swarm": swarm_id, **member.public()}, out)
        swarm.add(member)
        swarm.local += 1
        conn.swarms[swarm_id] = member
        if self.replicate:
            out.append(MemberChange("join", swarm_id, member))

    def _authorize(self, msg: dict[str, Any], swarm_id: str, role: str, now: float) -> None:
        secret = self.config.auth_secret
        if secret is None:
            return
        try:
            grant = verify(secret, msg.get("token"), now)
        except TokenError as exc:
            raise m.ProtocolError("unauthorized", str(exc)) from None
        if not grant.allows(swarm_id, role):
            raise m.ProtocolError("unauthorized", f"token does not allow {role} in {swarm_id}")

    def _leave_msg(
        self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]
    ) -> None:
        ref = m.request_id(msg)
        try:
            swarm_id = m.swarm_field(msg)
        except m.ProtocolError as exc:
            exc.ref = ref
            raise
        if swarm_id not in conn.swarms:
            raise m.ProtocolError("not-joined", f"not in swarm {swarm_id}", ref)
        self._leave(conn, swarm_id, out)
        reply: dict[str, Any] = {"type": "left", "swarm": swarm_id}
        if ref is not None:
            reply["id"] = ref
        out.append(Send(conn.id, m.encode(reply)))

    def _leave(self, conn: Connection, swarm_id: str, out: list[Output]) -> None:
        member = conn.swarms.pop(swarm_id)
        swarm = self.swarms[swarm_id]
        swarm.remove(conn.id)
        swarm.local -= 1
        if self.replicate:
            out.append(MemberChange("leave", swarm_id, member))
        self._notify(swarm, {"type": "peer-left", "swarm": swarm_id, "peer": conn.id}, out)
        if not swarm.members:
            del self.swarms[swarm_id]

    def _signal(self, conn: Connection, msg: dict[str, Any], out: list[Output]) -> None:
        to, swarm_id = msg.get("to"), msg.get("swarm")
        member = conn.swarms.get(swarm_id) if isinstance(swarm_id, str) else None
        if member is None:
            code = "bad-swarm" if not isinstance(swarm_id, str) else "not-joined"
            raise m.ProtocolError(code, "signal needs a swarm the sender joined", m.request_id(msg))
        target = self.swarms[swarm_id].members.get(to) if isinstance(to, str) else None
        if target is None or to == conn.id:
            raise m.ProtocolError(
                "unknown-peer",
                f"peer {str(to)[:32]!r} is not in swarm {swarm_id}",
                m.request_id(msg),
            )
        data = msg.get("data")
        try:
            m.check_signal_data(data)
        except m.ProtocolError as exc:
            exc.ref = m.request_id(msg)
            raise
        relayed = {"type": "signal", "from": conn.id, "swarm": swarm_id, "data": data}
        out.append(Send(to, m.encode(relayed), target.node))

    def _stats(self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]) -> None:
        ref = m.request_id(msg)
        try:
            swarm_id = m.swarm_field(msg)
            values = m.stats_counters(msg)
            spare = m.optional_int(msg, "spare", 0, 100000, 0) if "spare" in msg else -1
        except m.ProtocolError as exc:
            exc.ref = ref
            raise
        member = conn.swarms.get(swarm_id)
        if member is None:
            raise m.ProtocolError("not-joined", f"not in swarm {swarm_id}", ref)
        delta = tuple(v - old for v, old in zip(values, member.counters, strict=True))
        if min(delta) < 0:
            raise m.ProtocolError("bad-stats", "counters are cumulative and never decrease", ref)
        member.counters = list(values)
        self.swarms[swarm_id].stats.add(delta)  # type: ignore[arg-type]
        if spare >= 0 and member.role == "seed":
            member.spare = min(spare, member.capacity)

    def _report(self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]) -> None:
        """A member caught another misbehaving (bad data, protocol abuse, floods).

        One report proves nothing (the reporter may lie), so a member is quarantined, i.e. left
        out of every later sample, only once ``report_threshold`` distinct members reported it.
        Reports about peers that already left are counted and otherwise ignored.
        """
        ref = m.request_id(msg)
        try:
            swarm_id, peer, reason = m.report_fields(msg)
        except m.ProtocolError as exc:
            exc.ref = ref
            raise
        if swarm_id not in conn.swarms:
            raise m.ProtocolError("not-joined", f"not in swarm {swarm_id}", ref)
        if peer == conn.id:
            raise m.ProtocolError("bad-message", "a peer cannot report itself", ref)
        swarm = self.swarms[swarm_id]
        swarm.stats.abuse_reports += 1
        self.report_reasons[reason] = self.report_reasons.get(reason, 0) + 1
        member = swarm.members.get(peer)
        threshold = self.config.report_threshold
        if member is None or member.quarantined or threshold <= 0:
            return
        if member.reported_by is None:
            member.reported_by = set()
        member.reported_by.add(conn.id)
        if len(member.reported_by) >= threshold:
            swarm.quarantine(member)
            swarm.stats.quarantined += 1

    def _ping(self, conn: Connection, msg: dict[str, Any], now: float, out: list[Output]) -> None:
        reply: dict[str, Any] = {"type": "pong"}
        ref = m.request_id(msg)
        if ref is not None:
            reply["id"] = ref
        out.append(Send(conn.id, m.encode(reply)))

    _HANDLERS = {
        "hello": _hello,
        "join": _join,
        "leave": _leave_msg,
        "stats": _stats,
        "ping": _ping,
        "report": _report,
    }

    # ------------------------------------------------------------- introduction policy

    def sample(self, swarm: Swarm, newcomer: Member) -> list[dict[str, Any]]:
        """Up to ``sample_size`` members: seeds with spare capacity, then same locality, then
        anyone. Each seed handed out loses one spare slot until its next stats report, so a
        burst of joins spreads over the seeds instead of piling onto the emptiest one."""
        k = self.config.sample_size
        chosen: dict[str, Member] = {}
        members = swarm.members
        if swarm.seeds:
            quota = max(1, k // 4)
            seeds = [members[p] for p in swarm.seeds.sample(4 * quota, self.rng)]
            seeds = [s for s in seeds if s.spare > 0]
            seeds.sort(key=lambda s: s.spare, reverse=True)
            for seed in seeds[:quota]:
                seed.spare -= 1
                chosen[seed.peer] = seed
        local_quota = len(chosen) + math.ceil((k - len(chosen)) / 2)
        for key in (newcomer.net_key, newcomer.ip_key):
            pool = swarm.locality.get(key) if key is not None else None
            if pool is not None and len(chosen) < local_quota:
                self._fill(chosen, pool, local_quota, members)
        self._fill(chosen, swarm.pool, k, members)
        return [mem.public() for mem in chosen.values()]

    def _fill(
        self, chosen: dict[str, Member], pool: IndexedSet, limit: int, members: dict[str, Member]
    ) -> None:
        want = limit - len(chosen)
        if want <= 0:
            return
        for peer in pool.sample(want + len(chosen), self.rng):
            if peer not in chosen:
                chosen[peer] = members[peer]
                if len(chosen) >= limit:
                    return

    def _notify(self, swarm: Swarm, message: dict[str, Any], out: list[Output]) -> None:
        """Tell members of a small swarm (<= sample_size) about a join or leave: they hold the
        whole swarm as their neighbour set. In a larger swarm the newcomer does the connecting,
        and notifying everyone would make each join O(swarm size)."""
        if not swarm.members or len(swarm.members) > self.config.sample_size:
            return
        data = m.encode(message)
        for member in swarm.members.values():
            out.append(Send(member.peer, data, member.node))

    # ------------------------------------------------------------ other nodes (Redis)

    def remote_join(self, swarm_id: str, member: Member) -> None:
        """A peer on another node joined (its node already notified whoever needed it)."""
        swarm = self.swarms.get(swarm_id)
        if swarm is None:
            swarm = self.swarms[swarm_id] = Swarm(swarm_id)
        swarm.add(member)

    def remote_leave(self, swarm_id: str, peer: str) -> None:
        """A peer on another node left ``swarm_id``."""
        swarm = self.swarms.get(swarm_id)
        if swarm is not None:
            swarm.remove(peer)
            if not swarm.members:
                del self.swarms[swarm_id]

    def drop_node(self, node: str) -> list[Output]:
        """Another node died: forget its peers and tell our local members of small swarms."""
        out: list[Output] = []
        for swarm in list(self.swarms.values()):
            gone = [p for p, mem in swarm.members.items() if mem.node == node]
            for peer in gone:
                swarm.remove(peer)
            small = len(swarm.members) <= self.config.sample_size
            locals_ = [mem for mem in swarm.members.values() if mem.node == self.node_id]
            for peer in gone if small else ():
                data = m.encode({"type": "peer-left", "swarm": swarm.id, "peer": peer})
                out.extend(Send(mem.peer, data) for mem in locals_)
            if not swarm.members:
                del self.swarms[swarm.id]
        return out

    # ------------------------------------------------------------------- observation

    def swarm_stats(
        self, other_nodes: dict[str, list[int]] | None = None
    ) -> dict[str, dict[str, Any]]:
        """Per-swarm aggregate for the dashboard, ``/stats`` and load tests.

        ``other_nodes`` adds report totals of other nodes (swarm -> :meth:`report_totals` row).
        """
        out: dict[str, dict[str, Any]] = {}
        for swarm_id, swarm in self.swarms.items():
            s = swarm.stats
            row = [s.http_bytes, s.p2p_bytes, s.uploaded_bytes, s.stalls, s.reports]
            for i, value in enumerate((other_nodes or {}).get(swarm_id, ())):
                row[i] += value
            delivered = row[0] + row[1]
            out[swarm_id] = {
                "peers": len(swarm.members),
                "seeds": len(swarm.seeds),
                "http_bytes": row[0],
                "p2p_bytes": row[1],
                "uploaded_bytes": row[2],
                "stalls": row[3],
                "reports": row[4],
                "abuse_reports": s.abuse_reports,
                "quarantined": s.quarantined,
                "offload": round(row[1] / delivered, 4) if delivered else None,
            }
        return out

    def report_totals(self) -> dict[str, list[int]]:
        """This node's report totals per swarm (shared with other nodes through Redis)."""
        return {
            swarm_id: [s.http_bytes, s.p2p_bytes, s.uploaded_bytes, s.stalls, s.reports]
            for swarm_id, swarm in self.swarms.items()
            if (s := swarm.stats).reports
        }
