"""The sans-IO core: membership, introductions, relay, limits and cleanup, on a fake clock."""

from __future__ import annotations

import random

import pytest
from signaling_helpers import HubDriver

from swarmcast.signaling import messages as m
from swarmcast.signaling.tokens import mint

SECRET = "0123456789abcdef-secret"
OFFER = {"sdp": {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"}}


def test_hello_assigns_unique_ids_and_echoes_request_id() -> None:
    d = HubDriver()
    a = d.hub.connect(d.now, "127.0.0.1")
    b = d.hub.connect(d.now, "127.0.0.1")
    assert a != b and m.PEER_ID_RE.fullmatch(a)
    d.inbox[a] = []
    d.send(a, {"type": "hello", "id": "h1", "network": "isp-1"})
    welcome = d.pop(a)
    assert welcome["type"] == "welcome" and welcome["peer"] == a and welcome["id"] == "h1"
    assert welcome["limits"]["sample_size"] == 20 and welcome["ice_servers"] == []


def test_everything_but_hello_is_refused_before_hello() -> None:
    d = HubDriver()
    p = d.connect(hello=False)
    d.send(p, {"type": "join", "swarm": "s1", "id": 7})
    err = d.pop(p)
    assert (err["type"], err["code"], err["ref"]) == ("error", "hello-first", 7)
    d.send(p, {"type": "hello"})
    d.send(p, {"type": "hello"})
    assert [x.get("code") for x in d.drain(p)] == [None, "already-hello"]


def test_join_answers_a_bounded_sample_without_the_newcomer() -> None:
    d = HubDriver()
    peers = [d.connect() for _ in range(30)]
    for p in peers:
        d.join(p)
    newcomer = d.connect()
    joined = d.join(newcomer, id=3)
    ids = [x["peer"] for x in joined["peers"]]
    assert joined["id"] == 3 and len(ids) == 20 == len(set(ids))
    assert newcomer not in ids and set(ids) <= set(peers)


def test_small_swarms_hear_about_joins_and_leaves_large_ones_do_not() -> None:
    d = HubDriver(sample_size=3)
    a, b = d.connect(), d.connect()
    d.join(a)
    d.join(b)
    assert d.drain(a) == [{"type": "peer-joined", "swarm": "s1", "peer": b, "role": "viewer"}]
    d.disconnect(b)
    assert d.drain(a) == [{"type": "peer-left", "swarm": "s1", "peer": b}]
    others = [d.connect() for _ in range(3)]
    for p in others:
        d.join(p)
    for p in [a, *others]:
        d.drain(p)
    late = d.connect()
    d.join(late)  # swarm already holds 4 > sample_size members: nobody is told
    assert all(d.drain(p) == [] for p in [a, *others])


def test_seeds_with_spare_capacity_come_first_and_spend_their_slots() -> None:
    d = HubDriver()
    d.hub.rng = random.Random(5)
    for _ in range(200):
        d.join(d.connect())
    seed = d.connect()
    d.join(seed, role="seed", capacity=2)
    firsts = [d.join(d.connect())["peers"][0]["peer"] for _ in range(3)]
    assert firsts[:2] == [seed, seed]
    assert firsts[2] != seed  # its two advertised slots were handed out
    d.send(seed, {"type": "stats", "swarm": "s1", "spare": 1})
    assert d.join(d.connect())["peers"][0] == {"peer": seed, "role": "seed"}


def test_samples_prefer_the_same_network_hint_then_address_prefix() -> None:
    d = HubDriver()
    d.hub.rng = random.Random(1)
    near = set()
    for i in range(100):
        near.add(d.connect(f"10.1.{i}.1", network="isp-a"))
        d.join(d.connect(f"10.2.{i}.1", network="isp-b"))
    for p in near:
        d.join(p)
    joiner = d.connect("10.9.9.9", network="isp-a")
    got = {x["peer"] for x in d.join(joiner)["peers"]}
    assert len(got & near) >= 10  # half the sample is reserved for the same locality
    subnet = {d.connect("192.0.2.7") for _ in range(3)}
    for p in subnet:
        d.join(p)
    got = {x["peer"] for x in d.join(d.connect("192.0.2.99"))["peers"]}
    assert subnet <= got  # same /24, no hint


def test_signal_is_relayed_with_the_server_made_sender_id() -> None:
    d = HubDriver()
    a, b = d.connect(), d.connect()
    d.join(a)
    d.join(b)
    d.drain(a)
    d.send(a, {"type": "signal", "to": b, "swarm": "s1", "from": "spoofed", "data": OFFER})
    assert d.pop(b) == {"type": "signal", "from": a, "swarm": "s1", "data": OFFER}
    cand = {
        "candidate": {
            "candidate": "candidate:1 1 udp 1 198.18.0.1 5000 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
    }
    # trickle, end-of-candidates, then "busy" (an offer refused for want of room)
    for data in (cand, {"candidate": None}, {"busy": "full"}):
        d.send(b, {"type": "signal", "to": a, "swarm": "s1", "data": data})
        assert d.pop(a)["data"] == data


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"to": "nobody-here-123"}, "unknown-peer"),
        ({"swarm": "other"}, "not-joined"),
        ({"swarm": 5}, "bad-swarm"),
        ({"data": {"sdp": {"type": "pranswer", "sdp": ""}}}, "bad-signal"),
        ({"data": {"sdp": {"type": "offer", "sdp": "x"}, "candidate": None}}, "bad-signal"),
        ({"data": {"candidate": {"candidate": "c", "evil": 1}}}, "bad-signal"),
        ({"data": {"candidate": {"candidate": "c", "sdpMLineIndex": True}}}, "bad-signal"),
        ({"data": {"sdp": {"type": "offer", "sdp": "x" * (m.MAX_SDP_LEN + 1)}}}, "too-big"),
        ({"data": "sdp"}, "bad-signal"),
        ({"data": {"busy": "because"}}, "bad-signal"),
        ({"data": {"busy": None}}, "bad-signal"),
    ],
)
def test_bad_signals_get_a_clear_error_and_relay_nothing(change: dict, code: str) -> None:
    d = HubDriver(max_message_bytes=200_000)
    a, b = d.connect(), d.connect()
    d.join(a)
    d.join(b)
    d.drain(a)
    d.send(a, {"type": "signal", "to": b, "swarm": "s1", "data": OFFER, "id": "r1", **change})
    err = d.pop(a)
    assert (err["type"], err["code"], err["ref"]) == ("error", code, "r1")
    assert d.drain(b) == []


def test_signal_to_self_or_departed_or_foreign_swarm_peer_is_refused() -> None:
    d = HubDriver()
    a, b, c = d.connect(), d.connect(), d.connect()
    d.join(a)
    d.join(b)
    d.join(c, "s2")
    d.drain(a)
    for target in (a, c):
        d.send(a, {"type": "signal", "to": target, "swarm": "s1", "data": OFFER})
        assert d.pop(a)["code"] == "unknown-peer"
    d.send(b, {"type": "leave", "swarm": "s1", "id": 1})
    assert d.pop(b) == {"type": "left", "swarm": "s1", "id": 1}
    d.send(a, {"type": "signal", "to": b, "swarm": "s1", "data": OFFER})
    assert d.drain(a)[-1]["code"] == "unknown-peer"


def test_churn_leaves_no_state_behind() -> None:
    d = HubDriver(max_swarms_per_peer=3)
    rng = random.Random(7)
    live: list[str] = []
    for i in range(3000):
        if live and rng.random() < 0.45:
            d.disconnect(live.pop(rng.randrange(len(live))))
            continue
        p = d.connect(f"10.{i % 7}.{i % 11}.1", network=rng.choice(["a", "b", None]))
        for s in rng.sample(["s1", "s2", "s3", "s4"], rng.randint(1, 3)):
            d.join(p, s, role=rng.choice(["viewer", "seed"]), capacity=3)
        live.append(p)
    for p in live:
        d.disconnect(p)
    assert d.hub.connections == {} and d.hub.swarms == {}


def test_heartbeat_and_hello_timeouts_close_and_clean_up() -> None:
    d = HubDriver(heartbeat_interval=10, heartbeat_timeout=30, hello_timeout=5)
    silent, talker = d.connect(), d.connect()
    mute = d.connect(hello=False)
    d.join(silent)
    d.join(talker)
    d.tick(6)
    assert d.closed == {mute: (m.CLOSE_TIMEOUT, "no hello in time")}
    for _ in range(4):
        d.tick(10)
        d.send(talker, {"type": "ping", "id": 1})
    assert d.closed[silent] == (m.CLOSE_TIMEOUT, "heartbeat timeout")
    assert talker not in d.closed and d.drain(talker)[-1] == {"type": "pong", "id": 1}
    assert set(d.hub.swarms["s1"].members) == {talker}


def test_rate_limit_drops_excess_then_refills() -> None:
    d = HubDriver(rate_per_second=10, rate_burst=5, max_errors=100)
    p = d.connect()  # hello used one token
    for _ in range(6):
        d.send(p, {"type": "ping"})
    assert [x["type"] for x in d.drain(p)] == ["pong"] * 4 + ["error"] * 2
    d.now += 0.5  # five tokens back
    d.send(p, {"type": "ping"})
    assert d.pop(p)["type"] == "pong"


def test_repeated_garbage_closes_the_connection_and_frees_its_memberships() -> None:
    d = HubDriver(max_errors=3)
    p = d.connect()
    d.join(p)
    for frame in ("{", "[]", '{"type":"nope"}'):
        d.send(p, frame)
    assert [x["code"] for x in d.drain(p)] == ["bad-json", "bad-json"]
    assert d.closed[p] == (m.CLOSE_TOO_MANY_ERRORS, "too many errors (last: unknown-type)")
    assert d.hub.connections == {} and d.hub.swarms == {}


def test_membership_limits() -> None:
    d = HubDriver(max_swarms_per_peer=2, max_peers_per_swarm=2)
    a = d.connect()
    assert d.join(a, "s1")["type"] == "joined"
    d.send(a, {"type": "join", "swarm": "s1"})
    assert d.pop(a)["code"] == "already-joined"
    d.join(a, "s2")
    d.send(a, {"type": "join", "swarm": "s3"})
    assert d.pop(a)["code"] == "too-many-swarms"
    d.join(d.connect(), "s1")
    c = d.connect()
    d.send(c, {"type": "join", "swarm": "s1"})
    assert d.pop(c)["code"] == "swarm-full"
    d.send(c, {"type": "join", "swarm": "bad swarm!"})
    assert d.pop(c)["code"] == "bad-swarm"


def test_join_tokens_scope_role_and_expiry() -> None:
    d = HubDriver(auth_secret=SECRET)
    p = d.connect()

    def code(**fields: object) -> str | None:
        d.send(p, {"type": "join", **fields})
        reply = d.pop(p)
        if reply["type"] == "joined":
            d.send(p, {"type": "leave", "swarm": fields["swarm"]})
            d.drain(p)
        return reply.get("code")

    assert code(swarm="s1") == "unauthorized"
    assert code(swarm="s1", token=mint(SECRET, ["s1"], 60, now=d.now)) is None
    assert code(swarm="s2", token=mint(SECRET, ["s1"], 60, now=d.now)) == "unauthorized"
    assert code(swarm="s2", token=mint(SECRET, ["*"], 60, now=d.now)) is None
    assert code(swarm="s1", token=mint(SECRET, ["s1"], 60, now=d.now - 61)) == "unauthorized"
    assert code(swarm="s1", token=mint("another-secret-xyz", ["s1"], 60, now=d.now)) == (
        "unauthorized"
    )
    viewer_token = mint(SECRET, ["s1"], 60, now=d.now)
    assert code(swarm="s1", role="seed", token=viewer_token) == "unauthorized"
    seed_token = mint(SECRET, ["s1"], 60, role="seed", now=d.now)
    assert code(swarm="s1", role="seed", capacity=4, token=seed_token) is None


def test_stats_are_aggregated_per_swarm_and_survive_departures() -> None:
    d = HubDriver()
    a, b = d.connect(), d.connect()
    d.join(a)
    d.join(b)
    d.send(a, {"type": "stats", "swarm": "s1", "http_bytes": 100, "p2p_bytes": 300})
    d.send(
        a,
        {
            "type": "stats",
            "swarm": "s1",
            "http_bytes": 100,
            "p2p_bytes": 500,
            "uploaded_bytes": 7,
            "stalls": 1,
        },
    )
    d.send(b, {"type": "stats", "swarm": "s1", "http_bytes": 400})
    d.disconnect(b)
    s = d.hub.swarm_stats()["s1"]
    assert (s["http_bytes"], s["p2p_bytes"], s["uploaded_bytes"], s["stalls"]) == (500, 500, 7, 1)
    assert (s["peers"], s["reports"], s["offload"]) == (1, 3, 0.5)
    d.drain(a)
    base = {"type": "stats", "swarm": "s1", "p2p_bytes": 500, "http_bytes": 100, "stalls": 1}
    for bad in ({"http_bytes": 5}, {"stalls": -1}, {"p2p_bytes": 1.5}, {"p2p_bytes": 2**60}):
        d.send(a, {**base, "uploaded_bytes": 7, **bad})
        assert d.pop(a)["code"] == "bad-stats"
    assert d.hub.swarm_stats()["s1"]["p2p_bytes"] == 500


def test_welcome_carries_turn_rest_credentials() -> None:
    d = HubDriver(
        turn_urls=("turn:127.0.0.1:3478",),
        turn_secret="s3cret",
        turn_ttl=600,
        stun_urls=("stun:127.0.0.1:3478",),
    )
    p = d.hub.connect(d.now, "127.0.0.1")
    d.inbox[p] = []
    d.send(p, {"type": "hello"})
    stun, turn = d.pop(p)["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    expiry, peer = turn["username"].split(":")
    assert peer == p and int(expiry) == int(d.now) + 600 and turn["credential"]


def test_unknown_peer_races_do_not_count_towards_closing() -> None:
    d = HubDriver(max_errors=3)
    a = d.connect()
    d.join(a)
    for _ in range(10):  # targets that left a moment ago are normal churn, not abuse
        d.send(a, {"type": "signal", "to": "departed-peer-01", "swarm": "s1", "data": OFFER})
    assert [x["code"] for x in d.drain(a)] == ["unknown-peer"] * 10
    assert a not in d.closed


def test_reports_quarantine_a_peer_only_after_enough_distinct_reporters() -> None:
    d = HubDriver(report_threshold=3)
    bad = d.connect()
    d.join(bad)
    reporters = [d.connect() for _ in range(3)]
    for r in reporters:
        d.join(r)
        d.drain(r)

    def sampled() -> bool:
        newcomer = d.connect()
        ids = [x["peer"] for x in d.join(newcomer)["peers"]]
        d.send(newcomer, {"type": "leave", "swarm": "s1"})
        return bad in ids

    # One reporter repeating itself proves nothing: it may be the liar.
    for _ in range(5):
        d.send(reporters[0], {"type": "report", "swarm": "s1", "peer": bad, "reason": "bad-data"})
    d.send(reporters[1], {"type": "report", "swarm": "s1", "peer": bad, "reason": "protocol"})
    assert not [x for x in d.drain(reporters[0]) if x["type"] == "error"]
    assert sampled()
    d.send(reporters[2], {"type": "report", "swarm": "s1", "peer": bad, "reason": "bad-data"})
    assert not sampled()
    stats = d.hub.swarm_stats()["s1"]
    assert stats["abuse_reports"] == 7 and stats["quarantined"] == 1
    assert d.hub.report_reasons == {"bad-data": 6, "protocol": 1}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"reason": "rude"}, "bad-message"),
        ({"peer": 42}, "bad-message"),
        ({"swarm": "other"}, "not-joined"),
        ({"swarm": "bad swarm"}, "bad-swarm"),
    ],
)
def test_bad_reports_get_a_clear_error(change: dict, code: str) -> None:
    d = HubDriver()
    a, b = d.connect(), d.connect()
    d.join(a)
    d.join(b)
    d.drain(a)
    d.send(a, {"type": "report", "swarm": "s1", "peer": b, "reason": "bad-data", **change})
    assert d.pop(a)["code"] == code


def test_reporting_yourself_or_a_departed_peer() -> None:
    d = HubDriver()
    a = d.connect()
    d.join(a)
    d.send(a, {"type": "report", "swarm": "s1", "peer": a, "reason": "flood"})
    assert d.pop(a)["code"] == "bad-message"
    # A peer that already left is counted, silently: bans often race departures.
    d.send(a, {"type": "report", "swarm": "s1", "peer": "GoneGoneGone0000", "reason": "flood"})
    assert d.drain(a) == []
    assert d.hub.swarm_stats()["s1"]["abuse_reports"] == 1
