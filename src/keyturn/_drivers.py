"""The two drivers of every protocol flow: :func:`drive` for sync callers, :func:`adrive` for async
ones. They carry out the effects of :mod:`keyturn.protocol.http` and differ only in ``await``;
they decide nothing (a retry is an effect too: :mod:`keyturn._retry`). Neither knows HTTP: a
request goes out through the ``send`` the transport (:mod:`keyturn.transport`) gives them. An
effect that fails is thrown into the flow. Every effect but the request is carried out by
:func:`carry_out` (sync) or :func:`acarry_out` (async), the one place per mode that does it, which
the adapters' 401 retry (:mod:`keyturn.integrations.retry`) calls too.

A non-idempotent request (a rotating refresh token, a code) is what the server acts on once: its
answer is all there is. With a :class:`~keyturn.protocol.http.Keeper` (the cache gives one), the
drivers therefore run "confirm the refresh lock, send, receive, parse, keep the token" as one
*critical step* that an interrupt cannot split (:mod:`keyturn._uninterrupted`): in a worker thread,
which a KeyboardInterrupt (or any exception a signal handler raises) in the caller, a task
cancellation or ``asyncio.run``'s shutdown does not stop; the interrupt reaches the caller once the
token is kept. A retry's pause comes out of the critical step as the flow's next effect, slept
outside it; the request sent again is a critical step of its own (the lock confirmed again). The
async driver sends that one request with a sync ``send`` in the worker thread for this reason: an
asyncio task can be cancelled mid-answer, a thread cannot.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._uninterrupted import ato_the_end, thread_future, to_the_end
from .protocol.http import (
    Answer,
    Blocking,
    CurrentToken,
    Effect,
    Flow,
    HttpRequest,
    HttpResponse,
    Invalidate,
    Keeper,
    Pause,
    Received,
    TokenOf,
    Wait,
)
from .secret import Secret

__all__ = ["ASend", "Send", "acarry_out", "adrive", "carry_out", "drive"]

T = TypeVar("T")
#: How a driver sends one request (once: no retries) and reads its answer.
Send = Callable[[HttpRequest], HttpResponse]
ASend = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _Done:
    """The flow returned ``value`` (a critical step may end the flow)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _advance(flow: Flow[Any], value: Answer, keeper: Keeper | None) -> Effect | _Done:
    """Send ``value`` into the flow; keep a :class:`Received` token at once. The next step, or
    :class:`_Done`."""
    try:
        step = flow.send(value)
        while isinstance(step, Received):
            if keeper is not None:
                keeper.keep(step)
            step = flow.send(None)
    except StopIteration as stop:
        return _Done(stop.value)
    return step


def _critical_step(flow: Flow[Any], send: Send, request: HttpRequest,
                   keeper: Keeper) -> Effect | _Done:
    """Confirm the lock, send once, and advance the flow past keeping what it received."""
    keeper.confirm()
    return _advance(flow, send(request), keeper)


def _thrown(flow: Flow[Any], exc: BaseException) -> Effect | _Done:
    """Throw ``exc``, raised while carrying out the flow's last effect, into the flow (as h11's
    ``send_failed``): the flow may handle it and go on. A flow that has ended (it raised inside a
    critical step) or that does not catch it makes the driver raise it as it is."""
    if inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED:
        raise exc
    try:
        return flow.throw(exc)
    except StopIteration as stop:
        return _Done(stop.value)


def _answered(flow: Flow[Any], answer: Answer) -> Effect | _Done:
    try:
        return flow.send(answer)
    except StopIteration as stop:
        return _Done(stop.value)


def _critical(keeper: Keeper | None, step: Effect) -> HttpRequest | None:
    return step if isinstance(step, HttpRequest) and keeper is not None and not step.idempotent \
        else None


def _start(flow: Flow[Any]) -> Effect | _Done:
    try:
        return next(flow)
    except StopIteration as stop:
        return _Done(stop.value)


def _not_here(step: Effect) -> TypeError:
    return TypeError(f"{type(step).__name__} is sent by a driver with a transport, not carried out "
                     "alone: drive the flow with keyturn.transport.run/arun")


def carry_out(step: Effect, sleep: Callable[[float], None] = time.sleep,
              keeper: Keeper | None = None) -> Answer:
    """Carry out one effect that is not an HTTP request, in this thread; what to send back."""
    if isinstance(step, CurrentToken):
        return step.source.get_token()  # a Token: its repr shows a hash
    if isinstance(step, TokenOf):
        # A Secret at once: the driver's frame never holds the token itself.
        return Secret(step.source.get_access_token())
    if isinstance(step, Invalidate):
        step.source.invalidate(step.token.access_token)
        return None
    if isinstance(step, Wait):
        sleep(max(0.0, step.until - time.time()))
        return time.time()
    if isinstance(step, Pause):
        sleep(step.seconds)
        return None
    if isinstance(step, Received):
        if keeper is not None:
            keeper.keep(step)
        return None
    if isinstance(step, Blocking):
        return step.call()
    raise _not_here(step)


async def acarry_out(step: Effect, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                     keeper: Keeper | None = None) -> Answer:
    """:func:`carry_out` for async callers: the event loop is never blocked."""
    if isinstance(step, CurrentToken):
        return await step.source.aget_token()
    if isinstance(step, TokenOf):
        return Secret(await step.source.aget_access_token())
    if isinstance(step, Invalidate):
        # invalidate() writes the store (a file, Redis) under its lock: a keyturn source does it
        # with ainvalidate, awaited, no thread waiting on the lock. A source without one (an
        # adapter's TokenSource, an SDK author's) in a thread of its own, never the loop's default
        # executor: fifty 401s could fill its few workers, each waiting for the store's lock,
        # while the refresh holding that lock waits for a worker (keyturn._uninterrupted).
        ainvalidate = getattr(step.source, "ainvalidate", None)
        if ainvalidate is not None:
            await ainvalidate(step.token.access_token)
        else:
            await thread_future(functools.partial(step.source.invalidate,
                                                  step.token.access_token))
        return None
    if isinstance(step, Wait):
        await sleep(max(0.0, step.until - time.time()))
        return time.time()
    if isinstance(step, Pause):
        await sleep(step.seconds)
        return None
    if isinstance(step, Received):
        if keeper is not None:
            keeper.keep(step)
        return None
    if isinstance(step, Blocking):
        # A thread of its own, not the loop's default executor: a login waits here under the
        # store's lock, for minutes (see keyturn._uninterrupted.thread_future).
        return await thread_future(step.call)
    raise _not_here(step)


def drive(flow: Flow[T], send: Send, sleep: Callable[[float], None] = time.sleep, *,
          keeper: Keeper | None = None) -> T:
    """Carry out ``flow`` to its result; with ``keeper``, each non-idempotent request is a
    critical step (see the module's docstring)."""
    step = _start(flow)
    while not isinstance(step, _Done):
        try:
            request = _critical(keeper, step)
            if request is not None:
                assert keeper is not None
                step = to_the_end(functools.partial(_critical_step, flow, send, request, keeper))
                continue
            answer = (send(step) if isinstance(step, HttpRequest)
                      else carry_out(step, sleep, keeper))
        except BaseException as exc:
            step = _thrown(flow, exc)
            continue
        step = _answered(flow, answer)
    result: T = step.value
    return result


async def adrive(flow: Flow[T], send: ASend, sleep: Callable[[float], Awaitable[None]] | None = None,
                 *, keeper: Keeper | None = None, send_critical: Send | None = None) -> T:
    """:func:`drive` for async callers; never blocks the event loop (a :class:`Blocking` call
    runs in a thread of its own). With ``keeper`` (and ``send_critical``), each non-idempotent
    request is a critical step, sent with ``send_critical`` from a worker thread (see the module's
    docstring). ``sleep`` is ``asyncio.sleep`` unless given."""
    if keeper is not None and send_critical is None:
        raise TypeError("adrive(keeper=...) needs send_critical= for its critical steps")
    pause = asyncio.sleep if sleep is None else sleep
    step = _start(flow)
    while not isinstance(step, _Done):
        try:
            request = _critical(keeper, step)
            if request is not None:
                assert keeper is not None and send_critical is not None
                step = await ato_the_end(
                    functools.partial(_critical_step, flow, send_critical, request, keeper))
                continue
            answer = (await send(step) if isinstance(step, HttpRequest)
                      else await acarry_out(step, pause, keeper))
        except BaseException as exc:
            step = _thrown(flow, exc)
            continue
        step = _answered(flow, answer)
    result: T = step.value
    return result
