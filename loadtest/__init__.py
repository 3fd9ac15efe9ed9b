"""swarmcast loadtest: many simulated viewers against a signalling server and an origin, with a QoE report."""
