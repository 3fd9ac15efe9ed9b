"""The development origin over real HTTP on loopback: VOD, simulated live, Range, CORS, faults."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import m3u8
import pytest
from aiohttp.test_utils import TestClient, TestServer

from swarmcast.samples.faults import FaultConfig
from swarmcast.samples.origin import OriginConfig, OriginError, create_app


class FakeClock:
    """Wall clock the test moves by hand."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_client(tiny_sample: Path, clock: FakeClock):
    clients: list[TestClient] = []

    async def make(root: Path = tiny_sample, **overrides) -> TestClient:
        config = OriginConfig(root=root, port=0, live_window=3, **overrides)
        client = TestClient(TestServer(create_app(config, clock=clock)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def client(make_client) -> TestClient:
    return await make_client()


async def test_vod_master_and_media_playlists(client: TestClient, tiny_sample: Path):
    resp = await client.get("/vod/master.m3u8")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    master = m3u8.loads(await resp.text())
    assert master.is_variant
    for variant in master.playlists:
        resp = await client.get(f"/vod/{variant.uri}")
        assert resp.status == 200
        media = m3u8.loads(await resp.text())
        assert media.is_endlist and media.segments


async def test_vod_segment_bytes_match_the_file(client: TestClient, tiny_sample: Path):
    seg = tiny_sample / "90p" / "seg-00001.ts"
    resp = await client.get("/vod/90p/seg-00001.ts")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "video/mp2t"
    assert "immutable" in resp.headers["Cache-Control"]
    assert await resp.read() == seg.read_bytes()
    etag = resp.headers["ETag"]
    resp = await client.get("/vod/90p/seg-00001.ts", headers={"If-None-Match": etag})
    assert resp.status == 304


async def test_range_requests(client: TestClient, tiny_sample: Path):
    data = (tiny_sample / "90p" / "seg-00000.ts").read_bytes()
    resp = await client.get("/vod/90p/seg-00000.ts", headers={"Range": "bytes=100-299"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
    assert await resp.read() == data[100:300]
    resp = await client.get("/vod/90p/seg-00000.ts", headers={"Range": "bytes=-188"})
    assert resp.status == 206 and await resp.read() == data[-188:]
    resp = await client.get("/vod/90p/seg-00000.ts", headers={"Range": f"bytes={len(data)}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(data)}"
    resp = await client.head("/vod/90p/seg-00000.ts")
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(data)


async def test_cors_headers_and_preflight(client: TestClient):
    resp = await client.get("/vod/master.m3u8", headers={"Origin": "http://example.test"})
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Range" in resp.headers["Access-Control-Expose-Headers"]
    resp = await client.options(
        "/vod/90p/seg-00000.ts",
        headers={"Origin": "http://example.test", "Access-Control-Request-Headers": "range"},
    )
    assert resp.status == 204
    assert "Range" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.get("/vod/nope.ts")
    assert resp.status == 404
    assert resp.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    "path",
    [
        "/vod/../pyproject.toml",
        "/vod/%2e%2e/%2e%2e/etc/passwd",
        "/vod/90p/..%2f..%2fetc%2fpasswd",
        "/vod/90p/%00.ts",
        "/live/..%2fsecret",
    ],
)
async def test_path_traversal_is_refused(client: TestClient, path: str):
    resp = await client.get(path)
    assert resp.status in (403, 404)
    body = await resp.read()
    assert b"root:" not in body


async def test_missing_files_are_404(client: TestClient):
    for path in ("/vod/missing.m3u8", "/vod/90p/seg-99999.ts", "/live/90p/index.99999.ts", "/x"):
        resp = await client.get(path)
        assert resp.status == 404, path


async def test_live_window_advances_with_the_clock(client: TestClient, clock: FakeClock):
    resp = await client.get("/live/90p/index.m3u8")
    assert resp.headers["Cache-Control"] == "public, max-age=1"
    first = m3u8.loads(await resp.text())
    assert not first.is_endlist
    assert first.media_sequence == 0 and len(first.segments) == 3
    clock.now += 2 * 4 + 0.1
    later = m3u8.loads(await (await client.get("/live/90p/index.m3u8")).text())
    assert later.media_sequence == 4
    assert [s.uri for s in later.segments] == ["index.4.ts", "index.5.ts", "index.6.ts"]
    # The tiny sample has 6 segments: msn 6 wraps to VOD segment 0 with a discontinuity.
    assert [s.discontinuity for s in later.segments] == [False, False, True]
    assert later.program_date_time is not None


async def test_live_segments_and_manifest_match(
    client: TestClient, clock: FakeClock, tiny_sample: Path
):
    clock.now += 2 * 5
    manifest = json.loads(await (await client.get("/live/180p/index.integrity.json")).text())
    assert manifest["live"] is True and manifest["media_sequence"] == 5
    for entry in manifest["segments"]:
        resp = await client.get(f"/live/180p/{entry['uri']}")
        assert resp.status == 200
        data = await resp.read()
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    # msn 7 plays VOD segment 1 of the second loop.
    vod = (tiny_sample / "180p" / "seg-00001.ts").read_bytes()
    assert await (await client.get("/live/180p/index.7.ts")).read() == vod
    # Future segments do not exist yet.
    resp = await client.get("/live/180p/index.8.ts")
    assert resp.status == 404
    # The live master playlist is the VOD one: relative URIs resolve under /live.
    resp = await client.get("/live/master.m3u8")
    assert resp.status == 200 and "90p/index.m3u8" in await resp.text()


async def test_renditions_share_one_live_clock(client: TestClient, clock: FakeClock):
    clock.now += 2 * 9 + 0.5
    a = m3u8.loads(await (await client.get("/live/90p/index.m3u8")).text())
    b = m3u8.loads(await (await client.get("/live/180p/index.m3u8")).text())
    assert a.media_sequence == b.media_sequence == 9


async def test_fmp4_live_has_map_and_serves_init(make_client, tiny_sample_fmp4: Path):
    client = await make_client(tiny_sample_fmp4)
    text = await (await client.get("/live/90p/index.m3u8")).text()
    pl = m3u8.loads(text)
    assert pl.segments[0].init_section.uri == "init.mp4"
    resp = await client.get("/live/90p/init.mp4")
    assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"
    resp = await client.get(f"/live/90p/{pl.segments[0].uri}")
    assert resp.status == 200 and resp.headers["Content-Type"] == "video/iso.segment"


async def test_counters_json_and_prometheus(client: TestClient, tiny_sample: Path):
    size = (tiny_sample / "90p" / "seg-00000.ts").stat().st_size
    for _ in range(3):
        assert (await client.get("/vod/90p/seg-00000.ts")).status == 200
    await client.get("/vod/90p/seg-00000.ts", headers={"Range": "bytes=0-99"})
    stats = await (await client.get("/_origin/stats")).json()
    path = stats["paths"]["/vod/90p/seg-00000.ts"]
    assert path == {"requests": 4, "bytes": 3 * size + 100}
    assert stats["bytes"] == 3 * size + 100
    assert stats["kinds"]["vod:segment"]["requests"] == 4
    metrics = await (await client.get("/metrics")).text()
    assert 'swarmcast_origin_bytes_total{kind="segment",mode="vod"}' in metrics
    # Reset from loopback zeroes the JSON view.
    assert (await client.delete("/_origin/stats")).status == 200
    stats = await (await client.get("/_origin/stats")).json()
    assert stats["requests"] == 0 and stats["bytes"] == 0


async def test_fault_down_and_failure_rate(client: TestClient):
    resp = await client.post("/_origin/faults", json={"down": True})
    assert resp.status == 200 and (await resp.json())["down"] is True
    assert (await client.get("/vod/master.m3u8")).status == 503
    assert (await client.get("/healthz")).status == 200  # admin routes keep working
    await client.post("/_origin/faults", json={"down": False, "failure_rate": 1.0})
    assert (await client.get("/vod/master.m3u8")).status == 503
    await client.post("/_origin/faults", json={"failure_rate": 0.0})
    assert (await client.get("/vod/master.m3u8")).status == 200
    stats = await (await client.get("/_origin/stats")).json()
    assert stats["kinds"]["vod:playlist"]["requests"] == 3


async def test_fault_settings_are_validated(client: TestClient):
    for body in ({"failure_rate": 2}, {"nope": 1}, [1, 2]):
        resp = await client.post("/_origin/faults", json=body)
        assert resp.status == 400
        assert "bad fault settings" in await resp.text()
    resp = await client.post("/_origin/faults", data=b"{not json")
    assert resp.status == 400


async def test_fault_admin_is_loopback_only(make_client):
    client = await make_client(admin_networks=("10.99.0.0/16",))
    assert (await client.post("/_origin/faults", json={"down": True})).status == 403
    assert (await client.delete("/_origin/stats")).status == 403
    assert (await client.get("/vod/master.m3u8")).status == 200


async def test_latency_and_bandwidth_cap(make_client, tiny_sample: Path):
    client = await make_client(faults=FaultConfig(latency_ms=150, bandwidth=200_000))
    data = (tiny_sample / "180p" / "seg-00000.ts").read_bytes()
    t0 = time.monotonic()
    resp = await client.get("/vod/180p/seg-00000.ts")
    assert await resp.read() == data
    elapsed = time.monotonic() - t0
    # Latency plus size/rate, less one pacing slice that may go out at once.
    assert elapsed >= 0.15 + (len(data) - 16384) / 200_000 - 0.02


async def test_total_bandwidth_is_shared(make_client, tiny_sample: Path):
    import asyncio

    client = await make_client(faults=FaultConfig(total_bandwidth=300_000))
    data = (tiny_sample / "180p" / "seg-00000.ts").read_bytes()
    t0 = time.monotonic()
    responses = await asyncio.gather(*[client.get("/vod/180p/seg-00000.ts") for _ in range(3)])
    payloads = await asyncio.gather(*[r.read() for r in responses])
    elapsed = time.monotonic() - t0
    assert all(p == data for p in payloads)
    burst = max(16384, 300_000 * 0.05)
    assert elapsed >= (3 * len(data) - burst) / 300_000 - 0.05


def test_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(OriginError, match="swarmcast sample"):
        create_app(OriginConfig(root=tmp_path / "nope"))


async def test_client_leaving_a_paced_response_counts_what_went_out(make_client, tiny_sample: Path):
    import asyncio

    client = await make_client(faults=FaultConfig(bandwidth=50_000))
    size = (tiny_sample / "180p" / "seg-00000.ts").stat().st_size
    resp = await client.get("/vod/180p/seg-00000.ts")
    await resp.content.readexactly(16384)
    resp.close()  # the viewer gives up mid-body
    await asyncio.sleep(0.8)
    stats = await (await client.get("/_origin/stats")).json()
    sent = stats["paths"]["/vod/180p/seg-00000.ts"]["bytes"]
    assert 16384 <= sent < size
    assert (await client.get("/vod/master.m3u8")).status == 200
