"""The JWT bearer assertion grant (RFC 7523 §2.1): a token in exchange for a signed JWT."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..protocol.client_auth import PrivateKey
from ..protocol.grants import token_flow
from ..protocol.http import Flow
from ..protocol.jwt import ASSERTION_LIFETIME, SigningKey, build_assertion, load_secret_key
from ..secret import Secret, conceal_arguments
from ..token import Token, fingerprint
from .base import Grant, Source

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SourceOptions

__all__ = ["JwtBearer"]


class JwtBearer(Source):
    """A token for ``subject``, proven by a JWT assertion::

        source = JwtBearer(issuer="https://id.example.org", client_id="svc",
                           assertion_key=pem, assertion_issuer="svc", subject="user-42")

    Give either ``assertion=`` (a string, or a callable returning a fresh one per request) or
    ``assertion_key=`` (PEM or JWK) with ``assertion_issuer=`` and ``subject=``, and keyturn signs a
    new assertion for each request. Client authentication is optional (``auth_method="none"``).
    """

    grant_name = "jwt_bearer"

    def __init__(
        self,
        *,
        assertion: str | Secret[str] | Callable[[], str] | None = None,
        assertion_key: PrivateKey | None = None,
        assertion_issuer: str | None = None,
        assertion_audience: str | None = None,
        assertion_alg: str | None = None,
        assertion_lifetime: int = ASSERTION_LIFETIME,
        assertion_claims: dict[str, Any] | None = None,
        subject: str | None = None,
        **options: Unpack[SourceOptions],
    ) -> None:
        # First: a ConfigError raised below shows this frame's locals.
        if isinstance(assertion, str):
            assertion = Secret(assertion)
        assertion_key = Secret.optional(assertion_key)
        conceal_arguments(options)
        if (assertion is None) == (assertion_key is None):
            raise ConfigError("give exactly one of assertion= or assertion_key=")
        self._assertion = assertion
        self._key: SigningKey | None = None
        if assertion_key is not None:
            if not assertion_issuer or not subject:
                raise ConfigError("assertion_key= needs assertion_issuer= and subject=")
            self._key = load_secret_key(assertion_key, alg=assertion_alg)
        self._assertion_issuer = assertion_issuer
        self._assertion_audience = assertion_audience
        self._assertion_lifetime = assertion_lifetime
        self._assertion_claims = dict(assertion_claims or {})
        self.subject = subject
        if subject is None and isinstance(assertion, Secret):
            # A fixed assertion names its subject itself: key the cache by the assertion's tag.
            subject = "assertion:" + fingerprint(assertion.reveal())
        super().__init__(subject=subject, **options)

    def _assertion_value(self, audience: str) -> str:
        if self._key is not None:
            assert self._assertion_issuer is not None and self.subject is not None
            # RFC 7523 §3: "The JWT MUST contain an "aud" (audience) claim containing a value that
            # identifies the authorization server as an intended audience" (the token endpoint).
            return build_assertion(
                self._key, issuer=self._assertion_issuer, subject=self.subject,
                audience=self._assertion_audience or audience, now=time.time(),
                lifetime=self._assertion_lifetime, extra_claims=self._assertion_claims,
            )
        if isinstance(self._assertion, Secret):
            return self._assertion.reveal()
        value = self._assertion() if callable(self._assertion) else self._assertion
        if not isinstance(value, str) or not value:
            raise ConfigError("the assertion= callable returned no assertion string")
        return value

    def _grant(self, previous: Token | None) -> Grant:
        raise NotImplementedError("JwtBearer builds its grant in _flow (the audience is needed)")

    def _grant_for(self, endpoint: str) -> Grant:
        params = self._base_params()
        # RFC 7523 §2.1: "The value of the "assertion" parameter MUST contain a single JWT."
        params["assertion"] = self._assertion_value(endpoint)
        # A signed assertion carries a jti: sending it twice would be a replay the server refuses.
        return Grant(self.grant_type, params, idempotent=False)

    def _flow(self, previous: Token | None) -> Flow[Token]:
        endpoint = yield from self._endpoint_flow()
        grant = self._grant_for(endpoint)
        token = yield from token_flow(
            endpoint=endpoint, grant_type=grant.grant_type, params=grant.params,
            client_auth=self.client_auth, now=time.time(), requested_scope=self.scope,
            idempotent=grant.idempotent,
        )
        return token
