"""Prometheus metrics of one signalling node, on a registry of its own (one per app).

Per-message counters live in the hub as plain dict increments and are read at scrape time by
a custom collector: a prometheus ``Counter.labels().inc()`` per message would cost more than
relaying the message.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from swarmcast.signaling.hub import SwarmHub


class _HubCollector(Collector):
    def __init__(self, hub: SwarmHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        messages = CounterMetricFamily(
            "swarmcast_signal_messages", "Messages received, by type", labels=["type"]
        )
        for kind, count in sorted(self.hub.counts.items()):
            messages.add_metric([kind], count)
        yield messages
        errors = CounterMetricFamily(
            "swarmcast_signal_errors", "Errors sent to clients, by code", labels=["code"]
        )
        for code, count in sorted(self.hub.errors.items()):
            errors.add_metric([code], count)
        yield errors
        reports = CounterMetricFamily(
            "swarmcast_signal_abuse_reports",
            "Peers reported by other peers for misbehaving, by reason",
            labels=["reason"],
        )
        for reason, count in sorted(self.hub.report_reasons.items()):
            reports.add_metric([reason], count)
        yield reports


class SignalingMetrics:
    """The node's metrics; ``registry`` is what ``/metrics`` renders."""

    def __init__(self, hub: SwarmHub) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_HubCollector(hub))
        r = self.registry
        Gauge(
            "swarmcast_signal_connections", "Open WebSocket connections", registry=r
        ).set_function(lambda: len(hub.connections))
        Gauge("swarmcast_signal_swarms", "Swarms with members", registry=r).set_function(
            lambda: len(hub.swarms)
        )
        Gauge(
            "swarmcast_signal_memberships", "Swarm memberships (all nodes)", registry=r
        ).set_function(lambda: sum(len(s.members) for s in hub.swarms.values()))
        self.rejected = Counter(
            "swarmcast_signal_rejected_upgrades",
            "WebSocket upgrades refused, by reason",
            ["reason"],
            registry=r,
        )
        self.closes = Counter(
            "swarmcast_signal_closes",
            "Connections closed by the server, by code",
            ["code"],
            registry=r,
        )
        self.remote_relays = Counter(
            "swarmcast_signal_remote_relays", "Messages forwarded to other nodes", registry=r
        )
        # Buckets from 50 us: a local relay takes tens of microseconds on an idle node.
        self.relay_latency = Histogram(
            "swarmcast_signal_relay_latency_seconds",
            "Time from receiving a signal to handing it to the target's socket or the bus "
            "(one received frame in 16 is timed)",
            buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5),
            registry=r,
        )
