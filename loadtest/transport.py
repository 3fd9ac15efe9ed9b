"""How workers and the coordinator talk: multiprocessing queues on one host, Redis across hosts.

Both carry the same JSON messages (``ready``, ``sample``, ``session``, ``lag``, ``done``,
``error``, see :mod:`swarmcast.loadtest.worker`) and the same start handshake: every worker
says ``ready`` once its imports are done and its share of the plan is loaded, the coordinator
then publishes one start time (a Unix time a moment ahead) that all workers use as t = 0. The
plan's join ramp is thus the same on every host, provided their clocks are synchronised (NTP).

**Redis layout** (one run = one random ``run`` id; keys expire after ``KEY_TTL``):

- ``swarmcast:loadtest:slots`` — list of free worker slots ``{"run", "worker", "expires"}``;
  a host joins a run by popping one (``swarmcast loadtest --join REDIS_URL``);
- ``swarmcast:loadtest:<run>:spec:<worker>`` — that worker's :class:`WorkerSpec` (JSON);
- ``swarmcast:loadtest:<run>:start`` — the start time, set once all workers are ready;
- ``swarmcast:loadtest:<run>:events`` — list of messages from workers to the coordinator.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import queue
import time
from typing import Any

log = logging.getLogger(__name__)

#: Seconds the run's Redis keys live (a crashed coordinator leaves nothing behind for long).
KEY_TTL = 6 * 3600
SLOTS_KEY = "swarmcast:loadtest:slots"


def run_key(run: str, what: str) -> str:
    """Name of one of a run's Redis keys."""
    return f"swarmcast:loadtest:{run}:{what}"


# --------------------------------------------------------------------------- one host


class QueueWorkerLink:
    """Worker side over multiprocessing queues (workers spawned by the coordinator)."""

    def __init__(self, events: Any, control: Any) -> None:
        self.events = events
        self.control = control

    async def send(self, message: dict[str, Any]) -> None:
        """Queue one message (the queue's feeder thread does the pickling and the pipe)."""
        self.events.put(message)

    async def wait_start(self) -> float:
        """Wait for the start time in a thread (a queue read blocks)."""
        return float(await asyncio.get_running_loop().run_in_executor(None, self.control.get))


class QueueCollector:
    """Coordinator side over multiprocessing queues."""

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.events: Any = ctx.Queue()
        self.controls: list[Any] = [ctx.Queue() for _ in range(workers)]

    async def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, self.events.get, True, timeout)
        except queue.Empty:
            return None

    async def start(self, start_at: float) -> None:
        """Tell every worker the start time."""
        for control in self.controls:
            control.put(start_at)

    async def close(self) -> None:
        """Release the queues."""
        for q in (self.events, *self.controls):
            q.close()
            q.cancel_join_thread()


# --------------------------------------------------------------------------- Redis


def _redis(url: str) -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError:  # pragma: no cover - the redis extra is part of dev installs
        raise RuntimeError(
            "workers on several hosts need the redis package: pip install redis"
        ) from None
    return aioredis.Redis.from_url(url)


class RedisCollector:
    """Coordinator side over Redis: publishes slots and specs, reads events."""

    def __init__(self, url: str, run: str) -> None:
        self.url = url
        self.run = run
        self.redis = _redis(url)

    async def publish(self, specs: list[dict[str, Any]], join_timeout: float) -> None:
        """Store each worker's spec and offer one slot per worker."""
        pipe = self.redis.pipeline(transaction=True)
        expires = time.time() + join_timeout
        for spec in specs:
            key = run_key(self.run, f"spec:{spec['index']}")
            pipe.set(key, json.dumps(spec), ex=KEY_TTL)
        for spec in specs:
            slot = {"run": self.run, "worker": spec["index"], "expires": expires}
            pipe.rpush(SLOTS_KEY, json.dumps(slot))
        await pipe.execute()

    async def recv(self, timeout: float) -> dict[str, Any] | None:
        """The next message, or None after ``timeout`` seconds (at least 1 s: BLPOP's unit)."""
        got = await self.redis.blpop([run_key(self.run, "events")], timeout=max(timeout, 1.0))
        if got is None:
            return None
        return json.loads(got[1])

    async def start(self, start_at: float) -> None:
        """Publish the start time."""
        await self.redis.set(run_key(self.run, "start"), repr(start_at), ex=KEY_TTL)

    async def close(self) -> None:
        """Delete the run's keys and our unclaimed slots; close the connection."""
        try:
            keys = [k async for k in self.redis.scan_iter(match=run_key(self.run, "*"))]
            if keys:
                await self.redis.delete(*keys)
            for raw in await self.redis.lrange(SLOTS_KEY, 0, -1):
                if json.loads(raw).get("run") == self.run:
                    await self.redis.lrem(SLOTS_KEY, 0, raw)
        finally:
            await self.redis.aclose()


class RedisWorkerLink:
    """Worker side over Redis."""

    def __init__(self, redis: Any, run: str, poll: float = 0.05) -> None:
        self.redis = redis
        self.run = run
        self.poll = poll

    async def send(self, message: dict[str, Any]) -> None:
        """Append one message to the run's event list."""
        await self.redis.rpush(run_key(self.run, "events"), json.dumps(message))

    async def wait_start(self) -> float:
        """Poll the start key (a few hundred GETs at most: workers are ready within seconds)."""
        while True:
            raw = await self.redis.get(run_key(self.run, "start"))
            if raw is not None:
                return float(raw)
            await asyncio.sleep(self.poll)


async def claim_slot(redis: Any, timeout: float) -> tuple[str, dict[str, Any]] | None:
    """Pop a free worker slot of a live run: ``(run, spec)``, or None after ``timeout`` s.

    Slots whose run has expired (its coordinator gave up or died) are dropped.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        got = await redis.blpop([SLOTS_KEY], timeout=max(1, int(left)))
        if got is None:
            continue
        try:
            slot = json.loads(got[1])
            run, worker, expires = str(slot["run"]), int(slot["worker"]), float(slot["expires"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed load-test slot: %r", got[1][:200])
            continue
        if expires < time.time():
            log.info("ignoring an expired slot of run %s", run)
            continue
        raw = await redis.get(run_key(run, f"spec:{worker}"))
        if raw is None:
            log.info("run %s has no spec for worker %d any more; skipping", run, worker)
            continue
        return run, json.loads(raw)
    return None
