"""Hostile input: random and mutated frames into the codec and into a live link.

Properties: decode raises nothing but ProtocolError; whatever it accepts re-encodes to the same
bytes (the format has one encoding per message); a link fed any frame sequence never raises,
never buffers more than its limits, ends each request at most once and stays closed once
closed; decoding never allocates much more than the frame itself.
"""

from __future__ import annotations

import json
import tracemalloc
from collections import deque
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from swarmcast.peer import protocol as wire
from swarmcast.peer.connection import (
    BusyReceived,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionState,
    DontHaveReceived,
    PeerProtocol,
    RequestCancelled,
    RequestReceived,
    TransferCompleted,
    TransferFailed,
)
from swarmcast.peer.ids import MAX_SEGMENT_NUMBER, SegmentKey, SegmentKind
from swarmcast.peer.protocol import ProtocolError, decode, encode

VECTORS = json.loads((Path(__file__).parent / "vectors" / "protocol.json").read_text())
# The 64 KiB vectors make mutation slow without finding more; mutate the small ones.
SEEDS = [
    bytes.fromhex(case["hex"])
    for case in VECTORS["valid"] + VECTORS["tolerated"]
    if len(case["hex"]) < 4096
]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check_decode(frame: bytes) -> wire.Message | None:
    try:
        message = decode(frame)
    except ProtocolError as exc:
        assert isinstance(exc.code, wire.ErrorCode)
        return None
    tolerated_hello = isinstance(message, wire.Hello) and (
        message.version_minor > wire.VERSION_MINOR
    )
    if not tolerated_hello:
        assert encode(message) == frame
    return message


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "extend"]))
        pos = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and frame:
            frame[pos] = draw(st.sampled_from([0x00, 0x01, 0x20, 0x7F, 0x80, 0xFF]))
        elif op == "truncate":
            del frame[pos:]
        elif op == "insert":
            frame[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and frame:
            del frame[pos]
        elif op == "extend":
            frame += draw(st.binary(min_size=1, max_size=16))
    return bytes(frame)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_error(frame: bytes) -> None:
    check_decode(frame)


@FUZZ
@given(st.integers(0x01, 0x0E), st.binary(max_size=120))
def test_random_bodies_of_every_type_only_raise_protocol_error(kind: int, body: bytes) -> None:
    check_decode(bytes([kind]) + body)


@FUZZ
@given(mutated())
def test_mutated_valid_frames_only_raise_protocol_error(frame: bytes) -> None:
    check_decode(frame)


@settings(max_examples=30, deadline=None)
@given(st.integers(wire.MAX_FRAME_SIZE + 1, 4 * wire.MAX_FRAME_SIZE), st.integers(1, 14))
def test_oversized_frames_are_refused_before_parsing(size: int, kind: int) -> None:
    frame = bytes([kind]) + bytes(size - 1)
    try:
        decode(frame)
    except ProtocolError as exc:
        assert exc.code is wire.ErrorCode.TOO_LARGE
    else:
        raise AssertionError("oversized frame accepted")


def test_decoding_allocates_about_the_frame_size_at_most() -> None:
    # Frames that claim the largest counts and lengths the format can express.
    worst = [
        bytes.fromhex("0400" + "00" * 8 + "ffff") + b"\xff" * (wire.MAX_FRAME_SIZE - 12),
        bytes.fromhex("0400" + "00" * 8 + "2000") + b"\xff" * 8192 + b"\x10" + b"\x00" * 128,
        bytes.fromhex("0101000101") + (65536).to_bytes(4, "big") + b"\xff\xff\x01p\xff",
        bytes.fromhex("02ff") + b"\xff" + b"a" * 255,
        bytes.fromhex("0e") + bytes(8) + bytes(wire.MAX_DATA_PAYLOAD),
    ]
    for frame in worst:
        tracemalloc.start()
        try:
            check_decode(frame)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 2 * len(frame) + 16384, (frame[:12].hex(), peak)


# ------------------------------------------------------------------------------- the link

S = ("s0", "s1")
CONFIG = dict(max_inbound_requests=4, max_outbound_requests=4, max_segment_size=200_000)

small_u32 = st.integers(0, 6) | st.sampled_from([wire.MAX_U32, 2**31])
sizes = st.integers(0, 300_000)
keys = st.builds(
    SegmentKey,
    st.sampled_from(list(SegmentKind)),
    st.integers(0, 5) | st.just(MAX_SEGMENT_NUMBER),
)
swarm_index = st.integers(0, 3)


@st.composite
def responses(draw: st.DrawFn) -> wire.Response:
    total = draw(sizes)
    offset = draw(st.integers(0, total))
    length = draw(st.integers(0, total - offset))
    return wire.Response(draw(small_u32), total, offset, length)


messages = st.one_of(
    st.builds(
        wire.Hello,
        st.just(1),
        st.integers(0, 2),
        st.sampled_from(list(wire.Role)),
        st.integers(0, 255),
        st.sampled_from([16384, 65536]),
        st.integers(1, 5),
        st.just("remote"),
        st.sampled_from([(), ("s0",), ("s0", "s1"), ("zz",)]),
    ),
    st.builds(wire.Error, st.integers(1, 9), st.just("bye")),
    st.builds(wire.Join, swarm_index, st.sampled_from(["s0", "s1", "s2"])),
    st.builds(wire.HaveSet, swarm_index, st.integers(0, 100), st.binary(max_size=64), st.just(())),
    st.builds(wire.Have, swarm_index, keys),
    st.builds(wire.Lost, swarm_index, keys),
    st.builds(wire.Fetching, swarm_index, keys),
    st.builds(wire.FetchAborted, swarm_index, keys),
    st.builds(wire.Request, small_u32, swarm_index, keys, st.integers(0, 10), st.integers(0, 10)),
    st.builds(wire.Cancel, small_u32),
    st.builds(wire.DontHave, small_u32),
    st.builds(wire.Busy, small_u32, st.integers(0, 1000)),
    responses(),
    st.builds(
        wire.Data,
        small_u32,
        st.integers(0, 200_000),
        st.binary(min_size=1, max_size=64) | st.just(bytes(wire.MAX_DATA_PAYLOAD)),
    ),
)
frames = st.lists(messages.map(encode) | mutated(), max_size=25)


def make_link() -> PeerProtocol:
    link = PeerProtocol(ConnectionConfig("local", S, **CONFIG))
    link.data_to_send()
    return link


@FUZZ
@given(frames, st.lists(st.integers(0, 3), max_size=4))
def test_link_survives_any_frame_sequence(sequence: list[bytes], wanted: list[int]) -> None:
    link = make_link()
    hello = wire.Hello(1, 0, wire.Role.SEED, 1, 65536, 4, "remote", S)
    link.receive(encode(hello))
    requested = [link.request("s0", SegmentKey.media(n)) for n in wanted]
    terminal: dict[int, int] = {}
    closed = False
    for frame in sequence:
        events = link.receive(frame)
        assert not (closed and events), "events after the link closed"
        for event in events:
            if isinstance(
                event, TransferCompleted | TransferFailed | DontHaveReceived | BusyReceived
            ):
                assert event.request_id in requested
                terminal[event.request_id] = terminal.get(event.request_id, 0) + 1
            if isinstance(event, TransferCompleted):
                assert len(event.data) <= CONFIG["max_segment_size"]
            if isinstance(event, ConnectionClosed):
                closed = True
                assert events[-1] is event
        assert link.buffered_bytes <= CONFIG["max_outbound_requests"] * CONFIG["max_segment_size"]
        for frame_out in link.data_to_send():
            assert len(frame_out) <= wire.MAX_FRAME_SIZE
            decode(frame_out)  # we only ever send valid frames
    assert all(count == 1 for count in terminal.values()), terminal
    assert closed == (link.state is ConnectionState.CLOSED)
    if closed:
        assert link.receive(encode(wire.Have(0, SegmentKey.media(1)))) == []


@FUZZ
@given(frames)
def test_link_before_hello_survives_any_frame_sequence(sequence: list[bytes]) -> None:
    link = make_link()
    for frame in sequence:
        link.receive(frame)
        for frame_out in link.data_to_send():
            decode(frame_out)
    assert link.buffered_bytes <= CONFIG["max_outbound_requests"] * CONFIG["max_segment_size"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, wire.MAX_DATA_PAYLOAD), min_size=1, max_size=3), st.data())
def test_honest_chunking_always_reassembles(chunk_sizes: list[int], data: st.DataObject) -> None:
    """Any split of a segment into DATA chunks, by any honest holder, completes exactly."""
    payload = bytes(i % 253 for i in range(sum(chunk_sizes)))
    offset = data.draw(st.integers(0, 1000))
    total = offset + len(payload)
    link = make_link()
    link.receive(encode(wire.Hello(1, 0, wire.Role.SEED, 1, 65536, 4, "remote", S)))
    rid = link.request("s0", SegmentKey.media(1), offset=offset)
    link.receive(encode(wire.Response(rid, total, offset, len(payload))))
    position, events = offset, []
    for size in chunk_sizes:
        start = position - offset
        events += link.receive(encode(wire.Data(rid, position, payload[start : start + size])))
        position += size
    assert events[-1] == TransferCompleted(rid, payload, total, offset)


# ------------------------------------------------------------------- two honest peers, racing


SEGMENTS = {n: bytes(range(256)) * (n * 40_000 // 256) + bytes([n]) * n for n in range(5)}


class HonestLink(RuleBasedStateMachine):
    """A requester and a holder acting in random order over two FIFO channels with frames in
    flight, so CANCELs cross answers and aborts cross chunks. Honest peers must never trip a
    protocol check, and every request must end exactly once with the right bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.viewer = PeerProtocol(ConnectionConfig("viewer", S, **CONFIG))
        self.seed = PeerProtocol(ConnectionConfig("seed", S, role=wire.Role.SEED, **CONFIG))
        self.to_seed: deque[bytes] = deque()
        self.to_viewer: deque[bytes] = deque()
        self.segments = SEGMENTS
        self.wanted: dict[int, tuple[int, int, int]] = {}  # rid -> (segment, offset, length)
        self.cancelled: set[int] = set()
        self.ended: dict[int, int] = {}
        self.pending: list[RequestReceived] = []  # at the holder, not yet answered
        self.serving: set[int] = set()

    def _flush(self) -> None:
        self.to_seed.extend(self.viewer.data_to_send())
        self.to_viewer.extend(self.seed.data_to_send(budget=70_000))

    @rule(n=st.integers(0, 4), offset=st.integers(0, 90_000), length=st.integers(0, 70_000))
    def request(self, n: int, offset: int, length: int) -> None:
        if self.viewer.request_slots:
            rid = self.viewer.request("s1", SegmentKey.media(n), offset, length)
            self.wanted[rid] = (n, offset, length)
        self._flush()

    @rule(pick=st.integers(0, 100))
    def cancel(self, pick: int) -> None:
        open_ids = sorted(set(self.wanted) - self.cancelled - set(self.ended))
        if open_ids:
            rid = open_ids[pick % len(open_ids)]
            if self.viewer.cancel(rid):
                self.cancelled.add(rid)
        self._flush()

    @rule(pick=st.integers(0, 100), how=st.sampled_from(["serve", "serve", "dont_have", "busy"]))
    def answer(self, pick: int, how: str) -> None:
        if self.pending:
            request = self.pending.pop(pick % len(self.pending))
            rid = request.request_id
            if how == "serve":
                if self.seed.send_segment(rid, self.segments[request.key.number]):
                    self.serving.add(rid)
            elif how == "dont_have":
                self.seed.send_dont_have(rid)
            else:
                self.seed.send_busy(rid, 10)
        self._flush()

    @rule(pick=st.integers(0, 100))
    def abort_upload(self, pick: int) -> None:
        if self.serving:
            rid = sorted(self.serving)[pick % len(self.serving)]
            self.serving.discard(rid)
            self.seed.send_dont_have(rid)
        self._flush()

    @rule(count=st.integers(1, 6))
    def deliver_to_seed(self, count: int) -> None:
        for _ in range(min(count, len(self.to_seed))):
            for event in self.seed.receive(self.to_seed.popleft()):
                self._on_seed_event(event)
        self._flush()

    @rule(count=st.integers(1, 6))
    def deliver_to_viewer(self, count: int) -> None:
        for _ in range(min(count, len(self.to_viewer))):
            for event in self.viewer.receive(self.to_viewer.popleft()):
                self._on_viewer_event(event)
        self._flush()

    def _on_seed_event(self, event: object) -> None:
        assert not isinstance(event, ConnectionClosed), event
        if isinstance(event, RequestReceived):
            self.pending.append(event)
        elif isinstance(event, RequestCancelled):
            self.pending = [p for p in self.pending if p.request_id != event.request_id]
            self.serving.discard(event.request_id)

    def _on_viewer_event(self, event: object) -> None:
        assert not isinstance(event, ConnectionClosed), event
        rid = getattr(event, "request_id", None)
        if rid is not None:
            assert rid not in self.cancelled, f"event for cancelled request {rid}: {event}"
        if isinstance(event, TransferCompleted | TransferFailed | DontHaveReceived | BusyReceived):
            self.ended[rid] = self.ended.get(rid, 0) + 1
            assert self.ended[rid] == 1, f"request {rid} ended twice"
        if isinstance(event, TransferCompleted):
            n, offset, length = self.wanted[rid]
            data = self.segments[n]
            assert event.data == data[offset : offset + length if length else None]
            assert event.total_size == len(data)

    @invariant()
    def bounded(self) -> None:
        assert self.viewer.buffered_bytes <= 4 * 200_000

    def teardown(self) -> None:
        for _ in range(10_000):
            for request in self.pending:
                self.seed.send_segment(request.request_id, self.segments[request.key.number])
            self.pending = []
            self.to_seed.extend(self.viewer.data_to_send())
            self.to_viewer.extend(self.seed.data_to_send())
            if not self.to_seed and not self.to_viewer:
                break
            while self.to_seed:
                for event in self.seed.receive(self.to_seed.popleft()):
                    self._on_seed_event(event)
            while self.to_viewer:
                for event in self.viewer.receive(self.to_viewer.popleft()):
                    self._on_viewer_event(event)
        # Offsets past a segment's end come back as DONT_HAVE; everything else completes.
        unfinished = set(self.wanted) - self.cancelled - set(self.ended)
        assert not unfinished, f"requests that never ended: {unfinished}"
        assert self.viewer.buffered_bytes == 0 and self.seed.pending_bytes == 0


HonestLink.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_honest_peers_never_violate_and_end_each_request_once = HonestLink.TestCase
