"""The peer wire protocol codec: message dataclasses and ``encode`` / ``decode`` (no I/O).

``docs/protocol.md`` is the specification; this module is its Python implementation and the
vectors in ``tests/vectors/protocol.json`` pin both it and the JS twin to the same bytes.

One frame is one data-channel message: a one-byte type, then fixed-width big-endian fields.
Every frame is validated completely: its size is checked before it is parsed, every length
inside is bounded by constants below and by the bytes actually present, enumerations and
identifiers are checked, and trailing bytes are rejected. Any violation raises
:class:`ProtocolError` with an :class:`ErrorCode`; nothing else escapes :func:`decode`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from swarmcast.peer.ids import (
    MAX_SEGMENT_NUMBER,
    SWARM_ID_PATTERN,
    SegmentKey,
    SegmentKind,
)

#: Protocol version spoken by this implementation. Same major: compatible, talk min(minor).
VERSION_MAJOR = 1
VERSION_MINOR = 0

#: Largest frame, header included, anyone may send: 64 KiB, the message size RFC 8841 lets a
#: sender assume when the remote SDP advertises none, so every WebRTC stack accepts it.
MAX_FRAME_SIZE = 65536
#: Bytes before the payload of a DATA frame: type (1) + request id (4) + offset (4).
DATA_HEADER_SIZE = 9
#: Largest DATA payload: MAX_FRAME_SIZE - DATA_HEADER_SIZE = 65527 bytes.
MAX_DATA_PAYLOAD = MAX_FRAME_SIZE - DATA_HEADER_SIZE
#: Smallest ``max_message_size`` a HELLO may advertise; every control frame fits in it.
MIN_MESSAGE_SIZE = 16384
#: Most swarms one connection covers (indices 0..31).
MAX_SWARMS = 32
#: Longest HAVE_SET bitmap in bytes (65536 segments: 36 h of 2 s segments).
MAX_BITMAP_BYTES = 8192
#: Most init segment ids in one HAVE_SET.
MAX_INIT_IDS = 16
#: Longest peer id in bytes (printable ASCII).
MAX_PEER_ID_BYTES = 64
#: Longest ERROR reason in UTF-8 bytes.
MAX_REASON_BYTES = 255
#: Largest value of a u32 field (request ids, sizes, offsets).
MAX_U32 = 2**32 - 1
#: Largest BUSY retry hint in milliseconds (u16).
MAX_RETRY_AFTER_MS = 2**16 - 1

#: HELLO flag bit: the sender serves segments to this peer (answers REQUESTs).
FLAG_UPLOAD = 0x01


class ErrorCode(enum.IntEnum):
    """Why a connection is being closed: the code of an ERROR frame and of ProtocolError."""

    VERSION = 1
    """Different major protocol version."""
    MALFORMED = 2
    """A frame could not be parsed: truncated, trailing bytes, bad field value."""
    UNKNOWN_TYPE = 3
    """A frame type this version does not define."""
    TOO_LARGE = 4
    """A frame or a length field exceeds a protocol or advertised limit."""
    VIOLATION = 5
    """A well-formed frame that breaks the protocol's rules in the current state."""
    BANNED = 6
    """The sender refuses this peer (for example it served data that failed verification)."""
    GOING_AWAY = 7
    """Orderly shutdown: the sender is leaving or no longer needs this connection."""

    @property
    def label(self) -> str:
        """The lower-case name used in test vectors and logs (``"unknown_type"``)."""
        return self.name.lower()


class ProtocolError(ValueError):
    """A frame or an action violates the protocol; ``code`` says how (see :class:`ErrorCode`).

    Raised by :func:`decode` for bad frames from a peer (the connection then drops the peer)
    and by message constructors for out-of-range fields (a local bug).
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.label}: {message}")
        self.code = code
        self.message = message


class MessageType(enum.IntEnum):
    """The first byte of every frame. 0x00 is never valid, so zeroed buffers are rejected."""

    HELLO = 0x01
    ERROR = 0x02
    JOIN = 0x03
    HAVE_SET = 0x04
    HAVE = 0x05
    LOST = 0x06
    FETCHING = 0x07
    FETCH_ABORTED = 0x08
    REQUEST = 0x09
    CANCEL = 0x0A
    DONT_HAVE = 0x0B
    BUSY = 0x0C
    RESPONSE = 0x0D
    DATA = 0x0E


class Role(enum.IntEnum):
    """What the sender of a HELLO is."""

    VIEWER = 0
    """A player that downloads and (usually) uploads."""
    SEED = 1
    """A server-side peer that injects segments fetched from the origin."""


def _fail(message: str, code: ErrorCode = ErrorCode.MALFORMED) -> ProtocolError:
    return ProtocolError(code, message)


def _check_int(value: int, name: str, high: int, low: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{name} {value!r} is outside {low}..{high}")


def _check_swarm_index(index: int) -> None:
    _check_int(index, "swarm index", MAX_SWARMS - 1)


def _check_swarm_id(swarm: str) -> None:
    if not isinstance(swarm, str) or not SWARM_ID_PATTERN.fullmatch(swarm):
        raise _fail(f"swarm id {swarm!r} does not match {SWARM_ID_PATTERN.pattern}")


def _check_peer_id(peer_id: str) -> None:
    if (
        not isinstance(peer_id, str)
        or not 1 <= len(peer_id) <= MAX_PEER_ID_BYTES
        or not all("\x21" <= c <= "\x7e" for c in peer_id)
    ):
        raise _fail(f"peer id {peer_id!r} must be 1..{MAX_PEER_ID_BYTES} printable ASCII chars")


@dataclass(frozen=True, slots=True)
class Hello:
    """HELLO: the first frame each side sends; capabilities and the swarms this link covers."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    version_major: int
    """Protocol major version of the sender; a different major cannot talk."""
    version_minor: int
    """Protocol minor version of the sender; both sides then speak the smaller minor."""
    role: Role
    """Viewer or seed."""
    flags: int
    """Bit field, :data:`FLAG_UPLOAD` = 0x01; other bits reserved (sent 0, ignored)."""
    max_message_size: int
    """Largest frame the sender accepts, >= :data:`MIN_MESSAGE_SIZE` (frames never exceed
    :data:`MAX_FRAME_SIZE` whatever this says)."""
    max_requests: int
    """Most requests from the receiver the sender will have outstanding at once (1..65535)."""
    peer_id: str
    """The sender's id as assigned by the signalling server."""
    swarms: tuple[str, ...]
    """Swarm ids the sender takes part in on this link; later frames use their index."""

    def __post_init__(self) -> None:
        _check_int(self.version_major, "version major", 255)
        _check_int(self.version_minor, "version minor", 255)
        if not isinstance(self.role, Role):
            _check_int(self.role, "role", max(Role))
            object.__setattr__(self, "role", Role(self.role))
        _check_int(self.flags, "flags", 255)
        _check_int(self.max_message_size, "max message size", MAX_U32, MIN_MESSAGE_SIZE)
        _check_int(self.max_requests, "max requests", 2**16 - 1, 1)
        _check_peer_id(self.peer_id)
        object.__setattr__(self, "swarms", tuple(self.swarms))
        if len(self.swarms) > MAX_SWARMS:
            raise _fail(f"{len(self.swarms)} swarms, at most {MAX_SWARMS}", ErrorCode.TOO_LARGE)
        for swarm in self.swarms:
            _check_swarm_id(swarm)
        if len(set(self.swarms)) != len(self.swarms):
            raise _fail("the same swarm id is listed twice")

    @property
    def upload_enabled(self) -> bool:
        """Whether the sender serves segments (answers requests)."""
        return bool(self.flags & FLAG_UPLOAD)


@dataclass(frozen=True, slots=True)
class Error:
    """ERROR: the sender closes the connection, with a code and a human-readable reason."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    code: int
    """An :class:`ErrorCode` value; unknown codes (1..255) are accepted as generic errors."""
    reason: str = ""
    """Free text for logs, at most :data:`MAX_REASON_BYTES` bytes of UTF-8."""

    def __post_init__(self) -> None:
        _check_int(self.code, "error code", 255, 1)
        if not isinstance(self.reason, str):
            raise _fail("error reason must be text")
        if len(self.reason.encode("utf-8", "surrogatepass")) > MAX_REASON_BYTES:
            raise _fail(f"error reason longer than {MAX_REASON_BYTES} bytes", ErrorCode.TOO_LARGE)


@dataclass(frozen=True, slots=True)
class Join:
    """JOIN: the sender adds a swarm to its list on this link (e.g. after an ABR switch)."""

    TYPE: ClassVar[MessageType] = MessageType.JOIN
    swarm: int
    """Index of the new swarm: must equal the number of swarms the sender listed so far."""
    swarm_id: str
    """The swarm id."""

    def __post_init__(self) -> None:
        _check_swarm_index(self.swarm)
        _check_swarm_id(self.swarm_id)


@dataclass(frozen=True, slots=True)
class HaveSet:
    """HAVE_SET: everything the sender holds in one swarm; replaces what was known before.

    Media segments are a bitmap: bit ``i`` (most significant bit of byte ``i // 8`` first) set
    means the segment with sequence number ``base + i`` is held. Init segments are listed.
    """

    TYPE: ClassVar[MessageType] = MessageType.HAVE_SET
    swarm: int
    """Swarm index in the sender's list."""
    base: int
    """Media sequence number of bit 0."""
    bitmap: bytes
    """At most :data:`MAX_BITMAP_BYTES` bytes."""
    init_ids: tuple[int, ...] = ()
    """Init segment ids held, at most :data:`MAX_INIT_IDS`."""

    def __post_init__(self) -> None:
        _check_swarm_index(self.swarm)
        _check_int(self.base, "base sequence", MAX_SEGMENT_NUMBER)
        if not isinstance(self.bitmap, bytes):
            object.__setattr__(self, "bitmap", bytes(self.bitmap))
        if len(self.bitmap) > MAX_BITMAP_BYTES:
            raise _fail(
                f"bitmap of {len(self.bitmap)} bytes, at most {MAX_BITMAP_BYTES}",
                ErrorCode.TOO_LARGE,
            )
        if self.bitmap and self.base + 8 * len(self.bitmap) - 1 > MAX_SEGMENT_NUMBER:
            raise _fail("bitmap reaches past the largest sequence number 2**53-1")
        object.__setattr__(self, "init_ids", tuple(self.init_ids))
        if len(self.init_ids) > MAX_INIT_IDS:
            raise _fail(
                f"{len(self.init_ids)} init ids, at most {MAX_INIT_IDS}", ErrorCode.TOO_LARGE
            )
        for init_id in self.init_ids:
            _check_int(init_id, "init id", MAX_SEGMENT_NUMBER)

    @classmethod
    def from_sequences(
        cls, swarm: int, sequences: Iterable[int], init_ids: Iterable[int] = ()
    ) -> HaveSet:
        """The smallest HAVE_SET for ``sequences`` (base = lowest, bitmap up to the highest)."""
        held = sorted(set(sequences))
        if not held:
            return cls(swarm, 0, b"", tuple(init_ids))
        base = held[0]
        span = held[-1] - base + 1
        if span > 8 * MAX_BITMAP_BYTES:
            raise _fail(
                f"sequences {base}..{held[-1]} span {span} segments; a HAVE_SET covers at most "
                f"{8 * MAX_BITMAP_BYTES}: advertise the window that matters",
                ErrorCode.TOO_LARGE,
            )
        bits = bytearray((span + 7) // 8)
        for sequence in held:
            offset = sequence - base
            bits[offset >> 3] |= 0x80 >> (offset & 7)
        return cls(swarm, base, bytes(bits), tuple(init_ids))

    def sequences(self) -> Iterator[int]:
        """The media sequence numbers held, ascending."""
        for index, byte in enumerate(self.bitmap):
            if byte:
                for bit in range(8):
                    if byte & (0x80 >> bit):
                        yield self.base + 8 * index + bit


@dataclass(frozen=True, slots=True)
class _KeyUpdate:
    """Shared body of HAVE, LOST, FETCHING and FETCH_ABORTED: one segment of one swarm."""

    swarm: int
    """Swarm index in the sender's list."""
    key: SegmentKey
    """The segment."""

    def __post_init__(self) -> None:
        _check_swarm_index(self.swarm)
        if not isinstance(self.key, SegmentKey):
            raise _fail("key must be a SegmentKey")


@dataclass(frozen=True, slots=True)
class Have(_KeyUpdate):
    """HAVE: the sender now holds this segment (and is no longer fetching it)."""

    TYPE: ClassVar[MessageType] = MessageType.HAVE


@dataclass(frozen=True, slots=True)
class Lost(_KeyUpdate):
    """LOST: the sender no longer holds this segment (evicted from its cache)."""

    TYPE: ClassVar[MessageType] = MessageType.LOST


@dataclass(frozen=True, slots=True)
class Fetching(_KeyUpdate):
    """FETCHING: the sender is downloading this segment from the origin right now."""

    TYPE: ClassVar[MessageType] = MessageType.FETCHING


@dataclass(frozen=True, slots=True)
class FetchAborted(_KeyUpdate):
    """FETCH_ABORTED: the origin download announced by FETCHING failed or was abandoned."""

    TYPE: ClassVar[MessageType] = MessageType.FETCH_ABORTED


@dataclass(frozen=True, slots=True)
class Request:
    """REQUEST: please send bytes ``offset ..`` of a segment (``length`` 0 = to its end)."""

    TYPE: ClassVar[MessageType] = MessageType.REQUEST
    request_id: int
    """Chosen by the requester, strictly increasing on the connection (u32)."""
    swarm: int
    """Swarm index in the requester's list."""
    key: SegmentKey
    """The segment wanted."""
    offset: int = 0
    """First byte wanted; non-zero resumes a transfer cut short elsewhere."""
    length: int = 0
    """Bytes wanted from ``offset``; 0 means up to the end of the segment."""

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request id", MAX_U32)
        _check_swarm_index(self.swarm)
        if not isinstance(self.key, SegmentKey):
            raise _fail("key must be a SegmentKey")
        _check_int(self.offset, "offset", MAX_U32)
        _check_int(self.length, "length", MAX_U32)


@dataclass(frozen=True, slots=True)
class _RequestRef:
    request_id: int
    """The request this frame is about."""

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request id", MAX_U32)


@dataclass(frozen=True, slots=True)
class Cancel(_RequestRef):
    """CANCEL: the requester no longer wants this request; send nothing more for it."""

    TYPE: ClassVar[MessageType] = MessageType.CANCEL


@dataclass(frozen=True, slots=True)
class DontHave(_RequestRef):
    """DONT_HAVE: the responder cannot serve this request (or stops serving it mid-way)."""

    TYPE: ClassVar[MessageType] = MessageType.DONT_HAVE


@dataclass(frozen=True, slots=True)
class Busy:
    """BUSY: the responder has the segment but no capacity now; retry after a while."""

    TYPE: ClassVar[MessageType] = MessageType.BUSY
    request_id: int
    """The request refused."""
    retry_after_ms: int = 0
    """Hint: do not ask this peer again before this many milliseconds (0 = no hint)."""

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request id", MAX_U32)
        _check_int(self.retry_after_ms, "retry after", MAX_RETRY_AFTER_MS)


@dataclass(frozen=True, slots=True)
class Response:
    """RESPONSE: the transfer starts; exactly ``length`` bytes follow in DATA frames."""

    TYPE: ClassVar[MessageType] = MessageType.RESPONSE
    request_id: int
    """The request answered."""
    total_size: int
    """Size of the whole segment in bytes."""
    offset: int
    """First byte sent: the requested offset."""
    length: int
    """Bytes that follow: min(requested length or all, total_size - offset)."""

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request id", MAX_U32)
        _check_int(self.total_size, "total size", MAX_U32)
        _check_int(self.offset, "offset", MAX_U32)
        _check_int(self.length, "length", MAX_U32)
        if self.offset + self.length > self.total_size:
            raise _fail(
                f"range {self.offset}+{self.length} ends past the segment size {self.total_size}"
            )


@dataclass(frozen=True, slots=True)
class Data:
    """DATA: a chunk of a transfer, at absolute byte ``offset`` of the segment."""

    TYPE: ClassVar[MessageType] = MessageType.DATA
    request_id: int
    """The transfer this chunk belongs to."""
    offset: int
    """Position of the first payload byte in the segment."""
    payload: bytes
    """1 .. :data:`MAX_DATA_PAYLOAD` bytes."""

    def __post_init__(self) -> None:
        _check_int(self.request_id, "request id", MAX_U32)
        _check_int(self.offset, "offset", MAX_U32)
        size = len(self.payload)
        if not 1 <= size <= MAX_DATA_PAYLOAD:
            code = ErrorCode.MALFORMED if size == 0 else ErrorCode.TOO_LARGE
            raise _fail(f"DATA payload of {size} bytes, must be 1..{MAX_DATA_PAYLOAD}", code)


Message = (
    Hello
    | Error
    | Join
    | HaveSet
    | Have
    | Lost
    | Fetching
    | FetchAborted
    | Request
    | Cancel
    | DontHave
    | Busy
    | Response
    | Data
)

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HELLO_HEAD = struct.Struct(">BBBBBIH")  # type, major, minor, role, flags, max size, max req
_KEY_UPDATE = struct.Struct(">BBBQ")  # type, swarm, kind, number
_REQUEST = struct.Struct(">BIBBQII")  # type, id, swarm, kind, number, offset, length
_REF = struct.Struct(">BI")  # type, request id
_BUSY = struct.Struct(">BIH")
_RESPONSE = struct.Struct(">BIIII")
_DATA_HEAD = struct.Struct(">BII")
_HAVE_SET_HEAD = struct.Struct(">BBQH")  # type, swarm, base, bitmap length
# Bodies, read after the type byte (and for HELLO after the version bytes).
_KEY = struct.Struct(">BQ")
_VERSION = struct.Struct(">BB")
_HELLO_REST = struct.Struct(">BBIH")
_HAVE_SET_BODY = struct.Struct(">BQH")
_ID_SWARM = struct.Struct(">IB")
_OFFSET_LENGTH = struct.Struct(">II")
_BUSY_BODY = struct.Struct(">IH")
_RESPONSE_BODY = struct.Struct(">IIII")


def _str8(text: str, encoding: str = "ascii") -> bytes:
    raw = text.encode(encoding)
    return _U8.pack(len(raw)) + raw


def encode(message: Message) -> bytes:
    """The frame for ``message`` (fields were validated when the message was built)."""
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise TypeError(f"not a protocol message: {type(message).__name__}")
    return encoder(message)


def _encode_hello(m: Hello) -> bytes:
    head = _HELLO_HEAD.pack(
        m.TYPE,
        m.version_major,
        m.version_minor,
        m.role,
        m.flags,
        m.max_message_size,
        m.max_requests,
    )
    swarms = b"".join(_str8(s) for s in m.swarms)
    return head + _str8(m.peer_id) + _U8.pack(len(m.swarms)) + swarms


def _encode_error(m: Error) -> bytes:
    return bytes((m.TYPE, m.code)) + _str8(m.reason, "utf-8")


def _encode_join(m: Join) -> bytes:
    return bytes((m.TYPE, m.swarm)) + _str8(m.swarm_id)


def _encode_have_set(m: HaveSet) -> bytes:
    head = _HAVE_SET_HEAD.pack(m.TYPE, m.swarm, m.base, len(m.bitmap))
    inits = b"".join(_U64.pack(i) for i in m.init_ids)
    return head + m.bitmap + _U8.pack(len(m.init_ids)) + inits


def _encode_key_update(m: _KeyUpdate) -> bytes:
    return _KEY_UPDATE.pack(m.TYPE, m.swarm, m.key.kind, m.key.number)  # type: ignore[attr-defined]


def _encode_request(m: Request) -> bytes:
    return _REQUEST.pack(
        m.TYPE, m.request_id, m.swarm, m.key.kind, m.key.number, m.offset, m.length
    )


def _encode_ref(m: _RequestRef) -> bytes:
    return _REF.pack(m.TYPE, m.request_id)  # type: ignore[attr-defined]


def _encode_busy(m: Busy) -> bytes:
    return _BUSY.pack(m.TYPE, m.request_id, m.retry_after_ms)


def _encode_response(m: Response) -> bytes:
    return _RESPONSE.pack(m.TYPE, m.request_id, m.total_size, m.offset, m.length)


def _encode_data(m: Data) -> bytes:
    return _DATA_HEAD.pack(MessageType.DATA, m.request_id, m.offset) + m.payload


_ENCODERS: dict[type, Any] = {
    Hello: _encode_hello,
    Error: _encode_error,
    Join: _encode_join,
    HaveSet: _encode_have_set,
    Have: _encode_key_update,
    Lost: _encode_key_update,
    Fetching: _encode_key_update,
    FetchAborted: _encode_key_update,
    Request: _encode_request,
    Cancel: _encode_ref,
    DontHave: _encode_ref,
    Busy: _encode_busy,
    Response: _encode_response,
    Data: _encode_data,
}


def encode_data_header(request_id: int, offset: int) -> bytes:
    """The 9-byte header of a DATA frame, for senders that write header and payload apart."""
    return _DATA_HEAD.pack(MessageType.DATA, request_id, offset)


class _Reader:
    """Cursor over one frame; every read checks the bytes are there first."""

    __slots__ = ("frame", "pos")

    def __init__(self, frame: bytes, pos: int) -> None:
        self.frame = frame
        self.pos = pos

    def take(self, size: int, what: str) -> bytes:
        end = self.pos + size
        if end > len(self.frame):
            raise _fail(f"frame truncated in {what}: needs {end} bytes, has {len(self.frame)}")
        chunk = self.frame[self.pos : end]
        self.pos = end
        return chunk

    def unpack(self, layout: struct.Struct, what: str) -> tuple[Any, ...]:
        return layout.unpack(self.take(layout.size, what))

    def str8(self, what: str, encoding: str = "ascii") -> str:
        (size,) = self.unpack(_U8, what)
        raw = self.take(size, what)
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            raise _fail(f"{what} is not valid {encoding}") from None

    def key(self) -> SegmentKey:
        kind, number = self.unpack(_KEY, "segment key")
        if kind > max(SegmentKind):
            raise _fail(f"unknown segment kind {kind}")
        if number > MAX_SEGMENT_NUMBER:
            raise _fail(f"segment number {number} is above 2**53-1")
        return SegmentKey(SegmentKind(kind), number)

    def end(self, what: str) -> None:
        if self.pos != len(self.frame):
            raise _fail(f"{len(self.frame) - self.pos} trailing bytes after {what}")


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """The message in ``frame``, fully validated; raises :class:`ProtocolError` otherwise."""
    size = len(frame)
    if size > MAX_FRAME_SIZE:
        raise _fail(f"frame of {size} bytes, at most {MAX_FRAME_SIZE}", ErrorCode.TOO_LARGE)
    if size == 0:
        raise _fail("empty frame")
    kind = frame[0]
    if kind == MessageType.DATA:  # the hot path: one unpack, one copy of the payload
        if size <= DATA_HEADER_SIZE:
            raise _fail(f"DATA frame of {size} bytes has no payload")
        _, request_id, offset = _DATA_HEAD.unpack_from(frame)
        if isinstance(frame, bytes):
            return Data(request_id, offset, frame[DATA_HEADER_SIZE:])
        return Data(request_id, offset, bytes(memoryview(frame)[DATA_HEADER_SIZE:]))
    if not isinstance(frame, bytes):
        frame = bytes(frame)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise _fail(f"unknown frame type 0x{kind:02x}", ErrorCode.UNKNOWN_TYPE)
    reader = _Reader(frame, 1)
    message = decoder(reader)
    if not isinstance(message, Hello):  # HELLO handles its own tail (extensions)
        reader.end(MessageType(kind).name)
    return message


def _decode_hello(r: _Reader) -> Hello:
    major, minor = r.unpack(_VERSION, "HELLO version")
    if major != VERSION_MAJOR:
        raise _fail(
            f"peer speaks protocol {major}.{minor}, this peer speaks "
            f"{VERSION_MAJOR}.{VERSION_MINOR}: upgrade the older side",
            ErrorCode.VERSION,
        )
    role, flags, max_size, max_requests = r.unpack(_HELLO_REST, "HELLO")
    if role > max(Role):
        raise _fail(f"unknown role {role}")
    peer_id = r.str8("peer id")
    (count,) = r.unpack(_U8, "swarm count")
    if count > MAX_SWARMS:
        raise _fail(f"{count} swarms, at most {MAX_SWARMS}", ErrorCode.TOO_LARGE)
    swarms = tuple(r.str8("swarm id") for _ in range(count))
    # A newer minor may append fields to HELLO; an equal or older one may not.
    if minor <= VERSION_MINOR:
        r.end("HELLO")
    return Hello(major, minor, Role(role), flags, max_size, max_requests, peer_id, swarms)


def _decode_error(r: _Reader) -> Error:
    (code,) = r.unpack(_U8, "error code")
    return Error(code, r.str8("error reason", "utf-8"))


def _decode_join(r: _Reader) -> Join:
    (swarm,) = r.unpack(_U8, "swarm index")
    return Join(swarm, r.str8("swarm id"))


def _decode_have_set(r: _Reader) -> HaveSet:
    swarm, base, size = r.unpack(_HAVE_SET_BODY, "HAVE_SET")
    if size > MAX_BITMAP_BYTES:
        raise _fail(f"bitmap of {size} bytes, at most {MAX_BITMAP_BYTES}", ErrorCode.TOO_LARGE)
    bitmap = r.take(size, "bitmap")
    (count,) = r.unpack(_U8, "init count")
    if count > MAX_INIT_IDS:
        raise _fail(f"{count} init ids, at most {MAX_INIT_IDS}", ErrorCode.TOO_LARGE)
    init_ids = tuple(r.unpack(_U64, "init id")[0] for _ in range(count))
    return HaveSet(swarm, base, bitmap, init_ids)


def _key_update_decoder(cls: type[_KeyUpdate]) -> Any:
    def decode_key_update(r: _Reader) -> _KeyUpdate:
        (swarm,) = r.unpack(_U8, "swarm index")
        return cls(swarm, r.key())

    return decode_key_update


def _decode_request(r: _Reader) -> Request:
    request_id, swarm = r.unpack(_ID_SWARM, "REQUEST")
    key = r.key()
    offset, length = r.unpack(_OFFSET_LENGTH, "REQUEST range")
    return Request(request_id, swarm, key, offset, length)


def _ref_decoder(cls: type[_RequestRef]) -> Any:
    def decode_ref(r: _Reader) -> _RequestRef:
        return cls(r.unpack(_U32, "request id")[0])

    return decode_ref


def _decode_busy(r: _Reader) -> Busy:
    return Busy(*r.unpack(_BUSY_BODY, "BUSY"))


def _decode_response(r: _Reader) -> Response:
    return Response(*r.unpack(_RESPONSE_BODY, "RESPONSE"))


_DECODERS: dict[int, Any] = {
    MessageType.HELLO: _decode_hello,
    MessageType.ERROR: _decode_error,
    MessageType.JOIN: _decode_join,
    MessageType.HAVE_SET: _decode_have_set,
    MessageType.HAVE: _key_update_decoder(Have),
    MessageType.LOST: _key_update_decoder(Lost),
    MessageType.FETCHING: _key_update_decoder(Fetching),
    MessageType.FETCH_ABORTED: _key_update_decoder(FetchAborted),
    MessageType.REQUEST: _decode_request,
    MessageType.CANCEL: _ref_decoder(Cancel),
    MessageType.DONT_HAVE: _ref_decoder(DontHave),
    MessageType.BUSY: _decode_busy,
    MessageType.RESPONSE: _decode_response,
}

_CLASSES: dict[str, type] = {cls.TYPE.name.lower(): cls for cls in _ENCODERS}


def message_to_dict(message: Message) -> dict[str, Any]:
    """The JSON form of ``message`` used by the test vectors (bytes as hex, enums as names)."""
    out: dict[str, Any] = {"type": message.TYPE.name.lower()}
    for field in fields(message):  # type: ignore[arg-type]
        out[field.name] = _to_json(getattr(message, field.name))
    return out


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, SegmentKey):
        return {"kind": value.kind.name.lower(), "number": value.number}
    if isinstance(value, Role):
        return value.name.lower()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def message_from_dict(data: dict[str, Any]) -> Message:
    """Inverse of :func:`message_to_dict`; raises ProtocolError/ValueError on bad input."""
    cls = _CLASSES.get(data.get("type", ""))
    if cls is None:
        raise ValueError(f"unknown message type {data.get('type')!r}")
    kwargs = {f.name: _from_json(f.name, data[f.name]) for f in fields(cls) if f.name in data}
    return cls(**kwargs)  # type: ignore[no-any-return]


def _from_json(name: str, value: Any) -> Any:
    if name in ("bitmap", "payload"):
        return bytes.fromhex(value)
    if name == "key":
        return SegmentKey(SegmentKind[value["kind"].upper()], value["number"])
    if name == "role":
        return Role[value.upper()]
    if isinstance(value, list):
        return tuple(value)
    return value
