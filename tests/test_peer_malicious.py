"""A malicious peer among real ones: its data is never accepted, it gets banned, and the
victims keep playing from others and the origin.

Run inside the test namespace: ``tests/netns-run .venv/bin/pytest tests/test_peer_malicious.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from peer_helpers import lab, play

from swarmcast.peer.agent import PeerAgent
from swarmcast.peer.connection import (
    BusyReceived,
    DontHaveReceived,
    Event,
    HelloReceived,
    RequestReceived,
    TransferCompleted,
)
from swarmcast.peer.ids import SegmentKey
from swarmcast.peer.integrity_check import Verdict
from swarmcast.peer.link import PeerLink
from swarmcast.peer.protocol import Role
from swarmcast.signaling.server import SERVER

pytestmark = pytest.mark.netns


class LyingSeed(PeerAgent):
    """Fetches the real segments, then serves them corrupted (one byte flipped) or truncated
    (half of them, announced as the whole), claims segments it does not have and never
    answers requests for those."""

    served = 0

    def _peer_in_swarm(self, link: PeerLink, peer_id: str, role: Role, swarm_id: str) -> None:
        super()._peer_in_swarm(link, peer_id, role, swarm_id)
        window = self.states[swarm_id].follower.timeline.window
        link.protocol.send_have_set(swarm_id, range(window.start, window.stop + 20))
        link.flush()

    def _store(self, st, seg, data, *, share):  # type: ignore[no-untyped-def]
        super()._store(st, seg, data, share=share)
        for link in self._peer_swarms:  # it "has" everything, whatever it stores
            if not link.is_closed:
                link.protocol.send_have(st.swarm_id, SegmentKey.media(seg.sequence + 20))
                link.flush()

    def _on_request(self, link: PeerLink, event: RequestReceived) -> None:
        data = self.states[event.swarm_id].cache.get(event.key.number)
        if data is None:
            return  # claimed, not held: keep the requester waiting
        LyingSeed.served += 1
        if LyingSeed.served % 2:
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0xFF
            link.protocol.send_segment(event.request_id, bytes(bad))
        else:
            link.protocol.send_segment(event.request_id, bytes(data[: len(data) // 2]))
        link.flush()


class Flooder(PeerAgent):
    """Keeps every request slot it has with each peer busy with requests, forever."""

    requests = 0

    def link_opened(self, link: PeerLink, hello: HelloReceived) -> None:
        super().link_opened(link, hello)
        self._flood(link)

    def link_event(self, link: PeerLink, event: Event) -> None:
        if isinstance(event, DontHaveReceived | BusyReceived | TransferCompleted):
            self._flood(link)
            return
        super().link_event(link, event)

    def _flood(self, link: PeerLink) -> None:
        swarm_id = next(iter(self.states))
        window = self.states[swarm_id].follower.timeline.window
        while not link.is_closed and link.protocol.request_slots > 0:
            Flooder.requests += 1
            seq = window.start + Flooder.requests % max(len(window), 1)
            try:
                link.protocol.request(swarm_id, SegmentKey.media(seq))
            except ValueError:
                return
        link.flush()


async def test_malicious_peer_is_banned_and_its_data_never_used(
    tiny_sample: Path, test_host: str
) -> None:
    async with lab(tiny_sample, test_host) as the_lab:
        liar = LyingSeed(the_lab.config(Role.SEED))
        the_lab.agents.append(liar)
        await liar.start()
        flooder = Flooder(the_lab.config(Role.SEED, upload=the_lab.config().upload))
        the_lab.agents.append(flooder)
        await flooder.start()
        viewers = [await the_lab.agent() for _ in range(2)]
        await play(14.0)
        reports = [v.report() for v in viewers]
        liar_id = liar.swarm.local_id
        banned = [liar_id in v.swarm.banned for v in viewers]
        linked_to_liar = [liar_id in v.swarm.links for v in viewers]
        hub = the_lab.signal_runner.app[SERVER].hub
        abuse = sum(row["abuse_reports"] for row in hub.swarm_stats().values())
        caches = []
        for v in viewers:
            st = next(iter(v.states.values()))
            caches.append(
                [st.follower.timeline.check(s, st.cache.get(s)) for s in st.cache.sequences()]
            )
    assert LyingSeed.served > 0, "the liar was never asked: the test proves nothing"
    assert Flooder.requests > 100
    assert any(q.p2p_rejected_bytes > 0 for q in reports)
    # Every ban was reported to the signalling server (docs/signaling.md, "report").
    assert abuse >= sum(banned) > 0
    for q, was_banned, linked in zip(reports, banned, linked_to_liar, strict=True):
        assert q.stalls == 0, q
        assert q.played_time > 10.0
        if q.p2p_rejected_bytes:
            assert was_banned and not linked
    # Everything the victims hold (and therefore play and re-share) is the origin's bytes.
    for verdicts in caches:
        assert verdicts and all(v is Verdict.VERIFIED for v in verdicts)
