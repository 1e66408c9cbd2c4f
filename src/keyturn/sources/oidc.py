"""What the OpenID Connect sources (``DeviceCode``, ``AuthorizationCode``) share: ID Token
validation, claims on the :class:`~keyturn.token.Token`, ``userinfo()``, the silent refresh of a
saved login, and the error that turns a refused refresh token into a login request.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..errors import InvalidGrant, InvalidIdToken, LoginRequired, OAuthError
from ..interactive.notebook import in_kernel
from ..protocol.grants import GRANT_REFRESH_TOKEN, token_flow
from ..protocol.http import Flow, current_token, invalidate
from ..protocol.idtoken import (
    DEFAULT_ALGORITHMS,
    DEFAULT_CLOCK_SKEW,
    KeySetCache,
    validate_id_token_flow,
)
from ..protocol.metadata import ServerMetadata
from ..protocol.userinfo import userinfo_flow
from ..secret import SecretFields, conceal_arguments
from ..token import Token
from .base import Source

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SourceOptions

__all__ = ["JWKS", "OpenIDSource", "RefreshRefused", "person_is_watching", "stdio_is_terminal"]

log = logging.getLogger("keyturn")

#: The issuers' signing keys, shared by every source of the process.
JWKS = KeySetCache()


class RefreshRefused(LoginRequired, InvalidGrant):
    """The saved refresh token was refused (invalid_grant) and the caller is not interactive.

    Both a :class:`LoginRequired` (what the caller should do) and an :class:`InvalidGrant` (so the
    cache drops the dead refresh token instead of sending it again at every call).
    """

    code = "invalid_grant"
    hint = "The saved login has ended: log in again (keyturn login)."

    def __init__(self, cause: OAuthError) -> None:
        OAuthError.__init__(self, cause.error, cause.error_description, cause.error_uri,
                            status=cause.status, url=cause.url)


def stdio_is_terminal() -> bool:
    """True when a person is likely watching: stdin and stderr are terminals."""
    streams = (sys.stdin, sys.stderr)
    return all(s is not None and hasattr(s, "isatty") and s.isatty() for s in streams)


def person_is_watching() -> bool:
    """Whether a login may start by default (the ``interactive`` rule of the person's sources): at
    a terminal, or in a Jupyter kernel, whose cell shows the prompt though stdio are no terminals."""
    return stdio_is_terminal() or in_kernel()


class OpenIDSource(Source):
    """A source whose tokens may come with an ID Token: validated, its claims on ``Token.claims``.

    Subclasses that log a person in say whether they may start a login (``interactive``) and name
    it (``_new_login``, for the log).
    """

    #: How the log names a new login of this source.
    _new_login = "a new login"

    @property
    def interactive(self) -> bool:
        return False

    def __init__(
        self, *, id_token_algorithms: Collection[str] = DEFAULT_ALGORITHMS,
        clock_skew: float = DEFAULT_CLOCK_SKEW, **options: Unpack[SourceOptions],
    ) -> None:
        conceal_arguments(options)  # first: this frame shows in a ConfigError's traceback
        super().__init__(**options)
        if "none" in id_token_algorithms:
            from ..errors import ConfigError

            raise ConfigError("id_token_algorithms must not contain 'none'")
        self._id_algorithms = tuple(id_token_algorithms)
        self._clock_skew = clock_skew

    def _refresh_or_login_flow(self, token_endpoint: str,
                               previous: Token | None) -> Flow[Token | None]:
        """The saved login refreshed silently; None when a person has to log in (again).

        A refused refresh token (``invalid_grant``) or no saved login asks for a new login only
        from an interactive caller: a silent one gets :class:`LoginRequired` (``RefreshRefused``
        when a refresh token was refused, so the cache drops it).
        """
        name = type(self).__name__
        if previous is not None and previous.refresh_token:
            # SecretFields: this frame is in the traceback of a refused refresh (RefreshRefused).
            params = SecretFields({k: v for k, v in self._base_params().items()
                                   if k != "scope" and v is not None})
            # RFC 6749 §6: scope "If omitted is treated as equal to the scope originally granted".
            params["refresh_token"] = previous.refresh_token
            try:
                token = yield from token_flow(
                    endpoint=token_endpoint, grant_type=GRANT_REFRESH_TOKEN, params=params,
                    client_auth=self.client_auth, now=time.time(), requested_scope=self.scope,
                    idempotent=False,
                )
            except InvalidGrant as exc:
                if not self.interactive:
                    raise RefreshRefused(exc) from None
                log.info("%s: the refresh token was refused; starting %s", name, self._new_login)
                return None
            token = yield from self._claims_flow(token, previous, refreshed=True)
            return token
        if not self.interactive:
            raise LoginRequired(
                f"no saved login for this {name} source and this call is not interactive: "
                "log in first (keyturn login), or pass interactive=True"
            )
        return None

    def _claims_flow(
        self, token: Token, previous: Token | None, *, nonce: str | None = None,
        refreshed: bool = False,
    ) -> Flow[Token]:
        """``token`` with the validated claims of its ID Token in ``extra["id_token_claims"]``."""
        if "id_token_claims" in token.extra:
            # Unknown response members land in ``extra``: a server must not be able to plant
            # claims there without an ID Token that passed validation.
            token = dataclasses.replace(
                token, extra={k: v for k, v in token.extra.items() if k != "id_token_claims"})
        if token.id_token is None:
            if refreshed and previous is not None and previous.id_token and previous.claims:
                # OIDC Core §12.2: a refresh "might not" return an ID Token; the identity is the
                # one of the original login.
                return dataclasses.replace(
                    token, id_token=previous.id_token,
                    extra={**token.extra, "id_token_claims": previous.claims},
                )
            return token
        if self.issuer is None:
            return token  # without discovery there is no JWKS to check it against: no claims
        metadata: ServerMetadata = yield from self._metadata_flow()
        claims = yield from validate_id_token_flow(
            token.id_token, metadata=metadata, client_id=self.client_auth.client_id,
            now=time.time(), nonce=nonce, keys=JWKS, algorithms=self._id_algorithms,
            clock_skew=self._clock_skew,
        )
        if refreshed and previous is not None and previous.claims.get("sub") not in (
                None, claims.get("sub")):
            # OIDC Core §12.2: "its sub Claim Value MUST be the same as in the ID Token issued
            # when the original authentication occurred".
            raise InvalidIdToken("the refreshed id_token is for another subject (sub changed)")
        return dataclasses.replace(token, extra={**token.extra, "id_token_claims": claims})

    # -- userinfo ------------------------------------------------------------------------------------

    def _userinfo_flow(self, token: Token) -> Flow[dict[str, Any]]:
        metadata = yield from self._metadata_flow()
        if not metadata.userinfo_endpoint:
            from ..errors import DiscoveryError

            raise DiscoveryError(f"issuer {self.issuer} offers no userinfo_endpoint",
                                 url=self.issuer)
        claims = yield from userinfo_flow(
            endpoint=metadata.userinfo_endpoint, access_token=token.access_token,
            token_type=token.token_type, expected_sub=token.claims.get("sub"),
        )
        return claims

    def _userinfo_call_flow(self) -> Flow[dict[str, Any]]:
        """The whole call: the current token, the endpoint asked with it, and after a 401 once
        more with a fresh one. RFC 6750 §3.1: a token that "is expired, revoked, malformed, or
        invalid for other reasons" gets a 401, and "The client MAY request a new access token and
        retry the protected resource request"."""
        token = yield from current_token(self)
        try:
            claims = yield from self._userinfo_flow(token)
        except OAuthError as exc:
            if exc.status != 401:
                raise
        else:
            return claims
        # Forgotten only if still current: calls refused together renew the token once.
        yield from invalidate(self, token)
        fresh = yield from current_token(self)
        claims = yield from self._userinfo_flow(fresh)
        return claims

    def userinfo(self) -> dict[str, Any]:
        """The claims of the UserInfo endpoint (OIDC Core §5.3) for the current access token.

        A 401 (the token was revoked early) invalidates it and retries once with a new one.
        """
        return self._transport.run(self._userinfo_call_flow())

    async def auserinfo(self) -> dict[str, Any]:
        """:meth:`userinfo` for async callers."""
        return await self._transport.arun(self._userinfo_call_flow())
