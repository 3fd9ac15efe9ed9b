"""ABR in the Python viewer: the download meter, the switch plumbing, and real switches.

The unit tests need no network. The end-to-end tests run real aiortc links in the test
namespace (``tests/netns-run .venv/bin/pytest tests/test_peer_abr.py``) on the tiny 90p/180p
sample (BANDWIDTH 298544 / 445184 bit/s; segments ~70 KB / ~110 KB per 2 s).
"""

from __future__ import annotations

import pytest
from peer_helpers import lab, play

from swarmcast.peer.agent import AgentConfig, DownloadMeter
from swarmcast.peer.player import PlayerConfig
from swarmcast.peer.protocol import Role
from swarmcast.peer.viewer import ViewerConfig, summary

# ----------------------------------------------------------------------------- DownloadMeter


def test_meter_has_no_estimate_before_a_sample() -> None:
    meter = DownloadMeter()
    assert meter.bits_per_second is None
    meter.begin(0.0)
    meter.end(1.0, 0)  # failed transfer: busy time, no bytes, no sample
    assert meter.bits_per_second is None


def test_meter_first_sample_counts_in_full() -> None:
    meter = DownloadMeter()
    meter.begin(10.0)
    meter.end(12.0, 100_000)
    assert meter.bits_per_second == pytest.approx(400_000)


def test_parallel_transfers_add_up() -> None:
    # Two 1 s transfers side by side: 2 x 50 kB in 1 s of busy time is 800 kbit/s, not 400.
    meter = DownloadMeter()
    meter.begin(0.0)
    meter.begin(0.0)
    meter.end(1.0, 50_000)
    meter.end(1.0, 50_000)
    assert meter.bits_per_second == pytest.approx(800_000, rel=0.05)


def test_idle_time_is_not_slowness() -> None:
    meter = DownloadMeter()
    meter.begin(0.0)
    meter.end(1.0, 100_000)
    meter.begin(50.0)  # 49 s idle (full buffer) in between
    meter.end(51.0, 100_000)
    assert meter.bits_per_second == pytest.approx(800_000)


def test_failed_transfer_time_lowers_the_next_sample() -> None:
    meter = DownloadMeter()
    meter.begin(0.0)
    meter.end(2.0, 0)  # 2 s wasted
    meter.begin(2.0)
    meter.end(3.0, 100_000)  # 100 kB, but 3 s of busy time
    assert meter.bits_per_second == pytest.approx(800_000 / 3, rel=0.01)


def test_estimate_goes_down_fast_and_up_slowly() -> None:
    meter = DownloadMeter()
    t = 0.0
    for _ in range(5):
        meter.begin(t)
        t += 1.0
        meter.end(t, 125_000)  # 1 Mbit/s
    meter.begin(t)
    t += 2.0
    meter.end(t, 25_000)  # one 100 kbit/s sample of 2 s
    low = meter.bits_per_second
    assert low is not None and low < 700_000
    meter.begin(t)
    t += 0.5
    meter.end(t, 625_000)  # one 10 Mbit/s sample of 0.5 s
    high = meter.bits_per_second
    assert high is not None and high < 2_000_000  # the slow average holds it back


def test_meter_refuses_an_end_without_begin() -> None:
    with pytest.raises(RuntimeError):
        DownloadMeter().end(1.0, 10)
    with pytest.raises(ValueError):
        DownloadMeter(fast=0)


# ----------------------------------------------------------------------------- config


def test_viewer_abr_flag_reaches_the_player() -> None:
    cfg = ViewerConfig(url="http://127.0.0.1:1/live/master.m3u8", abr=True).agent_config()
    assert cfg.player.abr is True
    assert ViewerConfig(url="http://127.0.0.1:1/m.m3u8").agent_config().player.abr is False


@pytest.mark.parametrize("field", ["abr_leave_after", "init_peer_wait", "init_peer_timeout"])
def test_agent_config_rejects_bad_abr_and_init_times(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AgentConfig(url="http://127.0.0.1:1/m.m3u8", **{field: -1.0})
    with pytest.raises(ValueError, match=field):
        AgentConfig(url="http://127.0.0.1:1/m.m3u8", **{field: float("nan")})


def test_view_cli_parses_abr() -> None:
    import argparse

    from swarmcast.peer import viewer

    parser = argparse.ArgumentParser()
    viewer.add_arguments(parser)
    args = parser.parse_args(["http://127.0.0.1:1/m.m3u8", "--abr", "--rendition", "180p"])
    assert args.abr and args.rendition == "180p"


# ----------------------------------------------------------------------------- end to end

#: Total origin egress: 50 kB/s = 400 kbit/s, below 180p's ~440 kbit/s of media and, with
#: the 0.7 safety factor, below both BANDWIDTH values (the lowest is then chosen).
CAPPED = 50_000


def _abr(**player: object) -> PlayerConfig:
    return PlayerConfig(abr=True, **player)  # type: ignore[arg-type]


def _switches(agent: object) -> list[dict[str, object]]:
    return [d for _, kind, d in agent.events if kind == "rendition"]  # type: ignore[attr-defined]


@pytest.mark.netns
async def test_capped_origin_switches_down_without_stalling(tiny_sample, test_host) -> None:
    async with lab(tiny_sample, test_host) as the_lab:
        await the_lab.origin_faults(total_bandwidth=CAPPED)
        viewer = await the_lab.agent(renditions=("180p/index.m3u8",), player=_abr())
        await play(14.0)
        qoe = viewer.report()
        playing = viewer.playing.rendition.rendition_id
        meter = viewer.meter.bits_per_second
    switches = _switches(viewer)
    print(qoe.to_json(), switches, meter)
    assert switches and switches[0]["from"] == "180p/index.m3u8"
    assert switches[0]["to"] == "90p/index.m3u8"
    assert playing == "90p/index.m3u8"
    assert qoe.switches == len(switches)
    assert meter is not None and meter < 445_184 / 0.7
    assert qoe.startup_time is not None
    assert qoe.stalls == 0, viewer.events
    # Startup is slow here by design (the first 180p segments crawl through the cap).
    assert qoe.played_time > 5.0


@pytest.mark.netns
async def test_uncapped_viewer_switches_up_and_p2p_follows(tiny_sample, test_host) -> None:
    async with lab(tiny_sample, test_host) as the_lab:
        seed = await the_lab.agent(Role.SEED, renditions=())  # seeds every variant
        viewer = await the_lab.agent(renditions=(), player=_abr())
        await play(14.0)
        qoe = viewer.report()
        states = {st.rendition.rendition_id: st for st in viewer.states.values()}
        playing = viewer.playing.rendition.rendition_id
    switches = _switches(viewer)
    print(qoe.to_json(), switches, {k: st.counters for k, st in states.items()})
    # Started on the lowest variant (no --rendition), climbed to 180p.
    assert switches and switches[0]["from"] == "90p/index.m3u8"
    assert switches[0]["to"] == "180p/index.m3u8"
    assert playing == "180p/index.m3u8"
    assert qoe.stalls == 0, viewer.events
    assert qoe.played_time > 8.0
    # P2P carries on in the new rendition's swarm: most of its bytes came from the seed.
    high = states["180p/index.m3u8"].counters
    assert high["p2p_bytes"] > high["http_bytes"], high
    assert seed.qoe.uploaded_bytes > 0


@pytest.mark.netns
async def test_switched_away_rendition_is_left_after_the_grace_period(
    tiny_sample, test_host
) -> None:
    async with lab(tiny_sample, test_host) as the_lab:
        await the_lab.agent(Role.SEED, renditions=())
        viewer = await the_lab.agent(renditions=(), player=_abr(), abr_leave_after=2.0)
        await play(9.0)
        ids = {st.rendition.rendition_id for st in viewer.states.values()}
        memberships = set(viewer.swarm.signaling.swarms)
        qoe = viewer.report()
    assert _switches(viewer), viewer.events
    assert ids == {"180p/index.m3u8"}
    assert len(memberships) == 1
    assert qoe.stalls == 0


def test_summary_mentions_switches() -> None:
    from swarmcast.peer.qoe import QoE

    assert "switches     2" in summary(QoE(switches=2))
