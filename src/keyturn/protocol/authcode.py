"""The authorization code grant (RFC 6749 §4.1) for native apps (RFC 8252), client side, no I/O.

Rules
-----
* The request carries ``response_type=code``, ``client_id``, the loopback ``redirect_uri``, the
  ``scope``, an unguessable ``state`` (CSRF protection), a ``nonce`` when it is an OpenID request,
  and a PKCE S256 challenge (:mod:`keyturn.protocol.pkce`).
* An OpenID request for ``offline_access`` also asks for ``prompt=consent``: without it OpenID
  providers may (oidc-provider does) issue no refresh token.
* The redirect back must carry the very ``state`` that was sent, else it is refused before
  anything else in it is believed. When the server advertises RFC 9207 it must also carry ``iss``
  equal to the issuer; when ``iss`` is there at all, it must match. An ``error`` redirect becomes
  the typed :class:`~keyturn.errors.OAuthError` (``access_denied`` → ``AccessDenied``, ...).
* The code is exchanged once, with the verifier and the same ``redirect_uri``, and never sent
  twice: providers revoke the whole grant when a code is reused.

Theory of operation
-------------------
:meth:`AuthorizationRequest.create` makes the secrets and :attr:`AuthorizationRequest.url` is what
the browser opens. Whoever receives the redirect (``keyturn.interactive.loopback``) hands its query
string to :meth:`AuthorizationRequest.parse_response`, which returns the code or raises, and
:func:`code_exchange_flow` is the flow (see :mod:`keyturn.protocol.http`) that turns the code into
a :class:`~keyturn.token.Token`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from ..errors import ConfigError, InvalidResponse, oauth_error, safe_url
from ..secret import Secret, SecretFields
from ..token import Token
from .client_auth import ClientAuth
from .endpoints import check_endpoint_url
from .grants import token_flow
from .http import Flow
from .metadata import ServerMetadata
from .pkce import Pkce
from .wire import GRANT_AUTHORIZATION_CODE  # RFC 6749 §4.1.3's value, with the other grants'

__all__ = [
    "GRANT_AUTHORIZATION_CODE",
    "AuthorizationRequest",
    "code_exchange_flow",
    "default_prompt",
    "iss_required",
]

#: Parameters keyturn sets itself; ``params=`` must not name them (RFC 6749 §3.1: "Request and
#: response parameters MUST NOT be included more than once").
RESERVED: Final = frozenset({
    "response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge",
    "code_challenge_method", "prompt",
})


def default_prompt(scope: Iterable[str], prompt: str | None) -> str | None:
    """``prompt`` as given, else ``consent`` for an OpenID request that wants a refresh token.

    OpenID Connect Core §11: "When an offline_access scope value is requested, ... the request MUST
    contain the prompt parameter with value consent unless other conditions for processing the
    request permitting offline access to the requested resources are in place." oidc-provider, for
    one, ignores ``offline_access`` (no refresh token) without it.
    """
    if prompt is not None:
        return prompt or None  # "" means "send no prompt at all"
    scopes = set(scope)
    return "consent" if {"openid", "offline_access"} <= scopes else None


def iss_required(metadata: ServerMetadata) -> bool:
    """Whether the server promised an ``iss`` in every authorization response (RFC 9207 §3:
    ``authorization_response_iss_parameter_supported`` ... "If omitted, the default value is
    false")."""
    return metadata.raw.get("authorization_response_iss_parameter_supported") is True


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization request and the secrets that check its response. Not reusable: a
    response is accepted for the request that was sent, once."""

    authorization_endpoint: str
    client_id: str
    redirect_uri: str
    scope: tuple[str, ...]
    state: str = field(repr=False)
    pkce: Pkce = field(repr=False)
    nonce: str | None = field(default=None, repr=False)
    prompt: str | None = None
    params: Mapping[str, str | list[str]] = field(default_factory=dict)
    #: The issuer the request goes to, for the RFC 9207 check (None: unknown, no check possible).
    issuer: str | None = None
    #: The server advertised RFC 9207: a response without ``iss`` is refused.
    require_iss: bool = False

    def __reduce__(self) -> Any:
        raise TypeError("an authorization request holds its state and PKCE verifier; it cannot be "
                        "pickled")

    @classmethod
    def create(
        cls, *, authorization_endpoint: str, client_id: str, redirect_uri: str,
        scope: Iterable[str] = (), prompt: str | None = None,
        params: Mapping[str, str | list[str] | None] | None = None, issuer: str | None = None,
        require_iss: bool = False, allow_http: bool = False,
    ) -> AuthorizationRequest:
        """A request with a fresh ``state``, ``nonce`` (for ``openid`` scopes) and PKCE pair."""
        check_endpoint_url(authorization_endpoint, "authorization_endpoint", allow_http=allow_http)
        extra: dict[str, str | list[str]] = {
            k: v for k, v in (params or {}).items() if v is not None and v not in ("", [])}
        clash = sorted(RESERVED & set(extra))
        if clash:
            raise ConfigError(f"extra parameter {clash[0]!r} is set by keyturn itself: use the "
                              "matching keyword argument instead")
        scope = tuple(scope)
        return cls(
            authorization_endpoint=authorization_endpoint, client_id=client_id,
            redirect_uri=redirect_uri, scope=scope,
            # RFC 6749 §10.12: "The binding value used for CSRF protection MUST contain a
            # non-guessable value": 256 bits.
            state=secrets.token_urlsafe(32),
            pkce=Pkce.create(),
            # OIDC Core §3.1.2.1, nonce: "String value used to associate a Client session with an
            # ID Token, and to mitigate replay attacks."
            nonce=secrets.token_urlsafe(32) if "openid" in scope else None,
            prompt=default_prompt(scope, prompt), params=extra,
            issuer=issuer, require_iss=require_iss,
        )

    @property
    def url(self) -> str:
        """The URL the browser opens (RFC 6749 §4.1.1, RFC 7636 §4.3)."""
        query: list[tuple[str, str]] = [
            ("response_type", "code"),
            ("client_id", self.client_id),
            ("redirect_uri", self.redirect_uri),
        ]
        if self.scope:
            query.append(("scope", " ".join(self.scope)))
        query.append(("state", self.state))
        if self.nonce is not None:
            query.append(("nonce", self.nonce))
        query.extend(self.pkce.authorization_params().items())
        if self.prompt:
            query.append(("prompt", self.prompt))
        for key, value in self.params.items():
            for item in value if isinstance(value, list) else [value]:
                query.append((key, item))
        parts = urlsplit(self.authorization_endpoint)
        # RFC 6749 §3.1: "The endpoint URI MAY include an "application/x-www-form-urlencoded"
        # formatted query component ..., which MUST be retained when adding additional query
        # parameters."
        joined = "&".join(p for p in (parts.query, urlencode(query)) if p)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, ""))

    def is_for_this_request(self, query: str) -> bool:
        """Whether a redirect's query carries this request's ``state`` (once): the listener spends
        its one callback only on such a redirect, so a forged one cannot end the login."""
        values = parse_qs(query, keep_blank_values=True).get("state", [])
        return len(values) == 1 and secrets.compare_digest(values[0].encode(), self.state.encode())

    def parse_response(self, query: str | Secret[str]) -> str:
        """The authorization code from the redirect's query string, or the error it carries.

        Checked in the order that believes nothing unchecked: duplicates, ``iss``, ``state``, then
        ``error`` and ``code``. The query holds the code: this frame, which every refusal below
        has in its traceback, keeps it only as a Secret and in SecretFields.
        """
        query = Secret.wrap(query)
        repeated, got = _single_values(query)
        # RFC 6749 §3.1: "Request and response parameters MUST NOT be included more than once."
        if repeated:
            raise InvalidResponse(f"the authorization response repeats the parameter "
                                  f"{repeated!r}: refused")
        self._check_issuer(got.get("iss"))
        # RFC 6749 §4.1.2, state: "REQUIRED if the "state" parameter was present in the client
        # authorization request. The exact value received from the client."
        state = got.secret("state")
        if state is None or not secrets.compare_digest(state.reveal().encode(),
                                                       self.state.encode()):
            raise InvalidResponse(
                "the browser came back with a state that does not belong to this login (an old "
                "browser tab, or a forged redirect): nothing was accepted; log in again"
            )
        error = got.get("error")
        if error is not None:
            # RFC 6749 §4.1.2.1: the error response carries error, error_description, error_uri.
            raise oauth_error(error or "invalid_request", got.get("error_description"),
                              got.get("error_uri"), url=self.authorization_endpoint)
        if not got.get("code"):
            raise InvalidResponse("the authorization response has neither a code nor an error")
        return str(got["code"])

    def _check_issuer(self, iss: str | None) -> None:
        if iss is None:
            # RFC 9207 §2.4: "Clients MUST reject authorization responses without the iss parameter
            # from authorization servers that do support the iss parameter."
            if self.require_iss:
                raise InvalidResponse(
                    f"the authorization response has no iss although {safe_url(self.issuer or '')} "
                    "advertises authorization_response_iss_parameter_supported (RFC 9207): refused"
                )
            return
        # RFC 9207 §2.4: compare "to the issuer identifier of the authorization server where the
        # authorization request was sent to. This comparison MUST use simple string comparison";
        # "If the value does not match the expected issuer identifier, clients MUST reject the
        # authorization response and MUST NOT proceed with the authorization grant."
        if self.issuer is not None and iss != self.issuer:
            raise InvalidResponse(
                f"the authorization response comes from issuer {safe_url(iss)!r}, not "
                f"{safe_url(self.issuer)!r} (a mix-up attack?): refused"
            )


def _single_values(query: Secret[str]) -> tuple[str | None, SecretFields]:
    """The first repeated parameter name (or None), and each parameter's first value."""
    values = parse_qs(query.reveal(), keep_blank_values=True)
    repeated = sorted(k for k, v in values.items() if len(v) > 1)
    return (repeated[0] if repeated else None), SecretFields({k: v[0] for k, v in values.items()})


def code_exchange_flow(
    request: AuthorizationRequest, code: str | Secret[str], *, token_endpoint: str,
    client_auth: ClientAuth, now: float, resource: Iterable[str] = (),
) -> Flow[Token]:
    """Exchange ``code`` for tokens at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
    code = Secret.wrap(code)  # first: this frame is in the traceback of a refused exchange
    params = SecretFields({
        "code": code,
        # RFC 6749 §4.1.3, redirect_uri: "REQUIRED, if the "redirect_uri" parameter was included
        # in the authorization request ..., and their values MUST be identical."
        "redirect_uri": request.redirect_uri,
        # RFC 7636 §4.5: "code_verifier REQUIRED. Code verifier".
        "code_verifier": request.pkce.verifier,
    })
    if resource:
        # RFC 8707 §2.2: the token request may name the resources the access token is for.
        params["resource"] = list(resource)
    # idempotent=False: RFC 6749 §4.1.2 "If an authorization code is used more than once, the
    # authorization server MUST deny the request and SHOULD revoke (when possible) all tokens
    # previously issued based on that authorization code." A retry after a lost answer would.
    token = yield from token_flow(
        endpoint=token_endpoint, grant_type=GRANT_AUTHORIZATION_CODE, params=params,
        client_auth=client_auth, now=now, requested_scope=request.scope, idempotent=False,
    )
    return token
