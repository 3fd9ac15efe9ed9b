"""The Python peer: wire protocol, download scheduler, aiortc swarm, seed and viewer roles."""
