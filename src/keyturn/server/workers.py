"""``keyturn serve --workers N``: N server processes forked from one, on its listening socket.

The parent binds the socket and makes the signing keys and secrets (:func:`.runner.serve`), then
forks; each worker builds its own app and storage connections (none crosses the fork) and runs
uvicorn on the inherited socket, and the kernel hands each new connection to one of them. They
share what they know through the storage (SQLite in WAL mode, or Redis), as replicas do.

The parent only supervises: SIGTERM, SIGINT or SIGHUP is passed on to every worker (as SIGTERM)
and it waits for them to finish their requests; a worker that dies on its own is started again
(not more often than once a second), so one crash does not take the site down. A parent that
dies without passing anything on (SIGKILL, the OOM killer) takes its workers with it on Linux:
each asks the kernel for a SIGTERM when its parent goes (``PR_SET_PDEATHSIG``), so no orphan
serves on, holding the port that a restarted server needs.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["run_workers"]

log = logging.getLogger("keyturn.server")

#: A worker that ended sooner than this after its start is replaced only once this has passed.
RESTART_DELAY = 1.0
#: What stops the supervisor. SIGHUP too: its default action would kill the parent alone, and its
#: workers would serve on.
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: From <linux/prctl.h>.
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Have the kernel send this worker SIGTERM when its parent dies; end now if it already has."""
    if sys.platform.startswith("linux"):
        # Sent when the thread that forked dies: run_workers forks from the main thread (the
        # only one that may set signal handlers), which lives as long as the supervisor.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("worker %d cannot ask to end with its supervisor (%s)", os.getpid(),
                        os.strerror(ctypes.get_errno()))
    if os.getppid() != parent:  # it died before the request above: adopted already
        raise SystemExit(0)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # A stop before uvicorn's handlers are in place, and the signal uvicorn raises again once it
    # has shut down: an exit that unwinds (the worker's storage is closed, its logs flushed)
    # rather than the default action, a death that skips all of that.
    raise SystemExit(0)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def run_workers(count: int, work: Callable[[], None]) -> None:
    """Fork ``count`` processes that each run ``work`` (in a fresh child of this one); return
    once a signal stopped them all."""
    children: dict[int, float] = {}  # pid -> when it started (monotonic)
    stopping = False

    parent = os.getpid()

    def spawn() -> None:
        # Blocked from the fork until the child is registered (in the parent) or has its own
        # handlers (in the child): a stop arriving in between is held, not lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the worker
            code = 1
            try:
                try:
                    # Its own signal handling (uvicorn's once it runs), not the supervisor's
                    # below. SIGHUP is the supervisor's to act on (it passes SIGTERM on).
                    signal.signal(signal.SIGTERM, _exit_on_signal)
                    signal.signal(signal.SIGINT, _exit_on_signal)
                    signal.signal(signal.SIGHUP, signal.SIG_IGN)
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                    _die_with(parent)
                    work()
                    code = 0
                except SystemExit as exit:
                    code = exit.code if isinstance(exit.code, int) else 1
                except BaseException:
                    log.exception("worker %d failed", os.getpid())
                signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)  # no SystemExit from here on
                logging.shutdown()
            finally:
                # Not a return, whatever was raised where: the parent's stack (its finally
                # blocks, a demo's temporary directory) is the parent's alone.
                os._exit(code)
        children[pid] = time.monotonic()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

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
