"""The ASGI application (starlette): routes, form parsing, client authentication, JSON replies.

Thin on purpose: every decision is in :mod:`.service` (endpoints) or :mod:`.device_flow` (the
device grant's rules); this module turns HTTP into calls, and replies and raised
:class:`~keyturn.errors.OAuthError` (through :func:`~.errors.error_reply`) into HTTP. Routes sit
under the issuer's path, so ``https://host/realm`` works; discovery is also answered at the RFC
8414 location (``/.well-known/oauth-authorization-server/realm``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import OAuthError
from ..secret import SecretFields
from .clientauth import SecretAttempts, authenticate_client
from .config import ClientConfig, ServerConfig
from .errors import OUTAGE_RETRY_AFTER, BadForm, error_reply, storage_outages, unavailable
from .fastroutes import FastRoutes
from .housekeeping import purge_periodically
from .keys import ReadOffTheLoop
from .logformat import ACCESS_FIELDS
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import SHARED_DIR_ENV, Metrics, flush_periodically, token_matches
from .pages import DevicePages
from .passwords import Authenticator, LocalUsers
from .reply import NO_STORE, Reply
from .service import AuthorizationServer
from .storage.base import ServerStorage
from .tokens import load_signer
from .upstream_routes import UpstreamRoutes, sign_in_options

__all__ = ["AccessLog", "create_app"]

log = logging.getLogger("keyturn.server")
access_log = logging.getLogger("keyturn.server.access")

#: Forms are small; a bigger body is refused as soon as more than this has arrived.
MAX_BODY = 64 * 1024
#: RFC 6749 §3.2: "Request and response parameters MUST NOT be included more than once."
_SINGLE = frozenset({"grant_type", "device_code", "refresh_token", "scope", "client_id",
                     "client_secret", "token", "token_type_hint", "user_code", "username",
                     "password", "csrf", "ticket", "decision"})


async def read_form(request: Request) -> SecretFields:
    """The urlencoded body as one value per name; unknown names are kept but never looked at.

    As :class:`~keyturn.secret.SecretFields`: the secrets in it (a client secret, a refresh token,
    a device code, a password) show only as tags in the locals of a server traceback.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        # RFC 6749 §3.2: the client sends parameters "using the "application/x-www-form-urlencoded"
        # format".
        raise BadForm("send the parameters as application/x-www-form-urlencoded")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise BadForm("the request body is too large", 413)
    # Read in chunks and stop past the limit: a chunked body has no Content-Length, and
    # request.body() would hold all of it (uvicorn sets no size limit) before it could be refused.
    body, chunk = bytearray(), b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            body.clear()  # what was read is no local of the BadForm's traceback
            raise BadForm("the request body is too large", 413)
    # Parsed in a helper that raises nothing: the raw body and its pairs are then no locals of
    # this frame when it raises, nor of a handler's traceback.
    parsed = _parse_form(body)
    del body, chunk
    if isinstance(parsed, str):
        raise BadForm(parsed)
    return parsed


def _parse_form(body: bytearray) -> SecretFields | str:
    """The form, or what is wrong with it."""
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return "the request body is not a valid form"
    form = SecretFields()
    for name, value in pairs:
        if name in form and name in _SINGLE:
            return f"the parameter {name} was sent more than once"
        form.setdefault(name, value)
    return form


#: JSONResponse's encoding, with one encoder for all (json.dumps with options makes one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _json(reply: Reply) -> Response:
    return Response(_ENCODER.encode(dict(reply.body)).encode(), status_code=reply.status,
                    headers=dict(reply.headers), media_type="application/json")


def _plain(exc: BadForm) -> Response:
    """A refused form on the verification page: a person reads it, not a client."""
    return Response(exc.error_description, status_code=exc.status or 400, media_type="text/plain")


#: Where an endpoint leaves the authenticated client's id in the ASGI scope, for :class:`AccessLog`.
CLIENT_ID_KEY = "keyturn.client_id"
#: True in a request's scope when its TCP peer is one of the proxies named in
#: ``forwarded_allow_ips`` (set by runner's proxy-headers step, before the client address is
#: replaced by the forwarded one): only then is its X-Request-ID believed.
TRUSTED_PEER_KEY = "keyturn.trusted_peer"

Handler = Callable[[ClientConfig, Mapping[str, str], float], Reply]
#: What runs after the client is authenticated and before the handler: (client, address, now).
Admission = Callable[[ClientConfig, str, float], None]


def _client_endpoint(server: AuthorizationServer, handler: Handler, admit: Admission | None = None
                     ) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadForm as exc:
            return _json(error_reply(exc))

        address = client_address(request)

        def run(attempts: SecretAttempts | None = None) -> Reply:
            now = time.time()
            client = authenticate_client(server.config.clients, request.headers.get("authorization"),
                                         form, attempts or server.secret_attempts(address, now))
            # For the access log: the client, once authenticated (never what was claimed).
            request.scope[CLIENT_ID_KEY] = client.client_id
            if admit is not None:
                admit(client, address, now)
            return handler(client, form, now)

        def run_refreshed() -> Reply:
            server.signer.refresh_if_due()  # here, in the thread, whether or not it signs
            return run()

        try:
            if server.signer.refresh_due():
                reply = await run_in_threadpool(run_refreshed)
            elif server.storage.may_wait:
                # A SQLite lock held by another process or a Redis that stops answering would
                # hold the event loop, and every other request with it: in the threadpool.
                reply = await run_in_threadpool(run)
            else:
                try:
                    # On the loop: the storage is this process's memory, which costs less than
                    # the hop to a thread and back. What may take long runs in the threadpool:
                    # a secret to hash, a due re-read of the keyring (it may wait on a lock), a
                    # token whose kid the keyring does not hold (re-read for it: ReadOffTheLoop).
                    reply = run(_NO_HASHING)
                except (_WouldHash, ReadOffTheLoop):
                    reply = await run_in_threadpool(run)
        except OAuthError as exc:
            # The one place an endpoint's refusal becomes HTTP (RFC 6749 §5.2).
            reply = error_reply(exc)
        return _json(reply)

    return endpoint


class _WouldHash(Exception):
    """The request needs a secret checked against its slow hash: it goes to the threadpool."""


class _NoHashing:
    """The secret checks of a request's first, on-the-loop try: authenticate_client takes a turn
    just before it would hash (a secret this process has not verified yet), and that stops the
    try before anything was counted or changed."""

    def take(self, client_id: str) -> bool:
        raise _WouldHash

    def give_back(self, client_id: str) -> None:  # pragma: no cover - take() never returns
        pass


_NO_HASHING = _NoHashing()


def client_address(request: Request) -> str:
    # Behind a proxy, uvicorn rewrites scope["client"] from X-Forwarded-For only for the proxies
    # named in --forwarded-allow-ips; otherwise this is the TCP peer.
    return request.client.host if request.client else "unknown"


def create_app(
    config: ServerConfig, storage: ServerStorage, issuer: str, *,
    authenticator: Authenticator | None = None,
) -> Starlette:
    """The ASGI app for ``issuer`` (its final public URL, path included)."""
    config.metrics.check_token()  # before a key is made or anything listens
    signer = load_signer(storage, issuer.rstrip("/"), config)
    server = AuthorizationServer(config, storage, signer, issuer)
    prefix = urlsplit(server.issuer).path.rstrip("/")
    options = sign_in_options(config.upstreams, prefix)
    # The password fields only where passwords can be checked (local users, or a site's own
    # authenticator), or where there is no other way to sign in.
    local = authenticator is not None or bool(config.users) or not options
    pages = DevicePages(server, authenticator or LocalUsers(config.users), prefix,
                        sign_in_options=options, local_passwords=local)
    upstreams = UpstreamRoutes(server, pages, config.upstreams, prefix)

    async def metadata(request: Request) -> Response:
        return Response(server.metadata_json(), media_type="application/json")

    async def jwks(request: Request) -> Response:
        # In the threadpool when the keyring is due for a re-read: it waits on the storage (a
        # locked SQLite file, a Redis round trip), which must not stall every other request on
        # the loop. Otherwise the JSON encoded for this ring is sent as it is.
        if signer.refresh_due():
            body = await run_in_threadpool(signer.jwks_json)
        else:
            body = signer.jwks_json()
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        try:
            await run_in_threadpool(storage.ping)
        except Exception:
            log.exception("health check: storage unreachable")
            return JSONResponse({"status": "unavailable"}, status_code=503,
                                headers={"Retry-After": str(OUTAGE_RETRY_AFTER)})
        return JSONResponse({"status": "ok"})

    async def userinfo(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            # Not an OAuth error but a bare challenge: RFC 6750 §3.1, "If the request lacks any
            # authentication information ..., the resource server SHOULD NOT include an error
            # code or other error information."
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer", **NO_STORE})
        try:
            reply = await run_in_threadpool(server.userinfo, token.strip(), time.time())
        except OAuthError as exc:
            reply = error_reply(exc)
        return _json(reply)

    async def device_page(request: Request) -> Response:
        if request.method == "GET":
            return await pages.show(request)
        try:
            form = await read_form(request)
        except BadForm as exc:
            return _plain(exc)
        return await pages.submit(request, form, client_address(request))

    async def device_decision(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadForm as exc:
            return _plain(exc)
        return await pages.decide(request, form)

    async def authorize(request: Request) -> Response:
        return await pages.no_authorization_endpoint(request)

    async def upstream_start(request: Request) -> Response:
        try:
            form = await read_form(request)
        except BadForm as exc:
            return _plain(exc)
        return await upstreams.start(request, form, client_address(request))

    async def upstream_callback(request: Request) -> Response:
        return await upstreams.callback(request)

    async def metrics(request: Request) -> Response:
        token = config.metrics.token
        authorization = request.headers.get("authorization")
        if token is not None and not token_matches(token, authorization):
            # RFC 6750 §3.1: a request that "lacks any authentication information" gets the bare
            # challenge; a bearer token that is wrong, error="invalid_token".
            presented = (authorization or "").partition(" ")[0].lower() == "bearer"
            challenge = 'Bearer error="invalid_token"' if presented else "Bearer"
            return Response(status_code=401, headers={"WWW-Authenticate": challenge})
        # Workers' files are read: in the threadpool.
        text = await run_in_threadpool(server.metrics.render) if server.metrics.shared else \
            server.metrics.render()
        return Response(text, media_type=METRICS_CONTENT_TYPE,
                        headers={"Cache-Control": "no-store"})

    routes = [
        Route(f"{prefix}/authorize", authorize, methods=["GET", "POST"]),
        Route(f"{prefix}/.well-known/openid-configuration", metadata),
        Route(f"{prefix}/.well-known/oauth-authorization-server", metadata),
        Route(f"{prefix}/jwks", jwks),
        Route(f"{prefix}/health", health),
        Route(f"{prefix}/userinfo", userinfo, methods=["GET", "POST"]),
        Route(f"{prefix}/device_authorization",
              _client_endpoint(server, server.device_authorization, server.count_new_grant),
              methods=["POST"]),
        Route(f"{prefix}/token", _client_endpoint(server, server.token), methods=["POST"]),
        Route(f"{prefix}/revoke", _client_endpoint(server, server.revoke), methods=["POST"]),
        Route(f"{prefix}/introspect", _client_endpoint(server, server.introspect), methods=["POST"]),
        Route(f"{prefix}/device", device_page, methods=["GET", "POST"]),
        Route(f"{prefix}/device/decision", device_decision, methods=["POST"]),
    ]
    if config.upstreams:
        routes += [Route(f"{prefix}/device/upstream/{{name}}", upstream_start, methods=["POST"]),
                   Route(upstreams.callback_path, upstream_callback)]
    if config.metrics.enabled:  # off: no route, so /metrics is a 404 like any unknown path
        routes.append(Route(f"{prefix}/metrics", metrics))
        if os.environ.get(SHARED_DIR_ENV):  # one of the workers of `keyturn serve --workers N`
            server.metrics.share(os.environ[SHARED_DIR_ENV])
    if prefix:
        # RFC 8414 §3: "the well-known URI suffix ... is inserted between the host component and
        # the path component" for an issuer with a path.
        routes += [Route(f"/.well-known/oauth-authorization-server{prefix}", metadata),
                   Route(f"/.well-known/openid-configuration{prefix}", metadata)]
    page_paths = frozenset({f"{prefix}/device", f"{prefix}/device/decision",
                            upstreams.callback_path, *(option.action for option in options)})

    async def storage_outage(request: Request, exc: Exception) -> Response:
        """The one answer to a request the storage could not serve (a SQLite file locked or
        unreadable, Redis down): 503 with Retry-After, JSON for a client and a short page for a
        person; never the exception's text or a traceback (it could name the storage)."""
        log.warning("storage unavailable (%s) on %s", exc.__class__.__name__, request.url.path)
        if request.url.path in page_paths:
            return Response("The sign-in service is unavailable for a moment. Please try again "
                            "in a minute.\n", status_code=503, media_type="text/plain",
                            headers={"Retry-After": str(OUTAGE_RETRY_AFTER), **NO_STORE})
        # RFC 6749 §4.1.2.1, temporarily_unavailable: "The authorization server is currently
        # unable to handle the request due to a temporary overloading or maintenance of the
        # server."
        return _json(error_reply(unavailable("the server's storage is unavailable: try again",
                                             retry_after=OUTAGE_RETRY_AFTER)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        purging = asyncio.create_task(purge_periodically(storage, config.purge_interval))
        flushing = asyncio.create_task(flush_periodically(server.metrics))
        try:
            yield
        finally:
            purging.cancel()
            flushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
            with contextlib.suppress(asyncio.CancelledError):
                await flushing
            await upstreams.aclose()

    app = FastRoutes(routes=routes, lifespan=lifespan,
                     exception_handlers=dict.fromkeys(storage_outages(), storage_outage),
                     outages=storage_outages(), on_outage=storage_outage)
    # The endpoints of nearly every request, without starlette's router (.fastroutes).
    hot = {f"{prefix}/.well-known/openid-configuration", f"{prefix}/jwks", f"{prefix}/token",
           f"{prefix}/.well-known/oauth-authorization-server", f"{prefix}/device_authorization"}
    app.route_directly(route for route in routes if route.path in hot)
    app.state.server = server
    return app


class AccessLog:
    """One log line per request, and its count and latency in /metrics.

    The text line: peer, method, path (never the query: it can hold a user code), status, time.
    The record also carries :data:`~.logformat.ACCESS_FIELDS` (``record.request``), which the
    JSON format (:mod:`.logformat`) writes instead: the route template, never the path as sent.
    Bodies and headers, where secrets travel, are never logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        server = getattr(getattr(app, "state", None), "server", None)
        # Counted only when /metrics is on: the count and the histogram cost every request.
        self.metrics: Metrics | None = getattr(server, "metrics", None) \
            if server is not None and server.config.metrics.enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            # The template of the route that answered (starlette leaves it in the scope): a
            # bounded label, and never what the client typed.
            route = getattr(scope.get("route"), "path", None)
            if self.metrics is not None:
                self.metrics.request(route=route or "other", method=_method(scope["method"]),
                                     status=status[0], seconds=seconds)
            if access_log.isEnabledFor(logging.INFO):  # else not even the record's fields
                self._log(scope, route, status[0], seconds)

    @staticmethod
    def _log(scope: Scope, route: str | None, status: int, seconds: float) -> None:
        client: Any = scope.get("client")
        # The path as sent (still percent-encoded): the decoded one may hold a %0A that would
        # start a forged log line. Never the query string: it may hold a user code.
        raw = scope.get("raw_path")
        path = raw.decode("ascii", "backslashreplace") if isinstance(raw, bytes) else \
            scope["path"].encode("unicode_escape").decode("ascii")
        fields = {"method": _method(scope["method"]), "route": route, "status": status,
                  "duration_ms": round(seconds * 1000, 3), "client": client[0] if client else None,
                  "client_id": scope.get(CLIENT_ID_KEY), "request_id": _request_id(scope)}
        access_log.info('%s "%s %s" %d %.1fms', client[0] if client else "-", scope["method"],
                        path, status, seconds * 1000, extra={ACCESS_FIELDS: fields})

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
#: A request id a proxy may pass on (nginx's $request_id is 32 hex digits): anything else is
#: replaced, so a client cannot write what it likes into the logs.
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{8,64}")


def _method(method: str) -> str:
    """A method name as a bounded label: any other (a client may send any token) is "other"."""
    return method if method in _METHODS else "other"


def _request_id(scope: Scope) -> str:
    """``X-Request-ID`` as the proxy in front set it (a peer named in ``forwarded_allow_ips``),
    if well-formed; else a new one: a client that reaches the server itself does not choose it
    (it could give one request another's id)."""
    if scope.get(TRUSTED_PEER_KEY):
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id" and _REQUEST_ID.fullmatch(value):
                return str(value.decode("ascii"))
    return secrets.token_hex(8)
