"""Stream following: master parsing and identity, the sans-IO timeline (window, byte ranges,
discontinuities, integrity), and the asyncio follower against the real development origin."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest

from swarmcast.peer import ids
from swarmcast.peer.ids import ByteRange, SegmentKind
from swarmcast.peer.integrity_check import Verdict
from swarmcast.peer.origin_client import OriginClient, OriginClientConfig, OriginUnavailable
from swarmcast.peer.stream import (
    FollowerConfig,
    PlaylistError,
    RenditionFollower,
    RenditionTimeline,
    TimelineConfig,
    load_stream,
    parse_master,
)
from swarmcast.samples.integrity import IntegrityError
from swarmcast.samples.origin import OriginConfig, start_origin

MASTER_URL = "https://cdn-a.example.com/live/ch1/master.m3u8?token=abc"
PLAYLIST_URL = "https://cdn.example.com/live/ch1/720p/index.m3u8"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def media_playlist(first: int, uris: list[str], *, end: bool = False, extra: str = "") -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-TARGETDURATION:2"]
    lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first}")
    if extra:
        lines.append(extra)
    for uri in uris:
        lines += ["#EXTINF:2.000,", uri]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def window(first: int, count: int) -> str:
    return media_playlist(first, [f"seg-{n}.ts" for n in range(first, first + count)])


def manifest(first: int, bodies: dict[int, bytes], *, uri: str = "seg-{n}.ts") -> str:
    segments = [
        {
            "sequence": n,
            "uri": uri.format(n=n),
            "duration": 2.0,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "byterange": None,
            "map": None,
            "discontinuity": False,
        }
        for n, body in sorted(bodies.items())
    ]
    return json.dumps(
        {
            "format": "swarmcast-integrity",
            "version": 1,
            "algorithm": "sha256",
            "playlist": "index.m3u8",
            "media_sequence": first,
            "live": True,
            "init": [],
            "segments": segments,
        }
    )


# ------------------------------------------------------------------------------------ master


def test_master_lists_renditions_with_their_swarm_identity(tiny_sample: Path):
    text = (tiny_sample / "master.m3u8").read_text()
    info = parse_master(text, MASTER_URL)
    assert info.content_id == "/live/ch1/master.m3u8"
    assert [r.rendition_id for r in info.renditions] == ["90p/index.m3u8", "180p/index.m3u8"]
    for rendition in info.renditions:
        assert rendition.kind == "variant" and rendition.bandwidth and rendition.resolution
        assert rendition.swarm_id == ids.swarm_id(info.content_id, rendition.rendition_id)
        assert rendition.playlist_url.startswith("https://cdn-a.example.com/live/ch1/")
    # Another CDN host and token: same swarms. An explicit content id: other swarms.
    other = parse_master(text, "http://cdn-b.example.net:8080//live/ch1/./master.m3u8")
    assert [r.swarm_id for r in other.renditions] == [r.swarm_id for r in info.renditions]
    explicit = parse_master(text, MASTER_URL, content_id="channel-1")
    assert explicit.content_id == "channel-1"
    assert explicit.rendition("90p/index.m3u8").swarm_id == ids.swarm_id(
        "channel-1", "90p/index.m3u8"
    )
    assert explicit.rendition("90p/index.m3u8").swarm_id != info.renditions[0].swarm_id
    with pytest.raises(KeyError, match=r"180p/index\.m3u8"):
        info.rendition("1080p/index.m3u8")


def test_alternate_renditions_and_bare_media_playlists():
    text = (
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="English",URI="audio/en.m3u8"\n'
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="Muxed"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,AUDIO="a"\nvideo/720p.m3u8?sig=1\n'
    )
    info = parse_master(text, MASTER_URL)
    assert [(r.rendition_id, r.kind) for r in info.renditions] == [
        ("video/720p.m3u8", "variant"),
        ("audio/en.m3u8", "audio"),
    ]
    assert info.renditions[1].name == "English"
    assert info.variants == info.renditions[:1]
    bare = parse_master(window(0, 2), PLAYLIST_URL)
    assert [r.rendition_id for r in bare.renditions] == ["index.m3u8"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<html>not found</html>", "does not start with #EXTM3U"),
        ("#EXTM3U\n", "neither variants nor segments"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=x\nv.m3u8\n", "cannot parse"),
    ],
)
def test_malformed_master_is_a_clear_error(text: str, message: str):
    with pytest.raises(PlaylistError, match=message):
        parse_master(text, MASTER_URL)


def test_bad_explicit_content_id_is_refused():
    with pytest.raises(PlaylistError, match="NUL"):
        parse_master(window(0, 1), PLAYLIST_URL, content_id="a\x00b")


# ---------------------------------------------------------------------------------- timeline


def test_live_window_advance_yields_deltas():
    timeline = RenditionTimeline(PLAYLIST_URL)
    first = timeline.ingest_playlist(window(10, 3))
    assert [s.sequence for s in first.added] == [10, 11, 12]
    assert [s.start for s in first.added] == [0.0, 2.0, 4.0]
    assert first.changed and not first.ended and timeline.live
    assert first.added[0].uri == "https://cdn.example.com/live/ch1/720p/seg-10.ts"
    assert first.added[0].key == ids.SegmentKey.media(10)

    same = timeline.ingest_playlist(window(10, 3))
    assert same.added == () and same.removed == () and not same.changed
    assert timeline.reload_delay(same.changed) == 1.0
    assert timeline.reload_delay(True) == 2.0

    later = timeline.ingest_playlist(window(12, 3))
    assert [s.sequence for s in later.added] == [13, 14]
    assert later.removed == (10, 11)
    assert timeline.window == range(12, 15)
    assert [s.sequence for s in timeline.segments] == [12, 13, 14]
    assert timeline.segment(14).start == 8.0
    # Segments that left the window are retained for peers behind the edge.
    assert timeline.segment(10) is not None


def test_retention_is_bounded():
    timeline = RenditionTimeline(PLAYLIST_URL, TimelineConfig(retain_segments=4))
    for first in range(0, 50):
        timeline.ingest_playlist(window(first, 3))
    assert timeline.segment(49 - 4) is not None
    assert timeline.segment(49 - 5) is None
    assert len(timeline._segments) == 3 + 4


def test_gap_start_uses_program_date_time():
    timeline = RenditionTimeline(PLAYLIST_URL)
    pdt = "#EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:{:06.3f}Z"

    def playlist(first: int) -> str:
        lines = ["#EXTM3U", "#EXT-X-TARGETDURATION:2", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
        for n in range(first, first + 2):
            # Segments 2..4 were longer (2.5 s): only the dates tell.
            date = n * 1.5 + (3.0 if n >= 5 else 0.0)
            lines += [pdt.format(date), "#EXTINF:1.5,", f"s{n}.ts"]
        return "\n".join(lines) + "\n"

    timeline.ingest_playlist(playlist(0))
    update = timeline.ingest_playlist(playlist(5))  # 2, 3, 4 never seen
    assert [s.sequence for s in update.added] == [5, 6]
    assert update.added[0].start == pytest.approx(10.5)
    assert update.added[1].start == pytest.approx(12.0)


def test_gap_without_dates_uses_the_target_duration():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 2))
    update = timeline.ingest_playlist(window(5, 2))
    assert update.added[0].start == 10.0


def test_discontinuities_and_byte_ranges():
    text = (
        "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:7\n"
        "#EXT-X-DISCONTINUITY-SEQUENCE:2\n"
        "#EXTINF:4,\n#EXT-X-BYTERANGE:1000@0\nall.ts\n"
        "#EXTINF:4,\n#EXT-X-BYTERANGE:500\nall.ts\n"
        "#EXT-X-DISCONTINUITY\n#EXTINF:3.5,\n#EXT-X-BYTERANGE:200\nall.ts\n"
        "#EXTINF:4,\nother.ts\n#EXT-X-ENDLIST\n"
    )
    update = RenditionTimeline(PLAYLIST_URL).ingest_playlist(text)
    segs = update.added
    assert [s.byterange for s in segs] == [
        ByteRange(1000, 0),
        ByteRange(500, 1000),
        ByteRange(200, 1500),
        None,
    ]
    assert [s.discontinuity for s in segs] == [False, False, True, False]
    assert [s.discontinuity_sequence for s in segs] == [2, 2, 3, 3]
    assert [s.start for s in segs] == [0.0, 4.0, 8.0, 11.5]
    assert update.ended


def test_fmp4_init_segment_gets_an_init_key():
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n"
        '#EXT-X-MAP:URI="init.mp4",BYTERANGE="720@0"\n#EXTINF:2,\na.m4s\n#EXT-X-ENDLIST\n'
    )
    segment = RenditionTimeline(PLAYLIST_URL).ingest_playlist(text).added[0]
    assert segment.init is not None
    assert segment.init.key.kind is SegmentKind.INIT
    assert segment.init.byterange == ByteRange(720, 0)
    assert segment.init.key.number == ids.init_segment_id(
        "init.mp4", base_url=PLAYLIST_URL, byterange=ByteRange(720, 0)
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not a playlist", "does not start with #EXTM3U"),
        ("#EXTM3U\n#EXTINF:abc,\nx.ts\n", "cannot parse"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:x\n", "cannot parse"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:nan,\nx.ts\n", "out of range"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\nx.ts\n", "out of range"),
        ("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:-5\n#EXTINF:1,\nx.ts\n", "MEDIA-SEQUENCE"),
        (f"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:{2**53}\n#EXTINF:1,\nx.ts\n", "MEDIA-SEQUENCE"),
        ("#EXTM3U\n#EXT-X-BYTERANGE:zz\n#EXTINF:1,\nx.ts\n", "BYTERANGE"),
        ("#EXTM3U\n#EXT-X-BYTERANGE:10\n#EXTINF:1,\nx.ts\n", "no offset"),
        ("#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXTINF:1,\nx.ts\n", "out of range"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "master playlist"),
        ("#EXTM3U\n", "neither"),
    ],
)
def test_malformed_media_playlist_is_a_clear_error(text: str, message: str):
    timeline = RenditionTimeline(PLAYLIST_URL)
    with pytest.raises(PlaylistError, match=message):
        timeline.ingest_playlist(text)
    assert timeline.loads == 0 and timeline.segments == []


def test_too_many_segments_are_refused():
    timeline = RenditionTimeline(PLAYLIST_URL, TimelineConfig(max_segments=2))
    with pytest.raises(PlaylistError, match="more than 2"):
        timeline.ingest_playlist(window(0, 3))


def test_reload_that_renames_a_segment_is_refused_and_changes_nothing():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 3))
    with pytest.raises(PlaylistError, match="restarted"):
        timeline.ingest_playlist(media_playlist(1, ["other-1.ts", "other-2.ts"]))
    assert [s.playlist_uri for s in timeline.segments] == ["seg-0.ts", "seg-1.ts", "seg-2.ts"]


# --------------------------------------------------------------------------------- integrity


BODIES = {n: f"segment {n} ".encode() * (100 + n) for n in range(10)}


def test_manifest_makes_segments_verifiable_and_catches_bad_bytes():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 3))
    assert not timeline.integrity_available
    assert timeline.check(1, BODIES[1]) is Verdict.UNVERIFIED
    assert not timeline.verify(1, BODIES[1])  # require_integrity is the default

    update = timeline.ingest_manifest(manifest(0, {n: BODIES[n] for n in range(3)}))
    assert [s.sequence for s in update.hashed] == [0, 1, 2]
    assert timeline.integrity_available
    segment = timeline.segment(1)
    assert segment.verifiable and segment.size == len(BODIES[1])
    assert timeline.verify(segment, BODIES[1])
    tampered = bytearray(BODIES[1])
    tampered[17] ^= 1
    assert timeline.check(segment, bytes(tampered)) is Verdict.MISMATCH
    assert not timeline.verify(segment, bytes(tampered))
    assert timeline.check(segment, BODIES[1][:-1]) is Verdict.MISMATCH


def test_manifest_ahead_of_the_playlist_fills_later_segments():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 3))
    timeline.ingest_manifest(manifest(1, {n: BODIES[n] for n in range(1, 5)}))
    update = timeline.ingest_playlist(window(2, 3))
    assert [(s.sequence, s.verifiable) for s in update.added] == [(3, True), (4, True)]
    assert timeline.check(0, BODIES[0]) is Verdict.UNVERIFIED


def test_manifest_entry_for_another_uri_is_not_trusted():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 2))
    update = timeline.ingest_manifest(manifest(0, {0: BODIES[0], 1: BODIES[1]}, uri="x{n}.ts"))
    assert update.hashed == ()
    assert timeline.check(0, BODIES[0]) is Verdict.UNVERIFIED


def test_contradicting_manifest_keeps_the_first_digest():
    timeline = RenditionTimeline(PLAYLIST_URL)
    timeline.ingest_playlist(window(0, 2))
    timeline.ingest_manifest(manifest(0, {0: BODIES[0], 1: BODIES[1]}))
    update = timeline.integrity.ingest(manifest(0, {0: b"evil", 1: BODIES[1]}))
    assert update.conflicts == (0,)
    assert timeline.check(0, BODIES[0]) is Verdict.VERIFIED
    assert timeline.check(0, b"evil") is Verdict.MISMATCH


def test_unverified_data_passes_only_when_integrity_is_not_required():
    timeline = RenditionTimeline(PLAYLIST_URL, TimelineConfig(require_integrity=False))
    timeline.ingest_playlist(window(0, 2))
    assert timeline.verify(0, b"anything")


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "[]",
        '{"format": "other"}',
        manifest(0, {0: b"x"}).replace('"sha256": "', '"sha256": "Z'),
    ],
)
def test_malformed_manifest_is_an_integrity_error(text: str):
    timeline = RenditionTimeline(PLAYLIST_URL)
    with pytest.raises(IntegrityError):
        timeline.ingest_manifest(text)
    assert not timeline.integrity_available


def test_manifest_url_sits_beside_the_playlist():
    timeline = RenditionTimeline("https://cdn.example.com/a/720p/index.m3u8?token=t")
    assert timeline.manifest_url == "https://cdn.example.com/a/720p/index.integrity.json?token=t"


# --------------------------------------------------------------------- against the real origin


@pytest.fixture
async def client():
    config = OriginClientConfig(backoff_initial=0.01, backoff_max=0.05, max_retries=1)
    async with OriginClient(config) as c:
        yield c


async def test_vod_follow_and_verify(tiny_sample: Path, client: OriginClient):
    runner, base = await start_origin(OriginConfig(root=tiny_sample, port=0))
    try:
        info = await load_stream(client, f"{base}/vod/master.m3u8")
        assert info.content_id == "/vod/master.m3u8"
        follower = RenditionFollower(client, info.rendition("180p/index.m3u8").playlist_url)
        updates = [u async for u in follower.updates()]
        assert len(updates) == 1 and updates[0].ended
        segments = updates[0].added
        assert [s.sequence for s in segments] == list(range(6))
        assert all(s.verifiable for s in segments)
        for segment in segments:
            data = await client.fetch(segment.uri)
            assert data == (tiny_sample / "180p" / segment.playlist_uri).read_bytes()
            assert follower.timeline.check(segment, data) is Verdict.VERIFIED
        assert follower.timeline.check(segments[0], data) is Verdict.MISMATCH
    finally:
        await runner.cleanup()


async def test_fmp4_init_segment_is_verified(tiny_sample_fmp4: Path, client: OriginClient):
    runner, base = await start_origin(OriginConfig(root=tiny_sample_fmp4, port=0))
    try:
        follower = RenditionFollower(client, f"{base}/vod/90p/index.m3u8")
        update = await follower.refresh()
        init = update.added[0].init
        assert init is not None and init.uri == f"{base}/vod/90p/init.mp4"
        assert {s.init for s in update.added} == {init}
        data = await client.fetch(init.uri)
        assert follower.timeline.check(init, data) is Verdict.VERIFIED
        assert follower.timeline.check(init, data[1:]) is Verdict.MISMATCH
    finally:
        await runner.cleanup()


async def test_live_follow_with_the_fake_clock(tiny_sample: Path, client: OriginClient):
    clock = FakeClock()
    config = OriginConfig(root=tiny_sample, port=0, live_window=3)
    runner, base = await start_origin(config, clock=clock)
    try:
        follower = RenditionFollower(client, f"{base}/live/90p/index.m3u8")
        first = await follower.refresh()
        assert [s.sequence for s in first.added] == [0, 1, 2] and not first.ended
        assert all(s.verifiable for s in first.added)
        assert follower.timeline.reload_delay(first.changed) == 2.0

        same = await follower.refresh()
        assert same.added == () and not same.changed

        clock.now += 2.0
        step = await follower.refresh()
        assert [s.sequence for s in step.added] == [3] and step.removed == (0,)
        assert step.added[0].verifiable and step.added[0].start == 6.0

        # Past the end of the 6-segment loop: segment 6 restarts it (a discontinuity).
        clock.now += 6.0
        wrap = await follower.refresh()
        assert [s.sequence for s in wrap.added] == [4, 5, 6]
        by_seq = {s.sequence: s for s in wrap.added}
        assert by_seq[6].discontinuity and by_seq[6].discontinuity_sequence == 1
        assert by_seq[5].discontinuity_sequence == 0
        for segment in wrap.added:
            data = await client.fetch(segment.uri)
            assert follower.timeline.verify(segment, data), segment.sequence
        assert follower.timeline.segment(0) is not None  # retained after leaving the window
    finally:
        await runner.cleanup()


async def test_failed_live_reloads_retry_within_half_a_target_duration(
    tiny_sample: Path, client: OriginClient
):
    runner, base = await start_origin(OriginConfig(root=tiny_sample, port=0, live_window=3))
    try:
        follower = RenditionFollower(client, f"{base}/live/90p/index.m3u8")
        await follower.refresh()
        assert follower.timeline.target_duration == 2
        # 0.5 s, then doubling up to half the target duration: a recovered origin is seen
        # within about a second, while a dead one is asked at most once a second.
        assert [follower._error_delay(n) for n in (1, 2, 3, 10)] == [0.5, 1.0, 1.0, 1.0]
    finally:
        await runner.cleanup()


async def test_live_updates_poll_the_origin(tiny_sample: Path, client: OriginClient):
    runner, base = await start_origin(OriginConfig(root=tiny_sample, port=0, live_window=2))
    try:
        follower = RenditionFollower(client, f"{base}/live/90p/index.m3u8")
        started = time.monotonic()
        seen = []
        async for update in follower.updates():
            seen.append(update)
            if len(seen) == 2:
                break
        assert seen[1].added and seen[1].added[0].sequence == seen[0].added[-1].sequence + 1
        assert time.monotonic() - started < 6.0  # one 2 s segment, polled every 1-2 s
    finally:
        await runner.cleanup()


async def test_missing_manifest_leaves_segments_unverified(
    tiny_sample: Path, tmp_path: Path, client: OriginClient
):
    root = tmp_path / "content"
    shutil.copytree(tiny_sample, root)
    runner, base = await start_origin(OriginConfig(root=root, port=0))
    (root / "90p" / "index.integrity.json").unlink()
    try:
        follower = RenditionFollower(client, f"{base}/vod/90p/index.m3u8")
        update = await follower.refresh()
        assert update.added and not any(s.verifiable for s in update.added)
        assert not follower.timeline.integrity_available
        data = await client.fetch(update.added[0].uri)
        assert follower.timeline.check(update.added[0], data) is Verdict.UNVERIFIED
        assert not follower.timeline.verify(update.added[0], data)
        await follower.refresh()  # does not ask again for a manifest that is not there
    finally:
        await runner.cleanup()


async def test_first_load_failure_is_raised(tiny_sample: Path, client: OriginClient):
    runner, base = await start_origin(OriginConfig(root=tiny_sample, port=0))
    try:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            await session.post(f"{base}/_origin/faults", json={"down": True})
        follower = RenditionFollower(client, f"{base}/vod/90p/index.m3u8", FollowerConfig())
        with pytest.raises(OriginUnavailable):
            await anext(follower.updates())
    finally:
        await runner.cleanup()
