"""Following an HLS stream: master playlist, rendition timelines, live reloads, integrity.

Two layers, as everywhere in the peer:

- **Sans-IO**: :func:`parse_master` turns master playlist text into :class:`Rendition` s with
  their protocol identity (content id, rendition id, swarm id, ``docs/protocol.md`` §4);
  :class:`RenditionTimeline` ingests successive media playlist texts and integrity manifests
  and keeps the segment list (sequence, absolute URI, duration, byte range, init segment,
  media start time, discontinuity, expected size and SHA-256), returning "what changed" deltas
  and verifying bytes. No I/O, no clock: tests feed it text.
- **asyncio**: :class:`RenditionFollower` fetches the playlist (VOD once, live at the interval
  RFC 8216 §6.3.4 prescribes) and the manifest with an :class:`OriginClient`, and yields the
  deltas. :func:`load_stream` fetches and parses the master.

Playlists are parsed with the ``m3u8`` package, which is lenient, so every value used is
checked here (sizes, counts, durations, sequence numbers, byte ranges): a malformed playlist
is a :class:`PlaylistError` that says what is wrong, never a crash or a nonsense timeline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import PurePosixPath
from urllib.parse import urljoin, urlsplit, urlunsplit

import m3u8

from swarmcast.peer import ids
from swarmcast.peer.ids import ByteRange, SegmentKey
from swarmcast.peer.integrity_check import (
    ExpectedDigest,
    IntegrityError,
    IntegrityStore,
    Verdict,
    check_bytes,
)
from swarmcast.peer.origin_client import OriginClient, OriginError, OriginHTTPError

log = logging.getLogger(__name__)

#: Longest EXTINF accepted, seconds (HLS segments last seconds; a day is nonsense).
MAX_SEGMENT_DURATION = 86_400.0
_BYTERANGE = re.compile(r"^\s*(\d{1,15})(?:@(\d{1,15}))?\s*$")


class PlaylistError(ValueError):
    """A playlist is malformed or unusable; the message says which and why."""


# ------------------------------------------------------------------------------------ master


@dataclass(frozen=True, slots=True)
class Rendition:
    """One media playlist of a stream, with its swarm identity."""

    playlist_url: str
    """Absolute URL of the media playlist."""
    rendition_id: str
    """Its id within the stream (``docs/protocol.md`` §4.3)."""
    swarm_id: str
    """The swarm of peers watching it."""
    kind: str
    """``"variant"`` (EXT-X-STREAM-INF) or the EXT-X-MEDIA type in lower case (``"audio"``)."""
    bandwidth: int | None = None
    """Peak bits per second (variants only)."""
    resolution: tuple[int, int] | None = None
    """Width and height (video variants only)."""
    codecs: str | None = None
    """CODECS attribute, if any."""
    name: str | None = None
    """NAME attribute of an alternate rendition."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A stream as its master playlist describes it."""

    url: str
    """URL the master playlist was loaded from."""
    content_id: str
    """The stream's content id (from the URL, or the explicit override)."""
    renditions: tuple[Rendition, ...]
    """Variants first (in playlist order), then alternate renditions."""

    def rendition(self, rendition_id: str) -> Rendition:
        """The rendition with this id; raises KeyError listing the ids there are."""
        for rendition in self.renditions:
            if rendition.rendition_id == rendition_id:
                return rendition
        known = ", ".join(r.rendition_id for r in self.renditions)
        raise KeyError(f"no rendition {rendition_id!r} in {self.url}; it has: {known}")

    @property
    def variants(self) -> tuple[Rendition, ...]:
        """The EXT-X-STREAM-INF renditions, in playlist order."""
        return tuple(r for r in self.renditions if r.kind == "variant")


def parse_master(text: str, url: str, *, content_id: str | None = None) -> StreamInfo:
    """Parse a master playlist loaded from ``url`` into its renditions.

    A media playlist given instead of a master is a stream with one rendition
    (``rendition_id(url, url)``, as ``docs/protocol.md`` §4.3 says). ``content_id`` overrides
    the id derived from the URL (checked like any explicit label).
    """
    try:
        cid = (
            ids.check_label(content_id) if content_id is not None else ids.content_id_from_url(url)
        )
    except ValueError as exc:
        raise PlaylistError(str(exc)) from None
    parsed = _loads(text, url)
    if not parsed.is_variant:
        if not parsed.segments:
            raise PlaylistError(f"{url} lists neither variants nor segments")
        return StreamInfo(url, cid, (_rendition(url, url, cid, "variant"),))
    renditions: list[Rendition] = []
    seen: set[str] = set()
    for variant in parsed.playlists:
        info = variant.stream_info
        rendition = _rendition(
            url,
            _uri(variant.uri, url),
            cid,
            "variant",
            bandwidth=info.bandwidth,
            resolution=tuple(info.resolution) if info.resolution else None,
            codecs=info.codecs,
        )
        if rendition.rendition_id not in seen:
            seen.add(rendition.rendition_id)
            renditions.append(rendition)
    for media in parsed.media:
        if not media.uri:
            continue  # muxed into the variants: no playlist of its own
        kind = (media.type or "media").lower()
        rendition = _rendition(url, _uri(media.uri, url), cid, kind, name=media.name)
        if rendition.rendition_id not in seen:
            seen.add(rendition.rendition_id)
            renditions.append(rendition)
    if not renditions:
        raise PlaylistError(f"master playlist {url} lists no playable rendition")
    return StreamInfo(url, cid, tuple(renditions))


def _rendition(master_url: str, uri: str, cid: str, kind: str, **attrs: object) -> Rendition:
    rid = ids.rendition_id(master_url, uri)
    return Rendition(urljoin(master_url, uri), rid, ids.swarm_id(cid, rid), kind, **attrs)  # type: ignore[arg-type]


def _loads(text: str, url: str) -> m3u8.M3U8:
    if not isinstance(text, str) or not text.lstrip("\ufeff \t\r\n").startswith("#EXTM3U"):
        raise PlaylistError(f"{url} is not an HLS playlist (it does not start with #EXTM3U)")
    try:
        return m3u8.loads(text)
    except Exception as exc:  # m3u8 raises whatever its int()/float() calls raise
        raise PlaylistError(f"cannot parse playlist {url}: {type(exc).__name__}: {exc}") from None


def _uri(uri: object, where: str) -> str:
    if not isinstance(uri, str) or not uri.strip():
        raise PlaylistError(f"{where}: an entry has an empty URI")
    if any(ord(c) < 0x20 for c in uri):
        raise PlaylistError(f"{where}: URI {uri!r} contains control characters")
    return uri.strip()


# ---------------------------------------------------------------------------------- timeline


@dataclass(frozen=True, slots=True)
class InitSegment:
    """An EXT-X-MAP initialisation segment."""

    key: SegmentKey
    """Its key in the swarm (init key space, ``ids.init_segment_id``)."""
    uri: str
    """Absolute URL."""
    playlist_uri: str
    """URI as written in the playlist (what the integrity manifest names it by)."""
    byterange: ByteRange | None
    """The BYTERANGE attribute, offset resolved (0 when omitted)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One media segment of a rendition."""

    sequence: int
    """Media sequence number (EXT-X-MEDIA-SEQUENCE + index): the segment's key in the swarm."""
    uri: str
    """Absolute URL."""
    playlist_uri: str
    """URI as written in the playlist (what the integrity manifest names it by)."""
    duration: float
    """EXTINF duration, seconds."""
    start: float
    """Media time at which it starts, seconds since the first segment this timeline saw
    (estimated across a gap of segments never seen, see :class:`RenditionTimeline`)."""
    byterange: ByteRange | None = None
    """EXT-X-BYTERANGE with the offset resolved; fetch only these bytes of :attr:`uri`."""
    init: InitSegment | None = None
    """EXT-X-MAP in effect (fMP4), None for plain MPEG-TS."""
    discontinuity: bool = False
    """EXT-X-DISCONTINUITY precedes it (timestamps or encoding parameters change)."""
    discontinuity_sequence: int = 0
    """Discontinuity sequence number it belongs to."""
    program_date_time: float | None = None
    """EXT-X-PROGRAM-DATE-TIME of its first frame (Unix seconds), if the playlist gives it."""
    size: int | None = None
    """Expected size in bytes, when the integrity manifest lists the segment."""
    sha256: str | None = None
    """Expected SHA-256 (hex), when the integrity manifest lists the segment."""

    @property
    def key(self) -> SegmentKey:
        """Its key in the swarm."""
        return SegmentKey.media(self.sequence)

    @property
    def end(self) -> float:
        """Media time at which it ends."""
        return self.start + self.duration

    @property
    def verifiable(self) -> bool:
        """True when its bytes can be checked against the origin's digest."""
        return self.sha256 is not None


@dataclass(frozen=True, slots=True)
class TimelineUpdate:
    """What one playlist (or manifest) changed."""

    added: tuple[Segment, ...] = ()
    """Segments seen for the first time, ascending."""
    removed: tuple[int, ...] = ()
    """Sequence numbers that left the playlist window (still retained for a while)."""
    hashed: tuple[Segment, ...] = ()
    """Segments that became verifiable (their digests arrived), ascending."""
    changed: bool = False
    """The playlist differed from the previous load (drives the reload interval)."""
    ended: bool = False
    """The playlist is complete (EXT-X-ENDLIST): no further reloads."""


@dataclass
class TimelineConfig:
    """How a :class:`RenditionTimeline` bounds and verifies what it holds."""

    retain_segments: int = 64
    """Segments kept (with their digests) after leaving a live window: peers behind the edge
    still trade them. About two minutes of 2 s segments."""
    max_segments: int = 100_000
    """Most segments a playlist may list (a 55 h VOD of 2 s segments); more is refused."""
    require_integrity: bool = True
    """When True, :meth:`RenditionTimeline.verify` rejects bytes it has no digest for, so a
    stream without integrity manifests gets nothing from peers (the origin still serves it).
    Turn off only for trusted swarms: otherwise any peer can poison the player."""


class RenditionTimeline:
    """The segments of one media playlist, as successive loads of it reveal them (sans-IO).

    Media start times count from the first segment this timeline saw. Segments that follow a
    known one start where it ends; after a gap (a live reload that came too late to see some
    segments), the start is estimated from EXT-X-PROGRAM-DATE-TIME when both sides carry it,
    else from the target duration.
    """

    def __init__(self, playlist_url: str, config: TimelineConfig | None = None) -> None:
        self.playlist_url = playlist_url
        self.config = config or TimelineConfig()
        self.integrity = IntegrityStore()
        """Digests from the manifests ingested so far."""
        self.target_duration: float | None = None
        """EXT-X-TARGETDURATION of the last load, seconds."""
        self.ended = False
        """True once a load carried EXT-X-ENDLIST (VOD, or a live stream that finished)."""
        self.loads = 0
        """Playlist loads ingested."""
        self._segments: dict[int, Segment] = {}
        self._window = range(0)
        self._last_text: str | None = None
        self._warned_unverified = False

    # -------------------------------------------------------------------------------- views

    @property
    def window(self) -> range:
        """Sequence numbers listed by the last playlist load."""
        return self._window

    @property
    def segments(self) -> list[Segment]:
        """The segments of the last load's window, ascending."""
        return [self._segments[s] for s in self._window if s in self._segments]

    @property
    def live(self) -> bool:
        """True while the playlist may still change (no EXT-X-ENDLIST seen)."""
        return not self.ended

    @property
    def integrity_available(self) -> bool:
        """True once a manifest was ingested (peers' bytes can then be verified)."""
        return self.integrity.manifests > 0

    @property
    def manifest_url(self) -> str:
        """``<stem>.integrity.json`` beside the playlist; the query (a CDN token) is kept."""
        parts = urlsplit(self.playlist_url)
        path = PurePosixPath(parts.path or "/")
        name = f"{path.stem}.integrity.json"
        directory = parts.path[: parts.path.rfind("/") + 1] or "/"
        return urlunsplit((parts.scheme, parts.netloc, directory + name, parts.query, ""))

    def segment(self, sequence: int) -> Segment | None:
        """The segment ``sequence``, in the window or retained after leaving it."""
        return self._segments.get(sequence)

    def reload_delay(self, changed: bool) -> float:
        """Seconds between the start of a load and the next one (RFC 8216 §6.3.4).

        The target duration after a load that changed the playlist, half of it after one that
        did not (the new segment is due any moment).
        """
        target = self.target_duration or 1.0
        return target if changed else target / 2

    # ------------------------------------------------------------------------------ ingest

    def ingest_playlist(self, text: str) -> TimelineUpdate:
        """Take in one load of the media playlist; returns what changed.

        Raises :class:`PlaylistError` for a malformed playlist, a master playlist, or a reload
        that contradicts an earlier one (a sequence number now naming another URI); the
        timeline is unchanged then.
        """
        parsed = _loads(text, self.playlist_url)
        if parsed.is_variant:
            raise PlaylistError(
                f"{self.playlist_url} is a master playlist; expected a media playlist"
            )
        fresh = self._parse_segments(parsed)
        self._check_consistent(fresh)
        target = self._target_duration(parsed, fresh)
        changed = text != self._last_text
        self._last_text = text
        self.loads += 1
        self.target_duration = target
        added = self._merge(fresh)
        old_window = self._window
        if fresh:
            self._window = range(fresh[0].sequence, fresh[-1].sequence + 1)
        removed = tuple(s for s in old_window if s not in self._window and s < self._window.start)
        self.ended = bool(parsed.is_endlist)
        self._forget_old()
        return TimelineUpdate(added=added, removed=removed, changed=changed, ended=self.ended)

    def ingest_manifest(self, text: str | bytes) -> TimelineUpdate:
        """Take in an integrity manifest; returns the segments that became verifiable.

        Raises :class:`~swarmcast.samples.integrity.IntegrityError` for a malformed manifest.
        Entries naming another URI than the playlist does for the same sequence number are
        dropped (and logged): they cannot vouch for the bytes the playlist points at.
        """
        update = self.integrity.ingest(text)
        hashed = []
        for sequence, segment in sorted(self._segments.items()):
            if segment.sha256 is None:
                filled = self._with_digest(segment)
                if filled is not segment:
                    self._segments[sequence] = filled
                    hashed.append(filled)
        if update.conflicts:
            log.warning(
                "%s: manifest contradicts earlier digests for %d segment(s)",
                self.playlist_url,
                len(update.conflicts),
            )
        return TimelineUpdate(hashed=tuple(hashed))

    def _with_digest(self, segment: Segment) -> Segment:
        expected = self.integrity.expected(segment.sequence)
        if expected is None:
            return segment
        if expected.uri != segment.playlist_uri:
            log.warning(
                "%s: manifest names %r for segment %d, the playlist %r: not used",
                self.playlist_url,
                expected.uri,
                segment.sequence,
                segment.playlist_uri,
            )
            return segment
        return replace(segment, size=expected.size, sha256=expected.sha256)

    def _parse_segments(self, parsed: m3u8.M3U8) -> list[Segment]:
        where = self.playlist_url
        count = len(parsed.segments)
        if count > self.config.max_segments:
            raise PlaylistError(
                f"{where} lists {count} segments, more than {self.config.max_segments}"
            )
        first = parsed.media_sequence or 0
        if not isinstance(first, int) or not 0 <= first <= ids.MAX_SEGMENT_NUMBER - count:
            raise PlaylistError(f"{where}: EXT-X-MEDIA-SEQUENCE {first!r} is out of range")
        dseq = parsed.discontinuity_sequence or 0
        if not isinstance(dseq, int) or dseq < 0:
            raise PlaylistError(f"{where}: EXT-X-DISCONTINUITY-SEQUENCE {dseq!r} is invalid")
        ranges = _RangeResolver(where)
        out: list[Segment] = []
        for index, seg in enumerate(parsed.segments):
            sequence = first + index
            uri = _uri(seg.uri, f"{where} segment {sequence}")
            if seg.discontinuity and index > 0:
                dseq += 1
            duration = _duration(seg.duration, f"{where} segment {sequence}")
            out.append(
                Segment(
                    sequence=sequence,
                    uri=urljoin(where, uri),
                    playlist_uri=uri,
                    duration=duration,
                    start=0.0,
                    byterange=ranges.resolve(uri, seg.byterange),
                    init=self._init(seg.init_section, ranges),
                    discontinuity=bool(seg.discontinuity),
                    discontinuity_sequence=dseq,
                    program_date_time=_timestamp(seg.current_program_date_time),
                )
            )
        return out

    def _init(self, section: object, ranges: _RangeResolver) -> InitSegment | None:
        if section is None:
            return None
        uri = _uri(getattr(section, "uri", None), f"{self.playlist_url} EXT-X-MAP")
        byterange = None
        text = getattr(section, "byterange", None)
        if text:
            byterange = ranges.parse(text, "EXT-X-MAP BYTERANGE")
        absolute = urljoin(self.playlist_url, uri)
        key = SegmentKey.init(ids.init_segment_id(absolute, byterange=byterange))
        return InitSegment(key, absolute, uri, byterange)

    def _check_consistent(self, fresh: list[Segment]) -> None:
        for segment in fresh:
            known = self._segments.get(segment.sequence)
            if known is not None and known.playlist_uri != segment.playlist_uri:
                raise PlaylistError(
                    f"{self.playlist_url}: segment {segment.sequence} was {known.playlist_uri!r} "
                    f"and is now {segment.playlist_uri!r}; the stream was restarted or replaced "
                    "(follow it again from scratch)"
                )

    def _target_duration(self, parsed: m3u8.M3U8, fresh: list[Segment]) -> float:
        target = parsed.target_duration
        if target is not None:
            return _duration(target, f"{self.playlist_url} EXT-X-TARGETDURATION", positive=True)
        if fresh:
            log.warning(
                "%s has no EXT-X-TARGETDURATION: using its longest segment", self.playlist_url
            )
            return float(math.ceil(max(s.duration for s in fresh)) or 1)
        raise PlaylistError(f"{self.playlist_url} has neither EXT-X-TARGETDURATION nor segments")

    def _merge(self, fresh: list[Segment]) -> tuple[Segment, ...]:
        added = []
        for segment in fresh:
            if segment.sequence in self._segments:
                continue
            placed = replace(segment, start=self._start_of(segment))
            placed = self._with_digest(placed)
            self._segments[segment.sequence] = placed
            added.append(placed)
        return tuple(added)

    def _start_of(self, segment: Segment) -> float:
        previous = self._segments.get(segment.sequence - 1)
        if previous is not None:
            return previous.end
        earlier = [s for s in self._segments if s < segment.sequence]
        if not earlier:
            return 0.0
        last = self._segments[max(earlier)]
        if segment.program_date_time is not None and last.program_date_time is not None:
            return last.start + (segment.program_date_time - last.program_date_time)
        missing = segment.sequence - last.sequence - 1
        return last.end + missing * (self.target_duration or last.duration)

    def _forget_old(self) -> None:
        floor = self._window.start - self.config.retain_segments
        stale = [s for s in self._segments if s < floor]
        for sequence in stale:
            del self._segments[sequence]
        if stale:
            self.integrity.forget_before(floor)

    # ------------------------------------------------------------------------------ verify

    def check(
        self, segment: Segment | InitSegment | int, data: bytes | bytearray | memoryview
    ) -> Verdict:
        """Check bytes of a media segment (or its sequence number) or init segment."""
        if isinstance(segment, InitSegment):
            return self.integrity.check_init(segment.playlist_uri, data)
        sequence = segment if isinstance(segment, int) else segment.sequence
        known = self._segments.get(sequence)
        if known is None:
            # Not (or no longer) in a playlist we loaded: the manifest alone still vouches.
            return self.integrity.check(sequence, data)
        if known.sha256 is None or known.size is None:
            return Verdict.UNVERIFIED
        return check_bytes(ExpectedDigest(known.size, known.sha256, known.playlist_uri), data)

    def verify(
        self, segment: Segment | InitSegment | int, data: bytes | bytearray | memoryview
    ) -> bool:
        """True when ``data`` may be used: it matches the origin's digest, or there is no
        digest and :attr:`TimelineConfig.require_integrity` is off (logged loudly once).
        """
        verdict = self.check(segment, data)
        if verdict is Verdict.VERIFIED:
            return True
        if verdict is Verdict.MISMATCH:
            return False
        if not self.config.require_integrity and not self._warned_unverified:
            self._warned_unverified = True
            log.warning(
                "%s: accepting peer data that cannot be verified (no integrity manifest entry); "
                "any peer can corrupt playback. Publish manifests with `swarmcast integrity`.",
                self.playlist_url,
            )
        return not self.config.require_integrity


class _RangeResolver:
    """Resolves EXT-X-BYTERANGE offsets left implicit (they follow the previous range)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._next: dict[str, int] = {}

    def parse(self, text: str, what: str) -> ByteRange:
        match = _BYTERANGE.match(str(text))
        if match is None:
            raise PlaylistError(f"{self.where}: {what} {text!r} is not <length>[@<offset>]")
        # An EXT-X-MAP BYTERANGE without an offset starts at byte 0 (RFC 8216 4.3.2.5).
        return ByteRange(int(match[1]), int(match[2]) if match[2] is not None else 0)

    def resolve(self, uri: str, text: str | None) -> ByteRange | None:
        if not text:
            self._next.pop(uri, None)
            return None
        match = _BYTERANGE.match(str(text))
        if match is None:
            raise PlaylistError(
                f"{self.where}: EXT-X-BYTERANGE {text!r} is not <length>[@<offset>]"
            )
        length = int(match[1])
        if match[2] is not None:
            offset = int(match[2])
        elif uri in self._next:
            offset = self._next[uri]
        else:
            raise PlaylistError(
                f"{self.where}: EXT-X-BYTERANGE {text!r} of {uri} has no offset and does not "
                "follow a range of the same resource"
            )
        self._next[uri] = offset + length
        return ByteRange(length, offset)


def _duration(value: object, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlaylistError(f"{where}: duration {value!r} is not a number")
    if (
        not math.isfinite(value)
        or not 0 <= value <= MAX_SEGMENT_DURATION
        or (positive and value == 0)
    ):
        raise PlaylistError(f"{where}: duration {value!r} is out of range")
    return float(value)


def _timestamp(value: object) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


# ------------------------------------------------------------------------------------ asyncio


@dataclass
class FollowerConfig:
    """How a :class:`RenditionFollower` loads playlists and manifests."""

    timeline: TimelineConfig = field(default_factory=TimelineConfig)
    """Bounds and verification policy of the timeline."""
    fetch_manifests: bool = True
    """Load ``<stem>.integrity.json`` beside the playlist to verify peers' bytes."""
    load_timeout: float = 10.0
    """Seconds a playlist or manifest load may take in all (retries included)."""
    error_backoff: float = 0.5
    """Seconds to wait after a failed live reload before trying again (doubles, up to half the
    target duration), so a dead origin is not hammered but a recovered one is noticed within
    about half a segment: a live viewer only has a few segments of buffer to ride out an outage."""


async def load_stream(
    client: OriginClient, url: str, *, content_id: str | None = None, timeout: float = 10.0
) -> StreamInfo:
    """Fetch and parse the master playlist at ``url`` (see :func:`parse_master`)."""
    text = await client.fetch_text(url, deadline=time.monotonic() + timeout)
    return parse_master(text, url, content_id=content_id)


class RenditionFollower:
    """Keeps a :class:`RenditionTimeline` up to date from the origin (thin asyncio adapter)."""

    def __init__(
        self, client: OriginClient, playlist_url: str, config: FollowerConfig | None = None
    ) -> None:
        self.client = client
        self.config = config or FollowerConfig()
        self.timeline = RenditionTimeline(playlist_url, self.config.timeline)
        self._manifest_missing = False

    async def refresh(self) -> TimelineUpdate:
        """Load the playlist once (and the manifest if segments lack digests); the delta.

        Raises :class:`OriginError` or :class:`PlaylistError` when the playlist cannot be had;
        a missing or broken manifest is logged, never fatal (segments stay unverified).
        """
        deadline = time.monotonic() + self.config.load_timeout
        text = await self.client.fetch_text(self.timeline.playlist_url, deadline=deadline)
        update = self.timeline.ingest_playlist(text)
        if self._wants_manifest():
            hashed = await self._load_manifest(deadline)
            if hashed:
                # Report the new segments with the digests that just arrived.
                added = tuple(self.timeline.segment(s.sequence) or s for s in update.added)
                update = replace(update, added=added, hashed=hashed)
        return update

    def _wants_manifest(self) -> bool:
        if not self.config.fetch_manifests or self._manifest_missing:
            return False
        return any(s.sha256 is None for s in self.timeline.segments)

    async def _load_manifest(self, deadline: float) -> tuple[Segment, ...]:
        url = self.timeline.manifest_url
        try:
            text = await self.client.fetch(url, deadline=deadline)
            return self.timeline.ingest_manifest(text).hashed
        except OriginHTTPError as exc:
            if exc.status in (403, 404, 410):
                self._manifest_missing = True
                log.warning(
                    "no integrity manifest at %s (%d): segments from peers cannot be verified",
                    url,
                    exc.status,
                )
            else:
                log.warning("integrity manifest %s: %s", url, exc)
        except (OriginError, IntegrityError) as exc:
            log.warning("integrity manifest %s unusable: %s", url, exc)
        return ()

    async def updates(self) -> AsyncIterator[TimelineUpdate]:
        """Yield the first load, then every reload that added segments or digests.

        VOD: one update. Live: reloads at the RFC 8216 interval until EXT-X-ENDLIST; failed
        reloads are logged and retried with backoff (the stream may come back), only the
        first load's failure is raised.
        """
        started = time.monotonic()
        update = await self.refresh()
        yield update
        failures = 0
        while not self.timeline.ended:
            delay = (
                self.timeline.reload_delay(update.changed)
                if not failures
                else self._error_delay(failures)
            )
            await asyncio.sleep(max(0.0, started + delay - time.monotonic()))
            started = time.monotonic()
            try:
                update = await self.refresh()
            except (OriginError, PlaylistError) as exc:
                failures += 1
                log.warning(
                    "reload of %s failed (%d in a row): %s",
                    self.timeline.playlist_url,
                    failures,
                    exc,
                )
                continue
            failures = 0
            if update.added or update.hashed or update.ended:
                yield update

    def _error_delay(self, failures: int) -> float:
        ceiling = max(self.config.error_backoff, (self.timeline.target_duration or 0) / 2)
        return min(ceiling, self.config.error_backoff * 2 ** (failures - 1))
