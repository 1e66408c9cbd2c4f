"""The refresh token grant (RFC 6749 §6), with rotation.

The refresh token given at construction seeds the store; from then on the newest refresh token is
always the one in the store, read under the store's lock just before it is used, so a rotated token
is never sent twice — not by two threads, not by two processes.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError, LoginRequired
from ..protocol.grants import GRANT_REFRESH_TOKEN
from ..secret import Secret, SecretFields, conceal_arguments
from ..token import Token, fingerprint
from .base import Grant, Source

__all__ = ["RefreshToken"]


class RefreshToken(Source):
    """Access tokens from a refresh token::

        source = RefreshToken(issuer=..., client_id="cli", refresh_token=saved,
                              on_refresh=lambda token: save(token.refresh_token))
    """

    grant_type = GRANT_REFRESH_TOKEN

    def __init__(self, *, refresh_token: str | Secret[str], **kwargs: Any) -> None:
        # First: a ConfigError from here or from Source shows these frames' locals.
        refresh_token = Secret.wrap(refresh_token)
        conceal_arguments(kwargs)
        if not refresh_token or not isinstance(refresh_token.reveal(), str):
            raise ConfigError("refresh_token= must be a non-empty string")
        # The initial refresh token identifies the grant: processes started with the same one
        # share one store record, and find its rotated successor there.
        kwargs.setdefault("subject", f"rt:{fingerprint(refresh_token.reveal())}")
        super().__init__(seed=Token.refresh_only(refresh_token.reveal()), **kwargs)

    def _grant(self, previous: Token | None) -> Grant:
        if previous is None or not previous.refresh_token:
            raise LoginRequired("no refresh token is left for this source: log in again")
        params = SecretFields({"refresh_token": previous.refresh_token})
        # RFC 6749 §6: scope "MUST NOT include any scope not originally granted"; sent only when
        # asked for, so that omitting it keeps the original grant.
        params.update(self._base_params())
        # A rotating refresh token must not be sent twice: a retry after a timeout could spend it.
        return Grant(GRANT_REFRESH_TOKEN, params, idempotent=False)
