"""What every token source shares: configuration, endpoints, the cache, the public methods.

A source subclass writes only its grant: :meth:`Source._grant` returns the grant type and the form
parameters. Fetching (sync and async), discovery, client authentication, caching and the
requests/httpx integrations come from here and from the modules it composes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from .. import registry, transport
from ..account import check_account
from ..cache import TokenCache
from ..cachekey import cache_key
from ..errors import ConfigError, DiscoveryError, KeyturnError
from ..integrations import Adapters
from ..logout import NO_REVOCATION_ENDPOINT, NOTHING_SAVED, REVOCATION_FAILED, Logout
from ..paths import DEFAULT_LEEWAY
from ..protocol.client_auth import ClientAuth
from ..protocol.endpoints import check_endpoint_url
from ..protocol.grants import TOKEN_ENDPOINT, normalize_scope, token_flow
from ..protocol.hooks import ResponseHook, check_hook, with_response_hooks
from ..protocol.http import Flow, Keeper
from ..protocol.metadata import ServerMetadata, discover
from ..protocol.revocation import revocation_flow
from ..secret import Secret, SecretFields
from ..stores.base import Store
from ..stores.memory import MemoryStore
from ..token import Token, fingerprint
from .options import ClientCert, PrivateKey, TlsVerify

__all__ = ["DEFAULT", "Grant", "Source"]

log = logging.getLogger("keyturn")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: Marks "use the source's default store" (``None`` means "no cache").
DEFAULT: Any = _Default()

#: Metadata documents by issuer, shared by every source of the process.
_METADATA: dict[tuple[str, bool], tuple[ServerMetadata, float]] = {}
_METADATA_LOCK = threading.Lock()
METADATA_TTL = 3600.0


class Grant:
    """A grant's request: its type, its form parameters, and whether it may be sent twice.

    The parameters are :class:`~keyturn.secret.SecretFields`: a refresh token or an assertion in
    them shows only as a tag in the locals of the frames that hold the grant.
    """

    __slots__ = ("grant_type", "idempotent", "params")

    def __init__(self, grant_type: str, params: Mapping[str, Any],
                 *, idempotent: bool = True) -> None:
        self.grant_type = grant_type
        self.params = SecretFields({k: v for k, v in params.items() if v is not None})
        self.idempotent = idempotent

    def __repr__(self) -> str:
        return f"Grant({self.grant_type!r}, {self.params!r}, idempotent={self.idempotent})"


class Source(Adapters):
    """Base of the token sources: ``get_access_token()`` and everything around it."""

    #: The grant's row in :mod:`keyturn.registry`, which sets the two below.
    grant_name: ClassVar[str | None] = None
    #: The wire grant type, part of the cache key.
    grant_type: ClassVar[str] = ""
    #: The scope asked for when ``scope=`` is not given.
    default_scope: ClassVar[tuple[str, ...]] = ()
    #: The store used when ``store=`` is not given.
    default_store: ClassVar[Callable[[], Store | None]] = MemoryStore

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("grant_name")
        if name is not None:
            try:
                row = registry.grant(name)
            except KeyError:
                raise TypeError(f"{cls.__name__}.grant_name {name!r} has no row in "
                                "keyturn.registry.GRANT_ROWS: add its GrantRow there") from None
            cls.grant_type = row.grant_type or ""
            cls.default_scope = row.default_scope

    def __init__(
        self,
        *,
        issuer: str | None = None,
        token_endpoint: str | None = None,
        client_id: str | None = None,
        client_secret: str | Secret[str] | None = None,
        private_key: PrivateKey | None = None,
        auth_method: str | None = None,
        signing_alg: str | None = None,
        scope: str | Iterable[str] | None = None,
        audience: str | None = None,
        resource: str | Iterable[str] | None = None,
        extra_params: Mapping[str, str] | None = None,
        store: Store | None = DEFAULT,
        leeway: float = DEFAULT_LEEWAY,
        verify: TlsVerify = True,
        cert: ClientCert | None = None,
        timeout: float = 30.0,
        allow_insecure_http: bool = False,
        on_refresh: Callable[[Token], None] | None = None,
        proxy: str | Secret[str] | None = None,
        account: str | None = None,
        revocation_endpoint: str | None = None,
        token_response_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        subject: str | None = None,
        seed: Token | None = None,
    ) -> None:
        # First: every ConfigError below has this frame in its traceback, and a traceback with
        # locals must show the secrets only as tags. (Subclasses wrap theirs first too, with
        # conceal_arguments(kwargs).)
        client_secret = Secret.optional(client_secret)
        private_key = Secret.optional(private_key)
        proxy = Secret.optional(proxy)  # a proxy URL may hold the proxy's password
        if not issuer and not token_endpoint:
            raise ConfigError("give issuer= (for discovery) or token_endpoint=")
        if leeway < 0:
            raise ConfigError("leeway= must be zero or more seconds")
        self.issuer = issuer.rstrip("/") if issuer else None
        self._allow_http = allow_insecure_http
        if issuer:
            check_endpoint_url(issuer, "issuer", allow_http=allow_insecure_http)
        if token_endpoint:
            check_endpoint_url(token_endpoint, "token_endpoint", allow_http=allow_insecure_http)
        self._token_endpoint = token_endpoint
        if revocation_endpoint:
            check_endpoint_url(revocation_endpoint, "revocation_endpoint",
                               allow_http=allow_insecure_http)
        self._revocation_endpoint = revocation_endpoint
        #: A local name for one of several logins at one provider (part of the cache key).
        self.account = check_account(account)
        #: Adapts a non-standard provider's token answer (a dict) before it is parsed.
        check_hook(token_response_hook, "token_response_hook")
        self.token_response_hook = token_response_hook
        self.client_auth = ClientAuth.create(
            client_id=client_id, client_secret=client_secret, private_key=private_key,
            auth_method=auth_method, signing_alg=signing_alg, has_client_cert=cert is not None,
        )
        self.scope = normalize_scope(type(self).default_scope if scope is None else scope)
        self.audience = audience
        self.resource = tuple(sorted(set([resource] if isinstance(resource, str) else resource or [])))
        for value in self.resource:
            # RFC 8707 §2: "Its value MUST be an absolute URI ... MUST NOT include a fragment".
            if "://" not in value or "#" in value:
                raise ConfigError(f"resource={value!r} must be an absolute URI without a fragment")
        self.extra_params = dict(extra_params or {})
        self._transport = transport.Transport(
            transport.HttpSettings(verify=verify, cert=cert, timeout=timeout, proxy=proxy))
        self._metadata: ServerMetadata | None = None
        if store is DEFAULT:
            store = type(self).default_store()
        self.cache = TokenCache(
            key=self._cache_key(subject), fetch=self._fetch, afetch=self._afetch, store=store,
            seed=seed, leeway=leeway, on_refresh=on_refresh,
        )

    # -- identity ------------------------------------------------------------------------------------

    def _cache_key(self, subject: str | None) -> str:
        """Everything that changes the token, so two configurations never share one: derived by
        :func:`keyturn.cachekey.cache_key`, as :meth:`keyturn.config.Profile.cache_key` is."""
        return cache_key(
            issuer=self.issuer, token_endpoint=self._token_endpoint,
            client_id=self.client_auth.client_id, auth_method=self.client_auth.method,
            grant=self.grant_type, subject=subject, scope=self.scope,
            default_scope=(),  # self.scope already is the default when scope= was not given
            audience=self.audience, resource=self.resource, extra=self.extra_params,
            account=self.account,
        )

    def __repr__(self) -> str:
        # Also for a source whose __init__ raised half-way: a traceback with locals shows its
        # ``self`` (rich's show_locals fails on a repr that raises).
        where = getattr(self, "issuer", None) or getattr(self, "_token_endpoint", None)
        auth = getattr(self, "client_auth", None)
        scope = " ".join(getattr(self, "scope", ()))
        return (f"{type(self).__name__}(issuer={where!r}, client_id="
                f"{auth.client_id if auth else None!r}, "
                f"auth_method={auth.method if auth else None!r}, scope={scope!r})")

    def __reduce__(self) -> Any:
        raise TypeError(f"a keyturn {type(self).__name__} holds secrets and cannot be pickled")

    # -- public API --------------------------------------------------------------------------------

    def get_access_token(self) -> str:
        """A valid access token: cached when fresh, else refreshed once for all callers."""
        return self.cache.access_token()

    async def aget_access_token(self) -> str:
        # The cache's own fast path (TokenCache.aaccess_token), here in this coroutine: awaiting a
        # second one would cost as much again as the whole check.
        cache = self.cache
        entry = cache.entry
        if entry is not None and cache.clock() < entry.refresh_at:
            return entry.access_token
        return await cache.aaccess_token()

    def get_token(self) -> Token:
        # The cache's fast path (TokenCache.token), here: every adapter hook asks this on every
        # request, and a second call would cost as much again as the check.
        cache = self.cache
        entry = cache.entry
        if entry is not None and cache.clock() < entry.refresh_at:
            return entry.token
        return cache.token()

    async def aget_token(self) -> Token:
        return await self.cache.atoken()

    def _needs_wait(self) -> bool:
        return not self.cache.has_valid_token()

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget the cached access token (the refresh token is kept). With ``access_token``, only
        if it is still the current one."""
        self.cache.invalidate(access_token)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        """:meth:`invalidate` without blocking the event loop."""
        await self.cache.ainvalidate(access_token)

    @property
    def cache_key(self) -> str:
        """This source's identity: what its tokens are stored under (see :mod:`keyturn.cachekey`)."""
        return self.cache.key

    def saved_token(self) -> Token | None:
        """The token the store holds for this source, as it is: no refresh, no request, no lock."""
        return self.cache.store.load(self.cache.key)

    def forget(self) -> Token | None:
        """Forget every token of this source, in memory and in the store, without revoking them
        (:meth:`logout` also revokes); returns the newest one forgotten."""
        return self.cache.forget()

    def logout(self) -> Logout:
        """Forget every token of this source, in memory and in the store, then revoke them at the
        server when it offers RFC 7009 revocation (``revocation_endpoint=``, else the one its
        metadata names). A failed revocation is logged and reported, not raised: the tokens are
        gone from here either way. Returns what happened (:class:`~keyturn.Logout`): whether the
        server revoked them, or why not."""
        token = self.cache.forget()
        if token is None:
            return Logout(forgotten=False, revoked=False, reason=NOTHING_SAVED)
        try:
            endpoint = self._transport.run(self._revoke_flow(token))
        except KeyturnError as exc:
            return _revocation_failed(exc)
        return _revoked_at(endpoint)

    async def alogout(self) -> Logout:
        """:meth:`logout` without blocking the event loop."""
        token = await self.cache.aforget()
        if token is None:
            return Logout(forgotten=False, revoked=False, reason=NOTHING_SAVED)
        try:
            endpoint = await self._transport.arun(self._revoke_flow(token))
        except KeyturnError as exc:
            return _revocation_failed(exc)
        return _revoked_at(endpoint)

    def _revoke_flow(self, token: Token) -> Flow[str | None]:
        """Revoke ``token`` at the revocation endpoint; that endpoint, or None when there is none
        (``revocation_endpoint=`` first: a server may offer one that its metadata omits)."""
        endpoint = self._revocation_endpoint
        if endpoint is None:
            if self.issuer is None:
                return None
            metadata = yield from self._metadata_flow()
            endpoint = metadata.revocation_endpoint
            if endpoint is None:
                return None
        # The audience of a client assertion: the token endpoint, as for the grants (RFC 7523 §3:
        # "The token endpoint URL of the authorization server MAY be used as a value for an "aud"
        # element"), found the same way in every process, whether or not a token was fetched in
        # this one; the revocation endpoint only when there is no token endpoint to name.
        audience = endpoint
        if self._token_endpoint or self.issuer:
            audience = yield from self._endpoint_flow()
        # The refresh token first: revoking it usually takes its access tokens along.
        for value, hint in ((Secret(token.refresh_token or ""), "refresh_token"),
                            (Secret(token.access_token), "access_token")):
            if value:
                yield from revocation_flow(endpoint=endpoint, token=value, token_type_hint=hint,
                                           client_auth=self.client_auth, audience=audience,
                                           now=time.time())
        return endpoint

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- endpoints -----------------------------------------------------------------------------------

    def _metadata_flow(self) -> Flow[ServerMetadata]:
        if self._metadata is not None:
            return self._metadata
        if self.issuer is None:
            self._metadata = ServerMetadata(issuer="", token_endpoint=self._token_endpoint)
            return self._metadata
        cache_key = (self.issuer, self._allow_http)
        now = time.monotonic()
        with _METADATA_LOCK:
            cached = _METADATA.get(cache_key)
        if cached is not None and now - cached[1] < METADATA_TTL:
            metadata = cached[0]
        else:
            metadata = yield from discover(self.issuer, allow_http=self._allow_http)
            with _METADATA_LOCK:
                _METADATA[cache_key] = (metadata, now)
        self._metadata = metadata
        return metadata

    def _endpoint_flow(self) -> Flow[str]:
        if self._token_endpoint:
            return self._token_endpoint
        metadata = yield from self._metadata_flow()
        if not metadata.token_endpoint:
            raise DiscoveryError(
                f"issuer {self.issuer} names no token_endpoint: pass token_endpoint=",
                url=self.issuer,
            )
        return metadata.token_endpoint

    # -- fetching ------------------------------------------------------------------------------------

    def _grant(self, previous: Token | None) -> Grant:
        """The grant request to make, given the newest stored token. Each source writes this."""
        raise NotImplementedError

    def _base_params(self) -> dict[str, str | list[str] | None]:
        """Scope, audience, resource and extra parameters, for grants that send them."""
        params: dict[str, str | list[str] | None] = {}
        if self.scope:
            params["scope"] = " ".join(self.scope)
        if self.audience:
            params["audience"] = self.audience
        if self.resource:
            params["resource"] = list(self.resource)
        params.update(self.extra_params)
        return params

    def _flow(self, previous: Token | None) -> Flow[Token]:
        grant = self._grant(previous)
        endpoint = yield from self._endpoint_flow()
        token = yield from token_flow(
            endpoint=endpoint, grant_type=grant.grant_type, params=grant.params,
            client_auth=self.client_auth, now=time.time(), requested_scope=self.scope,
            idempotent=grant.idempotent,
        )
        return token

    # The only drivers of a source's grant, sync and async: each grant is one flow (``_flow``),
    # carried out by the source's Transport. ``keeper`` keeps what a token endpoint answered to a
    # request that cannot be sent again (see keyturn._drivers).

    def _response_hooks(self) -> dict[str, tuple[str, ResponseHook]]:
        """The hooks that rewrite answers before they are parsed, by the purpose of the request."""
        if self.token_response_hook is None:
            return {}
        return {TOKEN_ENDPOINT: ("token_response_hook", self.token_response_hook)}

    def _hooked_flow(self, previous: Token | None) -> Flow[Token]:
        # The one place the response hooks apply, for every grant (keyturn.protocol.hooks).
        return with_response_hooks(self._flow(previous), self._response_hooks())

    def _fetch(self, previous: Token | None, keeper: Keeper | None = None) -> Token:
        token = self._transport.run(self._hooked_flow(previous), keeper=keeper)
        self._fetched(token)
        return token

    async def _afetch(self, previous: Token | None, keeper: Keeper | None = None) -> Token:
        token = await self._transport.arun(self._hooked_flow(previous), keeper=keeper)
        self._fetched(token)
        return token

    def _fetched(self, token: Token) -> None:
        log.info("%s got a new access token %s (expires in %s s)", type(self).__name__,
                 fingerprint(token.access_token),
                 "?" if token.expires_at is None else f"{token.expires_at - time.time():.0f}")


def _revoked_at(endpoint: str | None) -> Logout:
    if endpoint is None:
        # Info, not a warning: nothing failed, and the returned Logout says it.
        log.info("logout: the tokens were forgotten here; the server names no revocation "
                 "endpoint, so they stay valid until they expire")
        return Logout(forgotten=True, revoked=False, reason=NO_REVOCATION_ENDPOINT)
    return Logout(forgotten=True, revoked=True, endpoint=endpoint)


def _revocation_failed(exc: KeyturnError) -> Logout:
    # keyturn's error messages hold no secret (the tokens sent are Secret-wrapped).
    detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    log.warning("logout: the tokens were forgotten here but not revoked at the server (%s)", detail)
    return Logout(forgotten=True, revoked=False, reason=REVOCATION_FAILED, detail=detail)
