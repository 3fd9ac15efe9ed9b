"""The signalling server: swarms, peer introduction, SDP/ICE relay, auth, limits, metrics."""
