"""Verifying segment bytes against the origin's integrity manifests (sans-IO).

A peer can send well-framed garbage (``docs/protocol.md`` §1), so every segment received from
a peer is checked against the SHA-256 and size the origin published in the rendition's
integrity manifest (format: ``samples/integrity.py``, the reference reader we reuse here).

:class:`IntegrityStore` keeps the expected digests of one rendition: it ingests successive
manifests (a live manifest advances with the window), keeps digests of segments that have left
the window for a while (peers that are behind still trade them), refuses a manifest entry that
contradicts an earlier one, and answers :meth:`IntegrityStore.check` with a :class:`Verdict`.
A segment the store knows nothing about is :attr:`Verdict.UNVERIFIED`, never silently "ok":
the caller decides, by policy, whether such bytes may come from peers at all.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from dataclasses import dataclass

from swarmcast.samples.integrity import IntegrityError, IntegrityManifest

log = logging.getLogger(__name__)

__all__ = [
    "ExpectedDigest",
    "IntegrityError",
    "IntegrityStore",
    "ManifestUpdate",
    "Verdict",
    "check_bytes",
]


class Verdict(enum.Enum):
    """Outcome of checking bytes against the origin's digests."""

    VERIFIED = "verified"
    """Size and SHA-256 match the manifest."""
    MISMATCH = "mismatch"
    """The manifest has an entry and the bytes differ: the sender served bad data."""
    UNVERIFIED = "unverified"
    """No manifest entry is known for the segment: the bytes cannot be checked."""


@dataclass(frozen=True, slots=True)
class ExpectedDigest:
    """What a segment's bytes must be, according to the origin."""

    size: int
    """Exact size in bytes."""
    sha256: str
    """SHA-256 of the bytes, 64 lower-case hex digits."""
    uri: str
    """URI of the segment as written in the playlist (relative), to tie the entry to it."""


def check_bytes(expected: ExpectedDigest | None, data: bytes | bytearray | memoryview) -> Verdict:
    """Compare ``data`` with ``expected`` (size first: a wrong size costs no hashing)."""
    if expected is None:
        return Verdict.UNVERIFIED
    if len(data) != expected.size:
        return Verdict.MISMATCH
    if hashlib.sha256(data).hexdigest() != expected.sha256:
        return Verdict.MISMATCH
    return Verdict.VERIFIED


@dataclass(frozen=True, slots=True)
class ManifestUpdate:
    """What one manifest changed in the store."""

    added: tuple[int, ...]
    """Media sequence numbers that got a digest for the first time, ascending."""
    conflicts: tuple[int, ...]
    """Media sequence numbers whose new entry contradicted the digest already held (ignored)."""
    inits_added: tuple[str, ...]
    """Init segment URIs (as written) that got a digest for the first time."""


class IntegrityStore:
    """Expected digests of one rendition's segments, by media sequence number and init URI."""

    def __init__(self) -> None:
        self.manifests = 0
        """Manifests ingested so far (0: nothing can be verified yet)."""
        self._segments: dict[int, ExpectedDigest] = {}
        self._inits: dict[str, ExpectedDigest] = {}

    def __len__(self) -> int:
        return len(self._segments)

    def ingest(self, text: str | bytes) -> ManifestUpdate:
        """Validate a manifest (JSON text) and merge its digests; raises :class:`IntegrityError`.

        An entry for a sequence number already held must agree with it (URI, size, digest):
        a segment's bytes never change, so a contradiction means the manifest or the playlist
        was replaced behind our back; the old digest is kept and the conflict is reported.
        """
        manifest = IntegrityManifest.loads(text)
        self.manifests += 1
        added: list[int] = []
        conflicts: list[int] = []
        for entry in manifest.segments:
            digest = ExpectedDigest(entry.size, entry.sha256, entry.uri)
            held = self._segments.get(entry.sequence)
            if held is None:
                self._segments[entry.sequence] = digest
                added.append(entry.sequence)
            elif held != digest:
                conflicts.append(entry.sequence)
        inits = []
        for init in manifest.init:
            digest = ExpectedDigest(init.size, init.sha256, init.uri)
            held = self._inits.get(init.uri)
            if held is None:
                self._inits[init.uri] = digest
                inits.append(init.uri)
            elif held != digest:
                log.warning(
                    "manifest changed the digest of init segment %s: kept the first", init.uri
                )
        if conflicts:
            log.warning(
                "manifest contradicts digests held for %d segment(s) (first %d): kept the old ones",
                len(conflicts),
                conflicts[0],
            )
        return ManifestUpdate(tuple(added), tuple(conflicts), tuple(inits))

    def forget_before(self, sequence: int) -> None:
        """Drop digests of segments numbered below ``sequence``.

        The owner (a :class:`~swarmcast.peer.stream.RenditionTimeline`) calls it as the window
        moves, so memory stays bounded on a stream that runs for days.
        """
        for old in [s for s in self._segments if s < sequence]:
            del self._segments[old]

    def expected(self, sequence: int) -> ExpectedDigest | None:
        """The digest of media segment ``sequence``, if a manifest listed it."""
        return self._segments.get(sequence)

    def expected_init(self, uri: str) -> ExpectedDigest | None:
        """The digest of the init segment whose URI (as written in the playlist) is ``uri``."""
        return self._inits.get(uri)

    def check(self, sequence: int, data: bytes | bytearray | memoryview) -> Verdict:
        """Check the bytes of media segment ``sequence``."""
        return check_bytes(self._segments.get(sequence), data)

    def check_init(self, uri: str, data: bytes | bytearray | memoryview) -> Verdict:
        """Check the bytes of the init segment ``uri`` (as written in the playlist)."""
        return check_bytes(self._inits.get(uri), data)
