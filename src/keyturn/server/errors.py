"""The OAuth errors the server answers with, and their one rendering (RFC 6749 §5.2).

The server speaks the client's vocabulary: an endpoint raises the :mod:`keyturn.errors` class of
the wire code (:class:`~keyturn.errors.InvalidGrant`, :class:`~keyturn.errors.SlowDown`, ...),
made by :func:`refusal`, and :func:`error_reply` is the only place that turns one into the JSON
answer. What only a server needs is here: the HTTP status of each code, the challenge a 401
carries, and the codes no token endpoint sends to a client (``invalid_token`` for userinfo, RFC
6750; ``temporarily_unavailable``), plus :class:`BadForm` for a body that is no form.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ..errors import InvalidClient, InvalidRequest, OAuthError, oauth_error
from .reply import NO_STORE, Reply

__all__ = ["OUTAGE_RETRY_AFTER", "BadForm", "InvalidToken", "TemporarilyUnavailable", "error_reply",
           "refusal", "refusal_for_code", "storage_outages", "unavailable"]


class InvalidToken(OAuthError):
    """RFC 6750 §3.1, invalid_token: "The access token provided is expired, revoked, malformed, or
    invalid for other reasons." (The protected resource's answer: userinfo.)"""

    code = "invalid_token"


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1, temporarily_unavailable: "The authorization server is currently unable
    to handle the request due to a temporary overloading or maintenance of the server.\""""

    code = "temporarily_unavailable"
    #: Seconds for the Retry-After header (RFC 9110 §10.2.3), set by :func:`unavailable`.
    retry_after: int | None = None


#: Retry-After (seconds) of the answer to a request the storage could not serve (an outage).
OUTAGE_RETRY_AFTER = 5


def unavailable(description: str, *, retry_after: int, status: int = 503
                ) -> TemporarilyUnavailable:
    """temporarily_unavailable with a Retry-After: 503 for an outage; 429 for a limit that the
    caller reached (RFC 6585 §4: "The 429 status code indicates that the user has sent too many
    requests in a given amount of time"; RFC 8628 has no error code for it)."""
    exc = refusal(TemporarilyUnavailable, description, status=status)
    exc.retry_after = max(1, retry_after)
    return exc


def storage_outages() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the storage cannot serve just now, not a bug in a request:
    answered with 503 (and one log line naming the class). SQLite: any
    :class:`sqlite3.DatabaseError` (locked, disk I/O error, read-only, a full disk, a file that is
    no database or is damaged; its subclasses for a bug, such as IntegrityError, come along, and
    the log line names them). Redis: down, too slow, read-only (a replica), still loading,
    out of memory (``maxmemory`` with noeviction), or writes stopped after a failed snapshot
    (MISCONF). A damaged record (:class:`~keyturn.errors.StoreError`) is not among them."""
    import sqlite3

    kinds: list[type[BaseException]] = [sqlite3.DatabaseError]
    try:
        from redis import exceptions as redis_errors

        from .storage.redis_outage import MisconfError
    except ImportError:  # redis is optional: only its backend needs it
        pass
    else:
        kinds += [redis_errors.ConnectionError, redis_errors.TimeoutError,
                  redis_errors.ReadOnlyError, redis_errors.BusyLoadingError,
                  redis_errors.OutOfMemoryError, MisconfError]
    return tuple(kinds)


class BadForm(InvalidRequest):
    """The request body is not a form this server reads (wrong media type, too large, a parameter
    sent twice): invalid_request, with 413 for a body that is too large."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(self.code, description, status=status, hint="")


#: The status of each code when the raiser names none; every other code is 400 (RFC 6749 §5.2:
#: "The authorization server responds with an HTTP 400 (Bad Request) status code (unless
#: specified otherwise)").
_STATUS: dict[type[OAuthError], int] = {
    # RFC 6749 §5.2, invalid_client: "The authorization server MAY return an HTTP 401
    # (Unauthorized) status code to indicate which HTTP authentication schemes are supported."
    InvalidClient: 401,
    # RFC 6750 §3.1, invalid_token: "The resource SHOULD respond with the HTTP 401 (Unauthorized)
    # status code."
    InvalidToken: 401,
    TemporarilyUnavailable: 503,
}

E = TypeVar("E", bound=OAuthError)


def refusal(kind: type[E], description: str | None, *, status: int | None = None) -> E:
    """The error to raise: ``kind`` with its wire code, ``description`` (the ``error_description``
    sent, which says what to fix and never holds a secret) and its status."""
    return kind(kind.code, description, status=status or _STATUS.get(kind, 400), hint="")


def refusal_for_code(code: str, description: str) -> OAuthError:
    """:func:`refusal` for a wire code known only as text (the device grant's rules decide codes)."""
    kind = type(oauth_error(code))
    return refusal(kind, description)


def error_reply(exc: OAuthError) -> Reply:
    """The one rendering of an error: RFC 6749 §5.2's JSON object, never cached."""
    body: dict[str, Any] = {"error": exc.error}
    if exc.error_description is not None:
        body["error_description"] = exc.error_description
    headers = dict(NO_STORE)
    status = exc.status or 400
    if isinstance(exc, InvalidToken):
        # RFC 6750 §3: "If the protected resource request included an access token and failed
        # authentication, the resource server SHOULD include the "error" attribute".
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"', **NO_STORE}
    elif status == 401:
        # RFC 6749 §5.2: "If the client attempted to authenticate via the "Authorization" request
        # header field, the authorization server MUST respond with an HTTP 401 (Unauthorized)
        # status code and include the "WWW-Authenticate" response header field matching the
        # authentication scheme used by the client." Sent on every 401, as openid-client expects.
        headers["WWW-Authenticate"] = 'Basic realm="keyturn"'
    if isinstance(exc, TemporarilyUnavailable) and exc.retry_after is not None:
        # RFC 9110 §10.2.3: "Servers send the "Retry-After" header field to indicate how long the
        # user agent ought to wait before making a follow-up request."
        headers["Retry-After"] = str(exc.retry_after)
    return Reply(status, body, headers)
