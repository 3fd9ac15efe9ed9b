"""Simulated live: a sliding-window live playlist over a VOD rendition, looping forever.

Pure state (sans-IO): every function takes ``now`` (wall-clock seconds), so tests drive time.

The stream is defined so that the window is already full when the origin starts: at ``start`` the
live clock stands at the media time of segment ``window``, i.e. ``window`` segments are published.
Segment ``msn`` (media sequence number, counting from 0 forever) plays VOD segment ``msn % n`` of
loop ``msn // n``; it is *published* once the live clock has passed its end, as a real packager
publishes a segment only when it is complete. Each wrap back to the first VOD segment is a
discontinuity (timestamps restart), signalled with EXT-X-DISCONTINUITY and counted in
EXT-X-DISCONTINUITY-SEQUENCE.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

#: Tolerance for float comparisons of media time (durations come from playlists as decimals).
_EPS = 1e-6


@dataclass(frozen=True)
class SourceSegment:
    """One segment of the VOD rendition that the live stream loops over."""

    uri: str
    """URI as written in the VOD playlist (relative to it)."""
    duration: float
    """EXTINF duration in seconds."""
    size: int
    """Size in bytes of the segment's data (of its byte range, when it has one)."""
    sha256: str
    """Lower-case hex SHA-256 of the segment's data."""
    byterange: tuple[int, int] | None = None
    """``(offset, length)`` inside ``uri`` when the VOD playlist uses EXT-X-BYTERANGE."""
    map_uri: str | None = None
    """URI of the EXT-X-MAP init segment in effect, for fMP4."""


@dataclass(frozen=True)
class LiveSegment:
    """A segment as it appears in the live stream."""

    sequence: int
    """Media sequence number (grows forever)."""
    source: SourceSegment
    """The VOD segment whose bytes it serves."""
    uri: str
    """URI in the live playlist (relative to it)."""
    discontinuity: bool
    """True when the segment starts a new loop (timestamps restart)."""
    program_date_time: float
    """Wall-clock time (Unix seconds) of the segment's first frame."""


class LiveTimeline:
    """Which segments a looping live stream has published at a given wall-clock time."""

    def __init__(
        self,
        segments: Sequence[SourceSegment],
        *,
        window: int,
        start: float,
        uri_template: str = "live-{msn}{ext}",
    ) -> None:
        if not segments:
            raise ValueError("a live stream needs at least one VOD segment")
        if window < 1:
            raise ValueError(f"live window must be at least 1 segment, got {window}")
        if any(s.duration <= 0 for s in segments):
            raise ValueError("every segment needs a positive duration")
        self.segments = tuple(segments)
        self.window = window
        self.start = start
        self.uri_template = uri_template
        self._offsets: list[float] = []
        self._ends: list[float] = []
        t = 0.0
        for seg in self.segments:
            self._offsets.append(t)
            t += seg.duration
            self._ends.append(t)
        self.loop_duration = t
        self.target_duration = math.ceil(max(s.duration for s in self.segments) - _EPS)
        # The live clock reads media_time(window) at `start`, so the window is full from the start.
        self._preroll = self.media_time(window)

    def media_time(self, msn: int) -> float:
        """Media time (seconds since the stream's first segment) at which ``msn`` starts."""
        loops, index = divmod(msn, len(self.segments))
        return loops * self.loop_duration + self._offsets[index]

    def published(self, now: float) -> int:
        """Number of segments published at ``now``: segments ``0 .. published - 1`` exist."""
        clock = max(0.0, now - self.start) + self._preroll
        loops = int(clock // self.loop_duration)
        rest = clock - loops * self.loop_duration
        done_in_loop = bisect.bisect_right(self._ends, rest + _EPS)
        return loops * len(self.segments) + done_in_loop

    def window_range(self, now: float) -> range:
        """Media sequence numbers in the live playlist at ``now`` (oldest first)."""
        end = self.published(now)
        return range(max(0, end - self.window), end)

    def segment(self, msn: int) -> LiveSegment:
        """The live segment with media sequence number ``msn`` (published or not)."""
        if msn < 0:
            raise ValueError(f"media sequence numbers are never negative, got {msn}")
        index = msn % len(self.segments)
        source = self.segments[index]
        ext = _extension(source.uri)
        return LiveSegment(
            sequence=msn,
            source=source,
            uri=self.uri_template.format(msn=msn, ext=ext),
            discontinuity=index == 0 and msn > 0,
            program_date_time=self.start - self._preroll + self.media_time(msn),
        )

    def is_published(self, msn: int, now: float) -> bool:
        """True when segment ``msn`` exists at ``now`` (still served after it leaves the window)."""
        return 0 <= msn < self.published(now)

    def render_playlist(self, now: float, *, version: int = 3, independent: bool = True) -> str:
        """The live media playlist text at ``now``."""
        msns = self.window_range(now)
        first = msns.start
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
            # Every wrap before the first listed segment counts; its own wrap tag is not listed.
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{first // len(self.segments)}",
        ]
        if independent:
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        current_map: str | None = None
        for msn in msns:
            seg = self.segment(msn)
            if seg.discontinuity and msn != first:
                lines.append("#EXT-X-DISCONTINUITY")
                current_map = None
            if seg.source.map_uri and seg.source.map_uri != current_map:
                lines.append(f'#EXT-X-MAP:URI="{seg.source.map_uri}"')
                current_map = seg.source.map_uri
            lines.append(
                f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(seg.program_date_time)}"
            )
            lines.append(f"#EXTINF:{seg.source.duration:.3f},")
            lines.append(seg.uri)
        return "\n".join(lines) + "\n"

    def integrity_manifest(self, now: float, *, playlist: str, init: Sequence[dict]) -> dict:
        """The live integrity manifest at ``now`` (format in docs/integrity.md, ``live: true``)."""
        msns = self.window_range(now)
        segments = []
        for msn in msns:
            seg = self.segment(msn)
            segments.append(
                {
                    "sequence": msn,
                    "uri": seg.uri,
                    "duration": seg.source.duration,
                    "size": seg.source.size,
                    "sha256": seg.source.sha256,
                    # Live segments are whole resources even when the VOD source used ranges.
                    "byterange": None,
                    "map": seg.source.map_uri,
                    "discontinuity": seg.discontinuity,
                }
            )
        return {
            "format": "swarmcast-integrity",
            "version": 1,
            "algorithm": "sha256",
            "playlist": playlist,
            "media_sequence": msns.start,
            "live": True,
            "init": list(init),
            "segments": segments,
        }


def format_program_date_time(ts: float) -> str:
    """ISO 8601 with milliseconds and a Z, as EXT-X-PROGRAM-DATE-TIME wants."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extension(uri: str) -> str:
    name = uri.rsplit("/", 1)[-1].split("?", 1)[0]
    return "." + name.rsplit(".", 1)[1] if "." in name else ""
