"""The wire codec against the shared vectors (tests/vectors/protocol.json) and its own rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.protocol import (
    DATA_HEADER_SIZE,
    MAX_BITMAP_BYTES,
    MAX_DATA_PAYLOAD,
    MAX_FRAME_SIZE,
    Busy,
    Data,
    Error,
    ErrorCode,
    Have,
    HaveSet,
    Hello,
    MessageType,
    ProtocolError,
    Request,
    Response,
    Role,
    decode,
    encode,
    encode_data_header,
    message_from_dict,
    message_to_dict,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "protocol.json").read_text())


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


@pytest.mark.parametrize("case", VECTORS["valid"], ids=_ids(VECTORS["valid"]))
def test_valid_vector_encodes_to_its_bytes(case: dict[str, Any]) -> None:
    assert encode(message_from_dict(case["message"])).hex() == case["hex"]


@pytest.mark.parametrize("case", VECTORS["valid"], ids=_ids(VECTORS["valid"]))
def test_valid_vector_decodes_to_its_message(case: dict[str, Any]) -> None:
    assert message_to_dict(decode(bytes.fromhex(case["hex"]))) == case["message"]


@pytest.mark.parametrize("case", VECTORS["tolerated"], ids=_ids(VECTORS["tolerated"]))
def test_tolerated_vector_decodes(case: dict[str, Any]) -> None:
    assert message_to_dict(decode(bytes.fromhex(case["hex"]))) == case["message"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=_ids(VECTORS["invalid"]))
def test_invalid_vector_raises_its_code(case: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(bytes.fromhex(case["hex"]))
    assert info.value.code.label == case["error"]


def test_vectors_cover_every_message_type() -> None:
    covered = {case["message"]["type"] for case in VECTORS["valid"]}
    assert covered == {t.name.lower() for t in MessageType}


def test_vectors_include_largest_data_chunk_and_frame() -> None:
    sizes = [len(case["hex"]) // 2 for case in VECTORS["valid"]]
    assert max(sizes) == MAX_FRAME_SIZE


def test_decode_accepts_bytearray_and_memoryview() -> None:
    frame = encode(Data(5, 10, b"hello"))
    assert decode(bytearray(frame)) == decode(memoryview(frame)) == Data(5, 10, b"hello")


def test_decoded_data_payload_is_bytes_not_a_view() -> None:
    buffer = bytearray(encode(Data(1, 0, b"abc")))
    message = decode(memoryview(buffer))
    buffer[-1] = ord("z")  # the caller reuses its receive buffer
    assert isinstance(message, Data) and message.payload == b"abc"


def test_data_header_helper_matches_encoder() -> None:
    payload = b"\x01" * 100
    assert encode_data_header(7, 300) + payload == encode(Data(7, 300, payload))
    assert len(encode_data_header(0, 0)) == DATA_HEADER_SIZE


def test_have_set_from_sequences_round_trips() -> None:
    held = {1000, 1001, 1005, 1064, 1100}
    message = HaveSet.from_sequences(2, held, init_ids=[9])
    assert message.base == 1000
    assert len(message.bitmap) == (1100 - 1000) // 8 + 1
    assert set(message.sequences()) == held
    decoded = decode(encode(message))
    assert isinstance(decoded, HaveSet) and set(decoded.sequences()) == held


def test_have_set_from_nothing_is_empty() -> None:
    message = HaveSet.from_sequences(0, [])
    assert (message.base, message.bitmap, list(message.sequences())) == (0, b"", [])


def test_have_set_refuses_a_span_it_cannot_carry() -> None:
    HaveSet.from_sequences(0, [0, 8 * MAX_BITMAP_BYTES - 1])  # exactly fits
    with pytest.raises(ProtocolError) as info:
        HaveSet.from_sequences(0, [0, 8 * MAX_BITMAP_BYTES])
    assert info.value.code is ErrorCode.TOO_LARGE


@pytest.mark.parametrize(
    "build",
    [
        lambda: Data(0, 0, b""),
        lambda: Data(0, 0, bytes(MAX_DATA_PAYLOAD + 1)),
        lambda: Data(-1, 0, b"x"),
        lambda: Request(2**32, 0, SegmentKey.media(1)),
        lambda: Request(1, 32, SegmentKey.media(1)),
        lambda: Response(1, 10, 8, 3),
        lambda: Busy(1, 70000),
        lambda: Error(0, "x"),
        lambda: Error(7, "é" * 200),
        lambda: Have(0, 5),  # type: ignore[arg-type]
        lambda: Hello(1, 0, Role.SEED, 0, 1000, 1, "p", ()),
        lambda: Hello(1, 0, Role.SEED, 0, 65536, 1, "p", ("bad id!",)),
        lambda: Hello(1, 0, Role.SEED, 0, 65536, 1, "p", tuple(f"s{i}" for i in range(33))),
    ],
)
def test_out_of_range_fields_are_refused_at_construction(build: Any) -> None:
    with pytest.raises(ProtocolError):
        build()


def test_protocol_error_is_a_value_error_with_a_code() -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode(b"\x0a\x00")
    try:
        decode(b"\x63")
    except ProtocolError as exc:
        assert exc.code is ErrorCode.UNKNOWN_TYPE and "0x63" in str(exc)


def test_version_error_names_both_versions() -> None:
    hello = bytes.fromhex("010203")
    with pytest.raises(ProtocolError, match=r"2\.3.*1\.0") as info:
        decode(hello)
    assert info.value.code is ErrorCode.VERSION


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(TypeError):
        encode("hello")  # type: ignore[arg-type]


def test_message_from_dict_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown message type"):
        message_from_dict({"type": "teleport"})


def test_hello_upload_flag_ignores_reserved_bits() -> None:
    assert Hello(1, 0, Role.VIEWER, 0xFE, 65536, 1, "p", ()).upload_enabled is False
    assert Hello(1, 0, Role.VIEWER, 0x01, 65536, 1, "p", ()).upload_enabled is True
