"""Player pages on the signalling server: ``/``, ``/watch`` and the static files they load.

``add_pages(app)`` mounts, on an existing aiohttp application (normally the one from
:func:`swarmcast.signaling.server.create_app`):

* ``GET /`` — a small index: a form that opens a stream, links to ``/stats`` and ``/metrics``;
* ``GET /watch?src=URL[&signal=WS][&p2p=0][&upload=0]`` — the player page: the video, a live
  stats panel (P2P share, peers, downloaded/uploaded bytes, startup, stalls) and a chart of
  download (HTTP, P2P) and upload rates over time;
* ``GET /static/swarmcast.js`` — the IIFE bundle (``web/dist``, built by ``npm run build``);
* ``GET /static/hls.min.js`` — hls.js from ``web/node_modules`` (an npm dependency, never
  vendored);
* ``GET /static/page/<file>`` — the page's own script and stylesheet (``web/page``).

Every query parameter is user input: ``src`` must be an absolute http(s) URL, ``signal`` a
ws(s) URL, the flags ``0``/``1``; anything else gets a 400 error page that says what was wrong.
Templates are rendered by jinja2 with autoescape on, and the page configuration reaches the
script as JSON in a non-executable ``<script type="application/json">`` block, so the page
runs under a Content-Security-Policy with no inline script at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, urlsplit

import jinja2
from aiohttp import web

log = logging.getLogger(__name__)

#: ``web/`` of the source tree (the package is installed in editable mode from it).
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"

#: Longest ``src``/``signal`` URL accepted: far above any real playlist URL, and it keeps
#: pathological input out of the page.
MAX_URL_LENGTH = 2048

# The page loads scripts and styles only from this server; media comes from any http(s) origin
# (hls.js fetches it, then plays it from blob: MediaSource URLs; its transmuxer runs in a
# blob: worker), signalling is a WebSocket.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
        "connect-src 'self' http: https: ws: wss:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'self'",
        "form-action 'self'",
    )
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_FLAG_VALUES = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


class PageError(ValueError):
    """A request the page cannot serve; the message is shown to the user."""


@dataclass(frozen=True)
class WatchParams:
    """The validated query of ``/watch``."""

    src: str
    """Master (or media) playlist URL, absolute http(s)."""
    signal: str | None
    """Signalling WebSocket URL; ``None``: this server's own ``/ws`` (resolved by the page)."""
    p2p: bool
    """False: plain HTTP delivery (stats still shown)."""
    upload: bool
    """False: never upload to other viewers."""


def _check_url(value: str, name: str, schemes: tuple[str, ...]) -> str:
    value = value.strip()
    if not value:
        raise PageError(f"'{name}' is empty: give an absolute {' or '.join(schemes)} URL")
    if len(value) > MAX_URL_LENGTH:
        raise PageError(f"'{name}' is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise PageError(f"'{name}' contains control characters")
    try:
        parts: SplitResult = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise PageError(f"'{name}' is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise PageError(f"'{name}' must start with {allowed} (got {value[:80]!r})")
    if not parts.hostname:
        raise PageError(f"'{name}' has no host: give an absolute URL such as {schemes[0]}://host/")
    return value


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return _FLAG_VALUES[raw.strip().lower()]
    except KeyError:
        raise PageError(f"'{name}' must be 0 or 1 (got {raw[:20]!r})") from None


def parse_watch_query(query: dict[str, str]) -> WatchParams:
    """Validate the query of ``/watch``; raises :class:`PageError` with a user-facing message."""
    if "src" not in query:
        raise PageError("missing 'src': add ?src=<master playlist URL> (http or https)")
    src = _check_url(query["src"], "src", ("http", "https"))
    signal = query.get("signal")
    if signal is not None and signal.strip():
        signal = _check_url(signal, "signal", ("ws", "wss"))
    else:
        signal = None
    return WatchParams(
        src=src, signal=signal, p2p=_flag(query, "p2p", True), upload=_flag(query, "upload", True)
    )


class Pages:
    """The request handlers; one instance per application."""

    def __init__(self, web_dir: Path) -> None:
        self.web_dir = web_dir
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(web_dir / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.bundle = web_dir / "dist" / "swarmcast.js"
        self.hls = web_dir / "node_modules" / "hls.js" / "dist" / "hls.min.js"

    def render(self, template: str, status: int = 200, **context: object) -> web.Response:
        """A templated HTML response with the pages' security headers."""
        body = self.env.get_template(template).render(**context)
        return web.Response(
            text=body, status=status, content_type="text/html", headers=PAGE_HEADERS
        )

    async def index(self, request: web.Request) -> web.Response:
        """``GET /``."""
        return self.render("index.html", title="swarmcast")

    async def watch(self, request: web.Request) -> web.Response:
        """``GET /watch``: the player page, or a 400 page saying what is wrong with the query."""
        try:
            params = parse_watch_query(dict(request.query))
        except PageError as exc:
            log.info("bad /watch query from %s: %s", request.remote, exc)
            return self.render("error.html", status=400, title="Cannot play", message=str(exc))
        config = {
            "src": params.src,
            "signalingUrl": params.signal,
            "p2p": params.p2p,
            "upload": params.upload,
        }
        return self.render("watch.html", title="swarmcast player", params=params, config=config)

    def _file(self, path: Path, what: str, fix: str) -> web.StreamResponse:
        if not path.is_file():
            log.warning("%s missing at %s: %s", what, path, fix)
            return web.Response(
                status=503,
                text=f"{what} is not built ({path} is missing): {fix}\n",
                headers={"Cache-Control": "no-store"},
            )
        # no-cache: revalidate every time (ETag/Last-Modified), so a rebuilt bundle is seen.
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    async def bundle_js(self, request: web.Request) -> web.StreamResponse:
        """``GET /static/swarmcast.js``."""
        return self._file(self.bundle, "the swarmcast bundle", "run `make web-deps`")

    async def hls_js(self, request: web.Request) -> web.StreamResponse:
        """``GET /static/hls.min.js``."""
        return self._file(self.hls, "hls.js", "run `make web-deps` (npm ci in web/)")


#: Where the Pages instance of an app is kept (tests and other routes may use it).
PAGES: web.AppKey[Pages] = web.AppKey("pages", Pages)


def add_pages(app: web.Application, *, web_dir: Path | None = None) -> None:
    """Mount the player pages and their static files on ``app`` (see the module docstring).

    ``web_dir`` is the ``web/`` folder holding ``templates/``, ``page/``, ``dist/`` and
    ``node_modules/``; default: the one of this source tree.
    """
    web_dir = (web_dir or DEFAULT_WEB_DIR).resolve()
    if not (web_dir / "templates").is_dir():
        raise FileNotFoundError(f"no templates in {web_dir}: pass web_dir=<the web/ folder>")
    pages = Pages(web_dir)
    app[PAGES] = pages
    app.router.add_get("/", pages.index)
    app.router.add_get("/watch", pages.watch)
    app.router.add_get("/static/swarmcast.js", pages.bundle_js)
    app.router.add_get("/static/hls.min.js", pages.hls_js)
    # add_static refuses paths that leave the folder (.., symlinks out) and lists nothing.
    app.router.add_static("/static/page", web_dir / "page", show_index=False, follow_symlinks=False)
