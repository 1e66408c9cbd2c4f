"""Work that must run to its end once started: sending a request the server acts on once, and
saving its answer. Standard library only.

:func:`to_the_end` runs a call in a worker thread while its caller waits: Python raises a signal
handler's exception (KeyboardInterrupt for Ctrl-C, SystemExit from a SIGTERM handler) in the main
thread only, so the worker is never interrupted, and the caller's interrupt is raised once the call
is done. The worker is not a daemon thread, so an interpreter that is exiting — its main thread done
while a daemon thread of the program was refreshing — waits for it too.
:func:`ato_the_end` is the async twin: a cancellation of the awaiting task (``wait_for``, a
TaskGroup, ``asyncio.run`` shutting down, whose shutdown waits for the task) is raised once the
call is done. :func:`thread_future` is how async code here leaves the event loop: a thread of its
own, never the loop's default executor (see there why).

Both copy the caller's context into the worker (a store's lock state, RedisStore's fence, travels
with the call). SIGKILL, and a signal whose default action ends the process, stop everything at
once: nothing in a process can finish work after those.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["ato_the_end", "thread_future", "to_the_end"]

T = TypeVar("T")
log = logging.getLogger("keyturn")


def to_the_end(call: Callable[[], T]) -> T:
    """``call()``, run to its end even if this thread is interrupted meanwhile."""
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            future.set_result(context.run(call))
        except BaseException as exc:
            future.set_exception(exc)

    # daemon=False explicitly: a thread inherits daemonhood from the thread that starts it.
    threading.Thread(target=work, name="keyturn-to-the-end", daemon=False).start()
    interrupt: BaseException | None = None
    while not future.done():
        try:
            future.exception()  # waits; a signal handler's exception lands here
        except BaseException as exc:
            if interrupt is None:
                log.warning("interrupted (%s) while a token request is answered: finishing it "
                            "and saving its answer first", type(exc).__name__)
            interrupt = interrupt or exc
    if interrupt is not None:
        raise interrupt
    return future.result()


def thread_future(call: Callable[[], T]) -> asyncio.Future[T]:
    """``call()`` in a new thread of its own; an asyncio future of its outcome.

    Never the loop's default executor: its few workers may all be taken by calls waiting for the
    very lock that this call is part of holding or releasing (fifty requests that got a 401 each
    invalidating the token in ``asyncio.to_thread`` while a refresh holds the store's lock), and a
    refresh queued behind them would never run. Cancelling the future does not stop the call.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = context.run(call)
        except BaseException as exc:
            error = exc
        # A closed loop has nobody left waiting for the outcome.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="keyturn-worker", daemon=False).start()
    return future


async def ato_the_end(call: Callable[[], T]) -> T:
    """``call()`` in a thread of its own, awaited to its end even if this task is cancelled."""
    future = thread_future(call)
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            await asyncio.wait([future])  # a cancellation of this task does not cancel `future`
            break
        except asyncio.CancelledError as exc:
            if cancelled is None:
                log.warning("cancelled while a token request is answered: finishing it and "
                            "saving its answer first")
            cancelled = cancelled or exc
    if cancelled is not None:
        raise cancelled
    return future.result()
