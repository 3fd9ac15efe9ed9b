"""The signalling wire format: JSON text frames, decoded once and validated field by field.

docs/signaling.md is the specification; this module is its executable half. Nothing here does
I/O. Decoding never raises anything but :class:`ProtocolError`, whose ``code`` is one of
:data:`ERROR_CODES` and is sent back to the client verbatim.
"""

from __future__ import annotations

import re
from typing import Any, Final

try:  # orjson is ~5x faster on both sides and returns bytes ready for the socket.
    import orjson

    def encode(message: dict[str, Any]) -> bytes:
        """Serialize one message to UTF-8 JSON bytes (compact)."""
        return orjson.dumps(message)

    _loads = orjson.loads
    loads = orjson.loads
    _DecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised only without the speed extra
    import json

    def encode(message: dict[str, Any]) -> bytes:
        """Serialize one message to UTF-8 JSON bytes (compact)."""
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()

    _loads = json.loads
    loads = json.loads
    _DecodeError = ValueError

#: Error codes a client can receive, with what they mean (mirrored in docs/signaling.md).
ERROR_CODES: Final[dict[str, str]] = {
    "bad-json": "the frame is not a JSON object",
    "too-big": "the message or one of its fields is larger than allowed",
    "unknown-type": "the message type is not one the server knows",
    "bad-message": "a field is missing, has the wrong type or is out of range",
    "hello-first": "the first message of a connection must be hello",
    "already-hello": "hello was already sent on this connection",
    "bad-swarm": "the swarm id does not match ^[A-Za-z0-9_-]{1,64}$",
    "not-joined": "the sender is not a member of that swarm",
    "already-joined": "the sender is already a member of that swarm",
    "too-many-swarms": "the connection is a member of too many swarms",
    "swarm-full": "the swarm has reached its member limit on this node",
    "unauthorized": "the join token is missing, invalid, expired or does not cover the swarm",
    "unknown-peer": "the target peer is not (or no longer) a member of that swarm",
    "bad-signal": "signal data must hold exactly one of sdp, candidate or busy, well formed",
    "bad-stats": "stats counters must be non-negative integers that never decrease",
    "rate-limited": "the connection sends messages faster than allowed; the message was dropped",
    "binary-frame": "only text frames are accepted",
}

#: WebSocket close codes the server uses (4000-4999 is the application range).
CLOSE_TOO_MANY_ERRORS: Final = 4000
CLOSE_TIMEOUT: Final = 4002
CLOSE_SLOW_CONSUMER: Final = 4004
CLOSE_NODE_GONE: Final = 4005

SWARM_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
PEER_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{8,32}")
MAX_ID_LEN: Final = 64  # request ids are echoed; keep them short
MAX_NETWORK_LEN: Final = 64
MAX_TOKEN_LEN: Final = 2048
MAX_SDP_LEN: Final = 60000
MAX_CANDIDATE_LEN: Final = 1024
MAX_COUNTER: Final = 1 << 53  # exact in a JS number
ROLES: Final = ("viewer", "seed")
MESSAGE_TYPES: Final = ("hello", "join", "leave", "signal", "stats", "ping", "report")
#: Why a peer reports another (``report`` message).
REPORT_REASONS: Final = ("bad-data", "protocol", "flood", "unresponsive")


class ProtocolError(Exception):
    """A client message was rejected; ``code`` is from :data:`ERROR_CODES`."""

    def __init__(self, code: str, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def decode(frame: str | bytes, max_bytes: int) -> dict[str, Any]:
    """Parse one text frame into a message dict with a known ``type``; check the size first."""
    if len(frame) > max_bytes:
        raise ProtocolError("too-big", f"message is larger than {max_bytes} bytes")
    try:
        message = _loads(frame)
    except (_DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError("bad-json", f"not valid JSON: {str(exc)[:80]}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad-json", "a message must be a JSON object")
    ref = request_id(message)
    kind = message.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "missing string field 'type'", ref)
    if kind not in MESSAGE_TYPES:
        raise ProtocolError("unknown-type", f"unknown message type {kind[:32]!r}", ref)
    return message


def request_id(message: dict[str, Any]) -> str | int | None:
    """The client's ``id`` when it is a short string or a safe integer, else None."""
    rid = message.get("id")
    if isinstance(rid, str) and len(rid) <= MAX_ID_LEN:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool) and abs(rid) < MAX_COUNTER:
        return rid
    return None


def swarm_field(message: dict[str, Any]) -> str:
    """The validated ``swarm`` field."""
    swarm = message.get("swarm")
    if not isinstance(swarm, str) or SWARM_ID_RE.fullmatch(swarm) is None:
        raise ProtocolError("bad-swarm", "swarm must match ^[A-Za-z0-9_-]{1,64}$")
    return swarm


def optional_str(message: dict[str, Any], name: str, max_len: int) -> str | None:
    """An optional bounded string field."""
    value = message.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("bad-message", f"{name} must be a string")
    if len(value) > max_len:
        raise ProtocolError("too-big", f"{name} is longer than {max_len} characters")
    return value


def optional_int(message: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    """An optional integer field within ``lo..hi``."""
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError("bad-message", f"{name} must be an integer in {lo}..{hi}")
    return value


def role_field(message: dict[str, Any]) -> str:
    """The ``role`` of a join: viewer (default) or seed."""
    role = message.get("role", "viewer")
    if role not in ROLES:
        raise ProtocolError("bad-message", "role must be 'viewer' or 'seed'")
    return role


#: Why a peer refuses an offer (``{"busy": reason}``): "full" = its link budget is used up.
BUSY_REASONS: Final = frozenset({"full"})


def check_signal_data(data: Any) -> None:
    """Validate the payload of a ``signal`` without looking inside the SDP text.

    ``{"sdp": {"type": "offer"|"answer", "sdp": str}}``, ``{"candidate": {...} | null}``
    (null ends a trickle) or ``{"busy": "full"}`` (an offer refused: no room for a link).
    Only bounds and shapes are checked: the payload is relayed as is.
    """
    if not isinstance(data, dict) or len(data) != 1:
        raise ProtocolError("bad-signal", "data must be an object with exactly one key")
    if "sdp" in data:
        sdp = data["sdp"]
        if (
            not isinstance(sdp, dict)
            or sdp.get("type") not in ("offer", "answer")
            or not isinstance(sdp.get("sdp"), str)
            or len(sdp) != 2
        ):
            raise ProtocolError("bad-signal", "sdp must be {type: offer|answer, sdp: string}")
        if len(sdp["sdp"]) > MAX_SDP_LEN:
            raise ProtocolError("too-big", f"sdp is longer than {MAX_SDP_LEN} characters")
    elif "candidate" in data:
        _check_candidate(data["candidate"])
    elif "busy" in data:
        if data["busy"] not in BUSY_REASONS:
            raise ProtocolError("bad-signal", f"busy must be one of {sorted(BUSY_REASONS)}")
    else:
        raise ProtocolError("bad-signal", "data must hold 'sdp', 'candidate' or 'busy'")


_CANDIDATE_FIELDS: Final = {
    "candidate": str,
    "sdpMid": (str, type(None)),
    "sdpMLineIndex": (int, type(None)),
    "usernameFragment": (str, type(None)),
}


def _check_candidate(candidate: Any) -> None:
    if candidate is None:  # end-of-candidates marker of trickle ICE
        return
    if not isinstance(candidate, dict) or not isinstance(candidate.get("candidate"), str):
        raise ProtocolError("bad-signal", "candidate must be an RTCIceCandidateInit object")
    for key, value in candidate.items():
        kind = _CANDIDATE_FIELDS.get(key)
        if kind is None:
            raise ProtocolError("bad-signal", f"unknown candidate field {key[:32]!r}")
        if not isinstance(value, kind) or (isinstance(value, str) and len(value) > 1024):
            raise ProtocolError("bad-signal", f"candidate field {key} is malformed")
        if isinstance(value, int) and (isinstance(value, bool) or not 0 <= value < 1024):
            raise ProtocolError("bad-signal", "sdpMLineIndex out of range")


STATS_COUNTERS: Final = ("http_bytes", "p2p_bytes", "uploaded_bytes", "stalls")


def stats_counters(message: dict[str, Any]) -> tuple[int, int, int, int]:
    """The cumulative counters of a ``stats`` report, in :data:`STATS_COUNTERS` order."""
    values = []
    for name in STATS_COUNTERS:
        value = message.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_COUNTER:
            raise ProtocolError("bad-stats", f"{name} must be an integer in 0..2^53")
        values.append(value)
    return values[0], values[1], values[2], values[3]


def report_fields(message: dict[str, Any]) -> tuple[str, str, str]:
    """``(swarm, peer, reason)`` of a ``report``: a member the sender caught misbehaving."""
    swarm = swarm_field(message)
    peer = message.get("peer")
    if not isinstance(peer, str) or PEER_ID_RE.fullmatch(peer) is None:
        raise ProtocolError("bad-message", "peer must be a peer id")
    reason = message.get("reason")
    if reason not in REPORT_REASONS:
        raise ProtocolError("bad-message", f"reason must be one of {', '.join(REPORT_REASONS)}")
    return swarm, peer, reason


def error(code: str, message: str, ref: Any = None) -> dict[str, Any]:
    """An ``error`` message; ``ref`` is the request id it answers, when there was one."""
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        out["ref"] = ref
    return out
