"""Integrity manifests: the SHA-256 and size of every segment of an HLS media playlist.

Peers never trust each other's bytes: a segment received over a data channel is accepted only
when its size and SHA-256 match the manifest that came from the origin. This module builds
manifests from playlists on disk, (de)serialises them with strict validation and is the
``swarmcast integrity`` subcommand. The format is specified in docs/integrity.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import m3u8

log = logging.getLogger(__name__)

FORMAT = "swarmcast-integrity"
VERSION = 1
ALGORITHM = "sha256"

#: Bound on the ``init`` and ``segments`` lists, checked before anything is built from them.
MAX_ENTRIES = 100_000
#: Bound on URI length (bytes of text); real segment URIs are far shorter.
MAX_URI_LENGTH = 4096
#: Bound on a segment duration in seconds; HLS segments are seconds long, a day is absurd.
MAX_DURATION = 86_400.0
#: Bound on sizes and offsets (1 TiB): keeps arithmetic on them sane.
MAX_SIZE = 1 << 40

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20

_MANIFEST_KEYS = frozenset(
    {"format", "version", "algorithm", "playlist", "media_sequence", "live", "init", "segments"}
)
_INIT_KEYS = frozenset({"uri", "size", "sha256"})
_SEGMENT_KEYS = frozenset(
    {"sequence", "uri", "duration", "size", "sha256", "byterange", "map", "discontinuity"}
)
_BYTERANGE_KEYS = frozenset({"offset", "length"})


class IntegrityError(ValueError):
    """A manifest or playlist is malformed, or the files it names cannot be hashed."""


@dataclass(frozen=True)
class ByteRange:
    """A sub-range of a file, as named by ``EXT-X-BYTERANGE``."""

    offset: int
    """First byte of the range, from the start of the file."""
    length: int
    """Number of bytes in the range."""

    def to_json(self) -> dict[str, int]:
        """The JSON object form, ``{"offset": ..., "length": ...}``."""
        return {"offset": self.offset, "length": self.length}


@dataclass(frozen=True)
class InitEntry:
    """An initialisation segment (``EXT-X-MAP``) that media segments depend on."""

    uri: str
    """URI exactly as written in the playlist (relative to the playlist)."""
    size: int
    """Size in bytes (of the byte range, when the map has one)."""
    sha256: str
    """SHA-256 of the bytes, 64 lowercase hex digits."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object form used in manifests."""
        return {"uri": self.uri, "size": self.size, "sha256": self.sha256}

    def matches(self, data: bytes) -> bool:
        """True when ``data`` is exactly this init segment."""
        return _matches(data, self.size, self.sha256)


@dataclass(frozen=True)
class SegmentEntry:
    """One media segment of the playlist."""

    sequence: int
    """Media sequence number: ``EXT-X-MEDIA-SEQUENCE`` plus the segment's index."""
    uri: str
    """URI exactly as written in the playlist (relative to the playlist)."""
    duration: float
    """``EXTINF`` duration in seconds."""
    size: int
    """Size in bytes (of the byte range, when there is one)."""
    sha256: str
    """SHA-256 of the bytes, 64 lowercase hex digits."""
    byterange: ByteRange | None = None
    """The ``EXT-X-BYTERANGE`` the hash covers, or None for the whole file."""
    map: str | None = None
    """URI of the ``EXT-X-MAP`` init segment in effect for this segment, or None."""
    discontinuity: bool = False
    """True when ``EXT-X-DISCONTINUITY`` precedes the segment."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object form used in manifests."""
        return {
            "sequence": self.sequence,
            "uri": self.uri,
            "duration": self.duration,
            "size": self.size,
            "sha256": self.sha256,
            "byterange": self.byterange.to_json() if self.byterange else None,
            "map": self.map,
            "discontinuity": self.discontinuity,
        }

    def matches(self, data: bytes) -> bool:
        """True when ``data`` is exactly this segment (size checked before hashing)."""
        return _matches(data, self.size, self.sha256)


@dataclass(frozen=True)
class IntegrityManifest:
    """Hashes and sizes of every segment (and init segment) of one media playlist."""

    playlist: str
    """File name of the playlist the manifest describes (e.g. ``index.m3u8``)."""
    media_sequence: int
    """``EXT-X-MEDIA-SEQUENCE`` of the playlist: the sequence number of the first segment."""
    live: bool
    """True when the playlist has no ``EXT-X-ENDLIST`` (it will grow or slide)."""
    init: tuple[InitEntry, ...]
    """Init segments referenced by ``EXT-X-MAP`` tags, each URI once; empty for plain TS."""
    segments: tuple[SegmentEntry, ...]
    """Media segments in playlist order."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object form (see docs/integrity.md); keys in the documented order."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "algorithm": ALGORITHM,
            "playlist": self.playlist,
            "media_sequence": self.media_sequence,
            "live": self.live,
            "init": [entry.to_json() for entry in self.init],
            "segments": [entry.to_json() for entry in self.segments],
        }

    def dumps(self) -> str:
        """Compact JSON text of the manifest, as :func:`write_manifest` writes it."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, data: Any) -> IntegrityManifest:
        """Validate a decoded JSON document and build the manifest.

        Raises :class:`IntegrityError` naming the first problem found: a wrong type, a missing
        or unknown key, a bad hex digest, a negative size, an unknown format or version, a
        list longer than :data:`MAX_ENTRIES`, or sequence numbers that do not follow on.
        """
        obj = _object(data, "manifest", _MANIFEST_KEYS)
        if obj["format"] != FORMAT:
            raise IntegrityError(f"manifest: format must be {FORMAT!r}, got {obj['format']!r}")
        if type(obj["version"]) is not int or obj["version"] != VERSION:
            raise IntegrityError(
                f"manifest: unsupported version {obj['version']!r} (this build reads {VERSION})"
            )
        if obj["algorithm"] != ALGORITHM:
            raise IntegrityError(
                f"manifest: algorithm must be {ALGORITHM!r}, got {obj['algorithm']!r}"
            )
        media_sequence = _int(obj["media_sequence"], "manifest.media_sequence", 0, 2**63 - 1)
        init = tuple(
            _init_from_json(item, f"init[{i}]")
            for i, item in enumerate(_list(obj["init"], "manifest.init"))
        )
        init_uris = {entry.uri for entry in init}
        if len(init_uris) != len(init):
            raise IntegrityError("manifest.init: the same URI is listed twice")
        segments = tuple(
            _segment_from_json(item, f"segments[{i}]", media_sequence + i, init_uris)
            for i, item in enumerate(_list(obj["segments"], "manifest.segments"))
        )
        return cls(
            playlist=_uri(obj["playlist"], "manifest.playlist"),
            media_sequence=media_sequence,
            live=_bool(obj["live"], "manifest.live"),
            init=init,
            segments=segments,
        )

    @classmethod
    def loads(cls, text: str | bytes) -> IntegrityManifest:
        """Parse JSON text and validate it; malformed JSON is an :class:`IntegrityError` too."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_json(data)

    def segment(self, sequence: int) -> SegmentEntry | None:
        """The entry for media sequence number ``sequence``, or None when not listed."""
        index = sequence - self.media_sequence
        if 0 <= index < len(self.segments):
            return self.segments[index]
        return None

    def init_entry(self, uri: str) -> InitEntry | None:
        """The init segment entry with this URI, or None."""
        return next((entry for entry in self.init if entry.uri == uri), None)


def manifest_path_for(playlist_path: Path) -> Path:
    """Where the manifest of ``playlist_path`` lives: ``<stem>.integrity.json`` beside it."""
    playlist_path = Path(playlist_path)
    return playlist_path.with_name(f"{playlist_path.stem}.integrity.json")


def build_manifest(playlist_path: Path) -> IntegrityManifest:
    """Parse a media playlist with m3u8 and hash every segment and init segment it names.

    Segment URIs must be local paths relative to the playlist. ``EXT-X-BYTERANGE`` ranges
    (with or without an explicit offset) are hashed over just that range.
    """
    playlist_path = Path(playlist_path)
    playlist = _load_playlist(playlist_path)
    base = playlist_path.parent
    media_sequence = int(playlist.media_sequence or 0)
    ranges = _RangeTracker()
    init: dict[str, tuple[ByteRange | None, InitEntry]] = {}
    segments: list[SegmentEntry] = []
    if len(playlist.segments) > MAX_ENTRIES:
        raise IntegrityError(f"{playlist_path}: more than {MAX_ENTRIES} segments")
    for index, segment in enumerate(playlist.segments):
        map_uri = _hash_map(segment, base, init, ranges, playlist_path)
        byterange = ranges.resolve(segment.uri, segment.byterange, playlist_path)
        size, digest = _hash_file(_local_path(base, segment.uri, playlist_path), byterange)
        segments.append(
            SegmentEntry(
                sequence=media_sequence + index,
                uri=segment.uri,
                duration=float(segment.duration),
                size=size,
                sha256=digest,
                byterange=byterange,
                map=map_uri,
                discontinuity=bool(segment.discontinuity),
            )
        )
    log.debug("hashed %d segments of %s", len(segments), playlist_path)
    return IntegrityManifest(
        playlist=playlist_path.name,
        media_sequence=media_sequence,
        live=not playlist.is_endlist,
        init=tuple(entry for _, entry in init.values()),
        segments=tuple(segments),
    )


def write_manifest(playlist_path: Path) -> Path:
    """Build the manifest of ``playlist_path`` and write it beside it; returns its path.

    The file is replaced atomically, so a server reading it while a live playlist advances
    never sees half a manifest.
    """
    manifest = build_manifest(playlist_path)
    target = manifest_path_for(playlist_path)
    _atomic_write(target, manifest.dumps() + "\n")
    return target


def read_manifest(path: Path) -> IntegrityManifest:
    """Load and validate a manifest file."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise IntegrityError(f"cannot read manifest {path}: {exc.strerror}") from None
    return IntegrityManifest.loads(text)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


# -- building -------------------------------------------------------------------------------


def _load_playlist(playlist_path: Path) -> m3u8.M3U8:
    try:
        text = playlist_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IntegrityError(f"cannot read playlist {playlist_path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise IntegrityError(f"{playlist_path}: not UTF-8 text, not an HLS playlist") from None
    if not text.lstrip("\ufeff").startswith("#EXTM3U"):
        raise IntegrityError(f"{playlist_path}: does not start with #EXTM3U, not an HLS playlist")
    try:
        playlist = m3u8.loads(text, uri=str(playlist_path))
    except Exception as exc:  # m3u8 raises assorted errors on malformed tags
        raise IntegrityError(f"{playlist_path}: cannot parse playlist: {exc}") from None
    if playlist.is_variant:
        raise IntegrityError(
            f"{playlist_path}: is a master (multivariant) playlist; pass its media playlists"
        )
    return playlist


def _hash_map(
    segment: m3u8.Segment,
    base: Path,
    init: dict[str, tuple[ByteRange | None, InitEntry]],
    ranges: _RangeTracker,
    playlist_path: Path,
) -> str | None:
    section = segment.init_section
    if section is None or not section.uri:
        return None
    uri = section.uri
    byterange = None
    if section.byterange:
        # An EXT-X-MAP BYTERANGE always carries its offset (RFC 8216, 4.3.2.5).
        byterange = ranges.parse(section.byterange, playlist_path, require_offset=True)
    if uri in init:
        if init[uri][0] != byterange:
            raise IntegrityError(
                f"{playlist_path}: EXT-X-MAP uses different byte ranges of {uri}; manifests "
                "hold one init entry per URI"
            )
        return uri
    if len(init) >= MAX_ENTRIES:
        raise IntegrityError(f"{playlist_path}: more than {MAX_ENTRIES} init segments")
    size, digest = _hash_file(_local_path(base, uri, playlist_path), byterange)
    init[uri] = (byterange, InitEntry(uri=uri, size=size, sha256=digest))
    return uri


class _RangeTracker:
    """Resolves ``EXT-X-BYTERANGE`` values whose offset is implied by the previous range."""

    def __init__(self) -> None:
        self._previous: tuple[str, int] | None = None

    def parse(self, text: str, where: Path, *, require_offset: bool = False) -> ByteRange:
        length_text, sep, offset_text = str(text).partition("@")
        try:
            length = int(length_text)
            offset = int(offset_text) if sep else -1
        except ValueError:
            raise IntegrityError(f"{where}: bad BYTERANGE {text!r}") from None
        if length < 0 or (sep and offset < 0):
            raise IntegrityError(f"{where}: bad BYTERANGE {text!r}")
        if offset < 0 and require_offset:
            raise IntegrityError(f"{where}: EXT-X-MAP BYTERANGE {text!r} needs an offset")
        return ByteRange(offset=offset, length=length)

    def resolve(self, uri: str, text: str | None, where: Path) -> ByteRange | None:
        if not text:
            self._previous = None
            return None
        byterange = self.parse(text, where)
        if byterange.offset < 0:
            # No offset: the range starts right after the previous sub-range of the same file.
            if self._previous is None or self._previous[0] != uri:
                raise IntegrityError(
                    f"{where}: BYTERANGE {text!r} of {uri} has no offset and does not follow "
                    "a range of the same file"
                )
            byterange = ByteRange(offset=self._previous[1], length=byterange.length)
        self._previous = (uri, byterange.offset + byterange.length)
        return byterange


def _local_path(base: Path, uri: str, where: Path) -> Path:
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", uri) or uri.startswith("/"):
        raise IntegrityError(
            f"{where}: segment URI {uri!r} is not a relative path; integrity manifests are made "
            "from files beside the playlist"
        )
    return base / uri.split("?", 1)[0]


def _hash_file(path: Path, byterange: ByteRange | None) -> tuple[int, str]:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            if byterange is None:
                size = 0
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                return size, digest.hexdigest()
            fh.seek(byterange.offset)
            remaining = byterange.length
            while remaining:
                chunk = fh.read(min(_CHUNK, remaining))
                if not chunk:
                    raise IntegrityError(
                        f"{path}: byte range {byterange.length}@{byterange.offset} runs past the "
                        "end of the file"
                    )
                digest.update(chunk)
                remaining -= len(chunk)
            return byterange.length, digest.hexdigest()
    except OSError as exc:
        raise IntegrityError(f"cannot read segment {path}: {exc.strerror}") from None


def _atomic_write(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        # mkstemp makes it private (0600); manifests are served to every viewer.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _matches(data: bytes, size: int, sha256: str) -> bool:
    return len(data) == size and hashlib.sha256(data).hexdigest() == sha256


# -- validation -----------------------------------------------------------------------------


def _object(data: Any, where: str, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise IntegrityError(f"{where}: expected a JSON object, got {_kind(data)}")
    missing = keys - data.keys()
    if missing:
        raise IntegrityError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    unknown = data.keys() - keys
    if unknown:
        names = ", ".join(sorted(str(k) for k in unknown)[:5])
        raise IntegrityError(f"{where}: unknown key(s) {names}")
    return data


def _list(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise IntegrityError(f"{where}: expected a JSON array, got {_kind(data)}")
    if len(data) > MAX_ENTRIES:
        raise IntegrityError(f"{where}: {len(data)} entries, more than the limit {MAX_ENTRIES}")
    return data


def _int(data: Any, where: str, low: int, high: int) -> int:
    # bool is a subclass of int in Python but not an integer in JSON.
    if type(data) is not int:
        raise IntegrityError(f"{where}: expected an integer, got {_kind(data)}")
    if not low <= data <= high:
        raise IntegrityError(f"{where}: {data} is out of range [{low}, {high}]")
    return data


def _bool(data: Any, where: str) -> bool:
    if type(data) is not bool:
        raise IntegrityError(f"{where}: expected true or false, got {_kind(data)}")
    return data


def _uri(data: Any, where: str) -> str:
    if not isinstance(data, str) or not data:
        raise IntegrityError(f"{where}: expected a non-empty string, got {_kind(data)}")
    if len(data) > MAX_URI_LENGTH:
        raise IntegrityError(f"{where}: longer than {MAX_URI_LENGTH} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in data):
        raise IntegrityError(f"{where}: contains control characters")
    return data


def _sha256(data: Any, where: str) -> str:
    if not isinstance(data, str) or not _HEX64.fullmatch(data):
        raise IntegrityError(f"{where}: expected 64 lowercase hex digits")
    return data


def _duration(data: Any, where: str) -> float:
    if type(data) not in (int, float):
        raise IntegrityError(f"{where}: expected a number, got {_kind(data)}")
    if not math.isfinite(data) or not 0 <= data <= MAX_DURATION:
        raise IntegrityError(f"{where}: {data} is not a duration in [0, {MAX_DURATION:g}] s")
    return float(data)


def _init_from_json(data: Any, where: str) -> InitEntry:
    obj = _object(data, where, _INIT_KEYS)
    return InitEntry(
        uri=_uri(obj["uri"], f"{where}.uri"),
        size=_int(obj["size"], f"{where}.size", 0, MAX_SIZE),
        sha256=_sha256(obj["sha256"], f"{where}.sha256"),
    )


def _segment_from_json(data: Any, where: str, sequence: int, init_uris: set[str]) -> SegmentEntry:
    obj = _object(data, where, _SEGMENT_KEYS)
    if _int(obj["sequence"], f"{where}.sequence", 0, 2**63 - 1) != sequence:
        raise IntegrityError(
            f"{where}.sequence: expected {sequence} (media_sequence + index), got {obj['sequence']}"
        )
    size = _int(obj["size"], f"{where}.size", 0, MAX_SIZE)
    byterange = None
    if obj["byterange"] is not None:
        br = _object(obj["byterange"], f"{where}.byterange", _BYTERANGE_KEYS)
        byterange = ByteRange(
            offset=_int(br["offset"], f"{where}.byterange.offset", 0, MAX_SIZE),
            length=_int(br["length"], f"{where}.byterange.length", 0, MAX_SIZE),
        )
        if byterange.length != size:
            raise IntegrityError(f"{where}: size {size} differs from byterange length")
    map_uri = obj["map"]
    if map_uri is not None:
        map_uri = _uri(map_uri, f"{where}.map")
        if map_uri not in init_uris:
            raise IntegrityError(f"{where}.map: {map_uri!r} is not listed in init")
    return SegmentEntry(
        sequence=sequence,
        uri=_uri(obj["uri"], f"{where}.uri"),
        duration=_duration(obj["duration"], f"{where}.duration"),
        size=size,
        sha256=_sha256(obj["sha256"], f"{where}.sha256"),
        byterange=byterange,
        map=map_uri,
        discontinuity=_bool(obj["discontinuity"], f"{where}.discontinuity"),
    )


def _kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, (int, float)):
        return f"the number {data!r}"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "an array"
    if isinstance(data, dict):
        return "an object"
    return type(data).__name__


# -- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``swarmcast integrity``."""
    parser.description = (
        "Write <stem>.integrity.json beside each media playlist: the SHA-256 and size of every "
        "segment and init segment, which peers use to verify data received from other peers."
    )
    parser.add_argument(
        "playlists", nargs="+", type=Path, metavar="PLAYLIST", help="media playlist"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; verify the existing manifests against the files (exit 1 on mismatch)",
    )


def run(args: argparse.Namespace) -> int:
    """Write (or with ``--check`` verify) the manifests; 0 on success, 1 on any failure."""
    failures = 0
    for playlist in args.playlists:
        try:
            if args.check:
                failures += not _check(playlist)
            else:
                target = write_manifest(playlist)
                log.info("wrote %s", target)
        except IntegrityError as exc:
            log.error("%s", exc)
            failures += 1
    return 1 if failures else 0


def _check(playlist: Path) -> bool:
    stored = read_manifest(manifest_path_for(playlist))
    fresh = build_manifest(playlist)
    problems = list(_differences(stored, fresh))
    for problem in problems:
        log.error("%s: %s", playlist, problem)
    if not problems:
        log.info("%s: manifest matches (%d segments)", playlist, len(fresh.segments))
    return not problems


def _differences(stored: IntegrityManifest, fresh: IntegrityManifest) -> Iterable[str]:
    if stored.media_sequence != fresh.media_sequence or len(stored.segments) != len(fresh.segments):
        yield (
            f"manifest lists {len(stored.segments)} segments from {stored.media_sequence}, "
            f"playlist has {len(fresh.segments)} from {fresh.media_sequence}"
        )
    for old, new in zip(stored.segments, fresh.segments, strict=False):
        if old != new:
            yield f"segment {new.sequence} ({new.uri}) differs from the manifest"
    if stored.init != fresh.init:
        yield "init segments differ from the manifest"
