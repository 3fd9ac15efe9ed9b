"""Tests of ``swarmcast sample`` (swarmcast.samples.generate) and its test pattern.

A tiny ladder (6 s, 2 s segments, 15 fps, 160x90 and 320x180) keeps the file fast; each
generation takes well under two seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import m3u8
import numpy as np
import pytest

from swarmcast.cli import main
from swarmcast.samples import generate as gen
from swarmcast.samples.drawing import FramePainter, decode_barcode, draw_text, text_size
from swarmcast.samples.generate import (
    DEFAULT_LADDER,
    Rendition,
    SampleConfig,
    SampleError,
    generate,
    parse_renditions,
    tone,
)
from swarmcast.samples.integrity import read_manifest

TINY = SampleConfig(
    duration=6.0,
    segment_duration=2.0,
    fps=15,
    renditions=(Rendition("90p", 160, 90, 150), Rendition("180p", 320, 180, 300)),
)
GOP = 30  # 15 fps x 2 s


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("tiny") / "sample", TINY, progress=False)


@pytest.fixture(scope="module")
def tiny_fmp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fMP4 variant, made through the command line (with its progress bar)."""
    out = tmp_path_factory.mktemp("fmp4") / "sample"
    argv = ["sample", str(out), "--duration", "6", "--fps", "15", "--fmp4"]
    assert main([*argv, "--renditions", "160x90@150,320x180@300", "--workers", "2"]) == 0
    return out


def tree(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def media_playlist(root: Path, name: str) -> m3u8.M3U8:
    return m3u8.load(str(root / name / "index.m3u8"))


def decode(data: bytes) -> tuple[list[av.VideoFrame], int]:
    """Decode a segment (or init + segment): its video frames and the number of audio frames."""
    video: list[av.VideoFrame] = []
    audio = 0
    with av.open(io.BytesIO(data)) as container:
        for packet in container.demux():
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    video.append(frame)
                else:
                    audio += 1
    return video, audio


def segment_bytes(root: Path, name: str, uri: str, fmp4: bool) -> bytes:
    data = (root / name / uri).read_bytes()
    return (root / name / "init.mp4").read_bytes() + data if fmp4 else data


# -- output contract ------------------------------------------------------------------------


def test_sample_json_contract(tiny: Path) -> None:
    document = json.loads((tiny / "sample.json").read_text())
    assert {k: document[k] for k in ("format", "version", "duration", "segment_duration")} == {
        "format": "swarmcast-sample",
        "version": 1,
        "duration": 6.0,
        "segment_duration": 2.0,
    }
    assert (document["fps"], document["fmp4"], document["segments"]) == (15, False, 3)
    assert [r["name"] for r in document["renditions"]] == ["90p", "180p"]
    for entry, rendition in zip(document["renditions"], TINY.renditions, strict=True):
        assert list(entry) == [
            "name",
            "width",
            "height",
            "video_kbps",
            "audio_kbps",
            "bandwidth",
            "average_bandwidth",
            "codecs",
            "playlist",
        ]
        assert (entry["width"], entry["height"]) == (rendition.width, rendition.height)
        assert (entry["video_kbps"], entry["audio_kbps"]) == (rendition.video_kbps, 64)
        assert entry["playlist"] == f"{rendition.name}/index.m3u8"
        assert entry["codecs"].startswith("avc1.64") and entry["codecs"].endswith(",mp4a.40.2")
        # BANDWIDTH is the peak segment rate: recompute it from the files.
        manifest = read_manifest(tiny / rendition.name / "index.integrity.json")
        rates = [s.size * 8 / s.duration for s in manifest.segments]
        assert entry["bandwidth"] == pytest.approx(max(rates), abs=1)
        average = sum(s.size for s in manifest.segments) * 8 / 6.0
        assert entry["average_bandwidth"] == pytest.approx(average, abs=1)


def test_master_playlist(tiny: Path) -> None:
    master = m3u8.load(str(tiny / "master.m3u8"))
    document = json.loads((tiny / "sample.json").read_text())
    assert master.is_variant and master.is_independent_segments
    assert [p.uri for p in master.playlists] == ["90p/index.m3u8", "180p/index.m3u8"]
    for playlist, entry in zip(master.playlists, document["renditions"], strict=True):
        info = playlist.stream_info
        assert info.bandwidth == entry["bandwidth"]
        assert info.average_bandwidth == entry["average_bandwidth"]
        assert info.resolution == (entry["width"], entry["height"])
        assert info.codecs == entry["codecs"]
        assert info.frame_rate == 15.0
    bandwidths = [p.stream_info.bandwidth for p in master.playlists]
    assert bandwidths == sorted(bandwidths)  # lowest first


@pytest.mark.parametrize("name", ["90p", "180p"])
def test_media_playlists(tiny: Path, name: str) -> None:
    playlist = media_playlist(tiny, name)
    assert playlist.playlist_type == "vod" and playlist.is_endlist
    assert playlist.is_independent_segments and playlist.media_sequence == 0
    assert [s.uri for s in playlist.segments] == [f"seg-{i:05d}.ts" for i in range(3)]
    assert [s.duration for s in playlist.segments] == pytest.approx([2.0] * 3, abs=1 / 15)
    assert playlist.target_duration == 2
    assert playlist.segment_map in (None, [])


@pytest.mark.parametrize("name", ["90p", "180p"])
def test_integrity_manifest_matches_bytes(tiny: Path, name: str) -> None:
    manifest = read_manifest(tiny / name / "index.integrity.json")
    assert (manifest.playlist, manifest.media_sequence, manifest.live) == ("index.m3u8", 0, False)
    assert manifest.init == ()
    assert [s.uri for s in manifest.segments] == [
        s.uri for s in media_playlist(tiny, name).segments
    ]
    for entry in manifest.segments:
        data = (tiny / name / entry.uri).read_bytes()
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        assert entry.map is None and entry.byterange is None and not entry.discontinuity


# -- the media itself -----------------------------------------------------------------------


@pytest.mark.parametrize("fmp4", [False, True])
def test_segments_decode_on_their_own(tiny: Path, tiny_fmp4: Path, fmp4: bool) -> None:
    root = tiny_fmp4 if fmp4 else tiny
    for rendition in TINY.renditions:
        for index, segment in enumerate(media_playlist(root, rendition.name).segments):
            frames, audio_frames = decode(segment_bytes(root, rendition.name, segment.uri, fmp4))
            assert len(frames) == GOP
            assert frames[0].key_frame, f"{rendition.name} segment {index} starts without IDR"
            assert not any(f.key_frame for f in frames[1:])
            assert (frames[0].width, frames[0].height) == (rendition.width, rendition.height)
            # ~2 s of 48 kHz AAC in 1024-sample frames (the first carries encoder priming).
            assert 85 <= audio_frames <= 100
            # The burnt-in barcode says which frames these are: the segment's own GOP, in order.
            numbers = [decode_barcode(f.to_ndarray(format="gray")) for f in frames]
            assert numbers == list(range(index * GOP, (index + 1) * GOP))


@pytest.mark.parametrize("fmp4", [False, True])
def test_keyframes_aligned_across_renditions(tiny: Path, tiny_fmp4: Path, fmp4: bool) -> None:
    root = tiny_fmp4 if fmp4 else tiny
    starts: dict[str, list[Fraction]] = {}
    for rendition in TINY.renditions:
        times = []
        for segment in media_playlist(root, rendition.name).segments:
            data = segment_bytes(root, rendition.name, segment.uri, fmp4)
            with av.open(io.BytesIO(data)) as container:
                stream = container.streams.video[0]
                times += [
                    p.pts * p.time_base
                    for p in container.demux(stream)
                    if p.pts is not None and p.is_keyframe
                ]
        starts[rendition.name] = times
    assert len(starts["90p"]) == 3
    assert starts["90p"] == starts["180p"]
    gaps = {b - a for a, b in zip(starts["90p"], starts["90p"][1:], strict=False)}
    assert gaps == {Fraction(2)}


def test_fmp4_layout(tiny_fmp4: Path) -> None:
    document = json.loads((tiny_fmp4 / "sample.json").read_text())
    assert document["fmp4"] is True
    for rendition in TINY.renditions:
        playlist = media_playlist(tiny_fmp4, rendition.name)
        assert [s.uri for s in playlist.segments] == [f"seg-{i:05d}.m4s" for i in range(3)]
        assert {s.init_section.uri for s in playlist.segments} == {"init.mp4"}
        manifest = read_manifest(tiny_fmp4 / rendition.name / "index.integrity.json")
        init = (tiny_fmp4 / rendition.name / "init.mp4").read_bytes()
        assert [e.to_json() for e in manifest.init] == [
            {"uri": "init.mp4", "size": len(init), "sha256": hashlib.sha256(init).hexdigest()}
        ]
        assert {s.map for s in manifest.segments} == {"init.mp4"}


def test_audio_tone() -> None:
    second = tone(0, 48_000)
    assert second.dtype == np.float32
    # Chunking does not change the samples (the encoder asks for 1024 at a time).
    assert np.array_equal(np.concatenate([tone(0, 1000), tone(1000, 47_000)]), second)
    beep, quiet = second[240:4800], second[24_000:28_800]
    assert np.abs(beep).max() > 0.35  # beep + tone
    assert 0.09 < np.abs(quiet).max() <= 0.1 + 1e-6  # the tone alone
    assert np.array_equal(tone(48_000, 4800), second[:4800])  # every second alike


# -- determinism and caching ----------------------------------------------------------------


@pytest.mark.parametrize("fmp4", [False, True])
def test_deterministic_across_runs_and_worker_counts(
    tiny: Path, tiny_fmp4: Path, tmp_path: Path, fmp4: bool
) -> None:
    # The fixtures ran two renditions in parallel; here one worker encodes both in turn.
    config = SampleConfig(**{**vars(TINY), "workers": 1, "fmp4": fmp4})
    again = generate(tmp_path / "again", config, progress=False)
    assert tree(again) == tree(tiny_fmp4 if fmp4 else tiny)


def test_cached_sample_is_not_regenerated(
    tiny: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "cached"
    generate(out, TINY, progress=False)
    stamp = (out / "sample.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger=gen.__name__):
        generate(out, TINY, progress=False)
    assert "skipping generation" in caplog.text
    assert (out / "sample.json").stat().st_mtime_ns == stamp
    # --force regenerates (new files), with identical bytes.
    inode = (out / "sample.json").stat().st_ino
    generate(out, TINY, force=True, progress=False)
    assert (out / "sample.json").stat().st_ino != inode
    assert tree(out) == tree(tiny)


def test_changed_parameters_regenerate(tmp_path: Path) -> None:
    small = SampleConfig(duration=2, fps=15, renditions=(Rendition("90p", 160, 90, 150),))
    out = generate(tmp_path / "s", small, progress=False)
    assert json.loads((out / "sample.json").read_text())["fmp4"] is False
    generate(out, SampleConfig(**{**vars(small), "fmp4": True}), progress=False)
    assert json.loads((out / "sample.json").read_text())["fmp4"] is True
    assert (out / "90p" / "init.mp4").is_file()
    assert not list(out.glob("90p/*.ts"))  # the old sample is gone, not mixed in
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name or ".old-" in p.name]


def test_failed_run_leaves_previous_sample_and_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = SampleConfig(duration=2, fps=15, renditions=(Rendition("90p", 160, 90, 150),))
    out = generate(tmp_path / "s", small, progress=False)
    before = tree(out)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise SampleError("simulated failure after encoding")

    monkeypatch.setattr(gen, "master_playlist", broken)
    with pytest.raises(SampleError, match="simulated"):
        generate(out, small, force=True, progress=False)
    with pytest.raises(SampleError, match="simulated"):
        generate(tmp_path / "fresh", small, progress=False)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["s"]


def test_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    small = SampleConfig(duration=2, fps=15, renditions=(Rendition("90p", 160, 90, 150),))
    with pytest.raises(SampleError, match="refusing to replace"):
        generate(out, small, force=True, progress=False)
    assert (out / "thesis.txt").read_text() == "do not delete"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SampleError, match="not a directory"):
        generate(tmp_path / "file", small, progress=False)


# -- configuration and command line ---------------------------------------------------------


def test_defaults_match_the_issue() -> None:
    config = SampleConfig().normalized()
    assert (config.duration, config.segment_duration, config.fps, config.fmp4) == (
        120.0,
        2.0,
        30,
        False,
    )
    assert config.segments == 60 and config.frames_per_segment == 60
    assert [(r.name, r.width, r.height, r.video_kbps) for r in DEFAULT_LADDER] == [
        ("240p", 426, 240, 400),
        ("360p", 640, 360, 800),
        ("720p", 1280, 720, 2500),
    ]


def test_duration_rounds_up_to_whole_segments() -> None:
    config = SampleConfig(duration=5.0, segment_duration=2.0).normalized()
    assert (config.duration, config.segments) == (6.0, 3)
    assert SampleConfig(duration=6.0000000001).normalized().duration == 6.0


def test_ladder_is_sorted_lowest_first() -> None:
    ladder = SampleConfig(renditions=tuple(reversed(DEFAULT_LADDER))).normalized().renditions
    assert [r.name for r in ladder] == ["240p", "360p", "720p"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"fps": 0}, "fps"),
        ({"fps": 30.5}, "fps must be an integer"),
        ({"segment_duration": 0.0}, "segment duration"),
        ({"segment_duration": 2.01}, "whole number of frames"),
        ({"duration": -1.0}, "duration must be positive"),
        ({"duration": float("nan")}, "finite number"),
        ({"duration": 100_000.0}, "too long"),
        ({"workers": 0}, "workers"),
        ({"x264_preset": "warp"}, "unknown x264 preset"),
        ({"renditions": ()}, "1 to 10 renditions"),
        ({"renditions": (Rendition("a", 161, 90, 150),)}, "even sides"),
        ({"renditions": (Rendition("a", 16, 90, 150),)}, "width"),
        ({"renditions": (Rendition("../x", 160, 90, 150),)}, "directory name"),
        ({"renditions": (Rendition("a", 160, 90, 10),)}, "video_kbps"),
        ({"renditions": (Rendition("a", 160, 90, 150, 8),)}, "audio_kbps"),
        ({"renditions": (Rendition("a", 160, 90, 150),) * 2}, "distinct"),
    ],
)
def test_bad_config_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(SampleError, match=message):
        SampleConfig(**changes).normalized()


def test_parse_renditions() -> None:
    assert parse_renditions("240p,360p,720p") == DEFAULT_LADDER
    assert parse_renditions("426x240@400, 1280x720@2500") == (
        Rendition("240p", 426, 240, 400),
        Rendition("720p", 1280, 720, 2500),
    )
    assert parse_renditions("low=320x180@300") == (Rendition("low", 320, 180, 300),)
    for bad in ("", "999p", "320x180", "320x180@", "ax180@3", "320*180@300"):
        with pytest.raises(SampleError):
            parse_renditions(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "0"], "fps 0 is out of range"),
        (["--fps", "x"], "invalid int value"),
        (["--renditions", "320x181@300"], "even sides"),
        (["--renditions", "big"], "bad rendition 'big'"),
        (["--segment-duration", "0.05"], "segment duration"),
        (["--workers", "-1"], "workers"),
    ],
)
def test_cli_rejects_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_cli_reports_unusable_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert main(["sample", str(tmp_path / "busy"), "--duration", "2", "--no-progress"]) == 1
    assert "refusing to replace" in caplog.text


# -- the test pattern -----------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(160, 90), (426, 240), (1280, 720)])
def test_barcode_round_trips(width: int, height: int) -> None:
    painter = FramePainter(width, height, 30, 60, "x")
    for index in (0, 1, 59, 60, 12_345, (1 << 20) - 1):
        frame = painter.frame(index)
        assert frame.shape == (height * 3 // 2, width) and frame.dtype == np.uint8
        assert decode_barcode(frame[:height]) == index


def test_frames_differ_and_repeat_exactly() -> None:
    painter = FramePainter(160, 90, 15, 30, "90p")
    assert np.array_equal(painter.frame(7), FramePainter(160, 90, 15, 30, "90p").frame(7))
    assert not np.array_equal(painter.frame(7)[:90], painter.frame(8)[:90])


def test_text_is_clipped_at_the_edges() -> None:
    plane = np.zeros((20, 30), dtype=np.uint8)
    draw_text(plane, "720p ~", -7, 15, 2, 255)  # "~" has no glyph: drawn as "?"
    draw_text(plane, "ABC", 500, 500, 1, 255)  # fully outside: nothing
    assert plane.any() and text_size("ABC", 2) == (36, 14)


def test_worker_failure_names_the_rendition(tmp_path: Path) -> None:
    # Skips normalized() on purpose: an unknown preset gets as far as libx264, which refuses it.
    config = SampleConfig(
        duration=2, fps=15, renditions=(Rendition("90p", 160, 90, 150),), x264_preset="bogus"
    )
    with pytest.raises(SampleError, match="encoding 90p failed"):
        gen._encode_all(tmp_path, config, progress=True)


def test_debris_of_killed_runs_is_removed(tmp_path: Path) -> None:
    finished = subprocess.Popen(["true"])  # a process that is surely gone
    finished.wait()
    stale = tmp_path / f".s.partial-{finished.pid}-abc"
    alive = tmp_path / f".s.partial-{os.getpid()}-other"  # a run still in progress: kept
    for path in (stale, alive):
        path.mkdir()
        (path / "seg-00000.ts").write_bytes(b"half")
    small = SampleConfig(duration=2, fps=15, renditions=(Rendition("90p", 160, 90, 150),))
    generate(tmp_path / "s", small, progress=False)
    assert not stale.exists() and alive.exists()
