"""``keyturn serve --workers N``: N server processes forked from one, on its listening socket.

The parent binds the socket and makes the signing keys and secrets (:func:`.runner.serve`), then
forks; each worker builds its own app and storage connections (none crosses the fork) and runs
uvicorn on the inherited socket, and the kernel hands each new connection to one of them. They
share what they know through the storage (SQLite in WAL mode, or Redis), as replicas do.

The parent only supervises: SIGTERM or SIGINT is passed on to every worker and it waits for them
to finish their requests; a worker that dies on its own is started again (not more often than
once a second), so one crash does not take the site down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["run_workers"]

log = logging.getLogger("keyturn.server")

#: A worker that ended sooner than this after its start is replaced only once this has passed.
RESTART_DELAY = 1.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_workers(count: int, work: Callable[[], None]) -> None:
    """Fork ``count`` processes that each run ``work`` (in a fresh child of this one); return
    once a signal stopped them all."""
    children: dict[int, float] = {}  # pid -> when it started (monotonic)
    stopping = False

    def spawn() -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            # Its own signal handling (uvicorn's), not the supervisor's below.
            for sig in _SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            code = 0
            try:
                work()
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                # Not a return: the parent's stack (its finally blocks, a demo's temporary
                # directory) is the parent's alone.
                os._exit(code)
        children[pid] = time.monotonic()

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in _SIGNALS}
    try:
        for _ in range(count):
            spawn()
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            started = children.pop(pid, None)
            if started is None or stopping:
                continue
            log.warning("worker %d ended (%s): starting another", pid, _describe(status))
            time.sleep(max(0.0, RESTART_DELAY - (time.monotonic() - started)))
            if not stopping:
                spawn()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
