"""Identity of swarms and segments, shared by every peer that watches the same stream.

Two viewers only trade segments if they compute the same ids from what their players load, so
every rule here is deterministic, host-independent and documented in ``docs/protocol.md``
("Identity"). Vectors in ``tests/vectors/ids.json`` pin the exact outputs for the JS twin.

- A **content id** names a stream regardless of which CDN hostname or signed query string the
  player used: it is the normalised path of the master playlist URL, unless the application
  gives an explicit one.
- A **rendition id** names one media playlist of that stream: its path relative to the master
  playlist's directory.
- A **swarm id** is a short hash of (content id, rendition id), safe for the signalling server.
- A **segment key** is a media sequence number, or for EXT-X-MAP init segments a 53-bit hash
  of the map's path and byte range, in a separate key space.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

#: Largest media sequence number or init id on the wire: 2**53 - 1, so JavaScript numbers hold
#: every value exactly (no BigInt needed in the browser twin).
MAX_SEGMENT_NUMBER = 2**53 - 1

#: Length of a swarm id in characters (22 base64url characters = 132 bits of SHA-256).
SWARM_ID_LENGTH = 22

#: What the signalling server accepts as a swarm id; every id made here matches it.
SWARM_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Longest explicit content id or rendition id accepted, in UTF-8 bytes.
MAX_LABEL_BYTES = 1024

_SWARM_DOMAIN = b"swarmcast/swarm/v1\x00"
_INIT_DOMAIN = b"swarmcast/init/v1\x00"
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Characters RFC 3986 allows literally in a path (pchar plus "/"), plus "%" which the escape
# pass below handles on its own.
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class SegmentKind(enum.IntEnum):
    """The two key spaces of segments inside one swarm (wire values)."""

    MEDIA = 0
    """A media segment, keyed by its media sequence number (EXT-X-MEDIA-SEQUENCE + index)."""
    INIT = 1
    """An EXT-X-MAP initialisation segment, keyed by :func:`init_segment_id`."""


@dataclass(frozen=True, slots=True, order=True)
class SegmentKey:
    """One segment of one swarm: a key space and a number in it.

    Media segments use the media sequence number, which HLS keeps strictly increasing across
    discontinuities and byte-range segments alike, so neither needs anything extra here.
    """

    kind: SegmentKind
    """Which key space :attr:`number` belongs to."""
    number: int
    """Media sequence number, or init id; 0 .. :data:`MAX_SEGMENT_NUMBER`."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SegmentKind):
            object.__setattr__(self, "kind", SegmentKind(self.kind))
        check_segment_number(self.number)

    @classmethod
    def media(cls, sequence: int) -> SegmentKey:
        """The key of the media segment with media sequence number ``sequence``."""
        return cls(SegmentKind.MEDIA, sequence)

    @classmethod
    def init(cls, init_id: int) -> SegmentKey:
        """The key of the init segment whose id is ``init_id`` (see :func:`init_segment_id`)."""
        return cls(SegmentKind.INIT, init_id)

    def __str__(self) -> str:
        return f"{self.kind.name.lower()}:{self.number}"


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A sub-range of a resource (EXT-X-BYTERANGE / the BYTERANGE attribute of EXT-X-MAP)."""

    length: int
    """Number of bytes in the range (``n`` in ``n@o``)."""
    offset: int
    """First byte of the range (``o`` in ``n@o``), already resolved if the playlist omitted it."""

    def __post_init__(self) -> None:
        if self.length < 0 or self.offset < 0:
            raise ValueError(f"byte range {self.length}@{self.offset} has a negative field")


def check_segment_number(number: int) -> int:
    """Return ``number`` if it is a valid media sequence number / init id, else raise."""
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"segment number must be an int, not {type(number).__name__}")
    if not 0 <= number <= MAX_SEGMENT_NUMBER:
        raise ValueError(f"segment number {number} is outside 0..2**53-1")
    return number


def normalize_path(url: str) -> str:
    """The host-independent form of ``url``: its path only, in canonical RFC 3986 form.

    Scheme, user info, host, port, query and fragment are dropped. Percent-escapes of
    unreserved characters are decoded, other escapes upper-cased, characters that a path may
    not hold literally are escaped, dot segments are resolved and repeated slashes collapsed.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("URL is empty: expected an absolute URL or a path starting with '/'")
    parts = urlsplit(url.strip())
    path = parts.path
    if not path.startswith("/"):
        if parts.netloc:
            path = "/" + path
        else:
            raise ValueError(
                f"cannot take a content path from {url!r}: expected an absolute URL "
                "(https://host/path) or a path starting with '/'"
            )
    path = _STRAY_PERCENT.sub("%25", path)
    path = quote(path, safe=_PATH_SAFE)
    path = _ESCAPE.sub(_normalize_escape, path)
    return _remove_dot_segments(re.sub(r"/{2,}", "/", path))


def _normalize_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        elif segment == ".":
            if last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def content_id_from_url(url: str) -> str:
    """The content id of the stream whose master playlist is at ``url``.

    Equal to :func:`normalize_path` of the URL: the same stream served from two CDN hostnames,
    or with different signed query strings, gets one content id. Streams whose path itself
    varies per viewer (tokens in the path) need an explicit content id, which the application
    passes instead of calling this (see :func:`check_label`).
    """
    return normalize_path(url)


def check_label(label: str, what: str = "content id") -> str:
    """Return ``label`` if it is usable as an explicit content id or rendition id, else raise."""
    if not isinstance(label, str) or not label:
        raise ValueError(f"{what} must be a non-empty string")
    if "\x00" in label:
        raise ValueError(f"{what} must not contain NUL characters")
    if len(label.encode("utf-8", "surrogatepass")) > MAX_LABEL_BYTES:
        raise ValueError(f"{what} is longer than {MAX_LABEL_BYTES} bytes")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode text: {exc}") from None
    return label


def rendition_id(master_url: str, playlist_uri: str) -> str:
    """The rendition id of the media playlist ``playlist_uri`` listed in ``master_url``.

    The playlist URI is resolved against the master URL and normalised like a content id; the
    result is its path relative to the master playlist's directory, or its whole path when it
    lives elsewhere. Variant URIs are what packagers name renditions by and the master lists
    each once, so this stays stable when variants are reordered, added or re-measured (index
    and BANDWIDTH would not), and it covers EXT-X-MEDIA alternates too. A stream loaded from a
    media playlist directly uses ``rendition_id(url, url)``, i.e. the playlist's file name.
    """
    master_path = normalize_path(master_url)
    playlist_path = normalize_path(urljoin(master_url, playlist_uri))
    directory = master_path[: master_path.rindex("/") + 1]
    if playlist_path.startswith(directory) and len(playlist_path) > len(directory):
        return playlist_path[len(directory) :]
    return playlist_path


def swarm_id(content_id: str, rendition: str) -> str:
    """The swarm id of one rendition of one stream: 22 base64url characters.

    ``base64url(sha256("swarmcast/swarm/v1" NUL content_id NUL rendition))[:22]``, UTF-8
    encoded; always matches :data:`SWARM_ID_PATTERN`.
    """
    check_label(content_id, "content id")
    check_label(rendition, "rendition id")
    digest = hashlib.sha256(
        _SWARM_DOMAIN + content_id.encode() + b"\x00" + rendition.encode()
    ).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:SWARM_ID_LENGTH]


def init_segment_id(map_uri: str, *, base_url: str = "", byterange: ByteRange | None = None) -> int:
    """The id of the EXT-X-MAP init segment at ``map_uri`` (resolved against ``base_url``).

    The top 53 bits of ``sha256("swarmcast/init/v1" NUL path [NUL "<length>@<offset>"])`` with
    ``path`` normalised like a content id, so every peer derives the same id whichever CDN
    host served it. Collisions within one swarm (the only scope the id is used in) are
    negligible: a swarm has a handful of init segments.
    """
    path = normalize_path(urljoin(base_url, map_uri) if base_url else map_uri)
    material = _INIT_DOMAIN + path.encode("ascii")
    if byterange is not None:
        material += f"\x00{byterange.length}@{byterange.offset}".encode("ascii")
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") >> 11
