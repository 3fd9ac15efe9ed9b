"""HTTP client for the HLS origin / CDN: the fallback path every segment can take.

One :class:`OriginClient` per peer holds one aiohttp session with keep-alive and a bounded
connection pool, so playlist reloads and segment fetches reuse warm connections. A fetch:

- asks for a byte range when it does not start at 0 (``Range: bytes=start-`` or
  ``bytes=start-(end-1)``) and checks the 206 answer's ``Content-Range``; an origin that ignores
  Range and answers 200 with the whole body is handled by skipping to the wanted bytes;
- retries 5xx answers, connection errors and stalled reads with exponential backoff and jitter,
  a bounded number of times and never past the caller's deadline; a retry after a partial body
  resumes at the first missing byte instead of starting over;
- refuses a body larger than :attr:`OriginClientConfig.max_body_size` from its Content-Length,
  before reading it, and stops a body without one as soon as it grows past the limit;
- reports progress (``on_progress(bytes_so_far)``) as chunks arrive, which the download
  scheduler uses to estimate throughput and decide whether a deadline can still be met;
- releases its connection when cancelled (the scheduler cancels fetches a peer has overtaken).

Deadlines are absolute :func:`time.monotonic` readings, like every deadline in the peer.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger(__name__)

#: Statuses worth retrying: the origin or a proxy in front of it is overloaded or restarting.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass
class OriginClientConfig:
    """Settings of the origin client. Defaults suit 2-6 s HLS segments from a nearby CDN."""

    connect_timeout: float = 3.0
    """Seconds to establish a TCP (and TLS) connection before the attempt counts as failed."""
    read_timeout: float = 5.0
    """Seconds without a single byte arriving before the attempt counts as stalled."""
    max_retries: int = 3
    """Retries after the first attempt (so at most ``max_retries + 1`` requests per fetch)."""
    backoff_initial: float = 0.1
    """Delay before the first retry, seconds; doubles on each further retry."""
    backoff_max: float = 2.0
    """Cap on the delay between two attempts, seconds (also caps a ``Retry-After`` hint)."""
    max_connections: int = 32
    """Connections in the pool, all hosts together."""
    max_connections_per_host: int = 8
    """Connections to one host: enough to fetch the next segments and playlists in parallel."""
    keepalive_timeout: float = 30.0
    """Seconds an idle connection stays in the pool for reuse."""
    max_body_size: int = 64 * 1024 * 1024
    """Largest body accepted, bytes; a larger Content-Length is refused before reading."""
    chunk_size: int = 64 * 1024
    """Bytes read from the socket per step (granularity of progress callbacks)."""
    user_agent: str = "swarmcast-peer/0.1"
    """User-Agent header of every request."""
    headers: dict[str, str] = field(default_factory=dict)
    """Extra headers sent with every request (e.g. an Authorization header for a private CDN)."""

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout", "keepalive_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.backoff_initial <= self.backoff_max:
            raise ValueError("backoff_initial must be within 0..backoff_max")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        for name in ("max_connections", "max_connections_per_host", "max_body_size", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass
class OriginClientStats:
    """What the client has done so far (for QoE reports: "bytes from HTTP")."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retries: int = 0
    """Requests that were retries of a failed attempt."""
    fetches: int = 0
    """Calls of :meth:`OriginClient.fetch` that returned data."""
    failures: int = 0
    """Calls of :meth:`OriginClient.fetch` that raised (cancellations excluded)."""
    bytes_received: int = 0
    """Body bytes read from the network, including bytes skipped when a Range was ignored."""
    bytes_delivered: int = 0
    """Body bytes returned to callers."""


class OriginError(Exception):
    """Base class of every error :class:`OriginClient` raises."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        self.url = url
        """The URL that was being fetched."""


class OriginHTTPError(OriginError):
    """The origin answered with a status that retrying will not fix (404, 403, 416, ...)."""

    def __init__(self, status: int, url: str, reason: str = "") -> None:
        super().__init__(f"origin answered {status} {reason} for {url}".replace("  ", " "), url)
        self.status = status
        """The HTTP status code."""


class OriginUnavailable(OriginError):
    """The origin could not deliver: every attempt failed (5xx, refused, reset or stalled)."""

    def __init__(self, message: str, url: str, *, attempts: int, status: int | None = None):
        super().__init__(message, url)
        self.attempts = attempts
        """Requests made before giving up."""
        self.status = status
        """Status of the last answer, if the last attempt got one."""


class OriginDeadlineExceeded(OriginUnavailable):
    """The caller's deadline passed (or the next retry could not start before it)."""


class OriginProtocolError(OriginError):
    """The answer made no sense: wrong Content-Range, body too large or shorter than announced."""


ProgressCallback = Callable[[int], None]


@dataclass
class _Attempt:
    """State carried across the attempts of one fetch."""

    url: str
    start: int
    end: int | None
    deadline: float | None
    on_progress: ProgressCallback | None
    body: bytearray = field(default_factory=bytearray)
    attempts: int = 0
    last_status: int | None = None

    @property
    def position(self) -> int:
        """Absolute offset of the next byte wanted."""
        return self.start + len(self.body)

    @property
    def complete(self) -> bool:
        return self.end is not None and self.position >= self.end


class _Retryable(Exception):
    """One attempt failed in a way a retry may fix."""

    def __init__(self, message: str, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class OriginClient:
    """Fetches playlists, manifests and segments from the origin. Use as an async context manager
    or call :meth:`close` when done; the session is created on first use.
    """

    def __init__(
        self,
        config: OriginClientConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or OriginClientConfig()
        self.stats = OriginClientStats()
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> OriginClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its pooled connections."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            cfg = self.config
            connector = aiohttp.TCPConnector(
                limit=cfg.max_connections,
                limit_per_host=cfg.max_connections_per_host,
                keepalive_timeout=cfg.keepalive_timeout,
            )
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=cfg.connect_timeout, sock_read=cfg.read_timeout
            )
            headers = {"User-Agent": cfg.user_agent, **cfg.headers}
            # auto_decompress off: Range offsets and sizes must refer to the bytes on the wire,
            # which are the bytes the integrity manifest hashes.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=headers, auto_decompress=False
            )
        return self._session

    async def fetch(
        self,
        url: str,
        *,
        start: int = 0,
        end: int | None = None,
        deadline: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> bytes:
        """Bytes ``start .. end`` (end exclusive; ``None`` = to the end) of the resource at ``url``.

        ``deadline`` is an absolute :func:`time.monotonic` reading after which the fetch gives
        up with :class:`OriginDeadlineExceeded`. ``on_progress`` is called with the number of
        wanted bytes received so far, monotonically increasing (retries resume, never restart).
        Raises :class:`OriginHTTPError` for answers that retrying cannot fix,
        :class:`OriginUnavailable` when every attempt failed, and :class:`OriginProtocolError`
        for answers that make no sense. A cancelled fetch releases its connection.
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"bad byte range {start}..{end} for {url}")
        if end is not None and end - start > self.config.max_body_size:
            raise ValueError(
                f"range of {end - start} bytes exceeds max_body_size {self.config.max_body_size}"
            )
        state = _Attempt(url, start, end, deadline, on_progress)
        try:
            data = await self._fetch_with_retries(state)
        except OriginError:
            self.stats.failures += 1
            raise
        self.stats.fetches += 1
        self.stats.bytes_delivered += len(data)
        return data

    async def fetch_text(self, url: str, *, deadline: float | None = None) -> str:
        """The resource at ``url`` decoded as UTF-8 (playlists, manifests)."""
        data = await self.fetch(url, deadline=deadline)
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise OriginProtocolError(f"{url} is not UTF-8 text: {exc}", url) from None

    async def _fetch_with_retries(self, state: _Attempt) -> bytes:
        while True:
            state.attempts += 1
            self.stats.requests += 1
            if state.attempts > 1:
                self.stats.retries += 1
            try:
                async with asyncio.timeout(_remaining(state.deadline)):
                    return await self._attempt(state)
            except TimeoutError as exc:
                if _past(state.deadline):
                    raise self._deadline_error(state) from exc
                failure = _Retryable(f"no data for {self.config.read_timeout} s (stalled)")
            except _Retryable as exc:
                failure = exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                failure = _Retryable(f"{type(exc).__name__}: {exc}")
            state.last_status = failure.status
            await self._backoff(state, failure)

    async def _backoff(self, state: _Attempt, failure: _Retryable) -> None:
        cfg = self.config
        if state.attempts > cfg.max_retries:
            raise OriginUnavailable(
                f"origin failed {state.attempts} times for {state.url}; last: {failure}",
                state.url,
                attempts=state.attempts,
                status=failure.status,
            )
        ceiling = min(cfg.backoff_max, cfg.backoff_initial * 2 ** (state.attempts - 1))
        # Jitter spreads the retries of many peers hit by the same origin hiccup.
        delay = ceiling * self._rng.uniform(0.5, 1.0)
        delay = max(delay, min(failure.retry_after, cfg.backoff_max))
        if state.deadline is not None and time.monotonic() + delay >= state.deadline:
            raise self._deadline_error(state)
        log.debug("retrying %s in %.3f s after: %s", state.url, delay, failure)
        await asyncio.sleep(delay)

    def _deadline_error(self, state: _Attempt) -> OriginDeadlineExceeded:
        return OriginDeadlineExceeded(
            f"deadline reached fetching {state.url} after {state.attempts} attempt(s), "
            f"{len(state.body)} bytes received",
            state.url,
            attempts=state.attempts,
            status=state.last_status,
        )

    async def _attempt(self, state: _Attempt) -> bytes:
        if state.complete:
            return bytes(state.body)
        headers = {}
        if state.position > 0 or state.end is not None:
            last = "" if state.end is None else str(state.end - 1)
            headers["Range"] = f"bytes={state.position}-{last}"
        async with self._get_session().get(state.url, headers=headers) as resp:
            skip = self._check_response(resp, state, bool(headers))
            await self._read_body(resp, state, skip)
        # aiohttp raises ClientPayloadError for a body cut short of its Content-Length, so a
        # body that ends early here means the resource is shorter than the range asked for:
        # like a slice, the fetch returns the bytes that exist.
        return bytes(state.body)

    def _check_response(self, resp: aiohttp.ClientResponse, state: _Attempt, ranged: bool) -> int:
        """Validate status and headers; returns how many leading body bytes to skip."""
        status = resp.status
        if status in RETRY_STATUSES:
            raise _Retryable(
                f"status {status}", status, _retry_after(resp.headers.get("Retry-After"))
            )
        if status == 206:
            return self._check_content_range(resp, state)
        if status != 200:
            raise OriginHTTPError(status, state.url, resp.reason or "")
        length = resp.content_length
        if length is not None and length > self.config.max_body_size + state.position:
            raise OriginProtocolError(
                f"{state.url} announces {length} bytes, more than max_body_size "
                f"{self.config.max_body_size}: refusing to read it",
                state.url,
            )
        if ranged and state.position > 0:
            log.debug("%s ignored our Range header: skipping %d bytes", state.url, state.position)
        return state.position

    def _check_content_range(self, resp: aiohttp.ClientResponse, state: _Attempt) -> int:
        header = resp.headers.get("Content-Range", "")
        match = _CONTENT_RANGE.match(header.strip())
        if match is None or int(match[1]) != state.position:
            raise OriginProtocolError(
                f"{state.url}: 206 with Content-Range {header!r}, asked for bytes from "
                f"{state.position}",
                state.url,
            )
        last = int(match[2])
        if last < state.position or (state.end is not None and last >= state.end):
            raise OriginProtocolError(
                f"{state.url}: Content-Range {header!r} outside the range asked for", state.url
            )
        if len(state.body) + last + 1 - state.position > self.config.max_body_size:
            raise OriginProtocolError(
                f"{state.url}: range {header!r} exceeds max_body_size", state.url
            )
        return 0

    async def _read_body(self, resp: aiohttp.ClientResponse, state: _Attempt, skip: int) -> None:
        limit = self.config.max_body_size
        async for chunk in resp.content.iter_chunked(self.config.chunk_size):
            self.stats.bytes_received += len(chunk)
            if skip:
                taken = min(skip, len(chunk))
                chunk, skip = chunk[taken:], skip - taken
            if state.end is not None:
                chunk = chunk[: max(0, state.end - state.position)]
            if not chunk:
                if state.complete:
                    return  # the rest of a 200 body is past the range wanted
                continue
            state.body += chunk
            if len(state.body) > limit:
                raise OriginProtocolError(
                    f"{state.url}: body grew past max_body_size {limit} bytes", state.url
                )
            if state.on_progress is not None:
                state.on_progress(len(state.body))
            if state.complete:
                return


def _retry_after(value: str | None) -> float:
    if value is None:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0  # HTTP-date form: not worth parsing for a sub-second backoff


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())
