"""Write the scheduler scenario vectors (*.json in this folder) from the Python implementation.

Each vector is a language-neutral trace: a config (overrides of the defaults), then a list of
steps, each one call of the scheduler's API with its arguments; ``poll`` steps carry the actions
the call must return and the ``next_wakeup`` that must follow. tests/test_scheduler.py replays
them against peer/scheduler.py, the JS twin replays the same files.

Regenerate with ``.venv/bin/python tests/vectors/scheduler/make_vectors.py`` after a deliberate
behaviour change, then read the diff: every vector documents a rule (see its "description").
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from swarmcast.peer.bandwidth import BandwidthConfig
from swarmcast.peer.scheduler import SchedulerConfig, SegmentInfo, SegmentScheduler

HERE = Path(__file__).parent
SIZE = 100_000


def action_to_json(action: Any) -> dict[str, Any]:
    """An action as ``{"type": ClassName, ...fields}``."""
    return {"type": type(action).__name__, **dataclasses.asdict(action)}


def make_config(overrides: dict[str, Any]) -> SchedulerConfig:
    """SchedulerConfig from vector overrides (``bandwidth`` is a nested dict)."""
    fields = dict(overrides)
    if "bandwidth" in fields:
        fields["bandwidth"] = BandwidthConfig(**fields["bandwidth"])
    return SchedulerConfig(**fields)


def apply_step(sched: SegmentScheduler, step: dict[str, Any]) -> Any:
    """Run one non-poll step on ``sched`` (shared with the replay test)."""
    args = dict(step.get("args", {}))
    call = step["call"]
    if call == "set_timeline":
        segments = [SegmentInfo(**s) for s in args.pop("segments")]
        return sched.set_timeline(segments, **args)
    return getattr(sched, call)(**args)


class Recorder:
    """Drives a scheduler and records every call as a vector step."""

    def __init__(self, name: str, description: str, peer_id: str = "me", **config: Any) -> None:
        self.vector: dict[str, Any] = {
            "name": name,
            "description": description,
            "peer_id": peer_id,
            "config": config,
            "steps": [],
        }
        self.sched = SegmentScheduler(make_config(config), peer_id=peer_id)

    def __getattr__(self, call: str):
        def record(**args: Any) -> Any:
            step = {"call": call, "args": args}
            self.vector["steps"].append(step)
            return apply_step(self.sched, step)

        return record

    def poll(self, now: float) -> list[dict[str, Any]]:
        actions = [action_to_json(a) for a in self.sched.poll(now)]
        wake = self.sched.next_wakeup(now)
        self.vector["steps"].append(
            {"call": "poll", "args": {"now": now}, "expect": actions, "next_wakeup": wake}
        )
        return actions

    def save(self) -> None:
        path = HERE / f"{self.vector['name']}.json"
        path.write_text(json.dumps(self.vector, indent=1) + "\n")


def timeline(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"sequence": s, "duration": 2.0, "size": SIZE, "start": s * 2.0}
        for s in range(first, first + count)
    ]


def deadline_fallback() -> Recorder:
    r = Recorder(
        "deadline_fallback",
        "Playing, seq 0 buffered. Peer 'a' holds seq 1 and 2. seq 1 is due at t=2; the origin "
        "needs 1.675 s of notice (priors: 0.25 s + 100 kB at 500 kB/s, x1.5, +1 s), so HTTP "
        "must start by t=0.325, which leaves an unmeasured peer too little time (0.5 s): seq 1 "
        "waits for that moment and goes to the origin. seq 2 (due t=4) comes from the peer.",
        prefetch_seconds=4.0,
    )
    r.set_timeline(segments=timeline(0, 4))
    r.add_peer(peer_id="a")
    r.peer_has(peer_id="a", sequences=[1, 2])
    r.segment_stored(sequence=0)
    r.set_playback(now=0.0, position=0.0, buffered_until=2.0)
    r.poll(0.0)
    r.set_playback(now=0.325, position=0.325, buffered_until=2.0)
    r.poll(0.325)
    return r


def p2p_switch_resume() -> Recorder:
    r = Recorder(
        "p2p_switch_resume",
        "A peer transfer of seq 2 (deadline t=4) crawls at ~15 kB/s. At the last safe moment "
        "for HTTP (deadline minus the notice the remaining bytes need) it is cancelled and "
        "resumed from the origin with a Range starting at the bytes received.",
        prefetch_seconds=4.0,
    )
    r.set_timeline(segments=timeline(0, 4))
    r.add_peer(peer_id="a")
    r.peer_has(peer_id="a", sequences=[2])
    r.segment_stored(sequence=0)
    r.segment_stored(sequence=1)
    r.set_playback(now=0.0, position=0.0, buffered_until=4.0)
    r.poll(0.0)
    for i, t in enumerate((0.2, 0.6, 1.0, 1.4, 1.8)):
        r.set_playback(now=t, position=t, buffered_until=4.0)
        r.transfer_progress(now=t, transfer_id=1, bytes_received=5_000 + i * 6_250)
        r.poll(t)
    r.set_playback(now=2.415, position=2.415, buffered_until=4.0)
    r.poll(2.415)
    return r


def election_winner() -> Recorder:
    r = Recorder(
        "election_winner",
        "Live: new seq 6 appears, nobody holds or fetches it. 'me' has the highest rendezvous "
        "hash of (peer, 6) among itself and its neighbour 'p0', so it fetches it from the "
        "origin at once (bootstrap).",
        prefetch_seconds=30.0,
    )
    r.add_peer(peer_id="p0")
    r.set_timeline(segments=timeline(1, 6), live=True)
    for s in (4, 5):
        r.segment_stored(sequence=s)
    r.set_playback(now=0.0, position=8.0, buffered_until=12.0)
    r.poll(0.0)
    return r


def election_loser() -> Recorder:
    r = Recorder(
        "election_loser",
        "Live: 'me' ranks below 'p3' for new seq 6, so it waits (next_wakeup = one "
        "election_backoff). 'p3' announces FETCHING: still waiting past the backoff. 'p3' "
        "announces HAVE: pulled over P2P.",
        prefetch_seconds=30.0,
    )
    r.add_peer(peer_id="p3")
    r.set_timeline(segments=timeline(1, 6), live=True)
    for s in (4, 5):
        r.segment_stored(sequence=s)
    r.set_playback(now=0.0, position=8.0, buffered_until=12.0)
    r.poll(0.0)
    r.peer_fetching(peer_id="p3", sequence=6)
    r.set_playback(now=0.6, position=8.6, buffered_until=12.0)
    r.poll(0.6)
    r.peer_has(peer_id="p3", sequences=[6])
    r.poll(0.7)
    return r


def busy_retry_elsewhere() -> Recorder:
    r = Recorder(
        "busy_retry_elsewhere",
        "The chosen peer answers busy (retry_after 2 s): the next poll asks the other holder; "
        "the busy one is not asked again before its retry_after.",
        prefetch_seconds=8.0,
        bandwidth={"peer_prior_bps": 400_000.0},
    )
    r.set_timeline(segments=timeline(0, 6))
    r.add_peer(peer_id="a")
    r.add_peer(peer_id="b")
    for s in range(4):
        r.segment_stored(sequence=s)
    r.set_playback(now=0.0, position=0.0, buffered_until=8.0)
    r.peer_has(peer_id="a", sequences=[4])
    r.poll(0.0)
    r.transfer_failed(now=0.1, transfer_id=1, reason="busy", retry_after=2.0)
    r.peer_has(peer_id="b", sequences=[4])
    r.poll(0.1)
    return r


def bad_data_penalty() -> Recorder:
    r = Recorder(
        "bad_data_penalty",
        "Peer 'a' sends a segment that fails verification: it is banned (ban_duration), its "
        "HAVE claims are dropped, and the segment is asked from 'b' even though 'a' claims it "
        "again.",
        prefetch_seconds=4.0,
    )
    r.set_timeline(segments=timeline(0, 4))
    r.add_peer(peer_id="a")
    r.add_peer(peer_id="b")
    r.segment_stored(sequence=0)
    r.segment_stored(sequence=1)
    r.set_playback(now=0.0, position=0.0, buffered_until=4.0)
    r.peer_has(peer_id="a", sequences=[2])
    r.poll(0.0)
    r.transfer_progress(now=0.1, transfer_id=1, bytes_received=50_000)
    r.transfer_progress(now=0.3, transfer_id=1, bytes_received=100_000)
    r.transfer_failed(now=0.3, transfer_id=1, reason="bad_data")
    r.peer_has(peer_id="a", sequences=[2])
    r.peer_has(peer_id="b", sequences=[2])
    r.poll(0.3)
    return r


def seed_suppresses_origin() -> Recorder:
    r = Recorder(
        "seed_suppresses_origin",
        "Live with a seed connected: the elected viewer gives the seed seed_grace to announce; "
        "the seed says FETCHING then HAVE, no viewer touches the origin, the segment comes "
        "from the seed.",
        prefetch_seconds=30.0,
    )
    r.add_peer(peer_id="p0")
    r.add_peer(peer_id="seed-1", is_seed=True)
    r.set_timeline(segments=timeline(1, 6), live=True)
    for s in (4, 5):
        r.segment_stored(sequence=s)
    r.set_playback(now=0.0, position=8.0, buffered_until=12.0)
    r.poll(0.0)
    r.peer_fetching(peer_id="seed-1", sequence=6)
    r.poll(0.2)
    r.peer_has(peer_id="seed-1", sequences=[6])
    r.poll(0.25)
    return r


SCENARIOS = (
    deadline_fallback,
    p2p_switch_resume,
    election_winner,
    election_loser,
    busy_retry_elsewhere,
    bad_data_penalty,
    seed_suppresses_origin,
)


def hash_vector() -> None:
    """hrw_score values the JS twin must reproduce bit for bit."""
    from swarmcast.peer.scheduler import hrw_score

    cases = [("me", 0), ("p0", 6), ("viewer-001", 123456), ("ünïcode-peer", 7), ("", 0)]
    data = {
        "name": "hrw_score",
        "description": "FNV-1a 32 over UTF-8 of '<peer_id>/<sequence>', murmur3 finaliser.",
        "cases": [{"peer_id": p, "sequence": s, "score": hrw_score(p, s)} for p, s in cases],
    }
    (HERE / "hrw_score.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    for scenario in SCENARIOS:
        scenario().save()
    hash_vector()
    return 0


if __name__ == "__main__":
    sys.exit(main())
