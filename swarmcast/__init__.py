"""swarmcast: a P2P content-delivery overlay for HLS video over WebRTC data channels."""

__version__ = "0.1.0"
