"""Where a protocol flow meets the network: :func:`run` and :func:`arun` carry it out over httpx,
and the :class:`Transport` of a source (its settings and its httpx client) calls them. The only
module of the client that imports httpx (besides the httpx adapter, which sends on the caller's
own client).

A request goes out once per effect, its body read up to :data:`MAX_BODY`; an httpx failure becomes
a :class:`~keyturn.errors.TransportError` naming the endpoint, which says whether the request may
have reached the server. The flow is wrapped in :func:`keyturn._retry.retrying` with the
immutable :class:`RetryPolicy` and carried out by the drivers of :mod:`keyturn._drivers`, which
keep what a non-idempotent request brought in an uninterruptible critical step (see there).

The clients take nothing from the environment (``trust_env=False``: no ``.netrc``, no
``SSL_CERT_FILE``) but the proxy variables, read by :mod:`keyturn._proxy` when a client is built:
each request then goes through the proxy its URL calls for (:class:`_Router`), an https one through
``CONNECT`` with the server's certificate verified as without a proxy.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import httpx

from . import _proxy
from ._drivers import adrive, drive
from ._retry import RetryPolicy, retrying
from ._tls import ClientCert, TlsVerify, shared_tls_context
from ._uninterrupted import thread_future
from .errors import ConfigError, InvalidResponse, TransportError, safe_url
from .protocol.http import Flow, HttpRequest, HttpResponse, Keeper
from .secret import Secret

__all__ = ["HttpSettings", "Keeper", "RetryPolicy", "Transport", "arun", "run"]

T = TypeVar("T")
log = logging.getLogger("keyturn.transport")

#: A token or metadata response is a few kilobytes; a megabyte means something is wrong.
MAX_BODY = 1 << 20
#: The default policy (immutable: one is enough).
DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True, init=False)
class HttpSettings:
    """TLS and timeout settings shared by the sync and async clients of one source."""

    verify: TlsVerify
    cert: ClientCert | None
    timeout: float
    #: A proxy URL, ``"none"`` to go direct, or None for the proxy environment variables. Kept
    #: as a :class:`~keyturn.secret.Secret` (a given ``str`` is wrapped): the URL may hold the
    #: proxy's password, and every frame of a traceback that holds these settings shows them.
    proxy: Secret[str] | None
    retry: RetryPolicy
    _tls: dict[str, ssl.SSLContext] = field(init=False, compare=False, repr=False)

    def __init__(self, verify: TlsVerify = True, cert: ClientCert | None = None,
                 timeout: float = 30.0, proxy: str | Secret[str] | None = None,
                 retry: RetryPolicy = DEFAULT_RETRY) -> None:
        # Not the dataclass's __init__: ``proxy`` is taken as a str too, and kept as a Secret.
        concealed = None if proxy is None else Secret.wrap(proxy)
        for name, value in (("verify", verify), ("cert", cert), ("timeout", timeout),
                            ("proxy", concealed), ("retry", retry), ("_tls", {})):
            object.__setattr__(self, name, value)
        if self.proxy is not None and not _proxy.is_direct(self.proxy):
            _proxy.check_proxy_url(self.proxy)  # a ConfigError when the source is made

    def tls_context(self) -> ssl.SSLContext:
        """The TLS context, built once: loading a CA bundle takes tens of milliseconds, which
        would otherwise be paid at every refresh and, in async code, stall the event loop."""
        context = self._tls.get("context")
        if context is None:
            context = self._tls.setdefault("context", shared_tls_context(self.verify, self.cert))
        return context

    def __repr__(self) -> str:
        # Not the dataclass's: the proxy URL may hold a password.
        return (f"HttpSettings(verify={self.verify!r}, cert={self.cert!r}, timeout={self.timeout}, "
                f"proxy={_proxy.shown(self.proxy)!r}, retry={self.retry!r})")

    def proxy_rules(self) -> _proxy.ProxyRules:
        """Which proxy each URL goes through: ``proxy=``, else the environment as it is now."""
        rules = _proxy.proxy_rules(self.proxy)
        if rules.routes:
            log.debug("keyturn goes through %r", rules)
        return rules

    def proxy_tls_context(self) -> ssl.SSLContext:
        """The context for an ``https://`` proxy: the same CAs, not the client certificate (the
        proxy is not the server the certificate authenticates to). A ``verify=`` SSLContext of
        the caller's serves both, with whatever certificate it holds (it cannot be copied)."""
        context = self._tls.get("proxy")
        if context is None:
            context = self._tls.setdefault("proxy", shared_tls_context(self.verify, None))
        return context

    def _warm(self, rules: _proxy.ProxyRules) -> None:
        """Build the contexts a client of ``rules`` uses (each may read a CA file)."""
        self.tls_context()
        if any(_https(route) for route in rules.distinct()):
            self.proxy_tls_context()

    def client(self) -> httpx.Client:
        rules = self.proxy_rules()
        direct = _transport(self, None)
        transport: httpx.BaseTransport = direct if not rules.routes else _Router(
            rules, direct, {route.url: _transport(self, route) for route in rules.distinct()})
        return httpx.Client(transport=transport, timeout=self.timeout, follow_redirects=False,
                            trust_env=False)

    async def async_client(self) -> httpx.AsyncClient:
        rules = self.proxy_rules()
        if "context" not in self._tls or ("proxy" not in self._tls and any(
                _https(route) for route in rules.distinct())):
            await thread_future(lambda: self._warm(rules))  # off the loop: it reads files
        direct = _async_transport(self, None)
        transport: httpx.AsyncBaseTransport = direct if not rules.routes else _AsyncRouter(
            rules, direct, {route.url: _async_transport(self, route) for route in rules.distinct()})
        return httpx.AsyncClient(transport=transport, timeout=self.timeout,
                                 follow_redirects=False, trust_env=False)


def _https(route: _proxy.Route) -> bool:
    """Whether keyturn talks TLS to the proxy itself."""
    return route.url.lower().startswith("https://")


def _proxy_of(settings: HttpSettings, route: _proxy.Route) -> httpx.Proxy:
    try:
        # httpcore refuses a context for a proxy it does not talk TLS to.
        return httpx.Proxy(route.url,
                           ssl_context=settings.proxy_tls_context() if _https(route) else None)
    except ValueError:  # checked by _proxy already; httpx's words would echo the URL
        raise ConfigError(f"{route.shown} is not a proxy URL httpx can use") from None


def _transport(settings: HttpSettings, route: _proxy.Route | None) -> httpx.HTTPTransport:
    """One connection pool: direct (``route`` None) or through ``route``'s proxy."""
    return httpx.HTTPTransport(verify=settings.tls_context(), trust_env=False,
                               proxy=None if route is None else _proxy_of(settings, route))


def _async_transport(settings: HttpSettings, route: _proxy.Route | None
                     ) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=settings.tls_context(), trust_env=False,
                                    proxy=None if route is None else _proxy_of(settings, route))


#: The attribute of an httpx error that holds the proxy it went through (a :class:`_proxy.Route`).
_VIA = "keyturn_proxy"
_Pool = TypeVar("_Pool", httpx.HTTPTransport, httpx.AsyncHTTPTransport)


def _pool_for(rules: _proxy.ProxyRules, direct: _Pool, proxied: dict[str, _Pool],
              request: httpx.Request) -> tuple[_proxy.Route | None, _Pool]:
    """The proxy ``request`` goes through (None: direct) and its connection pool; a
    :class:`ConfigError` for a proxy variable keyturn cannot use (raised before anything is sent)."""
    route = rules.route_for(str(request.url))
    return route, direct if route is None else proxied[route.url]


def _proxy_refusal(response: httpx.Response, request: httpx.Request) -> httpx.ProxyError | None:
    """A forwarding proxy's own 407 as the error it is, not the endpoint's answer (through CONNECT,
    httpcore raises ProxyError itself), for the caller to raise once it closed the response."""
    if response.status_code == 407 and request.url.scheme == "http":
        return httpx.ProxyError("407 Proxy Authentication Required", request=request)
    return None


@contextmanager
def _tagged(route: _proxy.Route | None) -> Iterator[None]:
    """An httpx failure inside tagged with the proxy it went through, for the error message."""
    try:
        yield
    except httpx.TransportError as exc:
        if route is not None:
            setattr(exc, _VIA, route)
        raise


class _Router(httpx.BaseTransport):
    """Each request to the pool of the proxy its URL calls for (httpx's ``mounts=`` patterns know
    no CIDR ``NO_PROXY`` entries); a failure is tagged with that proxy for the error message."""

    def __init__(self, rules: _proxy.ProxyRules, direct: httpx.HTTPTransport,
                 proxied: dict[str, httpx.HTTPTransport]) -> None:
        self._rules, self._direct, self._proxied = rules, direct, proxied

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        route, pool = _pool_for(self._rules, self._direct, self._proxied, request)
        with _tagged(route):
            response = pool.handle_request(request)
            refusal = _proxy_refusal(response, request) if route is not None else None
            if refusal is not None:
                response.close()
                raise refusal
            return response

    def close(self) -> None:
        self._direct.close()
        for transport in self._proxied.values():
            transport.close()


class _AsyncRouter(httpx.AsyncBaseTransport):
    """:class:`_Router` for the async client: the same helpers, awaited."""

    def __init__(self, rules: _proxy.ProxyRules, direct: httpx.AsyncHTTPTransport,
                 proxied: dict[str, httpx.AsyncHTTPTransport]) -> None:
        self._rules, self._direct, self._proxied = rules, direct, proxied

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route, pool = _pool_for(self._rules, self._direct, self._proxied, request)
        with _tagged(route):
            response = await pool.handle_async_request(request)
            refusal = _proxy_refusal(response, request) if route is not None else None
            if refusal is not None:
                await response.aclose()
                raise refusal
            return response

    async def aclose(self) -> None:
        await self._direct.aclose()
        for transport in self._proxied.values():
            await transport.aclose()


class Transport:
    """One source's HTTP: its settings, the sync client it makes on first use (shared by every
    thread of the source), and :func:`run` / :func:`arun` with them. The only owner of the httpx
    clients of the sources (the httpx adapter sends on the caller's own client)."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"Transport(timeout={self.settings.timeout}, "
                f"proxy={_proxy.shown(self.settings.proxy)!r}, "
                f"retry={self.settings.retry!r})")

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


#: httpx's failures that surely never reached the server: nothing was sent (a proxy that refused
#: to carry a request did not pass it on).
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


def _certificate_failure(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, when that is what failed."""
    seen: BaseException | None = exc
    for _ in range(8):  # httpx's error, httpcore's, then the ssl one
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or seen.reason or "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
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
    endpoint = f"the {request.purpose} {safe_url(request.url)}"
    route: _proxy.Route | None = getattr(exc, _VIA, None)  # set by _Router
    via = route.shown if route is not None else None  # redacted
    certificate = _certificate_failure(exc)
    if certificate is not None:
        through = f" (through the proxy {via})" if via else ""
        message = (f"could not verify the TLS certificate of {endpoint}{through}: {certificate}; "
                   "give verify= the CA file that signed the server's certificate")
    elif isinstance(exc, httpx.ProxyError):
        # The proxy's own answer (its status line, or the SOCKS reply): no secret of ours.
        hint = route.bypass_hint if route is not None else 'go direct with proxy="none"'
        message = (f"the proxy {via} would not carry the request to {endpoint} ({str(exc)[:120]}): "
                   f"check the proxy URL and its credentials, or {hint}")
    elif route is not None and isinstance(exc, _NOT_SENT):
        message = (f"{kind} the proxy {via} on the way to {endpoint} ({exc.__class__.__name__}): "
                   f"check that the proxy runs there, or {route.bypass_hint}")
    else:
        through = f" through the proxy {via}" if via else ""
        message = (f"{kind} {endpoint}{through} ({exc.__class__.__name__}): check the URL, the "
                   "network and TLS settings")
    return TransportError(
        message, url=request.url, reached_server=not isinstance(exc, _NOT_SENT),
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
