"""The errors keyturn raises.

Every failure is a :class:`KeyturnError` whose message says what to fix. Errors returned by an
authorization server keep its three RFC 6749 §5.2 fields. No message, repr or pickle of an error ever
holds a secret: messages are built from names, URLs and the server's own ``error`` fields only, and
URLs have their query strings and user-info removed first.

::

    KeyturnError
    ├── ConfigError            the caller's configuration is wrong (fix the arguments)
    ├── LoginRequired          a silent call needs an interactive login first
    ├── LoginTimeout           an interactive login was not finished in time
    ├── DiscoveryError         the issuer's metadata could not be fetched or is wrong
    ├── TransportError         the network failed: connection, TLS, timeout
    ├── InvalidResponse        the server answered something that is not a valid response
    ├── InvalidIdToken         an OpenID Connect id_token failed validation (signature, claims)
    ├── StoreError             a token store failed (disk, lock, Redis)
    └── OAuthError             the server answered with an RFC 6749 §5.2 error
        ├── InvalidRequest          invalid_request
        ├── InvalidClient           invalid_client
        ├── InvalidGrant            invalid_grant
        ├── UnauthorizedClient      unauthorized_client
        ├── UnsupportedGrantType    unsupported_grant_type
        ├── InvalidScope            invalid_scope
        ├── InvalidTarget           invalid_target (RFC 8707)
        ├── AccessDenied            access_denied
        ├── ExpiredToken            expired_token (RFC 8628)
        ├── AuthorizationPending    authorization_pending (RFC 8628)
        └── SlowDown                slow_down (RFC 8628)
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AccessDenied",
    "AuthorizationPending",
    "ConfigError",
    "DiscoveryError",
    "ExpiredToken",
    "InvalidClient",
    "InvalidGrant",
    "InvalidIdToken",
    "InvalidRequest",
    "InvalidResponse",
    "InvalidScope",
    "InvalidTarget",
    "KeyturnError",
    "LoginRequired",
    "LoginTimeout",
    "OAuthError",
    "SlowDown",
    "StoreError",
    "TransportError",
    "UnauthorizedClient",
    "UnsupportedGrantType",
    "oauth_error",
    "safe_url",
]


def safe_url(url: str) -> str:
    """The URL without user-info, query or fragment: the part of a URL that is safe to show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return "<unparseable URL>"
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal keeps its brackets
    if port is not None:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class KeyturnError(Exception):
    """Base of every error keyturn raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[KeyturnError], state: dict[str, Any]) -> KeyturnError:
    error = cls.__new__(cls)
    Exception.__init__(error, state.get("message", ""))
    error.__dict__.update(state)
    return error


class ConfigError(KeyturnError):
    """The configuration given to keyturn cannot work; the message says which argument to fix."""


class LoginRequired(KeyturnError):
    """A token is needed but only an interactive login can get one, and the caller is silent."""


class LoginTimeout(KeyturnError):
    """An interactive login was started but the person did not finish it in time (the browser
    never came back to keyturn's loopback address)."""


class DiscoveryError(KeyturnError):
    """The issuer's metadata document could not be fetched, parsed, or does not match the issuer."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = safe_url(url) if url else None


class TransportError(KeyturnError):
    """The request never got an HTTP answer: connection refused, DNS, TLS, timeout.

    ``reached_server`` is False only when the request surely never reached the server (refused
    or timed out connecting): sending it again is then always safe. ``answered`` is True when the
    server did answer but its answer could not be read (a broken content encoding): asking again
    is not expected to help. Both are what the retry wrapper (``keyturn._retry``) decides by.
    """

    def __init__(self, message: str, *, url: str | None = None, reached_server: bool = True,
                 answered: bool = False) -> None:
        super().__init__(message)
        self.url = safe_url(url) if url else None
        self.reached_server = reached_server
        self.answered = answered


class InvalidResponse(KeyturnError):
    """The server's answer is not a valid response for the endpoint (HTML, bad JSON, missing fields)."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = safe_url(url) if url else None
        self.status = status
        # Name the endpoint: "the token endpoint answered HTML" alone does not say which URL to fix.
        if self.url and self.url not in message:
            message = f"{message} [{self.url}]"
        super().__init__(message)


class InvalidIdToken(KeyturnError):
    """An OpenID Connect ID Token failed validation (OpenID Connect Core §3.1.3.7): its signature,
    algorithm, issuer, audience, expiry or nonce. The message names the check, never the token."""


class StoreError(KeyturnError):
    """A token store could not be read, written or locked."""


class OAuthError(KeyturnError):
    """The authorization server answered with an error (RFC 6749 §5.2).

    ``error``, ``error_description`` and ``error_uri`` are the server's own fields; ``status`` is the
    HTTP status and ``url`` the endpoint (without query string).
    """

    code: ClassVar[str] = ""
    hint: ClassVar[str] = ""

    def __init__(
        self,
        error: str,
        error_description: str | None = None,
        error_uri: str | None = None,
        *,
        status: int | None = None,
        url: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.error = error
        self.error_description = error_description
        self.error_uri = error_uri
        self.status = status
        self.url = safe_url(url) if url else None
        where = f" from {self.url}" if self.url else ""
        text = f"{error}{where}"
        if error_description:
            # On one line: Entra ID's descriptions carry "\r\nTrace ID: ..." lines.
            text += f": {' '.join(error_description.split())}"
        fix = hint if hint is not None else self.hint
        if fix:
            text = f"{_sentence(text)} {fix}"
        super().__init__(text)


def _sentence(text: str) -> str:
    """``text`` ending as a sentence: a full stop added only when it has none (Keycloak's and
    Entra ID's descriptions end with one; "...the client.. Allow" reads as a typo)."""
    return text if text.endswith((".", "!", "?")) else f"{text}."


class InvalidRequest(OAuthError):
    """The request is missing a required parameter, includes an unsupported parameter value, or is
    otherwise malformed (RFC 6749 §5.2)."""

    code = "invalid_request"
    hint = "Check the grant's parameters and that the client may use this grant."


class InvalidClient(OAuthError):
    """Client authentication failed (e.g., unknown client, no client authentication included, or
    unsupported authentication method) (RFC 6749 §5.2)."""

    code = "invalid_client"
    hint = (
        "Check client_id, the client secret or private key, and that auth_method matches the "
        "method registered for this client."
    )


class InvalidGrant(OAuthError):
    """The provided authorization grant or refresh token is invalid, expired, revoked, does not
    match the redirection URI used in the authorization request, or was issued to another client
    (RFC 6749 §5.2)."""

    code = "invalid_grant"
    hint = "The grant or refresh token is no longer valid: log in again to get a new one."


class UnauthorizedClient(OAuthError):
    """The authenticated client is not authorized to use this authorization grant type
    (RFC 6749 §5.2)."""

    code = "unauthorized_client"
    hint = "Allow this grant type for the client at the authorization server."


class UnsupportedGrantType(OAuthError):
    """The authorization grant type is not supported by the authorization server (RFC 6749 §5.2)."""

    code = "unsupported_grant_type"
    hint = "The server does not offer this grant; choose another token source."


class InvalidScope(OAuthError):
    """The requested scope is invalid, unknown, malformed, or exceeds the scope granted by the
    resource owner (RFC 6749 §5.2)."""

    code = "invalid_scope"
    hint = "Ask only for scopes the server knows and the client may use."


class InvalidTarget(OAuthError):
    """The requested resource is invalid, missing, unknown, or malformed (RFC 8707 §2)."""

    code = "invalid_target"
    hint = "Check the resource= values: absolute URIs the server knows."


class AccessDenied(OAuthError):
    """The resource owner or authorization server denied the request (RFC 6749 §4.1.2.1,
    RFC 8628 §3.5)."""

    code = "access_denied"
    hint = ("The request was refused: the person declined the login, or the client is not "
            "allowed this access (scope, audience) at the authorization server.")


class ExpiredToken(OAuthError):
    """The "device_code" has expired, and the device authorization session has concluded
    (RFC 8628 §3.5)."""

    code = "expired_token"
    hint = "The code was not approved in time; start the login again."


class AuthorizationPending(OAuthError):
    """The authorization request is still pending as the end user hasn't yet completed the
    user-interaction steps (RFC 8628 §3.5)."""

    code = "authorization_pending"
    hint = "The login has not been approved yet; keep polling at the interval the server gave."


class SlowDown(OAuthError):
    """A variant of "authorization_pending", the authorization request is still pending and polling
    should continue, but the interval MUST be increased by 5 seconds for this and all subsequent
    requests (RFC 8628 §3.5)."""

    code = "slow_down"
    hint = "Poll less often: add 5 seconds to the polling interval."


_BY_CODE: dict[str, type[OAuthError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest,
        InvalidClient,
        InvalidGrant,
        UnauthorizedClient,
        UnsupportedGrantType,
        InvalidScope,
        InvalidTarget,
        AccessDenied,
        ExpiredToken,
        AuthorizationPending,
        SlowDown,
    )
}


def oauth_error(
    error: str,
    error_description: str | None = None,
    error_uri: str | None = None,
    *,
    status: int | None = None,
    url: str | None = None,
) -> OAuthError:
    """The most specific :class:`OAuthError` subclass for a wire ``error`` code."""
    cls = _BY_CODE.get(error, OAuthError)
    return cls(error, error_description, error_uri, status=status, url=url)
