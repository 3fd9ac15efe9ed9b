"""swarmcast loadtest: many simulated viewers against an origin and a signalling server."""
