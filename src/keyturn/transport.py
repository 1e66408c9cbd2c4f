"""The only place where a protocol flow meets the network: :func:`run` and :func:`arun`.

Both drive the same generator from ``protocol``; they differ only in ``await``. Retries live here
too, as an immutable :class:`RetryPolicy` (after urllib3's ``Retry``): a connection error, a timeout,
429 or a 5xx is retried with exponential backoff and jitter, honouring ``Retry-After``; an OAuth
error (4xx) never is, because asking again cannot change the answer. A non-idempotent request is
retried only when it surely was not acted on: a connection error, 429 or 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from .errors import ConfigError, InvalidResponse, TransportError, safe_url
from .protocol.http import Flow, HttpRequest, HttpResponse, Wait

__all__ = ["HttpSettings", "RetryPolicy", "arun", "run"]

T = TypeVar("T")
log = logging.getLogger("keyturn.transport")

#: A token or metadata response is a few kilobytes; a megabyte means something is wrong.
MAX_BODY = 1 << 20
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: Answers that say the request was not processed (RFC 6585 §4, RFC 9110 §15.6.4): the only ones after
#: which a non-idempotent request (a rotating refresh token) may be sent again. After a 500, 502 or
#: 504 the server, or the one behind the gateway, may already have acted on it.
_NOT_PROCESSED_STATUS = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. Immutable: :meth:`increment` returns the next policy."""

    total: int = 2
    backoff: float = 0.5
    backoff_max: float = 8.0
    retry_after_max: float = 30.0
    attempt: int = 0

    def increment(self) -> RetryPolicy:
        return replace(self, attempt=self.attempt + 1)

    @property
    def exhausted(self) -> bool:
        return self.attempt >= self.total

    def delay(self, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_max)
        # "Full jitter": a fleet that failed together does not retry together.
        ceiling = min(self.backoff_max, self.backoff * (2**self.attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not security


@dataclass(frozen=True)
class HttpSettings:
    """TLS and timeout settings shared by the sync and async clients of one source."""

    verify: Any = True
    cert: Any = None
    timeout: float = 30.0
    retry: RetryPolicy = RetryPolicy()
    _tls: dict[str, ssl.SSLContext] = field(default_factory=dict, compare=False, repr=False)

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context, built once: loading a CA bundle takes tens of milliseconds, which
        would otherwise be paid at every refresh and, in async code, stall the event loop."""
        context = self._tls.get("context")
        if context is None:
            context = self._tls.setdefault("context", _shared_tls_context(self.verify, self.cert))
        return context

    def client(self) -> httpx.Client:
        return httpx.Client(verify=self.tls_context(), timeout=self.timeout,
                            follow_redirects=False, trust_env=False)

    async def async_client(self) -> httpx.AsyncClient:
        if "context" not in self._tls:
            await asyncio.to_thread(self.tls_context)  # off the loop: it reads files
        return httpx.AsyncClient(verify=self.tls_context(), timeout=self.timeout,
                                 follow_redirects=False, trust_env=False)


_TLS_CONTEXTS: dict[tuple[Any, Any], ssl.SSLContext] = {}


def _shared_tls_context(verify: Any, cert: Any) -> ssl.SSLContext:
    """One context per process for each (verify, cert): every source of a process pays the CA
    bundle load once. A context given by the caller is used as it is."""
    if isinstance(verify, ssl.SSLContext):
        return _build_tls_context(verify, cert)
    key = (verify, tuple(cert) if isinstance(cert, list) else cert)
    try:
        context = _TLS_CONTEXTS.get(key)
    except TypeError:  # unhashable settings: not shared
        return _build_tls_context(verify, cert)
    if context is None:
        context = _TLS_CONTEXTS.setdefault(key, _build_tls_context(verify, cert))
    return context


def _build_tls_context(verify: Any, cert: Any) -> ssl.SSLContext:
    """``verify``: True (certifi's CAs, as httpx), False, a CA file or directory, or a ready
    SSLContext. ``cert``: a client certificate (RFC 8705 mutual TLS) as a path to a PEM holding
    certificate and key, or a tuple (certificate, key[, password])."""
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if not os.path.exists(path):
            raise ConfigError(f"verify={path!r}: no such CA file or directory")
        context = (ssl.create_default_context(capath=path) if os.path.isdir(path)
                   else ssl.create_default_context(cafile=path))
    else:
        raise ConfigError("verify= must be True, False, a CA file or directory, or an SSLContext")
    if cert is not None:
        parts = (cert,) if isinstance(cert, (str, os.PathLike)) else tuple(cert)
        try:
            context.load_cert_chain(*parts)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cert= could not be loaded ({exc.__class__.__name__}): give the "
                              "client certificate and its key as PEM files") from None
    return context


def _retry_after(response: HttpResponse) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else seconds
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


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
    with client.stream(
        request.method, request.url, headers=dict(request.headers),
        data=dict(request.form) if request.form is not None else None,
    ) as response:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
                raise _body_too_large(request, response.status_code)
            chunks.append(chunk)
        return HttpResponse(response.status_code, dict(response.headers), b"".join(chunks),
                            request.url)


async def _asend(client: httpx.AsyncClient, request: HttpRequest) -> HttpResponse:
    async with client.stream(
        request.method, request.url, headers=dict(request.headers),
        data=dict(request.form) if request.form is not None else None,
    ) as response:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_BODY:
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
    retryable = _RETRY_STATUS if request.idempotent else _NOT_PROCESSED_STATUS
    if response.status in retryable and not policy.exhausted:
        log.info("%s %s answered %s; retrying", request.purpose, safe_url(request.url),
                 response.status)
        return policy.delay(_retry_after(response)), policy.increment()
    return None, policy


def _exchange(
    send: Callable[[HttpRequest], HttpResponse], request: HttpRequest, policy: RetryPolicy,
    sleep: Callable[[float], None],
) -> HttpResponse:
    while True:
        try:
            response: HttpResponse | None = send(request)
            error: httpx.HTTPError | None = None
        except httpx.HTTPError as exc:
            response, error = None, exc
        delay, policy = _next_step(request, policy, response, error)
        if delay is None:
            assert response is not None
            return response
        sleep(delay)


def run(flow: Flow[T], client: httpx.Client, policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep) -> T:
    """Drive ``flow`` to its result with a sync client."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Wait):
                sleep(max(0.0, step.until - time.time()))
                step = flow.send(time.time())
                continue
            request: HttpRequest = step
            response = _exchange(lambda r: _send(client, r), request, policy, sleep)
            step = flow.send(response)
    except StopIteration as stop:
        result: T = stop.value
        return result


async def arun(flow: Flow[T], client: httpx.AsyncClient, policy: RetryPolicy = RetryPolicy()) -> T:
    """Drive ``flow`` to its result with an async client; never blocks the event loop."""
    try:
        step = next(flow)
        while True:
            if isinstance(step, Wait):
                await asyncio.sleep(max(0.0, step.until - time.time()))
                step = flow.send(time.time())
                continue
            request: HttpRequest = step
            attempt = policy
            while True:
                try:
                    response: HttpResponse | None = await _asend(client, request)
                    error: httpx.HTTPError | None = None
                except httpx.HTTPError as exc:
                    response, error = None, exc
                delay, attempt = _next_step(request, attempt, response, error)
                if delay is None:
                    break
                await asyncio.sleep(delay)
            assert response is not None
            step = flow.send(response)
    except StopIteration as stop:
        result: T = stop.value
        return result
