"""Talking to an upstream provider: discovery, the code exchange, the id_token, userinfo.

All of it is the client side's ``protocol/`` code, carried out by :class:`~keyturn.transport.
Transport` (the one HTTP stack, proxies as curl reads them): :func:`~keyturn.protocol.metadata.
discover`, :func:`~keyturn.protocol.authcode.code_exchange_flow` as a confidential client
(:class:`~keyturn.protocol.client_auth.ClientAuth`), :func:`~keyturn.protocol.idtoken.
validate_id_token_flow` (signature by the upstream's JWKS, iss, aud, azp, exp, iat, nonce,
at_hash) and :func:`~keyturn.protocol.userinfo.userinfo_flow` (its ``sub`` must be the
id_token's). What goes wrong is one of two errors the pages turn into words: the upstream could
not be reached or answered nonsense (:class:`UpstreamUnavailable`), or it refused
(:class:`UpstreamRefused`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, NoReturn

from ...errors import InvalidIdToken, KeyturnError, OAuthError, TransportError
from ...protocol.authcode import AuthorizationRequest, code_exchange_flow
from ...protocol.client_auth import ClientAuth
from ...protocol.idtoken import KeySetCache, validate_id_token_flow
from ...protocol.metadata import ServerMetadata, discover
from ...protocol.userinfo import userinfo_flow
from ...secret import Secret
from ...transport import HttpSettings, RetryPolicy
from .calls import UpstreamCalls
from .config import UpstreamConfig

__all__ = ["UpstreamClient", "UpstreamRefused", "UpstreamUnavailable", "quoted"]

log = logging.getLogger("keyturn.server.upstreams")

#: Discovery is read again this often (a provider that moves an endpoint or rotates keys).
METADATA_SECONDS: Final = 3600.0
#: A person is waiting: a stuck upstream is given this long per call, unless its ``timeout``
#: says otherwise (the deadline of :class:`.calls.UpstreamCalls`).
TIMEOUT: Final = 10.0
#: The upstream's JWKS is read again after this long (and after any failure): a key the
#: provider removed (compromised) is trusted no longer than this. An unknown ``kid`` is still
#: fetched at once (protocol/idtoken.py, OIDC Core §10.1.1).
JWKS_SECONDS: Final = 300.0


#: Errors that say the upstream is down, not that it refuses (RFC 6749 §4.1.2.1's
#: "temporarily_unavailable", "server_error"): the person should try again later.
_OUTAGES: Final = frozenset({"temporarily_unavailable", "server_error"})


def quoted(what: object) -> str:
    """Text from the upstream (or from whoever forged a callback) as a log shows it: quoted
    (repr: a newline cannot start a forged line) and cut short."""
    return repr(str(what)[:300])


class UpstreamUnavailable(Exception):
    """The upstream could not be reached, or answered what is no valid OpenID answer."""


class UpstreamRefused(Exception):
    """The upstream answered, and said no (or its id_token did not pass the checks)."""


class UpstreamClient:
    """One upstream's HTTP side, shared by every request of this server process."""

    def __init__(self, upstream: UpstreamConfig, *, settings: HttpSettings | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.upstream = upstream
        # No retries: a person is waiting, and a code is spent by its first exchange.
        self._calls = UpstreamCalls(upstream.name, settings or HttpSettings(
            timeout=upstream.timeout, retry=RetryPolicy(total=0)), deadline=upstream.timeout)
        self._clock = clock
        self._keys_at = clock()
        self._auth = ClientAuth.create(client_id=upstream.client_id,
                                       client_secret=upstream.client_secret,
                                       private_key=upstream.private_key,
                                       auth_method=upstream.auth_method)
        self._keys = KeySetCache()
        self._metadata: tuple[float, ServerMetadata] | None = None

    def __repr__(self) -> str:
        return f"UpstreamClient({self.upstream.name!r}, issuer={self.upstream.issuer!r})"

    async def metadata(self) -> ServerMetadata:
        """The upstream's discovery document, read at most every :data:`METADATA_SECONDS`.

        No lock around the read: with the upstream stuck, people pressing at once would wait in
        line, each for the ones before; a cold cache read twice at once costs only a request."""
        held = self._metadata
        if held is not None and self._clock() - held[0] < METADATA_SECONDS:
            return held[1]
        try:
            metadata = await self._calls.run(discover(self.upstream.issuer))
        except KeyturnError as exc:
            self._unavailable("discovery", exc)
        if not metadata.authorization_endpoint or not metadata.token_endpoint:
            raise UpstreamUnavailable(f"{self.upstream.name}: its discovery document names no "
                                      "authorization_endpoint or token_endpoint")
        self._metadata = (self._clock(), metadata)
        return metadata

    def forget_metadata(self) -> None:
        """Read discovery and the JWKS again next time (the upstream failed: it may have moved)."""
        self._metadata = None
        self._keys.clear()

    def _fresh_keys(self) -> KeySetCache:
        """The JWKS cache, emptied when older than :data:`JWKS_SECONDS`."""
        if self._clock() - self._keys_at >= JWKS_SECONDS:
            self._keys.clear()
            self._keys_at = self._clock()
        return self._keys

    async def aclose(self) -> None:
        """Close the upstream's connections (the server stops)."""
        await self._calls.aclose()

    def _unavailable(self, step: str, exc: KeyturnError) -> NoReturn:
        # The class and the message of keyturn's own errors name URLs, never a secret.
        log.warning("upstream %s: %s failed: %s: %s", self.upstream.name, step,
                    exc.__class__.__name__, quoted(exc))
        self.forget_metadata()
        raise UpstreamUnavailable(f"{self.upstream.name}: {step} failed") from None

    async def sign_in(self, request: AuthorizationRequest, code: Secret[str],
                      metadata: ServerMetadata) -> dict[str, Any]:
        """The person's claims: the code exchanged (once), the id_token validated, userinfo
        added. Raises :class:`UpstreamUnavailable` or :class:`UpstreamRefused`."""
        assert metadata.token_endpoint is not None
        try:
            token = await self._calls.run(code_exchange_flow(
                request, code, token_endpoint=metadata.token_endpoint, client_auth=self._auth,
                now=time.time()))
        except OAuthError as exc:
            if exc.error in _OUTAGES or (exc.status or 0) >= 500:
                self._unavailable("the token request", exc)
            # RFC 6749 §5.2: invalid_grant for a code that is "invalid, expired, revoked, does not
            # match the redirection URI ..., or was issued to another client".
            log.warning("upstream %s refused the code: %s", self.upstream.name, quoted(exc.error))
            raise UpstreamRefused(f"{self.upstream.name} refused the sign-in") \
                from None
        except KeyturnError as exc:
            self._unavailable("the token request", exc)
        if not token.id_token:
            # OIDC Core §3.1.3.3: the token response of an openid request "MUST" hold an id_token.
            raise UpstreamUnavailable(f"{self.upstream.name}: its token answer has no id_token")
        try:
            claims = await self._calls.run(validate_id_token_flow(
                token.id_token, metadata=metadata, client_id=self.upstream.client_id,
                now=time.time(), nonce=request.nonce, keys=self._fresh_keys(),
                access_token=token.access_token))
        except InvalidIdToken as exc:
            log.warning("upstream %s: its id_token was refused: %s", self.upstream.name,
                        quoted(exc))
            raise UpstreamRefused(f"{self.upstream.name}: its id_token did not pass the "
                                  "checks") from None
        except KeyturnError as exc:
            self._unavailable("the JWKS request", exc)
        return await self._with_userinfo(claims, token.access_token, metadata)

    async def _with_userinfo(self, claims: Mapping[str, Any], access_token: str,
                             metadata: ServerMetadata) -> dict[str, Any]:
        """The id_token's claims, completed from userinfo when a claim this upstream's mapping
        reads is not in the id_token (many providers, oidc-provider among them, put only ``sub``
        there for the code flow: OIDC Core §5.4, "the Claims ... are returned from the UserInfo
        Endpoint")."""
        wanted = {self.upstream.subject_claim, *self.upstream.copy_claims,
                  *(rule.claim for rule in self.upstream.allow)}
        if wanted <= set(claims) or not metadata.userinfo_endpoint:
            return dict(claims)
        try:
            extra = await self._calls.run(userinfo_flow(
                endpoint=metadata.userinfo_endpoint, access_token=Secret.wrap(access_token),
                expected_sub=str(claims["sub"])))
        except InvalidIdToken as exc:
            log.warning("upstream %s: userinfo refused: %s", self.upstream.name, quoted(exc))
            raise UpstreamRefused(f"{self.upstream.name}: its userinfo did not match the "
                                  "id_token") from None
        except (OAuthError, TransportError, KeyturnError) as exc:
            self._unavailable("the userinfo request", exc)
        # The id_token's claims win: they are signed; userinfo only fills what they lack.
        return {**extra, **claims}
