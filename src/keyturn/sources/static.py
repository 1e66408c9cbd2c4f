"""A token you already have, behind the same interface as every other source."""

from __future__ import annotations

from typing import ClassVar

from ..errors import ConfigError
from ..integrations import Adapters
from ..logout import NOTHING_SAVED, Logout
from ..secret import Secret
from ..token import Token, fingerprint

__all__ = ["StaticToken"]


class StaticToken(Adapters):
    """``StaticToken("eyJ...")``: never refreshed; a 401 is passed back to the caller."""

    #: Its row in :mod:`keyturn.registry` (no grant type: it never asks for a token).
    grant_name: ClassVar[str] = "static"

    def __init__(self, token: str | Secret[str], *, token_type: str = "Bearer") -> None:
        token = Secret.wrap(token)  # first: the ConfigError below shows this frame's locals
        if not token or not isinstance(token.reveal(), str):
            raise ConfigError("StaticToken needs the token as a non-empty string")
        self._token = Token(access_token=token.reveal(), token_type=token_type)

    def __repr__(self) -> str:
        return f"StaticToken(sha256:{fingerprint(self._token.access_token)})"

    def __reduce__(self) -> tuple[()]:
        raise TypeError("a keyturn StaticToken holds a secret and cannot be pickled")

    def get_access_token(self) -> str:
        return self._token.access_token

    async def aget_access_token(self) -> str:
        return self._token.access_token

    def get_token(self) -> Token:
        return self._token

    async def aget_token(self) -> Token:
        return self._token

    def invalidate(self, access_token: str | None = None) -> None:
        """Nothing to refresh: a static token stays what it is."""

    def handle_missing_authorization(self) -> bool:
        return False  # a static token cannot be renewed: let globus-sdk report the 401

    def logout(self) -> Logout:
        """Nothing is stored: nothing to forget or revoke."""
        return Logout(forgotten=False, revoked=False, reason=NOTHING_SAVED)
