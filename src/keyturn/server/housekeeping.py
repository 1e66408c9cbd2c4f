"""Periodic purge of what has expired in the storage (device grants, refresh tokens, revocations,
counters), run by the app's lifespan on every replica.

Correctness never depends on it (an expired grant or token is refused whether or not its row is
still there); it keeps the SQLite file from growing without bound. Redis keys expire on their
own (TTL), so there it costs nothing. A purge that fails (the storage is down) is logged and
tried again at the next interval, whatever the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from .storage.base import ServerStorage

__all__ = ["purge_periodically"]

log = logging.getLogger("keyturn.server")


async def purge_periodically(storage: ServerStorage, interval: int,
                             clock: Callable[[], float] = time.time) -> None:
    """Purge now, then every ``interval`` seconds, until cancelled."""
    while True:
        try:
            await run_in_threadpool(storage.purge, clock())
        except Exception as exc:  # any failure: the task must live on
            # Only the class: an exception's text may name the storage. A task that died here
            # would stop purging for good, and re-raise its error at shutdown.
            log.warning("purge of expired storage rows failed (%s); next try in %d s",
                        exc.__class__.__name__, interval)
        await asyncio.sleep(interval)
