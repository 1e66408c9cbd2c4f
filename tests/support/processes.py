"""Separate processes for the multi-process tests (a herd sharing a FileStore or a RedisStore).

These tests need real, separate processes: their own memory, file descriptors, locks and HTTP
connections. The ``spawn`` start method gives each one a fresh interpreter that imports keyturn,
httpx, redis and pytest again: about 0.5 s of CPU per process, so 8 s for a herd of 16 on a 2-core
machine, most of such a test's time. :func:`herd_context` uses the ``forkserver`` method instead:
each process is forked from one server process that imported those once, and that never started
a thread, opened a store or made a source, so a worker starts as clean as a spawned one.

One difference: a worker gets the environment the fork server had when it started (the first herd
test of the session), not the test's current one. The workers take everything they need (issuer,
client, store path or Redis URL) as arguments; a test that needs environment variables in its
processes uses ``multiprocessing.get_context("spawn")``.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import ForkServerContext

__all__ = ["PRELOAD", "herd_context"]

#: Imported once by the fork server: what every herd worker imports.
PRELOAD = ["keyturn", "keyturn.stores", "httpx", "redis", "pytest"]


def herd_context() -> ForkServerContext:
    """The ``forkserver`` context, its server preloading :data:`PRELOAD` (a list it takes only
    before it starts, which the first herd test does)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
