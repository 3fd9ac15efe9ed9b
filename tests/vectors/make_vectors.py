"""Write tests/vectors/protocol.json and tests/vectors/ids.json from docs/protocol.md.

The expected bytes are spelled out here field by field from the layouts in the spec, with
``int.to_bytes``, never with the codec under test: the vectors are an independent statement of
the wire format that both the Python codec and its JS twin must match. Identity vectors
compute hashes from the spec's formulas with hashlib, and normalised paths are written out by
hand.

Run: .venv/bin/python tests/vectors/make_vectors.py   (rewrites both files)
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SWARM = "JQLaDsRRt1NymI-8Ibrn8v"  # swarm_id("/live/ch1/master.m3u8", "720p/index.m3u8")
SWARM2 = "a" * 64
MAX53 = 2**53 - 1
MAX32 = 2**32 - 1


def u8(v: int) -> str:
    return v.to_bytes(1, "big").hex()


def u16(v: int) -> str:
    return v.to_bytes(2, "big").hex()


def u32(v: int) -> str:
    return v.to_bytes(4, "big").hex()


def u64(v: int) -> str:
    return v.to_bytes(8, "big").hex()


def str8(text: str) -> str:
    raw = text.encode("utf-8")
    return u8(len(raw)) + raw.hex()


def key(kind: str, number: int) -> str:
    return u8({"media": 0, "init": 1}[kind]) + u64(number)


def jkey(kind: str, number: int) -> dict[str, Any]:
    return {"kind": kind, "number": number}


def pattern(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def valid() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, message: dict[str, Any], hexstr: str) -> None:
        out.append({"name": name, "message": message, "hex": hexstr})

    hello = {
        "type": "hello",
        "version_major": 1,
        "version_minor": 0,
        "role": "seed",
        "flags": 1,
        "max_message_size": 65536,
        "max_requests": 16,
        "peer_id": "seed-1",
        "swarms": [SWARM],
    }
    add(
        "hello seed one swarm",
        hello,
        "01"
        + "01"
        + "00"
        + "01"
        + "01"
        + u32(65536)
        + u16(16)
        + str8("seed-1")
        + "01"
        + str8(SWARM),
    )
    add(
        "hello viewer no upload no swarms minimum sizes",
        {
            **hello,
            "role": "viewer",
            "flags": 0,
            "max_message_size": 16384,
            "max_requests": 1,
            "peer_id": "p",
            "swarms": [],
        },
        "01010000" + "00" + u32(16384) + u16(1) + str8("p") + "00",
    )
    add(
        "hello reserved flag bits and limits at maximum",
        {
            **hello,
            "flags": 255,
            "version_minor": 255,
            "max_message_size": MAX32,
            "max_requests": 65535,
            "peer_id": "~" * 64,
            "swarms": [SWARM2, "x", "_-"],
        },
        "01"
        + "01"
        + "ff"
        + "01"
        + "ff"
        + u32(MAX32)
        + u16(65535)
        + str8("~" * 64)
        + "03"
        + str8(SWARM2)
        + str8("x")
        + str8("_-"),
    )
    swarms32 = [f"s{i}" for i in range(32)]
    add(
        "hello 32 swarms",
        {**hello, "swarms": swarms32},
        "0101000101"
        + u32(65536)
        + u16(16)
        + str8("seed-1")
        + u8(32)
        + "".join(str8(s) for s in swarms32),
    )
    add(
        "error going away",
        {"type": "error", "code": 7, "reason": "leaving"},
        "02" + "07" + str8("leaving"),
    )
    add("error empty reason", {"type": "error", "code": 5, "reason": ""}, "020500")
    add(
        "error unknown code utf8 reason",
        {"type": "error", "code": 255, "reason": "é✓"},
        "02ff" + str8("é✓"),
    )
    add(
        "error longest reason",
        {"type": "error", "code": 2, "reason": "r" * 255},
        "0202" + str8("r" * 255),
    )
    add("join", {"type": "join", "swarm": 1, "swarm_id": SWARM}, "0301" + str8(SWARM))
    add("join last index", {"type": "join", "swarm": 31, "swarm_id": "z"}, "031f" + str8("z"))
    add(
        "have_set live window 100..109",
        {"type": "have_set", "swarm": 0, "base": 100, "bitmap": "ffc0", "init_ids": []},
        "04" + "00" + u64(100) + u16(2) + "ffc0" + "00",
    )
    add(
        "have_set empty",
        {"type": "have_set", "swarm": 3, "base": 0, "bitmap": "", "init_ids": []},
        "0403" + u64(0) + u16(0) + "00",
    )
    add(
        "have_set with holes and init ids",
        {"type": "have_set", "swarm": 1, "base": 7, "bitmap": "a501", "init_ids": [0, MAX53]},
        "0401" + u64(7) + u16(2) + "a501" + "02" + u64(0) + u64(MAX53),
    )
    full = "ff" * 8192
    add(
        "have_set largest bitmap",
        {"type": "have_set", "swarm": 0, "base": 1000, "bitmap": full, "init_ids": list(range(16))},
        "0400" + u64(1000) + u16(8192) + full + u8(16) + "".join(u64(i) for i in range(16)),
    )
    add(
        "have_set bitmap ends at 2**53-1",
        {"type": "have_set", "swarm": 0, "base": MAX53 - 7, "bitmap": "01", "init_ids": []},
        "0400" + u64(MAX53 - 7) + u16(1) + "01" + "00",
    )
    for code, name in ((5, "have"), (6, "lost"), (7, "fetching"), (8, "fetch_aborted")):
        add(
            f"{name} media",
            {"type": name, "swarm": 0, "key": jkey("media", 42)},
            u8(code) + "00" + key("media", 42),
        )
    add(
        "have init id max",
        {"type": "have", "swarm": 31, "key": jkey("init", MAX53)},
        "051f" + key("init", MAX53),
    )
    add(
        "lost seq zero",
        {"type": "lost", "swarm": 2, "key": jkey("media", 0)},
        "0602" + key("media", 0),
    )
    add(
        "request whole segment",
        {
            "type": "request",
            "request_id": 0,
            "swarm": 0,
            "key": jkey("media", 108),
            "offset": 0,
            "length": 0,
        },
        "09" + u32(0) + "00" + key("media", 108) + u32(0) + u32(0),
    )
    add(
        "request resume range edge values",
        {
            "type": "request",
            "request_id": MAX32,
            "swarm": 31,
            "key": jkey("init", 12345),
            "offset": MAX32,
            "length": MAX32,
        },
        "09" + u32(MAX32) + "1f" + key("init", 12345) + u32(MAX32) + u32(MAX32),
    )
    add("cancel", {"type": "cancel", "request_id": 7}, "0a" + u32(7))
    add("cancel max id", {"type": "cancel", "request_id": MAX32}, "0a" + u32(MAX32))
    add("dont_have", {"type": "dont_have", "request_id": 0}, "0b" + u32(0))
    add("busy", {"type": "busy", "request_id": 9, "retry_after_ms": 250}, "0c" + u32(9) + u16(250))
    add(
        "busy max retry",
        {"type": "busy", "request_id": 1, "retry_after_ms": 65535},
        "0c" + u32(1) + u16(65535),
    )
    add(
        "response whole",
        {"type": "response", "request_id": 0, "total_size": 150000, "offset": 0, "length": 150000},
        "0d" + u32(0) + u32(150000) + u32(0) + u32(150000),
    )
    add(
        "response empty at end",
        {"type": "response", "request_id": 3, "total_size": 10, "offset": 10, "length": 0},
        "0d" + u32(3) + u32(10) + u32(10) + u32(0),
    )
    add(
        "response max sizes",
        {
            "type": "response",
            "request_id": MAX32,
            "total_size": MAX32,
            "offset": 0,
            "length": MAX32,
        },
        "0d" + u32(MAX32) + u32(MAX32) + u32(0) + u32(MAX32),
    )
    add(
        "data one byte",
        {"type": "data", "request_id": 0, "offset": 0, "payload": "00"},
        "0e" + u32(0) + u32(0) + "00",
    )
    add(
        "data largest chunk",
        {"type": "data", "request_id": 1, "offset": 65527, "payload": pattern(65527).hex()},
        "0e" + u32(1) + u32(65527) + pattern(65527).hex(),
    )
    add(
        "data max offset",
        {"type": "data", "request_id": MAX32, "offset": MAX32, "payload": "abcd"},
        "0e" + u32(MAX32) + u32(MAX32) + "abcd",
    )
    return out


def tolerated() -> list[dict[str, Any]]:
    return [
        {
            "name": "hello from newer minor with extension bytes",
            "hex": "01"
            + "01"
            + "07"
            + "00"
            + "01"
            + u32(65536)
            + u16(4)
            + str8("n")
            + "00"
            + "deadbeef",
            "message": {
                "type": "hello",
                "version_major": 1,
                "version_minor": 7,
                "role": "viewer",
                "flags": 1,
                "max_message_size": 65536,
                "max_requests": 4,
                "peer_id": "n",
                "swarms": [],
            },
        },
        {
            "name": "have_set non-canonical: trailing zero bytes, low base",
            "hex": "0400" + u64(0) + u16(3) + "000100" + "00",
            "message": {
                "type": "have_set",
                "swarm": 0,
                "base": 0,
                "bitmap": "000100",
                "init_ids": [],
            },
        },
    ]


def invalid() -> list[dict[str, Any]]:
    hello_tail = u32(65536) + u16(16) + str8("peer") + "01" + str8(SWARM)
    good_hello = "01010001" + "01" + hello_tail
    cases = [
        ("empty frame", "", "malformed"),
        ("type zero", "00", "unknown_type"),
        ("unknown type 0x0f", "0f00000000", "unknown_type"),
        ("unknown type 0xff", "ff", "unknown_type"),
        ("frame over 64 KiB", "0e" + u32(0) + u32(0) + "00" * 65528, "too_large"),
        ("hello other major", "01" + "02" + "00" + "01" + "01" + hello_tail, "version"),
        ("hello major zero", "01" + "00" + "05" + "01" + "01" + hello_tail, "version"),
        ("hello major 2 with a layout of its own", "0102" + "00" + "ffff", "version"),
        ("hello truncated", good_hello[:-2], "malformed"),
        ("hello trailing byte same minor", good_hello + "00", "malformed"),
        ("hello unknown role", "01010002" + "01" + hello_tail, "malformed"),
        (
            "hello max message size too small",
            "0101000101" + u32(16383) + u16(16) + str8("p") + "00",
            "malformed",
        ),
        (
            "hello zero max requests",
            "0101000101" + u32(65536) + u16(0) + str8("p") + "00",
            "malformed",
        ),
        ("hello empty peer id", "0101000101" + u32(65536) + u16(1) + "00" + "00", "malformed"),
        (
            "hello peer id with space",
            "0101000101" + u32(65536) + u16(1) + str8("a b") + "00",
            "malformed",
        ),
        (
            "hello peer id too long",
            "0101000101" + u32(65536) + u16(1) + str8("p" * 65) + "00",
            "malformed",
        ),
        (
            "hello 33 swarms",
            "0101000101"
            + u32(65536)
            + u16(1)
            + str8("p")
            + u8(33)
            + "".join(str8(f"s{i}") for i in range(33)),
            "too_large",
        ),
        (
            "hello bad swarm id",
            "0101000101" + u32(65536) + u16(1) + str8("p") + "01" + str8("a/b"),
            "malformed",
        ),
        (
            "hello duplicate swarm",
            "0101000101" + u32(65536) + u16(1) + str8("p") + "02" + str8("s") + str8("s"),
            "malformed",
        ),
        (
            "hello swarm count beyond frame",
            "0101000101" + u32(65536) + u16(1) + str8("p") + "05" + str8("s"),
            "malformed",
        ),
        ("error code zero", "0200" + str8("x"), "malformed"),
        ("error invalid utf8", "0205" + "02c328", "malformed"),
        ("error reason length past end", "020510" + "41", "malformed"),
        ("error trailing", "0205" + "00" + "00", "malformed"),
        ("join index 32", "0320" + str8("s"), "malformed"),
        ("join empty id", "0300" + "00", "malformed"),
        # "$" in a regex matches before a final newline: ids must be checked with fullmatch.
        ("join id with trailing newline", "0300" + str8("abc\n"), "malformed"),
        ("have_set bitmap too long", "0400" + u64(0) + u16(8193) + "00" * 8193 + "00", "too_large"),
        ("have_set bitmap truncated", "0400" + u64(0) + u16(4) + "ff", "malformed"),
        ("have_set past 2**53-1", "0400" + u64(MAX53 - 6) + u16(1) + "01" + "00", "malformed"),
        ("have_set base above 2**53-1", "0400" + u64(MAX53 + 1) + u16(0) + "00", "malformed"),
        ("have_set 17 init ids", "0400" + u64(0) + u16(0) + u8(17) + u64(1) * 17, "too_large"),
        (
            "have_set init id above 2**53-1",
            "0400" + u64(0) + u16(0) + "01" + u64(2**53),
            "malformed",
        ),
        ("have_set swarm index 32", "0420" + u64(0) + u16(0) + "00", "malformed"),
        ("have truncated key", "0500" + "00" + u32(1), "malformed"),
        ("have trailing byte", "0500" + key("media", 1) + "00", "malformed"),
        ("have unknown kind", "0500" + "02" + u64(1), "malformed"),
        ("have seq above 2**53-1", "0500" + "00" + u64(2**64 - 1), "malformed"),
        ("lost swarm index 255", "06ff" + key("media", 1), "malformed"),
        ("request truncated", "09" + u32(1) + "00" + key("media", 1) + u32(0), "malformed"),
        (
            "request trailing",
            "09" + u32(1) + "00" + key("media", 1) + u32(0) + u32(0) + "00",
            "malformed",
        ),
        ("cancel truncated", "0a000000", "malformed"),
        ("dont_have trailing", "0b" + u32(1) + "00", "malformed"),
        ("busy truncated", "0c" + u32(1) + "00", "malformed"),
        ("response range past total", "0d" + u32(1) + u32(10) + u32(5) + u32(6), "malformed"),
        ("response offset past total", "0d" + u32(1) + u32(10) + u32(11) + u32(0), "malformed"),
        ("response truncated", "0d" + u32(1) + u32(10) + u32(0), "malformed"),
        ("data without payload", "0e" + u32(1) + u32(0), "malformed"),
        ("data truncated header", "0e" + u32(1) + "0000", "malformed"),
    ]
    return [{"name": n, "hex": h, "error": e} for n, h, e in cases]


def swarm(content_id: str, rendition: str) -> str:
    material = b"swarmcast/swarm/v1\x00" + content_id.encode() + b"\x00" + rendition.encode()
    return base64.urlsafe_b64encode(hashlib.sha256(material).digest()).decode()[:22]


def init_id(path: str, byterange: tuple[int, int] | None = None) -> int:
    material = b"swarmcast/init/v1\x00" + path.encode()
    if byterange:
        material += f"\x00{byterange[0]}@{byterange[1]}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") >> 11


def ids() -> dict[str, Any]:
    paths = [
        ("https://cdn-a.example.com/live/ch1/master.m3u8?token=abc#t=3", "/live/ch1/master.m3u8"),
        ("http://u:pw@CDN-B.example.net:8080/live//ch1/./master.m3u8", "/live/ch1/master.m3u8"),
        ("/live/ch1/../ch1/master.m3u8?Expires=1&Signature=x", "/live/ch1/master.m3u8"),
        ("https://h.example/%7Evod/%61b%2fc/%e2%9c%93.m3u8", "/~vod/ab%2Fc/%E2%9C%93.m3u8"),
        ("https://h.example/a b/é.m3u8", "/a%20b/%C3%A9.m3u8"),
        ("https://h.example/100%/x", "/100%25/x"),
        ("https://h.example", "/"),
        ("https://h.example/a/b/..", "/a/"),
        ("https://h.example/a/./", "/a/"),
        ("https://h.example/Live/CH1.m3u8", "/Live/CH1.m3u8"),
    ]
    renditions = [
        (
            "https://cdn-a.example.com/live/ch1/master.m3u8?token=abc",
            "720p/index.m3u8?token=abc",
            "720p/index.m3u8",
        ),
        (
            "https://cdn-b.example.net/live/ch1/master.m3u8",
            "https://cdn-c.example.org/live/ch1/720p/index.m3u8",
            "720p/index.m3u8",
        ),
        ("https://h.example/live/ch1/master.m3u8", "/other/audio/en.m3u8", "/other/audio/en.m3u8"),
        ("https://h.example/live/ch1/master.m3u8", "../ch2/v.m3u8", "/live/ch2/v.m3u8"),
        (
            "https://h.example/live/ch1/index.m3u8",
            "https://h.example/live/ch1/index.m3u8",
            "index.m3u8",
        ),
    ]
    swarm_inputs = [
        ("/live/ch1/master.m3u8", "720p/index.m3u8"),
        ("/live/ch1/master.m3u8", "1080p/index.m3u8"),
        ("my-event-2024", "video-hd"),
        ("é", "✓"),
    ]
    inits = [
        ("https://cdn-a.example.com/live/720p/init.mp4?sig=1", None, "/live/720p/init.mp4"),
        ("/live/720p/init.mp4", (720, 0), "/live/720p/init.mp4"),
        ("https://h.example/vod/main.mp4", (1024, 4096), "/vod/main.mp4"),
    ]
    return {
        "version": 1,
        "normalize_path": [{"url": u, "path": p} for u, p in paths],
        "content_id_from_url": [{"url": u, "content_id": p} for u, p in paths[:3]],
        "rendition_id": [
            {"master_url": m, "playlist_uri": u, "rendition": r} for m, u, r in renditions
        ],
        "swarm_id": [
            {"content_id": c, "rendition": r, "swarm_id": swarm(c, r)} for c, r in swarm_inputs
        ],
        "init_segment_id": [
            {
                "uri": u,
                "byterange": ({"length": b[0], "offset": b[1]} if b else None),
                "init_id": init_id(p, b),
            }
            for u, b, p in inits
        ],
    }


def main() -> None:
    protocol = {"version": 1, "valid": valid(), "tolerated": tolerated(), "invalid": invalid()}
    (HERE / "protocol.json").write_text(json.dumps(protocol, indent=1, ensure_ascii=False) + "\n")
    (HERE / "ids.json").write_text(json.dumps(ids(), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
