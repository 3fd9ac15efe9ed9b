"""Sans-IO state machine of one peer-to-peer link (one data channel), modelled on h11/aioquic.

The adapter (aiortc, the browser twin, a simulator) feeds every received data-channel message
to :meth:`PeerProtocol.receive`, acts on the returned events, calls the ``send_*`` /
:meth:`~PeerProtocol.request` methods to act, and writes out what
:meth:`~PeerProtocol.data_to_send` returns. Nothing here does I/O, uses asyncio or reads a
clock: deadlines belong to the scheduler, which cancels what it no longer wants.

Everything the remote peer does is checked against ``docs/protocol.md``: HELLO first, request
ids strictly increasing, no more outstanding requests than advertised, RESPONSE matching the
request, DATA contiguous and never past the announced length, segments no larger than
:attr:`ConnectionConfig.max_segment_size`. Reassembly buffers grow only with bytes actually
received, so memory is bounded by ``max_outbound_requests * max_segment_size``. The first
violation sends an ERROR frame, fails every open request and closes the link: the adapter then
flushes :meth:`~PeerProtocol.data_to_send` and drops the channel.
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.protocol import (
    DATA_HEADER_SIZE,
    MAX_FRAME_SIZE,
    MAX_REASON_BYTES,
    MAX_SWARMS,
    MAX_U32,
    MIN_MESSAGE_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    Busy,
    Cancel,
    Data,
    DontHave,
    Error,
    ErrorCode,
    FetchAborted,
    Fetching,
    Have,
    HaveSet,
    Hello,
    Join,
    Lost,
    Message,
    ProtocolError,
    Request,
    Response,
    Role,
    decode,
    encode,
    encode_data_header,
)

log = logging.getLogger(__name__)


@dataclass
class ConnectionConfig:
    """What this side announces in its HELLO and the limits it enforces on the remote peer."""

    peer_id: str
    """Our id as assigned by the signalling server (1..64 printable ASCII characters)."""
    swarms: Sequence[str] = ()
    """Swarm ids we take part in on this link, in index order (more can be added by join())."""
    role: Role = Role.VIEWER
    """Viewer or seed."""
    upload_enabled: bool = True
    """Whether we serve segments; if False, a REQUEST from the peer is a protocol violation."""
    max_message_size: int = MAX_FRAME_SIZE
    """Largest frame we accept, MIN_MESSAGE_SIZE..MAX_FRAME_SIZE (64 KiB)."""
    max_inbound_requests: int = 16
    """Requests the peer may have outstanding with us at once (advertised as max_requests)."""
    max_outbound_requests: int = 16
    """Requests we keep outstanding with the peer at most (also capped by its max_requests)."""
    max_segment_size: int = 32 * 1024 * 1024
    """Largest segment we accept; a bigger RESPONSE fails that request (and cancels it)."""
    cancelled_memory: int = 256
    """How many cancelled request ids we remember, to drop frames already in flight for them."""

    def __post_init__(self) -> None:
        if not MIN_MESSAGE_SIZE <= self.max_message_size <= MAX_FRAME_SIZE:
            raise ValueError(
                f"max_message_size {self.max_message_size} must be within "
                f"{MIN_MESSAGE_SIZE}..{MAX_FRAME_SIZE}"
            )
        for name in ("max_inbound_requests", "max_outbound_requests", "cancelled_memory"):
            if not 1 <= getattr(self, name) <= 65535:
                raise ValueError(f"{name} must be within 1..65535")
        if not 1 <= self.max_segment_size <= MAX_U32:
            raise ValueError(f"max_segment_size must be within 1..{MAX_U32}")


class ConnectionState(enum.Enum):
    """Life cycle of a link."""

    AWAIT_HELLO = "await_hello"
    """Our HELLO is queued; the peer's has not arrived."""
    OPEN = "open"
    """Both HELLOs exchanged with compatible versions."""
    CLOSED = "closed"
    """An ERROR was sent or received, or the channel went away."""


class ConnectionStateError(RuntimeError):
    """A local call that the link's current state does not allow (a bug in the caller)."""


# --------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """The peer's HELLO arrived with a compatible version: the link is open."""

    peer_id: str
    """The peer's id."""
    role: Role
    """The peer's role."""
    upload_enabled: bool
    """Whether the peer serves segments."""
    max_requests: int
    """Requests we may keep outstanding with the peer."""
    swarms: tuple[str, ...]
    """Swarm ids the peer takes part in on this link."""
    version_minor: int
    """The minor version both sides now speak."""


@dataclass(frozen=True, slots=True)
class SwarmJoined:
    """The peer added a swarm to this link."""

    swarm_id: str
    """The swarm joined."""


@dataclass(frozen=True, slots=True)
class HaveSetReceived:
    """The peer's full availability in one swarm; replaces what it announced before."""

    swarm_id: str
    """The swarm."""
    base: int
    """Media sequence number of the bitmap's first bit."""
    bitmap: bytes
    """Bit ``i`` (MSB first) set: ``base + i`` is held. Kept compact: iterate sequences()."""
    init_ids: tuple[int, ...]
    """Init segment ids held."""

    def sequences(self) -> Iterator[int]:
        """The media sequence numbers held, ascending (expanded lazily: up to 65,536)."""
        return HaveSet(0, self.base, self.bitmap).sequences()


@dataclass(frozen=True, slots=True)
class HaveReceived:
    """The peer now holds a segment."""

    swarm_id: str
    """The swarm."""
    key: SegmentKey
    """The segment."""


@dataclass(frozen=True, slots=True)
class LostReceived:
    """The peer evicted a segment."""

    swarm_id: str
    """The swarm."""
    key: SegmentKey
    """The segment."""


@dataclass(frozen=True, slots=True)
class FetchingReceived:
    """The peer is downloading a segment from the origin now."""

    swarm_id: str
    """The swarm."""
    key: SegmentKey
    """The segment."""


@dataclass(frozen=True, slots=True)
class FetchAbortedReceived:
    """The peer's origin download of a segment failed or was abandoned."""

    swarm_id: str
    """The swarm."""
    key: SegmentKey
    """The segment."""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """The peer asks us for a segment: answer with send_segment, send_dont_have or send_busy."""

    request_id: int
    """Id to answer with."""
    swarm_id: str
    """The swarm."""
    key: SegmentKey
    """The segment wanted."""
    offset: int
    """First byte wanted."""
    length: int
    """Bytes wanted (0 = to the end)."""


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """The peer cancelled one of its requests; anything still queued for it was dropped."""

    request_id: int
    """The request cancelled."""


@dataclass(frozen=True, slots=True)
class TransferStarted:
    """The peer began answering one of our requests."""

    request_id: int
    """Our request."""
    total_size: int
    """Size of the whole segment."""
    offset: int
    """First byte that will arrive."""
    length: int
    """Bytes that will arrive."""


@dataclass(frozen=True, slots=True)
class TransferChunk:
    """A chunk of one of our transfers arrived (progress; the bytes are kept until the end)."""

    request_id: int
    """Our request."""
    offset: int
    """Segment offset of the chunk."""
    size: int
    """Bytes in the chunk."""


@dataclass(frozen=True, slots=True)
class TransferCompleted:
    """One of our requests is complete. Integrity of the bytes is checked by the caller."""

    request_id: int
    """Our request."""
    data: bytes
    """Bytes ``offset .. offset + len(data)`` of the segment."""
    total_size: int
    """Size of the whole segment."""
    offset: int
    """Segment offset of ``data``."""


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """One of our requests ended without its data (link closed, or segment too large)."""

    request_id: int
    """Our request."""
    reason: str
    """Why, for logs."""
    received: int = 0
    """Bytes that had arrived (a resume elsewhere can start at ``offset + received``)."""


@dataclass(frozen=True, slots=True)
class DontHaveReceived:
    """The peer cannot serve one of our requests (or stopped serving it mid-transfer)."""

    request_id: int
    """Our request."""
    received: int = 0
    """Bytes that had arrived before the peer gave up."""


@dataclass(frozen=True, slots=True)
class BusyReceived:
    """The peer refused one of our requests for lack of capacity."""

    request_id: int
    """Our request."""
    retry_after_ms: int
    """The peer's hint of when to ask again (0 = none)."""
    received: int = 0
    """Bytes that had arrived before the peer gave up."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The link is closed; no further events. Every open request got its own failure first."""

    code: int | None
    """Error code of the ERROR frame sent or received; None if the channel just went away."""
    reason: str
    """Why, for logs."""
    by_peer: bool
    """True if the peer closed (or the channel died), False if we did."""


Event = (
    HelloReceived
    | SwarmJoined
    | HaveSetReceived
    | HaveReceived
    | LostReceived
    | FetchingReceived
    | FetchAbortedReceived
    | RequestReceived
    | RequestCancelled
    | TransferStarted
    | TransferChunk
    | TransferCompleted
    | TransferFailed
    | DontHaveReceived
    | BusyReceived
    | ConnectionClosed
)

# ------------------------------------------------------------------------------------ internals


@dataclass(slots=True)
class _Download:
    """One of our requests, from REQUEST until its end."""

    swarm_id: str
    key: SegmentKey
    offset: int
    length: int
    started: bool = False
    total_size: int = 0
    next_offset: int = 0
    end: int = 0
    buffer: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _Upload:
    """One of the peer's requests, from REQUEST until we sent its last byte or refusal."""

    request: Request
    data: memoryview | None = None
    position: int = 0
    end: int = 0


_KEY_EVENTS: dict[type, type] = {
    Have: HaveReceived,
    Lost: LostReceived,
    Fetching: FetchingReceived,
    FetchAborted: FetchAbortedReceived,
}


class PeerProtocol:
    """The protocol state of the link with one remote peer. Create it when the channel opens."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self.state = ConnectionState.AWAIT_HELLO
        #: The peer's HELLO once received.
        self.peer: Hello | None = None
        #: Minor version in use once open.
        self.version_minor = VERSION_MINOR
        self._our_swarms: list[str] = []
        self._peer_swarms: list[str] = []
        self._control: deque[bytes] = deque()
        self._downloads: dict[int, _Download] = {}
        self._uploads: dict[int, _Upload] = {}
        self._upload_order: deque[int] = deque()
        self._cancelled: OrderedDict[int, None] = OrderedDict()
        self._next_request_id = 0
        self._last_peer_request_id = -1
        hello = Hello(
            VERSION_MAJOR,
            VERSION_MINOR,
            config.role,
            1 if config.upload_enabled else 0,
            config.max_message_size,
            config.max_inbound_requests,
            config.peer_id,
            tuple(config.swarms),
        )
        self._our_swarms = list(hello.swarms)
        self._queue(hello)

    # ------------------------------------------------------------------------------ properties

    @property
    def peer_id(self) -> str | None:
        """The remote peer's id, once its HELLO arrived."""
        return self.peer.peer_id if self.peer else None

    @property
    def request_slots(self) -> int:
        """How many more requests :meth:`request` accepts now (0 until the link is open)."""
        if self.state is not ConnectionState.OPEN or self.peer is None:
            return 0
        if not self.peer.upload_enabled:
            return 0
        limit = min(self.config.max_outbound_requests, self.peer.max_requests)
        return max(0, limit - len(self._downloads))

    @property
    def buffered_bytes(self) -> int:
        """Bytes held in reassembly buffers of transfers in progress."""
        return sum(len(d.buffer) for d in self._downloads.values())

    @property
    def pending_bytes(self) -> int:
        """Bytes that :meth:`data_to_send` would still produce (frames queued + data to send)."""
        control = sum(len(frame) for frame in self._control)
        return control + sum(u.end - u.position for u in self._uploads.values() if u.data)

    def progress(self, request_id: int) -> tuple[int, int] | None:
        """(bytes received, bytes expected) of one of our requests; None if not in progress."""
        download = self._downloads.get(request_id)
        if download is None or not download.started:
            return None
        return len(download.buffer), download.end - download.offset

    def partial_data(self, request_id: int) -> bytes:
        """Bytes received so far by one of our requests (from its offset), ``b""`` if none.

        Call it before :meth:`cancel` to keep what a peer delivered, so that the rest can be
        fetched from the origin with a Range request instead of starting over.
        """
        download = self._downloads.get(request_id)
        return bytes(download.buffer) if download is not None else b""

    # ---------------------------------------------------------------------------------- output

    def data_to_send(self, budget: int | None = None) -> list[bytes]:
        """Frames to write to the data channel, each one data-channel message.

        Control frames come first, then DATA chunks of the transfers in progress, round robin
        so several transfers share the link. With a ``budget`` (bytes), chunks stop once it is
        reached, leaving the rest for the next call: pass the room left in the channel's send
        buffer so a cancelled transfer stops costing bandwidth at once.
        """
        frames = list(self._control)
        self._control.clear()
        used = sum(len(frame) for frame in frames)
        chunk_size = self._chunk_size()
        while self._upload_order and (budget is None or used < budget):
            request_id = self._upload_order.popleft()
            upload = self._uploads.get(request_id)
            if upload is None or upload.data is None:
                continue  # answered otherwise or cancelled since it was scheduled
            end = min(upload.position + chunk_size, upload.end)
            payload = upload.data[upload.position : end]
            frames.append(encode_data_header(request_id, upload.position) + payload)
            used += DATA_HEADER_SIZE + len(payload)
            upload.position = end
            if end < upload.end:
                self._upload_order.append(request_id)
            else:
                del self._uploads[request_id]
        return frames

    def _chunk_size(self) -> int:
        limit = self.config.max_message_size
        if self.peer is not None:
            limit = min(limit, self.peer.max_message_size)
        return min(limit, MAX_FRAME_SIZE) - DATA_HEADER_SIZE

    def _queue(self, message: Message) -> None:
        self._control.append(encode(message))

    # ------------------------------------------------------------------------------- local API

    def join(self, swarm_id: str) -> None:
        """Add a swarm to this link (we then announce and request in it)."""
        self._require_not_closed()
        if swarm_id in self._our_swarms:
            raise ValueError(f"swarm {swarm_id} is already on this link")
        if len(self._our_swarms) >= MAX_SWARMS:
            raise ValueError(f"a link covers at most {MAX_SWARMS} swarms")
        message = Join(len(self._our_swarms), swarm_id)
        self._our_swarms.append(swarm_id)
        self._queue(message)

    def send_have_set(
        self, swarm_id: str, sequences: Iterable[int], init_ids: Iterable[int] = ()
    ) -> None:
        """Announce everything we hold in a swarm (at link open, or to resynchronise)."""
        self._require_not_closed()
        self._queue(HaveSet.from_sequences(self._our_index(swarm_id), sequences, init_ids))

    def send_have(self, swarm_id: str, key: SegmentKey) -> None:
        """Announce that we now hold ``key``."""
        self._send_key(Have, swarm_id, key)

    def send_lost(self, swarm_id: str, key: SegmentKey) -> None:
        """Announce that we evicted ``key``."""
        self._send_key(Lost, swarm_id, key)

    def send_fetching(self, swarm_id: str, key: SegmentKey) -> None:
        """Announce that we are downloading ``key`` from the origin now."""
        self._send_key(Fetching, swarm_id, key)

    def send_fetch_aborted(self, swarm_id: str, key: SegmentKey) -> None:
        """Announce that our origin download of ``key`` failed or was abandoned."""
        self._send_key(FetchAborted, swarm_id, key)

    def _send_key(self, cls: type, swarm_id: str, key: SegmentKey) -> None:
        self._require_not_closed()
        self._queue(cls(self._our_index(swarm_id), key))

    def request(self, swarm_id: str, key: SegmentKey, offset: int = 0, length: int = 0) -> int:
        """Ask the peer for ``key`` (bytes ``offset ..``, ``length`` 0 = to the end).

        Returns the request id. Exactly one of TransferCompleted, TransferFailed, DontHaveReceived
        or BusyReceived follows for it, unless we :meth:`cancel` it first.
        """
        if self.request_slots == 0:
            raise ConnectionStateError(self._why_no_slot())
        index = self._our_index(swarm_id)
        if swarm_id not in self._peer_swarms:
            raise ValueError(f"peer {self.peer_id} is not in swarm {swarm_id}")
        if self._next_request_id > MAX_U32:
            raise ConnectionStateError("request ids exhausted on this link: reconnect")
        request_id = self._next_request_id
        self._queue(Request(request_id, index, key, offset, length))
        self._next_request_id += 1
        self._downloads[request_id] = _Download(swarm_id, key, offset, length)
        return request_id

    def _why_no_slot(self) -> str:
        if self.state is not ConnectionState.OPEN:
            return f"cannot request on a link in state {self.state.value}"
        if self.peer is not None and not self.peer.upload_enabled:
            return f"peer {self.peer_id} does not upload"
        return "every request slot is in use: wait for a request to end"

    def cancel(self, request_id: int) -> bool:
        """Cancel one of our requests; no event follows for it. False if it had already ended."""
        if self._downloads.pop(request_id, None) is None:
            return False
        self._remember_cancelled(request_id)
        if self.state is not ConnectionState.CLOSED:
            self._queue(Cancel(request_id))
        return True

    def _remember_cancelled(self, request_id: int) -> None:
        self._cancelled[request_id] = None
        while len(self._cancelled) > self.config.cancelled_memory:
            self._cancelled.popitem(last=False)

    def send_segment(self, request_id: int, data: bytes | bytearray | memoryview) -> bool:
        """Answer the peer's request with ``data``, the whole segment.

        The requested range is cut from it and sent in chunks by :meth:`data_to_send`. Returns
        False if the request is gone (cancelled meanwhile, or the link closed), or if the
        requested offset lies past the segment's end, in which case DONT_HAVE is sent.
        """
        upload = self._uploads.get(request_id)
        if upload is None or self.state is ConnectionState.CLOSED:
            return False
        if upload.data is not None:
            raise ConnectionStateError(f"request {request_id} was already answered")
        view = memoryview(data).cast("B")
        total = len(view)
        if total > MAX_U32:
            raise ValueError(f"segment of {total} bytes is larger than the protocol's 4 GiB")
        request = upload.request
        if request.offset > total:
            return not self.send_dont_have(request_id)
        available = total - request.offset
        length = available if request.length == 0 else min(request.length, available)
        self._queue(Response(request_id, total, request.offset, length))
        if length == 0:
            del self._uploads[request_id]
            return True
        upload.data, upload.position, upload.end = view, request.offset, request.offset + length
        self._upload_order.append(request_id)
        return True

    def send_dont_have(self, request_id: int) -> bool:
        """Refuse (or stop serving) the peer's request. False if it is gone already."""
        return self._refuse(request_id, DontHave(request_id))

    def send_busy(self, request_id: int, retry_after_ms: int = 0) -> bool:
        """Refuse the peer's request for lack of capacity. False if it is gone already."""
        return self._refuse(request_id, Busy(request_id, retry_after_ms))

    def _refuse(self, request_id: int, message: Message) -> bool:
        if self.state is ConnectionState.CLOSED or self._uploads.pop(request_id, None) is None:
            return False
        self._queue(message)
        return True

    def close(self, code: ErrorCode = ErrorCode.GOING_AWAY, reason: str = "") -> list[Event]:
        """Close the link: queue an ERROR frame and fail every open request."""
        if self.state is ConnectionState.CLOSED:
            return []
        self._queue(Error(code, _clip(reason)))
        return self._shutdown(int(code), reason, by_peer=False)

    def connection_lost(self) -> list[Event]:
        """The channel closed without an ERROR frame: fail every open request."""
        if self.state is ConnectionState.CLOSED:
            return []
        return self._shutdown(None, "data channel closed", by_peer=True)

    def _shutdown(self, code: int | None, reason: str, *, by_peer: bool) -> list[Event]:
        self.state = ConnectionState.CLOSED
        events: list[Event] = [
            TransferFailed(rid, f"link closed: {reason}", len(d.buffer))
            for rid, d in self._downloads.items()
        ]
        self._downloads.clear()
        self._uploads.clear()
        self._upload_order.clear()
        events.append(ConnectionClosed(code, reason, by_peer))
        return events

    def _our_index(self, swarm_id: str) -> int:
        try:
            return self._our_swarms.index(swarm_id)
        except ValueError:
            raise ValueError(f"swarm {swarm_id} is not on this link: join() it first") from None

    def _require_not_closed(self) -> None:
        if self.state is ConnectionState.CLOSED:
            raise ConnectionStateError("the link is closed")

    # ---------------------------------------------------------------------------------- input

    def receive(self, frame: bytes | bytearray | memoryview) -> list[Event]:
        """Process one data-channel message from the peer; never raises for peer input.

        A frame that breaks the protocol closes the link: the result then ends with
        ConnectionClosed(by_peer=False) and an ERROR frame is queued for the peer.
        """
        if self.state is ConnectionState.CLOSED:
            return []
        try:
            if len(frame) > self.config.max_message_size:
                raise ProtocolError(
                    ErrorCode.TOO_LARGE,
                    f"frame of {len(frame)} bytes, we accept at most "
                    f"{self.config.max_message_size}",
                )
            return self._handle(decode(frame))
        except ProtocolError as exc:
            log.info("dropping peer %s: %s", self.peer_id or "(before HELLO)", exc)
            self._queue(Error(exc.code, _clip(exc.message)))
            return self._shutdown(int(exc.code), exc.message, by_peer=False)

    def _handle(self, message: Message) -> list[Event]:
        if isinstance(message, Data):  # most frequent first
            return self._on_data(message)
        if isinstance(message, Error):
            return self._shutdown(message.code, message.reason, by_peer=True)
        if isinstance(message, Hello):
            return self._on_hello(message)
        if self.state is not ConnectionState.OPEN:
            raise _violation(f"{message.TYPE.name} before HELLO")
        if isinstance(message, (Have, Lost, Fetching, FetchAborted)):
            swarm_id = self._peer_swarm(message.swarm)
            return [_KEY_EVENTS[type(message)](swarm_id, message.key)]
        handler = _HANDLERS[type(message)]
        return handler(self, message)  # type: ignore[no-any-return]

    def _on_hello(self, hello: Hello) -> list[Event]:
        if self.state is not ConnectionState.AWAIT_HELLO:
            raise _violation("second HELLO on the link")
        self.peer = hello
        self.version_minor = min(hello.version_minor, VERSION_MINOR)
        self._peer_swarms = list(hello.swarms)
        self.state = ConnectionState.OPEN
        return [
            HelloReceived(
                hello.peer_id,
                hello.role,
                hello.upload_enabled,
                hello.max_requests,
                hello.swarms,
                self.version_minor,
            )
        ]

    def _peer_swarm(self, index: int) -> str:
        if index >= len(self._peer_swarms):
            raise _violation(f"swarm index {index} was never announced")
        return self._peer_swarms[index]

    def _on_join(self, join: Join) -> list[Event]:
        if join.swarm != len(self._peer_swarms):
            raise _violation(f"JOIN index {join.swarm}, expected {len(self._peer_swarms)}")
        if join.swarm_id in self._peer_swarms:
            raise _violation(f"JOIN of swarm {join.swarm_id} already on the link")
        self._peer_swarms.append(join.swarm_id)
        return [SwarmJoined(join.swarm_id)]

    def _on_have_set(self, have_set: HaveSet) -> list[Event]:
        swarm_id = self._peer_swarm(have_set.swarm)
        return [HaveSetReceived(swarm_id, have_set.base, have_set.bitmap, have_set.init_ids)]

    def _on_request(self, request: Request) -> list[Event]:
        if not self.config.upload_enabled:
            raise _violation("REQUEST sent to a peer that announced no upload")
        if request.request_id <= self._last_peer_request_id:
            raise _violation(
                f"request id {request.request_id} not above {self._last_peer_request_id}"
            )
        self._last_peer_request_id = request.request_id
        if len(self._uploads) >= self.config.max_inbound_requests:
            raise _violation(
                f"more than the {self.config.max_inbound_requests} outstanding requests we allow"
            )
        swarm_id = self._peer_swarm(request.swarm)
        if swarm_id not in self._our_swarms:
            self._queue(DontHave(request.request_id))
            return []
        self._uploads[request.request_id] = _Upload(request)
        return [
            RequestReceived(
                request.request_id, swarm_id, request.key, request.offset, request.length
            )
        ]

    def _on_cancel(self, cancel: Cancel) -> list[Event]:
        if self._uploads.pop(cancel.request_id, None) is not None:
            return [RequestCancelled(cancel.request_id)]
        if cancel.request_id > self._last_peer_request_id:
            raise _violation(f"CANCEL of request {cancel.request_id} that was never made")
        return []  # crossed with our answer: nothing left to stop

    def _download_for(self, request_id: int, what: str) -> _Download | None:
        download = self._downloads.get(request_id)
        if download is None and request_id not in self._cancelled:
            state = "finished" if request_id < self._next_request_id else "unknown"
            raise _violation(f"{what} for {state} request {request_id}")
        return download  # None: cancelled by us, frame was already in flight

    def _on_response(self, response: Response) -> list[Event]:
        rid = response.request_id
        download = self._download_for(rid, "RESPONSE")
        if download is None:
            return []
        if download.started:
            raise _violation(f"second RESPONSE for request {rid}")
        available = response.total_size - download.offset
        expected = available if download.length == 0 else min(download.length, available)
        if response.offset != download.offset or response.length != expected:
            raise _violation(
                f"RESPONSE range {response.offset}+{response.length} for request {rid} does not "
                f"match the requested {download.offset}+{download.length or 'end'} of "
                f"{response.total_size} bytes"
            )
        if response.total_size > self.config.max_segment_size:
            self.cancel(rid)
            return [
                TransferFailed(
                    rid,
                    f"segment of {response.total_size} bytes exceeds max_segment_size "
                    f"{self.config.max_segment_size}",
                )
            ]
        download.started = True
        download.total_size = response.total_size
        download.next_offset = response.offset
        download.end = response.offset + response.length
        started = TransferStarted(rid, response.total_size, response.offset, response.length)
        if response.length == 0:
            return [started, self._complete(rid, download)]
        return [started]

    def _on_data(self, data: Data) -> list[Event]:
        if self.state is not ConnectionState.OPEN:
            raise _violation("DATA before HELLO")
        rid = data.request_id
        download = self._download_for(rid, "DATA")
        if download is None:
            return []
        if not download.started:
            raise _violation(f"DATA before RESPONSE for request {rid}")
        if data.offset != download.next_offset:
            raise _violation(
                f"DATA at offset {data.offset} for request {rid}, expected {download.next_offset}"
            )
        size = len(data.payload)
        if data.offset + size > download.end:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"DATA for request {rid} runs to {data.offset + size}, past the announced "
                f"end {download.end}",
            )
        download.buffer += data.payload
        download.next_offset += size
        chunk = TransferChunk(rid, data.offset, size)
        if download.next_offset == download.end:
            return [chunk, self._complete(rid, download)]
        return [chunk]

    def _complete(self, request_id: int, download: _Download) -> TransferCompleted:
        del self._downloads[request_id]
        return TransferCompleted(
            request_id, bytes(download.buffer), download.total_size, download.offset
        )

    def _on_refusal(self, message: DontHave | Busy) -> list[Event]:
        rid = message.request_id
        download = self._download_for(rid, type(message).__name__.upper())
        if download is None:
            return []
        del self._downloads[rid]
        received = len(download.buffer)
        if isinstance(message, Busy):
            return [BusyReceived(rid, message.retry_after_ms, received)]
        return [DontHaveReceived(rid, received)]


def _violation(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.VIOLATION, message)


def _clip(reason: str) -> str:
    raw = reason.encode("utf-8", "replace")[:MAX_REASON_BYTES]
    return raw.decode("utf-8", "ignore")


_HANDLERS = {
    Join: PeerProtocol._on_join,
    HaveSet: PeerProtocol._on_have_set,
    Request: PeerProtocol._on_request,
    Cancel: PeerProtocol._on_cancel,
    Response: PeerProtocol._on_response,
    DontHave: PeerProtocol._on_refusal,
    Busy: PeerProtocol._on_refusal,
}
