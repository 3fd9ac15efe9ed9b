"""The player pages over HTTP (no browser): routes, validation of user input, escaping, headers,
static files and what happens when the web build is missing."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmcast.signaling.config import SignalingConfig
from swarmcast.signaling.pages import (
    DEFAULT_WEB_DIR,
    MAX_URL_LENGTH,
    PageError,
    add_pages,
    parse_watch_query,
)
from swarmcast.signaling.server import create_app


async def _client(web_dir: Path | None = None) -> TestClient:
    app = create_app(SignalingConfig())
    add_pages(app, web_dir=web_dir)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    c = await _client()
    try:
        yield c
    finally:
        await c.close()


def _config(html: str) -> dict:
    """The JSON the page hands its script."""
    match = re.search(
        r'<script type="application/json" id="watch-config">(.*?)</script>', html, re.S
    )
    assert match, "no config block"
    return json.loads(match.group(1))


# ---------------------------------------------------------------- query validation (pure)


def test_parse_watch_query_defaults():
    params = parse_watch_query({"src": "https://cdn.example.test/live/master.m3u8"})
    assert params.src == "https://cdn.example.test/live/master.m3u8"
    assert params.signal is None and params.p2p and params.upload


def test_parse_watch_query_flags_and_signal():
    params = parse_watch_query(
        {"src": "http://h/x.m3u8", "signal": "wss://sig.test/ws", "p2p": "0", "upload": "false"}
    )
    assert params.signal == "wss://sig.test/ws" and not params.p2p and not params.upload
    assert parse_watch_query({"src": "http://h/x.m3u8", "p2p": "1", "signal": ""}).p2p
    assert parse_watch_query({"src": "http://h/x.m3u8", "signal": ""}).signal is None


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({}, "missing 'src'"),
        ({"src": ""}, "empty"),
        ({"src": "javascript:alert(1)"}, "must start with http:// or https://"),
        ({"src": "data:text/html,hi"}, "must start with"),
        ({"src": "ftp://h/x.m3u8"}, "must start with"),
        ({"src": "/live/master.m3u8"}, "must start with"),
        ({"src": "http:///nohost.m3u8"}, "no host"),
        ({"src": "http://h:99999/x.m3u8"}, "not a valid URL"),
        ({"src": "http://h/x\n.m3u8"}, "control characters"),
        ({"src": "http://h/" + "a" * MAX_URL_LENGTH}, "longer than"),
        ({"src": "http://h/x.m3u8", "signal": "http://sig/ws"}, "'signal' must start with ws://"),
        ({"src": "http://h/x.m3u8", "p2p": "maybe"}, "'p2p' must be 0 or 1"),
        ({"src": "http://h/x.m3u8", "upload": "2"}, "'upload' must be 0 or 1"),
    ],
)
def test_parse_watch_query_rejects(query, needle):
    with pytest.raises(PageError, match=re.escape(needle)):
        parse_watch_query(query)


# ---------------------------------------------------------------- pages over HTTP


async def test_index_page(client: TestClient):
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert '<form action="/watch"' in html and 'name="src"' in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_watch_page_carries_config(client: TestClient):
    src = "http://127.0.0.1:8080/live/master.m3u8"
    resp = await client.get("/watch", params={"src": src, "upload": "0"})
    assert resp.status == 200
    html = await resp.text()
    assert _config(html) == {"src": src, "signalingUrl": None, "p2p": True, "upload": False}
    for asset in ("/static/hls.min.js", "/static/swarmcast.js", "/static/page/watch.js"):
        assert f'<script src="{asset}"></script>' in html
    assert '<video id="video"' in html and '<canvas id="chart"' in html
    # No inline executable script: the CSP forbids it, so the page must not need it.
    inline = re.findall(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", html)
    assert inline == []


async def test_watch_page_escapes_hostile_src(client: TestClient):
    src = 'http://h.test/x.m3u8?a=</script><script>alert(1)</script>&b="<img onerror=x>'
    signal = "ws://sig.test/ws?'\"><b>"
    resp = await client.get("/watch", params={"src": src, "signal": signal})
    assert resp.status == 200
    html = await resp.text()
    assert "<script>alert(1)" not in html and "<img onerror" not in html and "<b>" not in html
    config = _config(html)
    assert config["src"] == src and config["signalingUrl"] == signal  # exact round trip
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in html  # shown, escaped, in the panel


@pytest.mark.parametrize(
    "query",
    ["", "?src=javascript%3Aalert(1)", "?src=%2Flive%2Fmaster.m3u8", "?src=http://h/x&p2p=yes"],
)
async def test_watch_page_bad_query_is_a_400_page(client: TestClient, query: str):
    resp = await client.get("/watch" + query)
    assert resp.status == 400 and resp.content_type == "text/html"
    html = await resp.text()
    assert 'class="error-message"' in html and "<video" not in html


async def test_error_page_escapes_what_it_echoes(client: TestClient):
    resp = await client.get("/watch", params={"src": "<script>alert(1)</script>"})
    assert resp.status == 400
    html = await resp.text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


async def test_static_files(client: TestClient):
    for path in ("/static/hls.min.js", "/static/swarmcast.js", "/static/page/watch.js"):
        if path == "/static/swarmcast.js" and not (DEFAULT_WEB_DIR / "dist/swarmcast.js").exists():
            continue  # exercised by test_missing_build_is_a_clear_503
        resp = await client.get(path)
        assert resp.status == 200, path
        assert "javascript" in resp.content_type, (path, resp.content_type)
        assert len(await resp.read()) > 100
    css = await client.get("/static/page/pages.css")
    assert css.status == 200 and css.content_type == "text/css"


async def test_static_hls_is_the_npm_package(client: TestClient):
    body = await (await client.get("/static/hls.min.js")).read()
    on_disk = DEFAULT_WEB_DIR / "node_modules/hls.js/dist/hls.min.js"
    assert body == on_disk.read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static/page/../templates/watch.html",
        "/static/page/%2e%2e/%2e%2e/pyproject.toml",
        "/static/page/",
        "/static/page/nope.js",
    ],
)
async def test_static_page_dir_does_not_leak(client: TestClient, path: str):
    resp = await client.get(path)
    assert resp.status in (403, 404), (path, resp.status)


async def test_signalling_routes_still_served(client: TestClient):
    resp = await client.get("/healthz")
    assert resp.status == 200 and (await resp.json())["ok"] is True


async def test_missing_build_is_a_clear_503(tmp_path: Path):
    web_dir = tmp_path / "web"
    shutil.copytree(DEFAULT_WEB_DIR / "templates", web_dir / "templates")
    shutil.copytree(DEFAULT_WEB_DIR / "page", web_dir / "page")
    client = await _client(web_dir)
    try:
        for path in ("/static/swarmcast.js", "/static/hls.min.js"):
            resp = await client.get(path)
            assert resp.status == 503
            assert "make web-deps" in await resp.text()
        assert (await client.get("/watch", params={"src": "http://h/x.m3u8"})).status == 200
    finally:
        await client.close()


def test_add_pages_needs_templates(tmp_path: Path):
    app = create_app(SignalingConfig())
    with pytest.raises(FileNotFoundError, match="no templates"):
        add_pages(app, web_dir=tmp_path)


def test_add_pages_keeps_signalling_routes():
    app = create_app(SignalingConfig())
    before = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    add_pages(app)
    after = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert before < after
    assert {"/", "/watch", "/static/swarmcast.js", "/static/hls.min.js"} <= after
