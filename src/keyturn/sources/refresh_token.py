"""The refresh token grant (RFC 6749 §6), with rotation.

The refresh token given at construction seeds the store; from then on the newest refresh token is
always the one in the store, read under the store's lock just before it is used, so a rotated token
is never sent twice — not by two threads, not by two processes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..cachekey import refresh_subject
from ..errors import ConfigError, LoginRequired
from ..secret import Secret, SecretFields, conceal_arguments
from ..token import Token
from .base import Grant, Source

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SourceOptions

__all__ = ["RefreshToken"]


class RefreshToken(Source):
    """Access tokens from a refresh token::

        source = RefreshToken(issuer=..., client_id="cli", refresh_token=saved,
                              on_refresh=lambda token: save(token.refresh_token))
    """

    grant_name = "refresh_token"

    def __init__(self, *, refresh_token: str | Secret[str], subject: str | None = None,
                 **options: Unpack[SourceOptions]) -> None:
        # First: a ConfigError from here or from Source shows these frames' locals.
        refresh_token = Secret.wrap(refresh_token)
        conceal_arguments(options)
        if not refresh_token or not isinstance(refresh_token.reveal(), str):
            raise ConfigError("refresh_token= must be a non-empty string")
        # The initial refresh token identifies the grant: processes started with the same one
        # share one store record, and find its rotated successor there. ``subject=`` names the
        # record instead, so a program restarted with another initial token still finds it.
        super().__init__(subject=subject or refresh_subject(refresh_token.reveal()),
                         seed=Token.refresh_only(refresh_token.reveal()), **options)

    def _grant(self, previous: Token | None) -> Grant:
        if previous is None or not previous.refresh_token:
            raise LoginRequired("no refresh token is left for this source: log in again")
        params = SecretFields({"refresh_token": previous.refresh_token})
        # RFC 6749 §6: scope "MUST NOT include any scope not originally granted"; sent only when
        # asked for, so that omitting it keeps the original grant.
        params.update(self._base_params())
        # A rotating refresh token must not be sent twice: a retry after a timeout could spend it.
        return Grant(self.grant_type, params, idempotent=False)
