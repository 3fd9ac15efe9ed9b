"""HTTP Range requests (RFC 9110 §14): parse a ``Range`` header against a resource size."""

from __future__ import annotations

from dataclasses import dataclass


class RangeNotSatisfiable(Exception):
    """The Range header is well-formed but selects no byte of the resource (HTTP 416)."""


@dataclass(frozen=True)
class ByteRange:
    """A satisfiable single byte range: ``start`` inclusive, ``end`` exclusive."""

    start: int
    end: int

    @property
    def length(self) -> int:
        """Number of bytes selected."""
        return self.end - self.start

    def content_range(self, size: int) -> str:
        """The ``Content-Range`` header value for a 206 response."""
        return f"bytes {self.start}-{self.end - 1}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Parse ``header`` for a resource of ``size`` bytes.

    Returns ``None`` when the whole resource should be sent (no header, a header this server
    ignores as RFC 9110 allows: other units, syntax errors, several ranges), a :class:`ByteRange`
    for a single satisfiable range, and raises :class:`RangeNotSatisfiable` when the range starts
    past the end (or is an empty suffix).
    """
    if not header:
        return None
    unit, sep, spec = header.strip().partition("=")
    if not sep or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"empty suffix range for {size} bytes")
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, resource has {size} bytes")
    return ByteRange(start, end)
