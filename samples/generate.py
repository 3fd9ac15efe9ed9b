"""``swarmcast sample``: a deterministic HLS test stream (ABR ladder) encoded with PyAV.

Each rendition is encoded in its own worker process: frames drawn with numpy
(:mod:`swarmcast.samples.drawing`), H.264 with libx264 and a test tone in AAC, muxed by
ffmpeg's ``hls`` muxer into MPEG-TS or fMP4 segments. Keyframes sit exactly on segment
boundaries in every rendition (fixed, closed GOP of ``fps * segment_duration`` frames, scene
cut off), so players can switch renditions at any segment. The main process then checks every
playlist, writes the integrity manifests, the master playlist and finally ``sample.json``.

The same parameters always give byte-identical output on the same build of PyAV: frames and
audio are pure functions of their index and the encoder thread count is fixed. Layout and
formats are documented in docs/samples.md and docs/integrity.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import m3u8

from swarmcast.samples.integrity import IntegrityManifest, read_manifest, write_manifest

log = logging.getLogger(__name__)

SAMPLE_FORMAT = "swarmcast-sample"
SAMPLE_VERSION = 1
SAMPLE_JSON = "sample.json"
MASTER_PLAYLIST = "master.m3u8"
MEDIA_PLAYLIST = "index.m3u8"
INIT_SEGMENT = "init.mp4"

AUDIO_SAMPLE_RATE = 48_000
AUDIO_CODECS = "mp4a.40.2"  # AAC-LC, the profile of ffmpeg's native encoder

#: libx264 threads per encoder. Fixed because x264's output depends on its thread count: with
#: "auto" the bytes would change from one machine to another.
ENCODER_THREADS = 2

#: The frame barcode (see drawing.py) holds 20 bits.
MAX_FRAMES = (1 << 20) - 1

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class SampleError(ValueError):
    """Bad sample parameters, an unusable output directory, or a failed encode."""


@dataclass(frozen=True)
class Rendition:
    """One rung of the ABR ladder."""

    name: str
    """Directory and label of the rendition, e.g. ``"720p"`` (letters, digits, ``_``, ``-``)."""
    width: int
    """Picture width in pixels (even, 32..3840)."""
    height: int
    """Picture height in pixels (even, 32..2160)."""
    video_kbps: int
    """Target video bit rate in kbit/s (x264 ABR with VBV at 1.1x this peak)."""
    audio_kbps: int = 64
    """AAC bit rate in kbit/s (24..320)."""

    def validate(self) -> None:
        """Raise :class:`SampleError` when a field is out of range."""
        if not _NAME.fullmatch(self.name):
            raise SampleError(
                f"rendition name {self.name!r}: use 1-32 letters, digits, '_' or '-' "
                "(it becomes a directory name)"
            )
        _check_range(f"{self.name}: width", self.width, 32, 3840)
        _check_range(f"{self.name}: height", self.height, 32, 2160)
        if self.width % 2 or self.height % 2:
            raise SampleError(
                f"{self.name}: {self.width}x{self.height} must have even sides (4:2:0 chroma)"
            )
        _check_range(f"{self.name}: video_kbps", self.video_kbps, 50, 50_000)
        _check_range(f"{self.name}: audio_kbps", self.audio_kbps, 24, 320)


#: Named renditions that ``--renditions 240p,360p,720p`` can pick from.
PRESETS: dict[str, Rendition] = {
    r.name: r
    for r in (
        Rendition("144p", 256, 144, 200),
        Rendition("240p", 426, 240, 400),
        Rendition("360p", 640, 360, 800),
        Rendition("480p", 854, 480, 1400),
        Rendition("720p", 1280, 720, 2500),
        Rendition("1080p", 1920, 1080, 5000),
    )
}

DEFAULT_LADDER: tuple[Rendition, ...] = (PRESETS["240p"], PRESETS["360p"], PRESETS["720p"])


@dataclass(frozen=True)
class SampleConfig:
    """Parameters of a generated sample. Equal configs give byte-identical samples."""

    duration: float = 120.0
    """Length of the stream in seconds; rounded up to a whole number of segments."""
    segment_duration: float = 2.0
    """Segment (and GOP) length in seconds; ``fps * segment_duration`` must be whole frames."""
    fps: int = 30
    """Frames per second (1..120)."""
    renditions: tuple[Rendition, ...] = DEFAULT_LADDER
    """The ABR ladder (1..10 renditions with distinct names); listed lowest bit rate first."""
    fmp4: bool = False
    """fMP4/CMAF segments (``.m4s`` + ``init.mp4``) instead of MPEG-TS (``.ts``)."""
    workers: int | None = None
    """Encoder processes; None means one per CPU core (never more than renditions)."""
    x264_preset: str = "veryfast"
    """libx264 speed/quality preset; changes the bytes, so it is part of the cache key."""

    @property
    def frames_per_segment(self) -> int:
        """GOP length in frames."""
        return round(self.fps * self.segment_duration)

    @property
    def segments(self) -> int:
        """Number of segments per rendition."""
        return math.ceil(self.duration / self.segment_duration - 1e-9)

    @property
    def frames(self) -> int:
        """Number of video frames per rendition."""
        return self.segments * self.frames_per_segment

    def normalized(self) -> SampleConfig:
        """Validate, round the duration up to whole segments and sort the ladder (lowest first).

        Raises :class:`SampleError` with a message saying which value is wrong and why.
        """
        _check_range("fps", self.fps, 1, 120, integer=True)
        seg = _number("segment_duration", self.segment_duration)
        if not 0.1 <= seg <= 60:
            raise SampleError(f"segment duration {seg:g} s is out of range [0.1, 60] s")
        gop = self.fps * seg
        if abs(gop - round(gop)) > 1e-6:
            raise SampleError(
                f"segment duration {seg:g} s is not a whole number of frames at {self.fps} fps"
            )
        duration = _number("duration", self.duration)
        if duration <= 0:
            raise SampleError(f"duration must be positive, got {duration:g} s")
        if self.workers is not None:
            _check_range("workers", self.workers, 1, 256, integer=True)
        if self.x264_preset not in X264_PRESETS:
            raise SampleError(
                f"unknown x264 preset {self.x264_preset!r}; choose one of {', '.join(X264_PRESETS)}"
            )
        ladder = _normalized_ladder(self.renditions)
        rounded = replace(self, segment_duration=float(seg), duration=float(duration))
        rounded = replace(rounded, duration=rounded.segments * rounded.segment_duration)
        if rounded.duration != duration:
            log.warning(
                "duration %g s rounded up to %g s (%d segments of %g s)",
                duration,
                rounded.duration,
                rounded.segments,
                seg,
            )
        if rounded.frames > MAX_FRAMES:
            raise SampleError(
                f"{rounded.frames} frames is too long a sample (limit {MAX_FRAMES} frames)"
            )
        return replace(rounded, renditions=ladder, fmp4=bool(self.fmp4))


def parse_renditions(text: str) -> tuple[Rendition, ...]:
    """Parse ``--renditions``: comma-separated preset names (``240p``) or ``WxH@KBPS`` items.

    A ``WxH@KBPS`` item is named after its height (``426x240@400`` is ``240p``); prefix it with
    ``NAME=`` to choose another name. Raises :class:`SampleError` on a malformed item.
    """
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise SampleError("--renditions is empty")
    ladder = []
    for item in items:
        if item in PRESETS:
            ladder.append(PRESETS[item])
            continue
        match = re.fullmatch(r"(?:([^=]+)=)?(\d{1,5})x(\d{1,5})@(\d{1,6})", item)
        if not match:
            raise SampleError(
                f"bad rendition {item!r}: use a preset ({', '.join(PRESETS)}) or WxH@KBPS, "
                "e.g. 426x240@400"
            )
        name, width, height, kbps = match.groups()
        ladder.append(Rendition(name or f"{height}p", int(width), int(height), int(kbps)))
    return tuple(ladder)


# -- generation -----------------------------------------------------------------------------


def generate(
    out_dir: Path, config: SampleConfig, *, force: bool = False, progress: bool = True
) -> Path:
    """Generate the sample into ``out_dir`` (once: a matching ``sample.json`` means done).

    The sample is built in a temporary directory beside ``out_dir`` and renamed into place at
    the end, so an interrupted run never leaves half a sample. An existing ``out_dir`` is
    replaced only if it is empty or a swarmcast sample. ``force`` regenerates even when the
    cached sample matches; ``progress`` shows a progress bar on stderr. Returns ``out_dir``.
    """
    _check_not_bootstrapping()
    out_dir = Path(out_dir).absolute()
    config = config.normalized()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _directory_lock(out_dir):
        if not force and _cached(out_dir, config):
            log.info(
                "%s already holds this sample; skipping generation (--force redoes it)", out_dir
            )
            return out_dir
        _check_replaceable(out_dir)
        _remove_stale_partials(out_dir)
        partial = Path(
            tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-{os.getpid()}-")
        )
        # mkdtemp makes it private (0700); the sample is public content for an HTTP server.
        partial.chmod(0o755)
        try:
            started = time.monotonic()
            _build(partial, config, progress)
            _swap_into_place(partial, out_dir)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    log.info(
        "generated %s: %d renditions x %d segments in %.1f s",
        out_dir,
        len(config.renditions),
        config.segments,
        time.monotonic() - started,
    )
    return out_dir


def _check_not_bootstrapping() -> None:
    # A script without `if __name__ == "__main__":` that calls generate() is re-run by every
    # spawned worker; the worker would wait forever on the lock its parent holds. Fail instead.
    # `_inheriting` is what multiprocessing itself checks for the same mistake.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SampleError(
            "generate() was called while a worker process was starting: guard the calling "
            'script\'s top-level code with `if __name__ == "__main__":`'
        )


def _build(root: Path, config: SampleConfig, progress: bool) -> None:
    encoded = _encode_all(root, config, progress)
    finished = [
        _finish_rendition(root, config, rendition, encoded[rendition.name])
        for rendition in config.renditions
    ]
    entries = [entry for entry, _ in finished]
    # The master needs the highest version any media playlist uses (7 for fMP4, else 6).
    version = max(version for _, version in finished)
    _write_text(root / MASTER_PLAYLIST, master_playlist(config, entries, version))
    # sample.json last: its presence is what marks a complete sample.
    _write_text(root / SAMPLE_JSON, json.dumps(_sample_document(config, entries), indent=2) + "\n")


@dataclass(frozen=True)
class _Job:
    """One rendition to encode, sent to a worker process."""

    directory: str
    rendition: Rendition
    config: SampleConfig


@dataclass(frozen=True)
class _Encoded:
    """What a worker reports back."""

    codecs: str
    seconds: float


def _encode_all(root: Path, config: SampleConfig, progress: bool) -> dict[str, _Encoded]:
    jobs = [_Job(str(root / r.name), r, config) for r in config.renditions]
    # Largest picture first: it dominates the wall time, so it must not start last.
    jobs.sort(key=lambda job: job.rendition.width * job.rendition.height, reverse=True)
    workers = min(config.workers or _cpu_count(), len(jobs))
    # spawn, not fork: the parent may hold threads (rich's refresh thread, a caller's), and a
    # forked child inherits their locks.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue() if progress else None
    log.info("encoding %d renditions with %d worker processes", len(jobs), workers)
    # One rendition per process: a second encode in the same process was measured to give
    # different bytes from a first one (state kept somewhere in the encoder stack), which would
    # make the output depend on how jobs land on workers.
    pool = ProcessPoolExecutor(
        workers, context, initializer=_init_worker, initargs=(queue,), max_tasks_per_child=1
    )
    try:
        with _ProgressView(config, enabled=progress) as view, pool:
            futures = {pool.submit(_encode_rendition, job): job for job in jobs}
            _wait_all(pool, futures, view, queue)
            view.finish()
    finally:
        if queue is not None:
            queue.close()
    return {futures[f].rendition.name: f.result() for f in futures}


def _wait_all(
    pool: ProcessPoolExecutor,
    futures: dict[Future[_Encoded], _Job],
    view: _ProgressView,
    queue: Any,
) -> None:
    """Wait for every encode, feeding the progress view; stop everything at the first failure."""
    pending: set[Future[_Encoded]] = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
        view.drain(queue)
        for future, job in futures.items():
            error = future.exception() if future.done() and not future.cancelled() else None
            if error is not None:
                pool.shutdown(cancel_futures=True)
                raise SampleError(f"encoding {job.rendition.name} failed: {error}") from error


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# -- worker side ----------------------------------------------------------------------------

_progress_queue: Any = None


def _init_worker(queue: Any) -> None:
    global _progress_queue
    _progress_queue = queue


def _report(name: str, frames: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put((name, frames))


def _encode_rendition(job: _Job) -> _Encoded:
    """Encode one rendition into ``job.directory`` (runs in a worker process)."""
    # Imported here: the parent process (and `swarmcast sample --help`) never needs PyAV.
    import av

    from swarmcast.samples.drawing import FramePainter

    started = time.monotonic()
    rendition, config = job.rendition, job.config
    directory = Path(job.directory)
    directory.mkdir()
    painter = FramePainter(
        rendition.width, rendition.height, config.fps, config.frames_per_segment, rendition.name
    )
    container = av.open(
        str(directory / MEDIA_PLAYLIST),
        "w",
        format="hls",
        options=_muxer_options(directory, config),
    )
    codecs = None
    try:
        video = _add_video_stream(container, rendition, config)
        audio = _add_audio_stream(container, rendition)
        audio_next = 0
        for index in range(config.frames):
            frame = av.VideoFrame.from_ndarray(painter.frame(index), format="yuv420p")
            frame.pts = index
            for packet in video.encode(frame):
                codecs = codecs or _avc_codecs(bytes(packet), video.codec_context.extradata)
                container.mux(packet)
            # Audio follows the video clock so the muxer interleaves without buffering.
            audio_end = (index + 1) * AUDIO_SAMPLE_RATE // config.fps
            audio_next = _encode_audio(container, audio, audio_next, audio_end)
            if (index + 1) % config.fps == 0:
                _report(rendition.name, index + 1)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    finally:
        container.close()
    _report(rendition.name, config.frames)
    if codecs is None:
        raise SampleError("the encoder produced no H.264 parameter set")
    return _Encoded(codecs=f"{codecs},{AUDIO_CODECS}", seconds=time.monotonic() - started)


def _muxer_options(directory: Path, config: SampleConfig) -> dict[str, str]:
    extension = "m4s" if config.fmp4 else "ts"
    options = {
        "hls_time": f"{config.segment_duration:g}",
        "hls_playlist_type": "vod",
        "hls_list_size": "0",
        "hls_flags": "independent_segments",
        "hls_segment_type": "fmp4" if config.fmp4 else "mpegts",
        "hls_segment_filename": str(directory / f"seg-%05d.{extension}"),
    }
    if config.fmp4:
        options["hls_fmp4_init_filename"] = INIT_SEGMENT
    return options


def _add_video_stream(container: Any, rendition: Rendition, config: SampleConfig) -> Any:
    gop = config.frames_per_segment
    maxrate = round(rendition.video_kbps * 1.1)
    # One segment of buffer at the peak rate: sizes stay close to the target, segment by segment.
    bufsize = round(maxrate * max(1.0, config.segment_duration))
    stream = container.add_stream("libx264", rate=config.fps)
    stream.width, stream.height, stream.pix_fmt = rendition.width, rendition.height, "yuv420p"
    stream.bit_rate = rendition.video_kbps * 1000
    stream.codec_context.gop_size = gop
    stream.codec_context.thread_count = ENCODER_THREADS
    # Closed, fixed GOPs with no scene-cut keyframes: every segment of every rendition starts
    # with an IDR frame at the same timestamp, which is what ABR switching needs.
    x264 = (
        f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:"
        f"vbv-maxrate={maxrate}:vbv-bufsize={bufsize}"
    )
    stream.options = {"preset": config.x264_preset, "profile": "high", "x264-params": x264}
    return stream


def _add_audio_stream(container: Any, rendition: Rendition) -> Any:
    stream = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="stereo")
    stream.bit_rate = rendition.audio_kbps * 1000
    return stream


def _encode_audio(container: Any, stream: Any, start: int, end: int) -> int:
    """Encode the tone from sample ``start`` up to ``end``; returns the next sample to encode."""
    import av

    frame_size = stream.codec_context.frame_size or 1024
    while start < end:
        count = min(frame_size, end - start)
        samples = tone(start, count, AUDIO_SAMPLE_RATE)
        frame = av.AudioFrame.from_ndarray(
            samples[None, :].repeat(2, axis=0), format="fltp", layout="stereo"
        )
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
        start += count
    return start


def tone(start: int, count: int, sample_rate: int = AUDIO_SAMPLE_RATE) -> Any:
    """The test tone from sample ``start``: a quiet 440 Hz sine, a 1 kHz beep each second.

    The beep lasts 100 ms from each whole second, with 5 ms ramps so it does not click. Phases
    are computed with exact integer arithmetic, so sample n is the same however it is chunked.
    """
    import numpy as np

    n = np.arange(start, start + count, dtype=np.int64)
    base = 0.1 * np.sin(2 * np.pi * ((n * 440) % sample_rate) / sample_rate)
    into_second = n % sample_rate
    beep_length, ramp = sample_rate // 10, sample_rate // 200
    envelope = np.clip(np.minimum(into_second, beep_length - into_second) / ramp, 0.0, 1.0)
    beep = 0.3 * np.sin(2 * np.pi * ((n * 1000) % sample_rate) / sample_rate) * envelope
    return (base + beep).astype(np.float32)


def _avc_codecs(packet: bytes, extradata: bytes | None) -> str | None:
    """RFC 6381 ``avc1.PPCCLL`` from the SPS in an Annex B packet or in avcC extradata."""
    if extradata and extradata[0] == 1 and len(extradata) >= 4:
        return f"avc1.{extradata[1]:02x}{extradata[2]:02x}{extradata[3]:02x}"
    # Annex B: in the extradata when the muxer wants global headers, else in the first packet.
    for data in (extradata or b"", packet):
        for nal in re.split(b"\x00\x00\x01", data)[1:]:
            if len(nal) >= 4 and nal[0] & 0x1F == 7:
                return f"avc1.{nal[1]:02x}{nal[2]:02x}{nal[3]:02x}"
    return None


# -- after encoding -------------------------------------------------------------------------


def _finish_rendition(
    root: Path, config: SampleConfig, rendition: Rendition, encoded: _Encoded
) -> tuple[dict[str, Any], int]:
    """Check the rendition's playlist, write its integrity manifest, measure its bit rates.

    Returns the rendition's sample.json entry and its playlist's EXT-X-VERSION.
    """
    playlist_path = root / rendition.name / MEDIA_PLAYLIST
    playlist = m3u8.loads(playlist_path.read_text(encoding="utf-8"))
    _check_media_playlist(playlist, config, rendition.name)
    manifest = read_manifest(write_manifest(playlist_path))
    peak, average = _bandwidths(manifest)
    log.info(
        "%s: %d segments, peak %.0f kbit/s, average %.0f kbit/s, encoded in %.1f s",
        rendition.name,
        len(manifest.segments),
        peak / 1000,
        average / 1000,
        encoded.seconds,
    )
    entry = {
        "name": rendition.name,
        "width": rendition.width,
        "height": rendition.height,
        "video_kbps": rendition.video_kbps,
        "audio_kbps": rendition.audio_kbps,
        "bandwidth": peak,
        "average_bandwidth": average,
        "codecs": encoded.codecs,
        "playlist": f"{rendition.name}/{MEDIA_PLAYLIST}",
    }
    return entry, int(playlist.version or 3)


def _check_media_playlist(playlist: m3u8.M3U8, config: SampleConfig, name: str) -> None:
    # The hls muxer cuts at the first keyframe after hls_time; a mismatch here means the GOPs
    # and segments drifted apart, which would break ABR switching. Fail loudly instead.
    durations = [float(s.duration) for s in playlist.segments]
    problems = []
    if len(durations) != config.segments:
        problems.append(f"{len(durations)} segments instead of {config.segments}")
    tolerance = 0.5 / config.fps
    if any(abs(d - config.segment_duration) > tolerance for d in durations[:-1]):
        problems.append(f"segment durations {sorted(set(durations))} are not all equal")
    if playlist.playlist_type != "vod" or not playlist.is_endlist:
        problems.append("not a VOD playlist with EXT-X-ENDLIST")
    if not playlist.is_independent_segments or (playlist.media_sequence or 0) != 0:
        problems.append("missing EXT-X-INDEPENDENT-SEGMENTS or media sequence is not 0")
    if problems:
        raise SampleError(f"{name}: unexpected playlist from the hls muxer: {'; '.join(problems)}")


def _bandwidths(manifest: IntegrityManifest) -> tuple[int, int]:
    """(peak, average) bits per second over the media segments, as HLS BANDWIDTH defines."""
    rates = [s.size * 8 / s.duration for s in manifest.segments if s.duration > 0]
    total_bits = sum(s.size * 8 for s in manifest.segments)
    total_time = sum(s.duration for s in manifest.segments)
    return math.ceil(max(rates)), math.ceil(total_bits / total_time)


def master_playlist(
    config: SampleConfig, renditions: Sequence[dict[str, Any]], version: int
) -> str:
    """The master (multivariant) playlist text, one EXT-X-STREAM-INF per rendition."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{version}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in renditions:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={r['bandwidth']},"
            f"AVERAGE-BANDWIDTH={r['average_bandwidth']},"
            f'RESOLUTION={r["width"]}x{r["height"]},CODECS="{r["codecs"]}",'
            f"FRAME-RATE={config.fps:.3f}"
        )
        lines.append(r["playlist"])
    return "\n".join(lines) + "\n"


def _sample_document(config: SampleConfig, renditions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": SAMPLE_FORMAT,
        "version": SAMPLE_VERSION,
        **_parameters(config),
        "segments": config.segments,
        "renditions": list(renditions),
    }


def _parameters(config: SampleConfig) -> dict[str, Any]:
    """The fields of sample.json that decide its bytes: the cache key."""
    return {
        "duration": config.duration,
        "segment_duration": config.segment_duration,
        "fps": config.fps,
        "fmp4": config.fmp4,
        "x264_preset": config.x264_preset,
    }


def _rendition_key(entry: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(entry.get(k) for k in ("name", "width", "height", "video_kbps", "audio_kbps"))


def _cached(out_dir: Path, config: SampleConfig) -> bool:
    """True when ``out_dir`` holds a complete sample made with exactly these parameters."""
    try:
        document = json.loads((out_dir / SAMPLE_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(document, dict) or document.get("format") != SAMPLE_FORMAT:
        return False
    if document.get("version") != SAMPLE_VERSION:
        return False
    if any(document.get(k) != v for k, v in _parameters(config).items()):
        return False
    stored = document.get("renditions")
    if not isinstance(stored, list) or not all(isinstance(e, dict) for e in stored):
        return False
    wanted = [_rendition_key(asdict(r)) for r in config.renditions]
    if [_rendition_key(e) for e in stored] != wanted:
        return False
    return (out_dir / MASTER_PLAYLIST).is_file() and all(
        (out_dir / r.name / MEDIA_PLAYLIST).is_file() for r in config.renditions
    )


# -- output directory handling --------------------------------------------------------------


@contextlib.contextmanager
def _directory_lock(out_dir: Path) -> Iterator[None]:
    """Serialise generators of the same ``out_dir`` (e.g. parallel tests or demo processes)."""
    lock_path = out_dir.parent / f".{out_dir.name}.lock"
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_replaceable(out_dir: Path) -> None:
    # Replacing a directory deletes it: only ever do that to an empty one or to a sample.
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise SampleError(f"{out_dir} exists and is not a directory")
    if not any(out_dir.iterdir()):
        return
    try:
        document = json.loads((out_dir / SAMPLE_JSON).read_text(encoding="utf-8"))
        is_sample = isinstance(document, dict) and document.get("format") == SAMPLE_FORMAT
    except (OSError, ValueError):
        is_sample = False
    if not is_sample:
        raise SampleError(
            f"{out_dir} is not empty and holds no swarmcast sample.json; refusing to replace it. "
            "Choose a new or empty directory."
        )


def _remove_stale_partials(out_dir: Path) -> None:
    """Delete leftovers of runs that were killed (their process is gone)."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(?:partial|old)-(\d+)-")
    for path in out_dir.parent.iterdir():
        match = pattern.match(path.name)
        if match and not _process_alive(int(match.group(1))):
            log.info("removing %s, left by an interrupted run", path)
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_into_place(partial: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(
            tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-{os.getpid()}-")
        )
        os.replace(out_dir, old / "sample")
    os.replace(partial, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


# -- progress -------------------------------------------------------------------------------


@dataclass
class _ProgressView:
    """A rich progress bar per rendition plus a total, fed by the workers' frame counts."""

    config: SampleConfig
    enabled: bool
    _progress: Any = None
    _tasks: dict[str, Any] = field(default_factory=dict)
    _total: Any = None

    def __enter__(self) -> _ProgressView:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        frames = self.config.frames
        self._total = self._progress.add_task("total", total=frames * len(self.config.renditions))
        for r in self.config.renditions:
            self._tasks[r.name] = self._progress.add_task(r.name, total=frames)
        return self

    def drain(self, queue: Any) -> None:
        """Apply every frame count waiting in ``queue``."""
        if self._progress is None or queue is None:
            return
        while True:
            try:
                name, frames = queue.get_nowait()
            except Exception:  # queue.Empty, or the queue was closed under us
                break
            self._progress.update(self._tasks[name], completed=frames)
        done = sum(t.completed for t in self._progress.tasks if t.id in self._tasks.values())
        self._progress.update(self._total, completed=done)

    def finish(self) -> None:
        """Show every bar full (the last counts may still be in flight from the workers)."""
        if self._progress is not None:
            for task in self._progress.tasks:
                self._progress.update(task.id, completed=task.total)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- validation helpers ---------------------------------------------------------------------


def _check_range(what: str, value: Any, low: int, high: int, *, integer: bool = True) -> None:
    if integer and (type(value) is not int):
        raise SampleError(f"{what} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise SampleError(f"{what} {value} is out of range [{low}, {high}]")


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SampleError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _normalized_ladder(renditions: Sequence[Rendition]) -> tuple[Rendition, ...]:
    ladder = tuple(renditions)
    if not 1 <= len(ladder) <= 10:
        raise SampleError(f"a ladder has 1 to 10 renditions, got {len(ladder)}")
    for r in ladder:
        if not isinstance(r, Rendition):
            raise SampleError(f"not a Rendition: {r!r}")
        r.validate()
    names = [r.name for r in ladder]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SampleError(f"rendition names must be distinct; repeated: {', '.join(duplicates)}")
    # Lowest first: the master playlist order, and hls.js starts on the first variant.
    return tuple(sorted(ladder, key=lambda r: (r.video_kbps, r.height, r.width, r.name)))


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmcast sample``."""
    defaults = SampleConfig()
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="directory to create")
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration,
        metavar="S",
        help=f"length in seconds, rounded up to whole segments (default {defaults.duration:g})",
    )
    parser.add_argument(
        "--segment-duration",
        type=float,
        default=defaults.segment_duration,
        metavar="S",
        help=f"segment and GOP length in seconds (default {defaults.segment_duration:g})",
    )
    parser.add_argument(
        "--fps",
        type=int,
        default=defaults.fps,
        metavar="N",
        help=f"frames per second (default {defaults.fps})",
    )
    parser.add_argument(
        "--renditions",
        default=",".join(r.name for r in defaults.renditions),
        metavar="LIST",
        help=(
            "comma-separated presets (" + ",".join(PRESETS) + ") or WxH@KBPS items "
            "(optionally NAME=WxH@KBPS); default %(default)s"
        ),
    )
    parser.add_argument("--fmp4", action="store_true", help="fMP4/CMAF segments instead of MPEG-TS")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="encoder processes (default: one per CPU core)",
    )
    parser.add_argument(
        "--preset",
        dest="x264_preset",
        default=defaults.x264_preset,
        choices=X264_PRESETS,
        help="libx264 preset (default %(default)s)",
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(sample_parser=parser)


def config_from_args(args: argparse.Namespace) -> SampleConfig:
    """Build and validate the config from parsed arguments (raises :class:`SampleError`)."""
    return SampleConfig(
        duration=args.duration,
        segment_duration=args.segment_duration,
        fps=args.fps,
        renditions=parse_renditions(args.renditions),
        fmp4=args.fmp4,
        workers=args.workers,
        x264_preset=args.x264_preset,
    ).normalized()


def run(args: argparse.Namespace) -> int:
    """Generate the sample; bad parameters exit through argparse (status 2), failures with 1."""
    try:
        config = config_from_args(args)
    except SampleError as exc:
        args.sample_parser.error(str(exc))
    try:
        generate(args.out_dir, config, force=args.force, progress=not args.no_progress)
    except (SampleError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0
