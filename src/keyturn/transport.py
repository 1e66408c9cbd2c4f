"""Where a protocol flow meets the network: :func:`run` and :func:`arun` carry it out over httpx,
and the :class:`Transport` of a source (its settings and its httpx client) calls them. The only
module of the client that imports httpx (besides the httpx adapter, which sends on the caller's
own client).

A request goes out once per effect, its body read up to :data:`MAX_BODY`; an httpx failure becomes
a :class:`~keyturn.errors.TransportError` naming the endpoint, which says whether the request may
have reached the server. The flow is wrapped in :func:`keyturn._retry.retrying` with the
immutable :class:`RetryPolicy` and carried out by the drivers of :mod:`keyturn._drivers`, which
keep what a non-idempotent request brought in an uninterruptible critical step (see there).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from ._drivers import adrive, drive
from ._retry import RetryPolicy, retrying
from ._tls import ClientCert, TlsVerify, shared_tls_context
from ._uninterrupted import thread_future
from .errors import InvalidResponse, TransportError, safe_url
from .protocol.http import Flow, HttpRequest, HttpResponse, Keeper

__all__ = ["HttpSettings", "Keeper", "RetryPolicy", "Transport", "arun", "run"]

T = TypeVar("T")

#: A token or metadata response is a few kilobytes; a megabyte means something is wrong.
MAX_BODY = 1 << 20
#: The default policy (immutable: one is enough).
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class HttpSettings:
    """TLS and timeout settings shared by the sync and async clients of one source."""

    verify: TlsVerify = True
    cert: ClientCert | None = None
    timeout: float = 30.0
    #: A proxy URL, ``"none"`` to go direct, or None for the proxy environment variables.
    proxy: str | None = None
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


#: httpx's failures that surely never reached the server: nothing was sent.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


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
        url=request.url, reached_server=not isinstance(exc, _NOT_SENT),
        # Not a failure of the network (a body whose encoding is broken): the server answered.
        answered=not isinstance(exc, httpx.TransportError),
    )


def _body_too_large(request: HttpRequest, status: int) -> InvalidResponse:
    return InvalidResponse(
        f"the {request.purpose} sent more than {MAX_BODY} bytes: not a token response",
        url=request.url, status=status,
    )


def _send(client: httpx.Client, request: HttpRequest) -> HttpResponse:
    """``request`` sent once with ``client``; an httpx failure as a :class:`TransportError`."""
    # The request's own mappings go to httpx as they are, not copied into dicts: they show their
    # secrets (the Basic credentials, a refresh token) only as tags in the locals of httpx's
    # frames too, should a traceback show them (an interrupt while sending).
    try:
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
    except httpx.HTTPError as exc:
        raise _transport_error(request, exc) from None


async def _asend(client: httpx.AsyncClient, request: HttpRequest) -> HttpResponse:
    """:func:`_send` with an async client."""
    try:
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
    except httpx.HTTPError as exc:
        raise _transport_error(request, exc) from None


def run(flow: Flow[T], client: httpx.Client, policy: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep, *, keeper: Keeper | None = None) -> T:
    """Carry out ``flow`` to its result with a sync client, its requests retried by ``policy``;
    with ``keeper``, each non-idempotent request is a critical step (:mod:`keyturn._drivers`).
    An effect that fails is thrown into the flow (see :mod:`keyturn.protocol.http`)."""

    def send(request: HttpRequest) -> HttpResponse:
        return _send(client, request)

    return drive(retrying(flow, policy), send, sleep, keeper=keeper)


async def arun(flow: Flow[T], client: httpx.AsyncClient, policy: RetryPolicy = DEFAULT_RETRY, *,
               keeper: Keeper | None = None, sync_client: httpx.Client | None = None) -> T:
    """Carry out ``flow`` to its result with an async client, its requests retried by ``policy``;
    never blocks the event loop. With ``keeper`` (and ``sync_client``), each non-idempotent
    request is a critical step, sent with ``sync_client`` from a worker thread."""
    if keeper is not None and sync_client is None:
        raise TypeError("arun(keeper=...) needs sync_client= for its critical steps")

    async def asend(request: HttpRequest) -> HttpResponse:
        return await _asend(client, request)

    def send_critical(request: HttpRequest) -> HttpResponse:
        assert sync_client is not None
        return _send(sync_client, request)

    return await adrive(retrying(flow, policy), asend, asyncio.sleep, keeper=keeper,
                        send_critical=send_critical if sync_client is not None else None)
