"""Tests of swarmcast.samples.integrity: building, (de)serialising and validating manifests."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarmcast.cli import main
from swarmcast.samples.integrity import (
    MAX_ENTRIES,
    ByteRange,
    IntegrityError,
    IntegrityManifest,
    build_manifest,
    manifest_path_for,
    read_manifest,
    write_manifest,
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: int) -> bytes:
    """Distinct, non-repeating bytes, so a wrong offset gives a wrong hash."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@pytest.fixture
def vod(tmp_path: Path) -> Path:
    """A plain TS VOD playlist with three segments."""
    for i in range(3):
        (tmp_path / f"seg-{i}.ts").write_bytes(pattern(1000 + i, i))
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i in range(3):
        lines += ["#EXTINF:2.0,", f"seg-{i}.ts"]
    lines.append("#EXT-X-ENDLIST")
    playlist = tmp_path / "index.m3u8"
    playlist.write_text("\n".join(lines) + "\n")
    return playlist


@pytest.fixture
def byterange_playlist(tmp_path: Path) -> Path:
    """fMP4-style single file with an init range and media ranges, then a discontinuity."""
    (tmp_path / "media.mp4").write_bytes(pattern(5000, 7))
    (tmp_path / "other.ts").write_bytes(pattern(300, 8))
    (tmp_path / "live.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:5\n"
        '#EXT-X-MAP:URI="media.mp4",BYTERANGE="100@0"\n'
        "#EXTINF:2.0,\n#EXT-X-BYTERANGE:1000@100\nmedia.mp4\n"
        "#EXTINF:1.5,\n#EXT-X-BYTERANGE:500\nmedia.mp4\n"
        "#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\nother.ts\n"
    )
    return tmp_path / "live.m3u8"


def test_manifest_path_is_beside_playlist() -> None:
    assert manifest_path_for(Path("/a/b/index.m3u8")) == Path("/a/b/index.integrity.json")
    assert manifest_path_for(Path("low.m3u8")) == Path("low.integrity.json")


def test_build_hashes_whole_files(vod: Path) -> None:
    manifest = build_manifest(vod)
    assert manifest.playlist == "index.m3u8"
    assert manifest.media_sequence == 0 and manifest.live is False and manifest.init == ()
    assert [s.sequence for s in manifest.segments] == [0, 1, 2]
    for i, entry in enumerate(manifest.segments):
        data = (vod.parent / f"seg-{i}.ts").read_bytes()
        assert entry.uri == f"seg-{i}.ts"
        assert (entry.size, entry.sha256) == (len(data), sha(data))
        assert entry.duration == 2.0 and entry.byterange is None and entry.map is None
        assert entry.matches(data)


def test_byterange_playlist_hashes_only_the_ranges(byterange_playlist: Path) -> None:
    data = (byterange_playlist.parent / "media.mp4").read_bytes()
    other = (byterange_playlist.parent / "other.ts").read_bytes()
    manifest = build_manifest(byterange_playlist)
    assert manifest.live is True  # no EXT-X-ENDLIST
    assert [e.to_json() for e in manifest.init] == [
        {"uri": "media.mp4", "size": 100, "sha256": sha(data[:100])}
    ]
    first, second, third = manifest.segments
    assert (first.sequence, first.byterange, first.size) == (5, ByteRange(100, 1000), 1000)
    assert first.sha256 == sha(data[100:1100])
    # No offset: continues right after the previous range of the same file.
    assert (second.sequence, second.byterange) == (6, ByteRange(1100, 500))
    assert second.sha256 == sha(data[1100:1600]) and second.duration == 1.5
    assert first.map == second.map == "media.mp4"
    assert not first.discontinuity and not second.discontinuity
    assert third.discontinuity and third.byterange is None and third.sha256 == sha(other)
    assert third.to_json()["byterange"] is None
    assert first.to_json()["byterange"] == {"offset": 100, "length": 1000}


def test_fmp4_map_without_range(tmp_path: Path) -> None:
    (tmp_path / "init.mp4").write_bytes(b"init-bytes")
    (tmp_path / "s0.m4s").write_bytes(b"media")
    (tmp_path / "i.m3u8").write_text(
        '#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2,\ns0.m4s\n'
        "#EXT-X-ENDLIST\n"
    )
    manifest = build_manifest(tmp_path / "i.m3u8")
    assert manifest.init[0].to_json() == {
        "uri": "init.mp4",
        "size": 10,
        "sha256": sha(b"init-bytes"),
    }
    assert manifest.segments[0].map == "init.mp4"
    assert manifest.init_entry("init.mp4").matches(b"init-bytes")
    assert manifest.init_entry("nope") is None


def test_write_manifest_round_trips(byterange_playlist: Path) -> None:
    path = write_manifest(byterange_playlist)
    assert path == byterange_playlist.with_name("live.integrity.json")
    assert path.stat().st_mode & 0o777 == 0o644
    document = json.loads(path.read_text())
    assert list(document) == [
        "format",
        "version",
        "algorithm",
        "playlist",
        "media_sequence",
        "live",
        "init",
        "segments",
    ]
    assert list(document["segments"][0]) == [
        "sequence",
        "uri",
        "duration",
        "size",
        "sha256",
        "byterange",
        "map",
        "discontinuity",
    ]
    loaded = read_manifest(path)
    assert loaded == build_manifest(byterange_playlist)
    assert IntegrityManifest.from_json(loaded.to_json()) == loaded
    assert loaded.segment(6) == loaded.segments[1]
    assert loaded.segment(4) is None and loaded.segment(8) is None


def test_matches_rejects_wrong_bytes(vod: Path) -> None:
    entry = build_manifest(vod).segments[0]
    data = (vod.parent / "seg-0.ts").read_bytes()
    assert entry.matches(data)
    assert not entry.matches(data[:-1])
    assert not entry.matches(bytes([data[0] ^ 1]) + data[1:])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n", "master"),
        ("#EXTM3U\n#EXTINF:2,\nhttp://cdn.example/seg.ts\n", "not a relative path"),
        ("#EXTM3U\n#EXTINF:2,\n/abs/seg.ts\n", "not a relative path"),
        ("#EXTM3U\n#EXTINF:2,\nmissing.ts\n", "cannot read segment"),
        ("#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:10@995\ndata.bin\n", "past the end"),
        ("#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:10\ndata.bin\n", "no offset"),
        ("#EXTM3U\n#EXTINF:2,\n#EXT-X-BYTERANGE:ten@0\ndata.bin\n", "bad BYTERANGE"),
        ("not a playlist\n", "#EXTM3U"),
    ],
)
def test_build_rejects_bad_playlists(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "data.bin").write_bytes(bytes(1000))
    (tmp_path / "p.m3u8").write_text(text)
    with pytest.raises(IntegrityError, match=message):
        build_manifest(tmp_path / "p.m3u8")


def test_map_with_two_ranges_of_one_file_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "m.mp4").write_bytes(pattern(400, 1))
    (tmp_path / "p.m3u8").write_text(
        '#EXTM3U\n#EXT-X-MAP:URI="m.mp4",BYTERANGE="10@0"\n#EXTINF:2,\n'
        "#EXT-X-BYTERANGE:100@10\nm.mp4\n"
        '#EXT-X-MAP:URI="m.mp4",BYTERANGE="10@110"\n#EXTINF:2,\n#EXT-X-BYTERANGE:100@120\nm.mp4\n'
    )
    with pytest.raises(IntegrityError, match="different byte ranges"):
        build_manifest(tmp_path / "p.m3u8")


def test_build_rejects_missing_and_binary_playlists(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="cannot read playlist"):
        build_manifest(tmp_path / "none.m3u8")
    (tmp_path / "bin.m3u8").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IntegrityError, match="not UTF-8"):
        build_manifest(tmp_path / "bin.m3u8")


# -- strict validation ----------------------------------------------------------------------


def valid_document() -> dict[str, Any]:
    return {
        "format": "swarmcast-integrity",
        "version": 1,
        "algorithm": "sha256",
        "playlist": "index.m3u8",
        "media_sequence": 10,
        "live": True,
        "init": [{"uri": "init.mp4", "size": 812, "sha256": "a" * 64}],
        "segments": [
            {
                "sequence": 10 + i,
                "uri": f"seg-{i}.m4s",
                "duration": 2.0,
                "size": 1000 + i,
                "sha256": f"{i:064x}",
                "byterange": None,
                "map": "init.mp4",
                "discontinuity": False,
            }
            for i in range(3)
        ],
    }


def test_valid_document_is_accepted() -> None:
    manifest = IntegrityManifest.from_json(valid_document())
    assert manifest.to_json() == valid_document()
    assert manifest.segments[2].sequence == 12


def _set(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    document = valid_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


def _drop(path: tuple[Any, ...]) -> dict[str, Any]:
    document = valid_document()
    target: Any = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "expected a JSON object"),
        (_set(("format",), "hls-integrity"), "format must be"),
        (_set(("version",), 2), "unsupported version"),
        (_set(("version",), "1"), "unsupported version"),
        (_set(("version",), True), "unsupported version"),
        (_set(("algorithm",), "md5"), "algorithm"),
        (_set(("media_sequence",), -1), "out of range"),
        (_set(("media_sequence",), 1.5), "expected an integer"),
        (_set(("live",), 1), "expected true or false"),
        (_set(("playlist",), ""), "non-empty string"),
        (_set(("init",), {}), "expected a JSON array"),
        (_set(("segments",), [None] * (MAX_ENTRIES + 1)), "more than the limit"),
        (_set(("segments", 0, "sha256"), "A" * 64), "64 lowercase hex"),
        (_set(("segments", 0, "sha256"), "a" * 63), "64 lowercase hex"),
        (_set(("segments", 0, "sha256"), "g" * 64), "64 lowercase hex"),
        (_set(("segments", 1, "size"), -5), "out of range"),
        (_set(("segments", 1, "size"), True), "expected an integer"),
        (_set(("segments", 1, "size"), 1 << 41), "out of range"),
        (_set(("segments", 1, "sequence"), 12), r"expected 11 \(media_sequence \+ index\)"),
        (_set(("segments", 0, "duration"), math.nan), "not a duration"),
        (_set(("segments", 0, "duration"), -2.0), "not a duration"),
        (_set(("segments", 0, "duration"), "2.0"), "expected a number"),
        (_set(("segments", 0, "map"), "other.mp4"), "not listed in init"),
        (_set(("segments", 0, "uri"), "a\nb"), "control characters"),
        (_set(("segments", 0, "uri"), "x" * 5000), "longer than"),
        (_set(("segments", 0, "discontinuity"), None), "expected true or false"),
        (_set(("segments", 0, "byterange"), {"offset": 0, "length": 999}), "differs from"),
        (_set(("segments", 0, "byterange"), {"offset": -1, "length": 1000}), "out of range"),
        (_set(("segments", 0, "byterange"), {"offset": 0}), "missing key"),
        (_set(("segments", 0, "byterange"), [0, 1000]), "expected a JSON object"),
        (_set(("segments", 0, "extra"), 1), "unknown key"),
        (_set(("init", 0, "size"), -1), "out of range"),
        (_set(("init",), valid_document()["init"] * 2), "listed twice"),
        (_drop(("segments", 2, "sha256")), "missing key"),
        (_drop(("live",)), "missing key"),
        (_set(("surprise",), 1), "unknown key"),
    ],
)
def test_from_json_rejects_malformed(document: Any, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        IntegrityManifest.from_json(document)


@pytest.mark.parametrize("text", [b"", b"{", b"\xff\xff", b'{"format": }', b"[1, 2"])
def test_loads_rejects_bad_json(text: bytes) -> None:
    with pytest.raises(IntegrityError, match="not valid JSON"):
        IntegrityManifest.loads(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_arbitrary_json_never_crashes(value: Any) -> None:
    with contextlib.suppress(IntegrityError):
        IntegrityManifest.from_json(value)


# Every field of a valid document, replaced by an arbitrary value of another JSON type.
FIELDS = [
    ("format",),
    ("version",),
    ("playlist",),
    ("media_sequence",),
    ("live",),
    ("init",),
    ("segments",),
    ("init", 0, "uri"),
    ("init", 0, "size"),
    ("segments", 1, "sequence"),
    ("segments", 1, "uri"),
    ("segments", 1, "duration"),
    ("segments", 1, "size"),
    ("segments", 1, "sha256"),
    ("segments", 1, "byterange"),
    ("segments", 1, "map"),
    ("segments", 1, "discontinuity"),
]


@given(field=st.sampled_from(FIELDS), value=json_values)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_replaced_field_is_accepted_only_if_still_valid(
    field: tuple[Any, ...], value: Any
) -> None:
    document = _set(field, copy.deepcopy(value))
    try:
        manifest = IntegrityManifest.from_json(document)
    except IntegrityError:
        return
    # Accepted: then the replacement must have been a legal value and round-trips exactly.
    assert manifest.to_json() == IntegrityManifest.from_json(manifest.to_json()).to_json()
    assert all(len(s.sha256) == 64 and s.size >= 0 for s in manifest.segments)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_crash_loads(data: bytes) -> None:
    with contextlib.suppress(IntegrityError):
        IntegrityManifest.loads(data)


# -- command line ---------------------------------------------------------------------------


def test_cli_writes_and_checks(vod: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert main(["integrity", str(vod)]) == 0
    assert read_manifest(manifest_path_for(vod)) == build_manifest(vod)
    assert main(["integrity", "--check", str(vod)]) == 0
    (vod.parent / "seg-1.ts").write_bytes(b"tampered")
    caplog.clear()
    assert main(["integrity", "--check", str(vod)]) == 1
    assert "segment 1 (seg-1.ts) differs" in caplog.text


def test_cli_reports_errors_without_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(["integrity", str(tmp_path / "missing.m3u8")]) == 1
    assert "cannot read playlist" in caplog.text
    assert "Traceback" not in caplog.text
