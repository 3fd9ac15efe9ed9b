"""The asyncio adapter between one aiortc data channel and one sans-IO :class:`PeerProtocol`.

Everything the protocol decides happens in :mod:`swarmcast.peer.connection`; this file only
moves bytes and events:

- every data-channel message goes to :meth:`PeerProtocol.receive`, and the events it returns go
  to the ``on_event`` callback (or the :attr:`PeerLink.events` queue);
- :meth:`PeerLink.flush` writes :meth:`PeerProtocol.data_to_send` to the channel, at most up to
  a high watermark of ``bufferedAmount``: the rest waits in the protocol (where a cancelled
  transfer costs nothing) until aiortc's ``bufferedamountlow`` event says the buffer drained to
  the low watermark. Memory stays bounded however fast segments are queued, and control frames
  (HAVE, REQUEST, CANCEL) never wait behind megabytes of DATA in the channel's buffer;
- a protocol error from the peer, an ERROR frame, the channel closing or ICE failing all end in
  one place: the events are delivered (ending with ``ConnectionClosed``), queued frames get a
  short chance to drain, and the channel and peer connection are closed. Nothing is raised
  into the event loop; a failing ``on_event`` callback is logged and closes the link.

Call :meth:`PeerLink.flush` after acting on :attr:`PeerLink.protocol` (request, send_segment,
send_have, ...): the adapter cannot know when the application queued something.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCDataChannel, RTCPeerConnection

from swarmcast.peer.connection import (
    ConnectionClosed,
    ConnectionConfig,
    Event,
    HelloReceived,
    PeerProtocol,
)
from swarmcast.peer.protocol import ErrorCode
from swarmcast.peer.rtc import connected_pair

log = logging.getLogger(__name__)

EventCallback = Callable[["PeerLink", Event], None]


@dataclass
class LinkConfig:
    """Flow control and shutdown of a :class:`PeerLink`."""

    high_watermark: int = 1024 * 1024
    """Stop handing frames to the channel once ``bufferedAmount`` reaches this many bytes.
    1 MiB keeps a 20 MB/s link busy for 50 ms between refills, far above event-loop jitter."""
    low_watermark: int = 256 * 1024
    """Resume when ``bufferedAmount`` falls to this (``bufferedAmountLowThreshold``)."""
    close_timeout: float = 2.0
    """Seconds a closing link waits for queued frames (the ERROR frame) to leave."""

    def __post_init__(self) -> None:
        if not 0 <= self.low_watermark < self.high_watermark:
            raise ValueError("low_watermark must be within 0..high_watermark-1")
        if self.close_timeout < 0:
            raise ValueError("close_timeout must be 0 or more")


@dataclass
class LinkStats:
    """Traffic on one link."""

    frames_sent: int = 0
    """Data-channel messages written."""
    bytes_sent: int = 0
    """Bytes of those messages."""
    frames_received: int = 0
    """Data-channel messages received."""
    bytes_received: int = 0
    """Bytes of those messages."""


class PeerLink:
    """One peer-to-peer link: an open aiortc data channel driven by a :class:`PeerProtocol`.

    Create it once the channel is open (or about to open: HELLO goes out on "open"). Events go
    to ``on_event(link, event)`` when given, else to :attr:`events`. ``pc`` is the peer
    connection carrying only this channel; it is closed with the link.
    """

    def __init__(
        self,
        channel: RTCDataChannel,
        protocol: PeerProtocol,
        *,
        pc: RTCPeerConnection | None = None,
        on_event: EventCallback | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        self.channel = channel
        self.protocol = protocol
        self.pc = pc
        self.config = config or LinkConfig()
        self.stats = LinkStats()
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        """Events of the protocol, when no ``on_event`` callback was given."""
        loop = asyncio.get_running_loop()
        self.hello: asyncio.Future[HelloReceived] = loop.create_future()
        """Resolves with the peer's HELLO (the link is usable); fails if it closes before."""
        self.closed: asyncio.Future[ConnectionClosed] = loop.create_future()
        """Resolves with the final ConnectionClosed event."""
        self._on_event = on_event
        self._teardown: asyncio.Task[None] | None = None
        channel.bufferedAmountLowThreshold = self.config.low_watermark
        channel.on("message", self._on_message)
        channel.on("bufferedamountlow", self.flush)
        channel.on("close", self._on_channel_close)
        if pc is not None:
            pc.on("connectionstatechange", self._on_connection_state)
        if channel.readyState == "open":
            self.flush()
        else:
            channel.once("open", self.flush)

    @property
    def peer_id(self) -> str | None:
        """The remote peer's id once its HELLO arrived."""
        return self.protocol.peer_id

    @property
    def is_closed(self) -> bool:
        """True once the link has ended (the teardown may still be running)."""
        return self.closed.done()

    # ------------------------------------------------------------------------------- output

    def flush(self) -> None:
        """Write what the protocol has queued, up to the high watermark of the channel buffer."""
        channel = self.channel
        if channel.readyState != "open":
            return
        room = max(0, self.config.high_watermark - channel.bufferedAmount)
        frames = self.protocol.data_to_send(room)
        try:
            for frame in frames:
                channel.send(frame if type(frame) is bytes else bytes(frame))
                self.stats.frames_sent += 1
                self.stats.bytes_sent += len(frame)
        except Exception as exc:  # InvalidStateError when closing under us, ValueError on size
            log.warning("link to %s: send failed: %s", self.peer_id, exc)
            self._deliver(self.protocol.connection_lost())

    # -------------------------------------------------------------------------------- input

    def _on_message(self, message: bytes | str) -> None:
        self.stats.frames_received += 1
        if isinstance(message, str):
            self.stats.bytes_received += len(message)
            events = self.protocol.close(ErrorCode.MALFORMED, "text message on a binary channel")
        else:
            self.stats.bytes_received += len(message)
            events = self.protocol.receive(message)
        self._deliver(events)
        self.flush()

    def _on_channel_close(self) -> None:
        self._deliver(self.protocol.connection_lost())

    def _on_connection_state(self) -> None:
        if self.pc is not None and self.pc.connectionState in ("failed", "closed"):
            self._deliver(self.protocol.connection_lost())

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, HelloReceived) and not self.hello.done():
                self.hello.set_result(event)
            self._dispatch(event)
            if isinstance(event, ConnectionClosed):
                self._finish(event)

    def _dispatch(self, event: Event) -> None:
        if self._on_event is None:
            self.events.put_nowait(event)
            return
        try:
            self._on_event(self, event)
        except Exception:
            log.exception("link to %s: event handler failed on %r", self.peer_id, event)
            if not self.is_closed:
                self.flush()  # the handler may have queued frames before failing
                self._deliver(self.protocol.close(ErrorCode.GOING_AWAY, "internal error"))

    def _finish(self, event: ConnectionClosed) -> None:
        if self.closed.done():
            return
        self.closed.set_result(event)
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"link closed before HELLO: {event.reason}"))
            self.hello.exception()  # retrieved: nobody may be waiting for it
        if event.by_peer:
            log.debug("link to %s closed by peer: %s", self.peer_id, event.reason)
        else:
            log.info("closing link to %s: %s", self.peer_id, event.reason)
        self.flush()  # our ERROR frame, if any
        self._teardown = asyncio.get_running_loop().create_task(self._close_transport())

    # ----------------------------------------------------------------------------- shutdown

    async def close(self, code: ErrorCode = ErrorCode.GOING_AWAY, reason: str = "") -> None:
        """Close the link: ERROR frame to the peer, open requests failed, channel and pc closed."""
        self._deliver(self.protocol.close(code, reason))
        if not self.closed.done():  # already closed by the protocol: make sure it finishes
            self._deliver(self.protocol.connection_lost())
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the link has closed and its channel and peer connection are shut."""
        await asyncio.shield(self.closed)
        if self._teardown is not None:
            await asyncio.shield(self._teardown)

    async def _close_transport(self) -> None:
        channel = self.channel
        try:
            # Give queued frames (our ERROR) a moment to leave before the channel resets.
            async with asyncio.timeout(self.config.close_timeout):
                while channel.readyState == "open" and channel.bufferedAmount > 0:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.debug(
                "link to %s: closing with %d bytes unsent", self.peer_id, channel.bufferedAmount
            )
        channel.remove_all_listeners()
        if channel.readyState not in ("closing", "closed"):
            channel.close()
        if self.pc is not None:
            try:
                await self.pc.close()
            except Exception:  # closing must not fail: the link is gone either way
                log.exception("link to %s: closing the peer connection failed", self.peer_id)


async def link_pair(
    config_a: ConnectionConfig,
    config_b: ConnectionConfig,
    *,
    on_event_a: EventCallback | None = None,
    on_event_b: EventCallback | None = None,
    link_config: LinkConfig | None = None,
    timeout: float = 10.0,
) -> tuple[PeerLink, PeerLink]:
    """Two linked peers in this process over a real aiortc data channel, HELLOs exchanged.

    For tests and benchmarks (run inside ``tests/netns-run``: ICE needs a non-loopback
    interface). No ICE servers are used, so nothing leaves the machine.
    """
    (pc_a, channel_a), (pc_b, channel_b) = await connected_pair(timeout=timeout)
    link_a = PeerLink(
        channel_a, PeerProtocol(config_a), pc=pc_a, on_event=on_event_a, config=link_config
    )
    link_b = PeerLink(
        channel_b, PeerProtocol(config_b), pc=pc_b, on_event=on_event_b, config=link_config
    )
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(link_a.hello, link_b.hello)
    except BaseException:
        await asyncio.gather(link_a.close(), link_b.close(), return_exceptions=True)
        raise
    return link_a, link_b
