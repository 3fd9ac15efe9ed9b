"""The segment cache of one swarm: bytes kept in memory under a hard budget.

Sans-IO and clock-free. What to keep follows what is useful to the player *and* to the swarm:

1. segments behind the playhead go first, oldest first: the player has them already and the
   neighbours that still want them are behind us, the further behind the fewer;
2. then segments ahead of the playhead, furthest first: the nearest are about to be played;
3. pinned entries (init segments, keyed by a string) are never evicted.

Every eviction is reported to the caller, so the adapter can tell its neighbours (LOST) and the
scheduler (``segment_evicted``). Keys are media sequence numbers (``int``) or, for pinned init
segments, any string the adapter chooses.

Values are bytes-like: ``memoryview`` slices of one shared buffer let a simulator hold thousands
of caches without allocating their contents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview
Key = int | str


@dataclass(frozen=True)
class StoreResult:
    """What :meth:`SegmentCache.put` did."""

    stored: bool
    """False when the value could not fit even after evicting everything evictable."""

    evicted: tuple[Key, ...]
    """Keys removed to make room, in eviction order (empty if none)."""


class SegmentCache:
    """Segments of one swarm under a memory budget of ``budget_bytes``."""

    def __init__(self, budget_bytes: int | float) -> None:
        # Not just `int`: a compiled build (swarmcast.accel) would refuse a float with a
        # TypeError of its own before this check; not just `float`: it would turn ints into
        # floats.
        if not isinstance(budget_bytes, int) or budget_bytes <= 0:
            raise ValueError(
                f"cache budget must be a positive number of bytes, got {budget_bytes!r}"
            )
        self.budget_bytes: int = budget_bytes
        """Hard ceiling of :attr:`used_bytes`."""
        self.used_bytes = 0
        """Bytes currently held (pinned included)."""
        self._items: dict[Key, Buffer] = {}
        self._pinned: set[Key] = set()
        self._playhead: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def has(self, key: Key) -> bool:
        """Whether ``key`` is held."""
        return key in self._items

    def get(self, key: Key) -> Buffer | None:
        """The value of ``key``, or None."""
        return self._items.get(key)

    def sequences(self) -> list[int]:
        """Media sequence numbers held, ascending (pinned string keys left out)."""
        return sorted(k for k in self._items if isinstance(k, int))

    def set_playhead(self, sequence: int | None) -> None:
        """Tell the cache which media sequence is playing (None = unknown: evict oldest first)."""
        self._playhead = sequence

    def put(self, key: Key, data: Buffer, *, pinned: bool = False) -> StoreResult:
        """Store ``data`` under ``key``, evicting what is least useful until it fits.

        Replacing an existing key frees its old value first. Returns what was stored and evicted;
        nothing is evicted when the value cannot fit at all.
        """
        if not isinstance(key, int | str):
            raise TypeError(f"cache keys are media sequence numbers or strings, got {key!r}")
        size = _nbytes(data)
        old = self._items.get(key)
        old_size = _nbytes(old) if old is not None else 0
        pinned_bytes = sum(_nbytes(self._items[k]) for k in self._pinned if k != key)
        if size > self.budget_bytes - pinned_bytes:
            logger.debug("segment %r (%d bytes) does not fit the cache budget", key, size)
            return StoreResult(False, ())
        if old is not None:
            self._drop(key)
        victims = self._victims(None if pinned else key, self.used_bytes + size - self.budget_bytes)
        if victims is None:
            # The newcomer is itself the least useful entry: keep what we have.
            if old is not None:
                self._items[key] = old
                self.used_bytes += old_size
            return StoreResult(False, ())
        for victim in victims:
            self._drop(victim)
        self._items[key] = data
        self.used_bytes += size
        if pinned:
            self._pinned.add(key)
        return StoreResult(True, victims)

    def evict(self, key: Key) -> bool:
        """Remove ``key`` (pinned or not); True if it was held."""
        if key not in self._items:
            return False
        self._drop(key)
        return True

    def _drop(self, key: Key) -> None:
        self.used_bytes -= _nbytes(self._items.pop(key))
        self._pinned.discard(key)

    def _victims(self, newcomer: Key | None, need: int) -> tuple[Key, ...] | None:
        """Keys to evict to free ``need`` bytes, or None if ``newcomer`` would go first."""
        if need <= 0:
            return ()
        victims: list[Key] = []
        for key in self._eviction_order(newcomer):
            if key == newcomer:
                return None
            need -= _nbytes(self._items[key])
            victims.append(key)
            if need <= 0:
                break
        return tuple(victims)

    def _eviction_order(self, newcomer: Key | None) -> list[Key]:
        # Unpinned string keys are extras the adapter chose not to pin: they go first.
        extras: list[Key] = [k for k in self._items if isinstance(k, str) and k not in self._pinned]
        seqs = sorted(k for k in self._items if isinstance(k, int) and k not in self._pinned)
        if isinstance(newcomer, int):
            seqs = sorted([*seqs, newcomer])
        if self._playhead is None:
            return extras + list(seqs)
        behind = [s for s in seqs if s < self._playhead]
        ahead = [s for s in seqs if s >= self._playhead]
        ahead.reverse()
        return extras + behind + ahead


def _nbytes(data: Buffer) -> int:
    return data.nbytes if isinstance(data, memoryview) else len(data)
