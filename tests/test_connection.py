"""The sans-IO link state machine: two PeerProtocol objects wired back to back, plus forged
frames for everything an honest peer would never send."""

from __future__ import annotations

import pytest

from swarmcast.peer import protocol as wire
from swarmcast.peer.connection import (
    BusyReceived,
    ConnectionClosed,
    ConnectionConfig,
    ConnectionState,
    ConnectionStateError,
    DontHaveReceived,
    Event,
    FetchAbortedReceived,
    FetchingReceived,
    HaveReceived,
    HaveSetReceived,
    HelloReceived,
    LostReceived,
    PeerProtocol,
    RequestCancelled,
    RequestReceived,
    SwarmJoined,
    TransferChunk,
    TransferCompleted,
    TransferFailed,
    TransferStarted,
)
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.protocol import ErrorCode, Role, decode, encode

S1 = "swarm-one"
S2 = "swarm-two"
SEG = SegmentKey.media(100)


def segment(size: int, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 256 for i in range(size))


def pump(src: PeerProtocol, dst: PeerProtocol, budget: int | None = None) -> list[Event]:
    events: list[Event] = []
    for frame in src.data_to_send(budget):
        events += dst.receive(frame)
    return events


def of(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def closed_with(events: list[Event]) -> ConnectionClosed:
    assert events and isinstance(events[-1], ConnectionClosed), events
    return events[-1]


def sent_error(proto: PeerProtocol) -> wire.Error:
    frames = [decode(f) for f in proto.data_to_send()]
    errors = [m for m in frames if isinstance(m, wire.Error)]
    assert len(errors) == 1, frames
    return errors[0]


def make(peer_id: str, swarms=(S1,), **kw) -> PeerProtocol:
    return PeerProtocol(ConnectionConfig(peer_id, swarms, **kw))


@pytest.fixture
def pair() -> tuple[PeerProtocol, PeerProtocol]:
    """viewer (requester) and seed (holder), handshake done."""
    viewer = make("viewer")
    seed = make("seed", role=Role.SEED)
    pump(viewer, seed)
    pump(seed, viewer)
    return viewer, seed


def opened(peer: PeerProtocol, **hello) -> PeerProtocol:
    """``peer`` after receiving a forged HELLO (for tests that forge the remote side)."""
    fields = dict(
        version_major=1,
        version_minor=0,
        role=Role.VIEWER,
        flags=1,
        max_message_size=65536,
        max_requests=4,
        peer_id="forger",
        swarms=(S1,),
    )
    fields.update(hello)
    events = peer.receive(encode(wire.Hello(**fields)))
    assert of(events, HelloReceived), events
    peer.data_to_send()
    return peer


# ------------------------------------------------------------------------------ handshake


def test_handshake_exchanges_capabilities() -> None:
    viewer = make("viewer", swarms=(S1, S2), upload_enabled=False, max_inbound_requests=3)
    seed = make("seed", role=Role.SEED)
    assert viewer.state is ConnectionState.AWAIT_HELLO and viewer.request_slots == 0
    (hello,) = pump(viewer, seed)
    assert hello == HelloReceived("viewer", Role.VIEWER, False, 3, (S1, S2), 0)
    assert seed.state is ConnectionState.OPEN and seed.request_slots == 0  # viewer won't upload
    (hello,) = pump(seed, viewer)
    assert hello.role is Role.SEED and hello.upload_enabled
    assert viewer.request_slots == 16 and viewer.peer_id == "seed"


def test_request_before_the_peer_hello_is_refused_locally() -> None:
    viewer = make("viewer")
    with pytest.raises(ConnectionStateError, match="await_hello"):
        viewer.request(S1, SEG)


def test_newer_minor_is_negotiated_down() -> None:
    seed = opened(make("seed"), version_minor=9)
    assert seed.version_minor == wire.VERSION_MINOR and seed.state is ConnectionState.OPEN


def test_other_major_version_sends_version_error_and_closes() -> None:
    seed = make("seed")
    seed.data_to_send()
    # A major-2 HELLO whose layout after the version bytes is unknown to us.
    events = seed.receive(bytes([0x01, 0x02, 0x00, 0xAA, 0xBB]))
    closed = closed_with(events)
    assert closed.code == ErrorCode.VERSION and not closed.by_peer
    assert sent_error(seed).code == ErrorCode.VERSION
    assert seed.state is ConnectionState.CLOSED


def test_frames_before_hello_are_a_violation() -> None:
    seed = make("seed")
    seed.data_to_send()
    closed = closed_with(seed.receive(encode(wire.Have(0, SEG))))
    assert closed.code == ErrorCode.VIOLATION and "before HELLO" in closed.reason
    seed2 = make("seed")
    closed = closed_with(seed2.receive(encode(wire.Data(0, 0, b"x"))))
    assert closed.code == ErrorCode.VIOLATION


def test_second_hello_is_a_violation(pair) -> None:
    _viewer, seed = pair
    closed = closed_with(seed.receive(encode(wire.Hello(1, 0, Role.VIEWER, 1, 65536, 1, "x", ()))))
    assert closed.code == ErrorCode.VIOLATION


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        ConnectionConfig("p", max_message_size=1000)
    with pytest.raises(ValueError, match="max_inbound_requests"):
        ConnectionConfig("p", max_inbound_requests=0)
    with pytest.raises(ValueError):
        PeerProtocol(ConnectionConfig("bad peer id"))


# ---------------------------------------------------------------------------- availability


def test_availability_events_name_swarms(pair) -> None:
    viewer, seed = pair
    seed.send_have_set(S1, [10, 11, 12, 40], init_ids=[77])
    seed.send_have(S1, SegmentKey.media(41))
    seed.send_lost(S1, SegmentKey.media(10))
    seed.send_fetching(S1, SegmentKey.media(42))
    seed.send_fetch_aborted(S1, SegmentKey.media(42))
    events = pump(seed, viewer)
    assert list(events[0].sequences()) == [10, 11, 12, 40]
    assert events == [
        HaveSetReceived(S1, 10, bytes([0b11100000, 0, 0, 0b00000010]), (77,)),
        HaveReceived(S1, SegmentKey.media(41)),
        LostReceived(S1, SegmentKey.media(10)),
        FetchingReceived(S1, SegmentKey.media(42)),
        FetchAbortedReceived(S1, SegmentKey.media(42)),
    ]


def test_announcements_may_follow_hello_before_the_peer_answers() -> None:
    seed = make("seed", role=Role.SEED)
    seed.send_have_set(S1, [1, 2])
    viewer = make("viewer")
    events = pump(seed, viewer)
    assert isinstance(events[0], HelloReceived)
    assert events[1] == HaveSetReceived(S1, 1, b"\xc0", ())


def test_swarm_index_never_announced_is_a_violation(pair) -> None:
    viewer, _seed = pair
    closed = closed_with(viewer.receive(encode(wire.Have(1, SEG))))
    assert closed.code == ErrorCode.VIOLATION and "never announced" in closed.reason


def test_join_adds_a_swarm_both_ways(pair) -> None:
    viewer, seed = pair
    seed.join(S2)
    viewer.join(S2)
    seed.send_have(S2, SEG)
    assert pump(seed, viewer) == [SwarmJoined(S2), HaveReceived(S2, SEG)]
    assert pump(viewer, seed) == [SwarmJoined(S2)]
    rid = viewer.request(S2, SEG)
    (request,) = pump(viewer, seed)
    assert request == RequestReceived(rid, S2, SEG, 0, 0)


def test_join_with_a_wrong_index_or_a_duplicate_is_a_violation(pair) -> None:
    viewer, _ = pair
    assert closed_with(viewer.receive(encode(wire.Join(5, S2)))).code == ErrorCode.VIOLATION
    viewer2 = opened(make("v2"))
    assert closed_with(viewer2.receive(encode(wire.Join(1, S1)))).code == ErrorCode.VIOLATION


def test_local_misuse_raises_clear_errors(pair) -> None:
    viewer, _ = pair
    with pytest.raises(ValueError, match="join"):
        viewer.send_have("not-on-link", SEG)
    with pytest.raises(ValueError, match="already"):
        viewer.join(S1)
    viewer.join(S2)
    with pytest.raises(ValueError, match="not in swarm"):
        viewer.request(S2, SEG)  # the seed has not joined S2


# ------------------------------------------------------------------------------- transfers


def test_whole_segment_transfer(pair) -> None:
    viewer, seed = pair
    data = segment(200_000)
    rid = viewer.request(S1, SEG)
    (request,) = pump(viewer, seed)
    assert seed.send_segment(request.request_id, data)
    frames = seed.data_to_send()
    assert all(len(f) <= wire.MAX_FRAME_SIZE for f in frames)
    events = [e for f in frames for e in viewer.receive(f)]
    assert events[0] == TransferStarted(rid, 200_000, 0, 200_000)
    chunks = of(events, TransferChunk)
    assert [c.size for c in chunks] == [65527, 65527, 65527, 200_000 - 3 * 65527]
    assert events[-1] == TransferCompleted(rid, data, 200_000, 0)
    assert viewer.buffered_bytes == 0 and seed.pending_bytes == 0
    assert viewer.request_slots == 16


def test_interleaved_transfers_share_the_link_round_robin(pair) -> None:
    viewer, seed = pair
    a, b = segment(150_000, 1), segment(90_000, 2)
    ra = viewer.request(S1, SegmentKey.media(1))
    rb = viewer.request(S1, SegmentKey.media(2))
    req_a, req_b = pump(viewer, seed)
    seed.send_segment(req_a.request_id, a)
    seed.send_segment(req_b.request_id, b)
    frames = [decode(f) for f in seed.data_to_send()]
    data_ids = [m.request_id for m in frames if isinstance(m, wire.Data)]
    assert data_ids == [ra, rb, ra, rb, ra]
    events = [e for m in frames for e in viewer.receive(encode(m))]
    done = {e.request_id: e.data for e in of(events, TransferCompleted)}
    assert done == {ra: a, rb: b}


def test_resume_from_offset_with_length(pair) -> None:
    viewer, seed = pair
    data = segment(100_000)
    rid = viewer.request(S1, SEG, offset=70_000, length=20_000)
    (request,) = pump(viewer, seed)
    assert (request.offset, request.length) == (70_000, 20_000)
    seed.send_segment(rid, data)
    events = pump(seed, viewer)
    assert events[0] == TransferStarted(rid, 100_000, 70_000, 20_000)
    assert events[-1] == TransferCompleted(rid, data[70_000:90_000], 100_000, 70_000)


def test_length_is_clipped_to_the_segment_end(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG, offset=10, length=1_000_000)
    pump(viewer, seed)
    seed.send_segment(rid, segment(50))
    assert pump(seed, viewer)[-1] == TransferCompleted(rid, segment(50)[10:], 50, 10)


def test_empty_remainder_completes_at_once(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG, offset=50)
    pump(viewer, seed)
    seed.send_segment(rid, segment(50))
    assert pump(seed, viewer) == [
        TransferStarted(rid, 50, 50, 0),
        TransferCompleted(rid, b"", 50, 50),
    ]


def test_offset_past_the_end_is_answered_dont_have(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG, offset=51)
    pump(viewer, seed)
    assert seed.send_segment(rid, segment(50)) is False
    assert pump(seed, viewer) == [DontHaveReceived(rid)]


def test_dont_have_and_busy_end_requests(pair) -> None:
    viewer, seed = pair
    r1 = viewer.request(S1, SEG)
    r2 = viewer.request(S1, SegmentKey.init(5))
    pump(viewer, seed)
    assert seed.send_dont_have(r1) and seed.send_busy(r2, 1500)
    assert not seed.send_busy(r2)  # already answered
    assert pump(seed, viewer) == [DontHaveReceived(r1), BusyReceived(r2, 1500)]
    assert viewer.request_slots == 16


def test_request_for_a_swarm_the_holder_is_not_in_gets_dont_have(pair) -> None:
    viewer, seed = pair
    viewer.join(S2)
    pump(viewer, seed)
    # forge a request in S2 as if the seed had joined it (the viewer checks locally)
    events = seed.receive(encode(wire.Request(5, 1, SEG)))
    assert events == []
    assert [decode(f) for f in seed.data_to_send()] == [wire.DontHave(5)]


def test_peer_with_small_messages_gets_small_chunks() -> None:
    viewer = make("viewer", max_message_size=16384)
    seed = make("seed", role=Role.SEED)
    pump(viewer, seed)
    pump(seed, viewer)
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, segment(40_000))
    frames = seed.data_to_send()
    assert max(len(f) for f in frames) == 16384
    assert of([e for f in frames for e in viewer.receive(f)], TransferCompleted)


def test_budget_limits_data_per_call_but_not_control(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, segment(300_000))
    seed.send_have(S1, SegmentKey.media(7))
    first = seed.data_to_send(budget=100)  # control frames always go, then chunks to budget
    kinds = [type(decode(f)).__name__ for f in first]
    assert kinds == ["Response", "Have", "Data"]
    assert seed.pending_bytes == 300_000 - 65527
    rest = seed.data_to_send(budget=2 * 65536)
    assert len(rest) == 2


# --------------------------------------------------------- truncated and oversized transfers


def _start(pair, size: int = 100_000) -> tuple[PeerProtocol, PeerProtocol, int]:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    viewer.receive(encode(wire.Response(rid, size, 0, size)))
    return viewer, seed, rid


def test_link_lost_mid_transfer_reports_the_partial_bytes(pair) -> None:
    viewer, _seed, rid = _start(pair)
    viewer.receive(encode(wire.Data(rid, 0, bytes(1000))))
    events = viewer.connection_lost()
    assert events[0] == TransferFailed(rid, "link closed: data channel closed", 1000)
    assert events[-1] == ConnectionClosed(None, "data channel closed", True)
    assert viewer.connection_lost() == []


def test_holder_giving_up_mid_transfer_is_dont_have_with_progress(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, segment(200_000))
    first = seed.data_to_send(budget=100)  # RESPONSE + one chunk
    for frame in first:
        viewer.receive(frame)
    assert viewer.progress(rid) == (65527, 200_000)
    assert seed.send_dont_have(rid)
    assert seed.pending_bytes == 5  # only the DONT_HAVE frame is left
    assert pump(seed, viewer) == [DontHaveReceived(rid, 65527)]


def test_partial_data_keeps_what_arrived_before_a_cancel(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    data = segment(200_000)
    seed.send_segment(rid, data)
    for frame in seed.data_to_send(budget=100):  # RESPONSE + one chunk
        viewer.receive(frame)
    assert viewer.partial_data(rid) == data[:65527]
    viewer.cancel(rid)
    assert viewer.partial_data(rid) == b""
    assert viewer.partial_data(12345) == b""


def test_data_past_the_announced_end_is_too_large(pair) -> None:
    viewer, _, rid = _start(pair, size=100)
    viewer.receive(encode(wire.Data(rid, 0, bytes(60))))
    closed = closed_with(viewer.receive(encode(wire.Data(rid, 60, bytes(41)))))
    assert closed.code == ErrorCode.TOO_LARGE
    assert sent_error(viewer).code == ErrorCode.TOO_LARGE


def test_non_contiguous_data_is_a_violation(pair) -> None:
    viewer, _, rid = _start(pair)
    viewer.receive(encode(wire.Data(rid, 0, bytes(100))))
    events = viewer.receive(encode(wire.Data(rid, 200, bytes(100))))
    assert events[0] == TransferFailed(rid, events[0].reason, 100)
    assert closed_with(events).code == ErrorCode.VIOLATION


def test_data_before_response_is_a_violation(pair) -> None:
    viewer, _seed = pair
    rid = viewer.request(S1, SEG)
    assert closed_with(viewer.receive(encode(wire.Data(rid, 0, b"x")))).code == 5


@pytest.mark.parametrize(
    ("offset", "length", "response"),
    [
        (0, 0, wire.Response(0, 100, 0, 50)),  # short
        (10, 0, wire.Response(0, 100, 0, 100)),  # wrong offset
        (0, 20, wire.Response(0, 100, 0, 30)),  # more than asked
    ],
)
def test_response_not_matching_the_request_is_a_violation(pair, offset, length, response) -> None:
    viewer, _ = pair
    viewer.request(S1, SEG, offset=offset, length=length)
    assert closed_with(viewer.receive(encode(response))).code == ErrorCode.VIOLATION


def test_second_response_is_a_violation(pair) -> None:
    viewer, _, rid = _start(pair)
    closed = closed_with(viewer.receive(encode(wire.Response(rid, 100_000, 0, 100_000))))
    assert closed.code == ErrorCode.VIOLATION


def test_segment_above_max_size_fails_the_request_only() -> None:
    viewer = make("viewer", max_segment_size=100_000)
    seed = make("seed", role=Role.SEED)
    pump(viewer, seed)
    pump(seed, viewer)
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, segment(200_000))
    events = pump(seed, viewer, budget=100)  # RESPONSE + first chunk
    assert len(events) == 1 and isinstance(events[0], TransferFailed)
    assert "max_segment_size" in events[0].reason and viewer.buffered_bytes == 0
    assert viewer.state is ConnectionState.OPEN
    assert pump(viewer, seed) == [RequestCancelled(rid)]
    assert seed.pending_bytes == 0


def test_frames_for_unknown_or_finished_requests_are_violations(pair) -> None:
    viewer, _seed = pair
    assert closed_with(viewer.receive(encode(wire.DontHave(3)))).code == ErrorCode.VIOLATION
    viewer2, seed2 = make("v"), make("s")
    pump(viewer2, seed2)
    pump(seed2, viewer2)
    rid = viewer2.request(S1, SEG)
    pump(viewer2, seed2)
    seed2.send_segment(rid, b"abc")
    pump(seed2, viewer2)
    closed = closed_with(viewer2.receive(encode(wire.Data(rid, 3, b"d"))))
    assert "finished request" in closed.reason


def test_frame_larger_than_we_accept_is_too_large() -> None:
    viewer = opened(make("viewer", max_message_size=16384))
    frame = encode(wire.Data(0, 0, bytes(16384)))
    assert closed_with(viewer.receive(frame)).code == ErrorCode.TOO_LARGE


# ---------------------------------------------------------------------------------- cancel


def test_cancel_mid_transfer_stops_the_holder_and_drops_frames_in_flight(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, segment(500_000))
    in_flight = seed.data_to_send(budget=2 * 65536)  # RESPONSE + 2 chunks on the wire
    assert viewer.receive(in_flight[0])  # TransferStarted
    assert viewer.cancel(rid) and not viewer.cancel(rid)
    assert viewer.buffered_bytes == 0
    for frame in in_flight[1:]:
        assert viewer.receive(frame) == []  # already cancelled: silently dropped
    assert pump(viewer, seed) == [RequestCancelled(rid)]
    assert seed.data_to_send() == [] and seed.pending_bytes == 0
    assert viewer.state is ConnectionState.OPEN and viewer.request_slots == 16


def test_cancel_crossing_the_last_byte_is_ignored(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    seed.send_segment(rid, b"tiny")
    frames = seed.data_to_send()  # holder is done with rid
    viewer.cancel(rid)
    assert all(viewer.receive(f) == [] for f in frames)
    assert pump(viewer, seed) == []  # holder ignores the late CANCEL
    assert seed.state is ConnectionState.OPEN


def test_cancel_of_a_request_never_made_is_a_violation(pair) -> None:
    _, seed = pair
    assert closed_with(seed.receive(encode(wire.Cancel(0)))).code == ErrorCode.VIOLATION


def test_send_segment_after_cancel_returns_false(pair) -> None:
    viewer, seed = pair
    rid = viewer.request(S1, SEG)
    pump(viewer, seed)
    viewer.cancel(rid)
    pump(viewer, seed)
    assert seed.send_segment(rid, b"abc") is False and seed.data_to_send() == []


# ---------------------------------------------------------------------------------- limits


def test_request_slots_follow_the_peer_limit() -> None:
    viewer = make("viewer")
    seed = make("seed", max_inbound_requests=2)
    pump(viewer, seed)
    pump(seed, viewer)
    viewer.request(S1, SegmentKey.media(1))
    rid = viewer.request(S1, SegmentKey.media(2))
    assert viewer.request_slots == 0
    with pytest.raises(ConnectionStateError, match="slot"):
        viewer.request(S1, SegmentKey.media(3))
    pump(viewer, seed)
    seed.send_dont_have(rid)
    pump(seed, viewer)
    assert viewer.request_slots == 1


def test_more_requests_than_advertised_is_a_violation() -> None:
    seed = opened(make("seed", max_inbound_requests=2))
    seed.receive(encode(wire.Request(0, 0, SEG)))
    seed.receive(encode(wire.Request(1, 0, SEG)))
    closed = closed_with(seed.receive(encode(wire.Request(2, 0, SEG))))
    assert closed.code == ErrorCode.VIOLATION and "outstanding" in closed.reason


def test_request_ids_must_increase() -> None:
    seed = opened(make("seed"))
    seed.receive(encode(wire.Request(10, 0, SEG)))
    seed.send_dont_have(10)
    closed = closed_with(seed.receive(encode(wire.Request(10, 0, SEG))))
    assert closed.code == ErrorCode.VIOLATION and "not above" in closed.reason


def test_request_to_a_peer_without_upload_is_a_violation() -> None:
    viewer = opened(make("viewer", upload_enabled=False))
    closed = closed_with(viewer.receive(encode(wire.Request(0, 0, SEG))))
    assert closed.code == ErrorCode.VIOLATION


def test_buffered_bytes_grow_only_with_data_received(pair) -> None:
    viewer, _, rid = _start(pair, size=30_000_000)  # announced 30 MB, nothing sent yet
    assert viewer.buffered_bytes == 0
    viewer.receive(encode(wire.Data(rid, 0, bytes(65527))))
    assert viewer.buffered_bytes == 65527


# ------------------------------------------------------------------------------- closing


def test_peer_error_fails_open_requests_then_closes(pair) -> None:
    viewer, _seed = pair
    r1 = viewer.request(S1, SEG)
    events = viewer.receive(encode(wire.Error(ErrorCode.BANNED, "bad data")))
    assert events == [
        TransferFailed(r1, "link closed: bad data", 0),
        ConnectionClosed(ErrorCode.BANNED, "bad data", True),
    ]
    assert viewer.data_to_send() == [encode(wire.Request(r1, 0, SEG))]  # nothing more queued
    assert viewer.receive(encode(wire.Have(0, SEG))) == []


def test_local_close_sends_error_and_refuses_more_work(pair) -> None:
    viewer, _seed = pair
    viewer.request(S1, SEG)
    viewer.data_to_send()
    events = viewer.close(ErrorCode.GOING_AWAY, "leaving " + "x" * 400)
    assert isinstance(events[0], TransferFailed) and not closed_with(events).by_peer
    error = sent_error(viewer)
    assert error.code == ErrorCode.GOING_AWAY and len(error.reason.encode()) <= 255
    with pytest.raises(ConnectionStateError):
        viewer.send_have(S1, SEG)
    with pytest.raises(ConnectionStateError):
        viewer.request(S1, SEG)
    assert viewer.close() == []


def test_unknown_error_codes_from_the_peer_are_accepted(pair) -> None:
    viewer, _ = pair
    assert closed_with(viewer.receive(encode(wire.Error(200, "future")))).code == 200


def test_malformed_frame_closes_with_malformed(pair) -> None:
    viewer, _ = pair
    assert closed_with(viewer.receive(b"\x05\x00")).code == ErrorCode.MALFORMED
    viewer2 = opened(make("v2"))
    assert closed_with(viewer2.receive(b"\x42")).code == ErrorCode.UNKNOWN_TYPE
