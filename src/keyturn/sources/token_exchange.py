"""OAuth 2.0 Token Exchange (RFC 8693): a new token in exchange for a subject token."""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

from ..protocol.grants import GRANT_TOKEN_EXCHANGE, token_flow
from ..protocol.http import Flow, Keeper
from ..token import Token, fingerprint
from .base import Grant, Source

__all__ = ["ACCESS_TOKEN_TYPE", "AccessTokenSource", "TokenExchange"]

#: RFC 8693 §3: "Indicates that the token is an OAuth 2.0 access token".
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@runtime_checkable
class AccessTokenSource(Protocol):
    """Any keyturn source (or StaticToken): what the exchange asks for a current access token."""

    def get_access_token(self) -> str: ...

    async def aget_access_token(self) -> str: ...


#: A subject or actor token: a string, or a keyturn source whose access token is used.
TokenInput = str | AccessTokenSource


def _tag(value: TokenInput | None) -> str | None:
    """What identifies a token input in the cache key: never the token itself."""
    if value is None:
        return None
    if isinstance(value, str):
        return "token:" + fingerprint(value)
    if isinstance(value, Source):
        return "source:" + value.cache.key
    # keyturn's other sources show only a fingerprint of their token in their repr.
    return "source:" + repr(value)


class TokenExchange(Source):
    """Exchange ``subject_token`` for a token meant for ``audience``/``resource``::

        upstream = ClientCredentials(issuer=..., client_id="gw", client_secret=...)
        source = TokenExchange(issuer=..., client_id="gw", client_secret=...,
                               subject_token=upstream, audience="https://orders.example.org")

    A source given as ``subject_token`` (or ``actor_token``) is asked for its access token at each
    exchange, so the exchanged token always stems from a valid one.
    """

    grant_type = GRANT_TOKEN_EXCHANGE

    def __init__(
        self,
        *,
        subject_token: TokenInput,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        actor_token: TokenInput | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        from ..errors import ConfigError

        if not subject_token:
            raise ConfigError("subject_token= is required")
        # RFC 8693 §2.1: actor_token_type "is REQUIRED when the actor_token parameter is present".
        if actor_token is not None and actor_token_type is None:
            actor_token_type = ACCESS_TOKEN_TYPE if not isinstance(actor_token, str) else None
            if actor_token_type is None:
                raise ConfigError("actor_token= needs actor_token_type=")
        self._subject_token = subject_token
        self.subject_token_type = subject_token_type
        self._actor_token = actor_token
        self.actor_token_type = actor_token_type
        self.requested_token_type = requested_token_type
        subject = "|".join(
            part for part in (_tag(subject_token), subject_token_type, _tag(actor_token),
                              actor_token_type, requested_token_type) if part
        )
        super().__init__(subject=subject, **kwargs)

    # The subject and actor tokens are looked up before the flow runs (sync or async), so the
    # grant itself is written once.

    def _tokens(self) -> tuple[str, str | None]:
        subject = self._subject_token
        actor = self._actor_token
        return (subject if isinstance(subject, str) else subject.get_access_token(),
                actor if isinstance(actor, str) or actor is None else actor.get_access_token())

    async def _atokens(self) -> tuple[str, str | None]:
        subject = self._subject_token
        actor = self._actor_token
        return (subject if isinstance(subject, str) else await subject.aget_access_token(),
                actor if isinstance(actor, str) or actor is None else await actor.aget_access_token())

    def _grant(self, previous: Token | None) -> Grant:
        raise NotImplementedError("TokenExchange builds its grant from the looked-up tokens")

    def _exchange_grant(self, subject_token: str, actor_token: str | None) -> Grant:
        """The RFC 8693 §2.1 request for these tokens (audience/resource/scope from the source)."""
        params = self._base_params()
        params["subject_token"] = subject_token
        params["subject_token_type"] = self.subject_token_type
        if actor_token is not None:
            params["actor_token"] = actor_token
            params["actor_token_type"] = self.actor_token_type
        if self.requested_token_type:
            params["requested_token_type"] = self.requested_token_type
        return Grant(GRANT_TOKEN_EXCHANGE, params)

    def _exchange_flow(self, subject_token: str, actor_token: str | None) -> Flow[Token]:
        grant = self._exchange_grant(subject_token, actor_token)
        endpoint = yield from self._endpoint_flow()
        token = yield from token_flow(
            endpoint=endpoint, grant_type=grant.grant_type, params=grant.params,
            client_auth=self.client_auth, now=time.time(), requested_scope=self.scope,
            idempotent=grant.idempotent,
        )
        return token

    def _fetch(self, previous: Token | None, keeper: Keeper | None = None) -> Token:
        subject, actor = self._tokens()
        token = self._run(self._exchange_flow(subject, actor), keeper)
        self._fetched(token)
        return token

    async def _afetch(self, previous: Token | None, keeper: Keeper | None = None) -> Token:
        subject, actor = await self._atokens()
        async with await self._http.async_client() as client:
            token = await self._arun(self._exchange_flow(subject, actor), client, keeper)
        self._fetched(token)
        return token
