"""The only place where a protocol flow meets the network: :func:`run` and :func:`arun`, and the
:class:`Transport` of a source (its settings and its httpx client) that calls them.

Both drivers carry out the same generator from ``protocol`` (its effects: see
:mod:`keyturn.protocol.http`); they differ only in ``await``. An effect that fails is thrown into
the flow. Retries are applied here, by the immutable :class:`RetryPolicy` of :mod:`keyturn._retry`
(after urllib3's ``Retry``): a connection error, a timeout, 429 or a 5xx is retried with
exponential backoff and jitter, honouring ``Retry-After``; an OAuth error (4xx) never is, because
asking again cannot change the answer. A non-idempotent request is retried only when it surely was
not acted on: a connection error, 429 or 503.

A non-idempotent request (a rotating refresh token, a code) is what the server acts on once: its
answer is all there is. With a :class:`Keeper` (the cache gives one), the drivers therefore run
"confirm the refresh lock, send, receive, parse, keep the token" as one *critical step* that an
interrupt cannot split (:mod:`keyturn._uninterrupted`): in a worker thread, which a
KeyboardInterrupt (or any exception a signal handler raises) in the caller, a task cancellation or
``asyncio.run``'s shutdown does not stop; the interrupt reaches the caller once the token is kept.
The async driver sends that one request with a sync client in the worker thread for this reason:
an asyncio task can be cancelled mid-answer, a thread cannot.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ._retry import NOT_PROCESSED_STATUS, RETRY_STATUS, RetryPolicy, retry_after
from ._tls import shared_tls_context
from ._uninterrupted import ato_the_end, thread_future, to_the_end
from .errors import InvalidResponse, TransportError, safe_url
from .protocol.http import (
    Answer,
    Blocking,
    Effect,
    Flow,
    HttpRequest,
    HttpResponse,
    Keeper,
    Received,
    TokenOf,
    Wait,
)
from .secret import Secret

__all__ = ["HttpSettings", "Keeper", "RetryPolicy", "Transport", "arun", "run"]

T = TypeVar("T")
log = logging.getLogger("keyturn.transport")

#: A token or metadata response is a few kilobytes; a megabyte means something is wrong.
MAX_BODY = 1 << 20
#: The default policy (immutable: one is enough).
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class HttpSettings:
    """TLS and timeout settings shared by the sync and async clients of one source."""

    verify: Any = True
    cert: Any = None
    timeout: float = 30.0
    retry: RetryPolicy = DEFAULT_RETRY
    _tls: dict[str, ssl.SSLContext] = field(default_factory=dict, compare=False, repr=False)

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context, built once: loading a CA bundle takes tens of milliseconds, which
        would otherwise be paid at every refresh and, in async code, stall the event loop."""
        context = self._tls.get("context")
        if context is None:
            context = self._tls.setdefault("context", shared_tls_context(self.verify, self.cert))
        return context

    def client(self) -> httpx.Client:
        return httpx.Client(verify=self.tls_context(), timeout=self.timeout,
                            follow_redirects=False, trust_env=False)

    async def async_client(self) -> httpx.AsyncClient:
        if "context" not in self._tls:
            await thread_future(self.tls_context)  # off the loop: it reads files
        return httpx.AsyncClient(verify=self.tls_context(), timeout=self.timeout,
                                 follow_redirects=False, trust_env=False)


class Transport:
    """One source's HTTP: its settings, the sync client it makes on first use (shared by every
    thread of the source), and :func:`run` / :func:`arun` with them. The only owner of the httpx
    clients of the sources (the httpx adapter sends on the caller's own client)."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport(timeout={self.settings.timeout}, retry={self.settings.retry!r})"

    def client(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self.settings.client()
                client = self._client
        return client

    def run(self, flow: Flow[T], *, keeper: Keeper | None = None) -> T:
        """``flow`` carried out with the sync client; ``keeper`` keeps what a token endpoint
        answered to a request that cannot be sent again (see the module's docstring)."""
        return run(flow, self.client(), self.settings.retry, keeper=keeper)

    async def arun(self, flow: Flow[T], *, keeper: Keeper | None = None) -> T:
        """``flow`` carried out without blocking the event loop. A fresh async client each time:
        refreshes are rare, and an AsyncClient is bound to the loop it was first used on, while a
        source may serve several loops. The critical steps go out with the sync client."""
        async with await self.settings.async_client() as client:
            return await arun(flow, client, self.settings.retry, keeper=keeper,
                              sync_client=self.client() if keeper is not None else None)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


def _transport_error(request: HttpRequest, exc: httpx.HTTPError) -> TransportError:
    kinds: dict[type[Exception], str] = {
        httpx.ConnectError: "could not connect to",
        httpx.ConnectTimeout: "timed out connecting to",
        httpx.ReadTimeout: "timed out waiting for",
        httpx.WriteTimeout: "timed out sending to",
        httpx.PoolTimeout: "timed out waiting for a connection to",
    }
    kind = kinds.get(type(exc), "failed to talk to")
    return TransportError(
        f"{kind} the {request.purpose} {safe_url(request.url)} ({exc.__class__.__name__}): check "
        "the URL, the network and TLS settings",
        url=request.url,
    )


def _may_retry(request: HttpRequest, exc: httpx.HTTPError) -> bool:
    # A request that surely never reached the server can always be sent again; one that may have
    # (a read timeout) only when doing it twice is harmless.
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)) or (
        request.idempotent and isinstance(exc, httpx.TransportError)
    )


def _body_too_large(request: HttpRequest, status: int) -> InvalidResponse:
    return InvalidResponse(
        f"the {request.purpose} sent more than {MAX_BODY} bytes: not a token response",
        url=request.url, status=status,
    )


def _send(client: httpx.Client, request: HttpRequest) -> HttpResponse:
    # The request's own mappings go to httpx as they are, not copied into dicts: they show their
    # secrets (the Basic credentials, a refresh token) only as tags in the locals of httpx's
    # frames too, should a traceback show them (an interrupt while sending).
    with client.stream(
        request.method, request.url, headers=request.headers, data=request.form,
    ) as response:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                chunks.clear()  # the body read so far is no local of this traceback
                raise _body_too_large(request, response.status_code)
            chunks.append(chunk)
        return HttpResponse(response.status_code, dict(response.headers), b"".join(chunks),
                            request.url)


async def _asend(client: httpx.AsyncClient, request: HttpRequest) -> HttpResponse:
    async with client.stream(
        request.method, request.url, headers=request.headers, data=request.form,
    ) as response:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                chunks.clear()
                raise _body_too_large(request, response.status_code)
            chunks.append(chunk)
        return HttpResponse(response.status_code, dict(response.headers), b"".join(chunks),
                            request.url)


def _next_step(
    request: HttpRequest, policy: RetryPolicy, response: HttpResponse | None,
    exc: httpx.HTTPError | None,
) -> tuple[float | None, RetryPolicy]:
    """Whether to retry (the delay) or not (None), and the policy for the next attempt."""
    if exc is not None:
        if policy.exhausted or not _may_retry(request, exc):
            raise _transport_error(request, exc) from None
        return policy.delay(), policy.increment()
    assert response is not None
    retryable = RETRY_STATUS if request.idempotent else NOT_PROCESSED_STATUS
    if response.status in retryable and not policy.exhausted:
        log.info("%s %s answered %s; retrying", request.purpose, safe_url(request.url),
                 response.status)
        return policy.delay(retry_after(response)), policy.increment()
    return None, policy


def _attempt(
    send: Callable[[HttpRequest], HttpResponse], request: HttpRequest, policy: RetryPolicy,
) -> tuple[HttpResponse | None, float | None, RetryPolicy]:
    """One try at ``request``: the response when it is final, else the delay before the next."""
    try:
        response: HttpResponse | None = send(request)
        error: httpx.HTTPError | None = None
    except httpx.HTTPError as exc:
        response, error = None, exc
    delay, policy = _next_step(request, policy, response, error)
    return (response if delay is None else None), delay, policy


def _exchange(
    send: Callable[[HttpRequest], HttpResponse], request: HttpRequest, policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> HttpResponse:
    while True:
        response, delay, policy = _attempt(send, request, policy)
        if response is not None:
            return response
        assert delay is not None
        sleep(delay)


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


def _critical_step(
    flow: Flow[Any], send: Callable[[HttpRequest], HttpResponse], request: HttpRequest,
    policy: RetryPolicy, keeper: Keeper,
) -> tuple[Effect | _Done | None, float | None, RetryPolicy]:
    """Confirm the lock, send once, and on a final answer advance the flow past keeping it."""
    keeper.confirm()
    response, delay, policy = _attempt(send, request, policy)
    if response is None:
        return None, delay, policy
    return _advance(flow, response, keeper), None, policy


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


def _critical(keeper: Keeper | None, step: Effect) -> HttpRequest | None:
    return step if isinstance(step, HttpRequest) and keeper is not None and not step.idempotent \
        else None


def run(flow: Flow[T], client: httpx.Client, policy: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep, *, keeper: Keeper | None = None) -> T:
    """Drive ``flow`` to its result with a sync client; with ``keeper``, each non-idempotent
    request is a critical step (see the module's docstring). An effect that fails is thrown into
    the flow (see :mod:`keyturn.protocol.http`)."""

    def send(request: HttpRequest) -> HttpResponse:
        return _send(client, request)

    try:
        step: Effect | _Done = next(flow)
    except StopIteration as stop:
        done: T = stop.value
        return done
    while not isinstance(step, _Done):
        try:
            request = _critical(keeper, step)
            if request is not None:
                assert keeper is not None
                attempt = policy
                while True:
                    advanced, delay, attempt = to_the_end(
                        functools.partial(_critical_step, flow, send, request, attempt, keeper))
                    if delay is None:
                        break
                    sleep(delay)
                assert advanced is not None
                step = advanced
                continue
            answer: Answer
            if isinstance(step, Wait):
                sleep(max(0.0, step.until - time.time()))
                answer = time.time()
            elif isinstance(step, Received):
                if keeper is not None:
                    keeper.keep(step)
                answer = None
            elif isinstance(step, Blocking):
                answer = step.call()
            elif isinstance(step, TokenOf):
                # A Secret at once: the driver's frame never holds the token itself.
                answer = Secret(step.source.get_access_token())
            else:
                answer = _exchange(send, step, policy, sleep)
        except BaseException as exc:
            step = _thrown(flow, exc)
            continue
        step = _advance_to(flow, answer)
    result: T = step.value
    return result


def _advance_to(flow: Flow[Any], answer: Answer) -> Effect | _Done:
    try:
        return flow.send(answer)
    except StopIteration as stop:
        return _Done(stop.value)


async def arun(flow: Flow[T], client: httpx.AsyncClient, policy: RetryPolicy = DEFAULT_RETRY, *,
               keeper: Keeper | None = None, sync_client: httpx.Client | None = None) -> T:
    """Drive ``flow`` to its result with an async client; never blocks the event loop (a
    :class:`Blocking` call runs in a worker thread). With ``keeper`` (and ``sync_client``), each
    non-idempotent request is a critical step, sent with ``sync_client`` from a worker thread (see
    the module's docstring). An effect that fails is thrown into the flow."""
    if keeper is not None and sync_client is None:
        raise TypeError("arun(keeper=...) needs sync_client= for its critical steps")

    def send(request: HttpRequest) -> HttpResponse:
        assert sync_client is not None
        return _send(sync_client, request)

    try:
        step: Effect | _Done = next(flow)
    except StopIteration as stop:
        done: T = stop.value
        return done
    while not isinstance(step, _Done):
        try:
            request = _critical(keeper, step)
            if request is not None:
                assert keeper is not None
                attempt = policy
                while True:
                    advanced, delay, attempt = await ato_the_end(
                        functools.partial(_critical_step, flow, send, request, attempt, keeper))
                    if delay is None:
                        break
                    await asyncio.sleep(delay)
                assert advanced is not None
                step = advanced
                continue
            answer: Answer
            if isinstance(step, Wait):
                await asyncio.sleep(max(0.0, step.until - time.time()))
                answer = time.time()
            elif isinstance(step, Received):
                if keeper is not None:
                    keeper.keep(step)
                answer = None
            elif isinstance(step, Blocking):
                # A thread of its own, not the loop's default executor: a login waits here
                # under the store's lock, for minutes (see keyturn._uninterrupted.thread_future).
                answer = await thread_future(step.call)
            elif isinstance(step, TokenOf):
                answer = Secret(await step.source.aget_access_token())
            else:
                attempt = policy
                while True:
                    response, delay, attempt = await _aattempt(client, step, attempt)
                    if response is not None:
                        break
                    assert delay is not None
                    await asyncio.sleep(delay)
                answer = response
        except BaseException as exc:
            step = _thrown(flow, exc)
            continue
        step = _advance_to(flow, answer)
    result: T = step.value
    return result


async def _aattempt(
    client: httpx.AsyncClient, request: HttpRequest, policy: RetryPolicy,
) -> tuple[HttpResponse | None, float | None, RetryPolicy]:
    """The async twin of :func:`_attempt`."""
    try:
        response: HttpResponse | None = await _asend(client, request)
        error: httpx.HTTPError | None = None
    except httpx.HTTPError as exc:
        response, error = None, exc
    delay, policy = _next_step(request, policy, response, error)
    return (response if delay is None else None), delay, policy
