"""swarmcast: a P2P content-delivery overlay for HLS video over WebRTC data channels."""

from swarmcast import accel as _accel

__version__ = "0.1.0"

# The compiled build of the simulator's hot modules, when one matches the sources (see
# swarmcast.accel); before any of them is imported.
_accel.install()
