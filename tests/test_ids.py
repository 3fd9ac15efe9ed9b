"""Swarm and segment identity against the shared vectors (tests/vectors/ids.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from swarmcast.peer.ids import (
    MAX_SEGMENT_NUMBER,
    SWARM_ID_PATTERN,
    ByteRange,
    SegmentKey,
    SegmentKind,
    check_label,
    content_id_from_url,
    init_segment_id,
    normalize_path,
    rendition_id,
    swarm_id,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "ids.json").read_text())


@pytest.mark.parametrize("case", VECTORS["normalize_path"], ids=lambda c: c["url"])
def test_normalize_path_vectors(case: dict[str, Any]) -> None:
    assert normalize_path(case["url"]) == case["path"]


@pytest.mark.parametrize("case", VECTORS["content_id_from_url"], ids=lambda c: c["url"])
def test_content_id_vectors(case: dict[str, Any]) -> None:
    assert content_id_from_url(case["url"]) == case["content_id"]


@pytest.mark.parametrize("case", VECTORS["rendition_id"], ids=lambda c: c["playlist_uri"])
def test_rendition_id_vectors(case: dict[str, Any]) -> None:
    assert rendition_id(case["master_url"], case["playlist_uri"]) == case["rendition"]


@pytest.mark.parametrize("case", VECTORS["swarm_id"], ids=lambda c: c["swarm_id"])
def test_swarm_id_vectors(case: dict[str, Any]) -> None:
    assert swarm_id(case["content_id"], case["rendition"]) == case["swarm_id"]


@pytest.mark.parametrize("case", VECTORS["init_segment_id"], ids=lambda c: c["uri"])
def test_init_segment_id_vectors(case: dict[str, Any]) -> None:
    byterange = ByteRange(**case["byterange"]) if case["byterange"] else None
    assert init_segment_id(case["uri"], byterange=byterange) == case["init_id"]


def test_one_stream_on_two_cdns_with_signed_urls_is_one_swarm() -> None:
    a_master = "https://edge1.cdn-a.example/live/ch1/master.m3u8?token=111&exp=1"
    b_master = "http://cdn-b.example:8080/live/ch1/master.m3u8?Signature=zz"
    a = swarm_id(content_id_from_url(a_master), rendition_id(a_master, "hd/i.m3u8?token=111"))
    b = swarm_id(content_id_from_url(b_master), rendition_id(b_master, "hd/i.m3u8?Signature=q"))
    assert a == b


def test_different_renditions_and_streams_get_different_swarms() -> None:
    ids = {
        swarm_id("/live/ch1/master.m3u8", "720p/i.m3u8"),
        swarm_id("/live/ch1/master.m3u8", "1080p/i.m3u8"),
        swarm_id("/live/ch2/master.m3u8", "720p/i.m3u8"),
        # the separator keeps ("a", "bc") and ("ab", "c") apart
        swarm_id("a", "bc"),
        swarm_id("ab", "c"),
    }
    assert len(ids) == 5


@pytest.mark.parametrize("content", ["/x", "é" * 300, "a" * 1024, "tenant:42/event"])
def test_swarm_ids_match_the_signalling_rule(content: str) -> None:
    sid = swarm_id(content, "r")
    assert SWARM_ID_PATTERN.match(sid) and len(sid) == 22


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * 1025, "\ud800"])
def test_bad_labels_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        swarm_id(bad, "r")
    with pytest.raises(ValueError):
        check_label(bad)


@pytest.mark.parametrize("bad", ["", "   ", "master.m3u8", "live/master.m3u8"])
def test_relative_or_empty_urls_are_refused_with_advice(bad: str) -> None:
    with pytest.raises(ValueError, match=r"URL|path"):
        content_id_from_url(bad)


def test_init_ids_depend_on_path_and_byterange_not_host() -> None:
    plain = init_segment_id("https://a.example/v/init.mp4?sig=1")
    assert plain == init_segment_id("init.mp4", base_url="https://b.example/v/index.m3u8")
    assert plain != init_segment_id("/v/init.mp4", byterange=ByteRange(100, 0))
    assert init_segment_id("/v/x.mp4", byterange=ByteRange(100, 0)) != init_segment_id(
        "/v/x.mp4", byterange=ByteRange(100, 100)
    )
    assert 0 <= plain <= MAX_SEGMENT_NUMBER


def test_segment_keys() -> None:
    assert SegmentKey.media(5) == SegmentKey(SegmentKind.MEDIA, 5)
    assert SegmentKey.media(5) != SegmentKey.init(5)
    assert SegmentKey(1, 3).kind is SegmentKind.INIT  # type: ignore[arg-type]
    assert str(SegmentKey.init(3)) == "init:3"
    assert sorted([SegmentKey.media(9), SegmentKey.init(0), SegmentKey.media(2)])[0].number == 2


@pytest.mark.parametrize("bad", [-1, MAX_SEGMENT_NUMBER + 1, 2**64])
def test_segment_numbers_are_bounded(bad: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*53"):
        SegmentKey.media(bad)


@pytest.mark.parametrize("bad", [1.0, "3", True])
def test_segment_numbers_must_be_ints(bad: Any) -> None:
    with pytest.raises(TypeError):
        SegmentKey.media(bad)


def test_negative_byte_range_is_refused() -> None:
    with pytest.raises(ValueError):
        ByteRange(-1, 0)
