"""The signalling server: swarms, peer introduction, SDP/ICE relay, auth, limits, metrics.

Modules: ``messages`` (wire format, docs/signaling.md), ``hub`` (sans-IO ``SwarmHub``),
``server`` (aiohttp app, ``create_app``), ``redis_bus`` (several nodes), ``tokens`` (join
tokens, ``swarmcast token``), ``turn`` (ICE servers, TURN REST credentials), ``config``
(``SignalingConfig``), ``metrics`` (Prometheus), ``cli`` (``swarmcast signal``).
"""
