"""Discrete-event simulation of swarms: the real scheduler and protocol over a modelled network."""
