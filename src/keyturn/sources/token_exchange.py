"""OAuth 2.0 Token Exchange (RFC 8693): a new token in exchange for a subject token."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..protocol.grants import token_flow
from ..protocol.http import Flow, TokenProvider, token_of
from ..secret import Secret, conceal_arguments
from ..token import Token, fingerprint
from .base import Grant, Source

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SourceOptions

__all__ = ["ACCESS_TOKEN_TYPE", "AccessTokenSource", "TokenExchange"]

#: RFC 8693 §3: "Indicates that the token is an OAuth 2.0 access token".
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


#: Any keyturn source (or StaticToken): what the exchange asks for a current access token (the
#: protocol :class:`~keyturn.protocol.http.TokenOf` asks of it).
AccessTokenSource = TokenProvider


#: A subject or actor token: a string, or a keyturn source whose access token is used.
TokenInput = str | Secret[str] | AccessTokenSource
#: What the source keeps of one: a string becomes a Secret.
_Held = Secret[str] | AccessTokenSource


def _held(value: TokenInput) -> _Held:
    return Secret(value) if isinstance(value, str) else value


def _tag(value: _Held | None) -> str | None:
    """What identifies a token input in the cache key: never the token itself."""
    if value is None:
        return None
    if isinstance(value, Secret):
        return "token:" + fingerprint(value.reveal())
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

    grant_name = "token_exchange"

    def __init__(
        self,
        *,
        subject_token: TokenInput,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        actor_token: TokenInput | None = None,
        actor_token_type: str | None = None,
        requested_token_type: str | None = None,
        **options: Unpack[SourceOptions],
    ) -> None:
        # First: a ConfigError raised below shows this frame's locals, which must hold the tokens
        # and the client secret only as tags.
        subject = _held(subject_token)
        actor = None if actor_token is None else _held(actor_token)
        del subject_token, actor_token
        conceal_arguments(options)
        from ..errors import ConfigError

        if not subject:
            raise ConfigError("subject_token= is required")
        # RFC 8693 §2.1: actor_token_type "is REQUIRED when the actor_token parameter is present".
        if actor is not None and actor_token_type is None:
            actor_token_type = ACCESS_TOKEN_TYPE if not isinstance(actor, Secret) else None
            if actor_token_type is None:
                raise ConfigError("actor_token= needs actor_token_type=")
        self._subject_token = subject
        self.subject_token_type = subject_token_type
        self._actor_token = actor
        self.actor_token_type = actor_token_type
        self.requested_token_type = requested_token_type
        key = "|".join(
            part for part in (_tag(subject), subject_token_type, _tag(actor),
                              actor_token_type, requested_token_type) if part
        )
        super().__init__(subject=key, **options)

    # -- the grant: one flow, driven by Source._fetch / _afetch ---------------------------------------

    def _flow(self, previous: Token | None) -> Flow[Token]:
        """The subject (and actor) token looked up — a source's current access token is a
        TokenOf effect, which the async driver awaits — then exchanged."""
        subject = yield from _current(self._subject_token)
        actor = None if self._actor_token is None else (yield from _current(self._actor_token))
        token = yield from self._exchange_flow(subject, actor)
        return token

    def _grant(self, previous: Token | None) -> Grant:
        raise NotImplementedError("TokenExchange builds its grant from the looked-up tokens")

    def _exchange_grant(self, subject_token: Secret[str], actor_token: Secret[str] | None
                        ) -> Grant:
        """The RFC 8693 §2.1 request for these tokens (audience/resource/scope from the source)."""
        params: dict[str, Any] = dict(self._base_params())
        params["subject_token"] = subject_token
        params["subject_token_type"] = self.subject_token_type
        if actor_token is not None:
            params["actor_token"] = actor_token
            params["actor_token_type"] = self.actor_token_type
        if self.requested_token_type:
            params["requested_token_type"] = self.requested_token_type
        return Grant(self.grant_type, params)

    def _exchange_flow(self, subject_token: Secret[str], actor_token: Secret[str] | None
                       ) -> Flow[Token]:
        grant = self._exchange_grant(subject_token, actor_token)
        endpoint = yield from self._endpoint_flow()
        token = yield from token_flow(
            endpoint=endpoint, grant_type=grant.grant_type, params=grant.params,
            client_auth=self.client_auth, now=time.time(), requested_scope=self.scope,
            idempotent=grant.idempotent,
        )
        return token


def _current(value: _Held) -> Flow[Secret[str]]:
    """A given token as it is; a source's current access token."""
    if isinstance(value, Secret):
        return value
    token = yield from token_of(value)
    return token
