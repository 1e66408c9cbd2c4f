"""Token requests and token responses (RFC 6749 §4-§6, RFC 7523 §2.1, RFC 8693, RFC 8707).

:func:`token_flow` is the one flow every grant uses: build the form, let the client authenticate,
send it to the token endpoint, parse the answer. The grant-specific part is only which parameters
go into the form, which the builders below return.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from ..errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidResponse,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    oauth_error,
)
from ..secret import Secret, SecretFields
from ..strictjson import loads
from ..token import Token
from .client_auth import ClientAuth
from .http import Flow, HttpRequest, HttpResponse, Received, send

# The wire grant types, with their RFCs' words, live in .wire (the registry reads them too).
from .wire import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_JWT_BEARER,
    GRANT_REFRESH_TOKEN,
    GRANT_TOKEN_EXCHANGE,
)

__all__ = [
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_DEVICE_CODE",
    "GRANT_JWT_BEARER",
    "GRANT_REFRESH_TOKEN",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_ENDPOINT",
    "normalize_scope",
    "other_tokens",
    "parse_error_response",
    "parse_token_response",
    "response_members",
    "scope_param",
    "token_flow",
]

#: What an access token (VSCHAR) and a token type (no space) may be made of: printable ASCII.
_VSCHARS: Final = re.compile(r"[\x20-\x7e]+")
_NAME_CHARS: Final = re.compile(r"[\x21-\x7e]*")
#: Response members that are secrets or already attributes of Token: never copied into `extra`.
_NOT_EXTRA: Final = frozenset(
    {"access_token", "refresh_token", "id_token", "token_type", "expires_in", "scope",
     "refresh_expires_in", "refresh_token_expires_in",
     # Claims come only from a validated id_token, never from the response body.
     "id_token_claims"}
)

#: The ``purpose`` of token requests: what error messages call the endpoint, and what
#: ``token_response_hook`` is applied to (:mod:`.hooks`).
TOKEN_ENDPOINT: Final = "token endpoint"

#: Error codes that keep their own class in a 401 answer: they name a problem with the grant, not
#: with the client's credentials.
_GRANT_CODES: Final = frozenset(cls.code for cls in (
    InvalidGrant, InvalidScope, InvalidTarget, AccessDenied, ExpiredToken, AuthorizationPending,
    SlowDown))
#: Providers' own codes for what RFC 6749 §5.2 and RFC 8628 §3.5 name otherwise: the error keeps
#: the provider's code, and gets the class (and hint) of the standard one.
_PROVIDER_CODES: Final[Mapping[str, type[OAuthError]]] = {
    # GitHub, with HTTP 200: "The client_id and/or client_secret passed are incorrect."
    "incorrect_client_credentials": InvalidClient,
    # GitHub: "Device flow has not been enabled in the app's settings."
    "device_flow_disabled": UnauthorizedClient,
    # Entra ID's device flow: "The end user denied the authorization request."
    "authorization_declined": AccessDenied,
    # Entra ID: "The device_code sent to the /token endpoint wasn't recognized."; GitHub: a
    # wrong or spent code. Both say the grant is no good, as invalid_grant does.
    "bad_verification_code": InvalidGrant,
    "incorrect_device_code": InvalidGrant,
}
_REFUSED_CLIENT: Final = (
    "The server refused the client's credentials (HTTP 401): check client_id, the client "
    "secret or private key, and that auth_method matches the method registered for this client."
)


def normalize_scope(scope: str | Iterable[str] | None) -> tuple[str, ...]:
    """The scope as an ordered tuple of unique, non-empty tokens (RFC 6749 §3.3: space-delimited,
    order does not matter)."""
    if scope is None:
        return ()
    items = scope.split() if isinstance(scope, str) else [s for part in scope for s in part.split()]
    return tuple(dict.fromkeys(items))


def scope_param(scope: tuple[str, ...]) -> dict[str, str | list[str]]:
    return {"scope": " ".join(scope)} if scope else {}


def token_flow(
    *,
    endpoint: str,
    grant_type: str,
    params: Mapping[str, str | list[str]],
    client_auth: ClientAuth,
    now: float,
    requested_scope: tuple[str, ...] = (),
    idempotent: bool = True,
) -> Flow[Token]:
    """Request a token from the token endpoint and parse the answer."""
    # SecretFields, not dicts: this frame is in the traceback of every error the answer raises,
    # and the form (a refresh token, a code, the client secret) and the headers (the Basic
    # credentials) must show there only as tags (see keyturn.secret).
    form = SecretFields({"grant_type": grant_type})
    form.update({k: v for k, v in params.items() if v not in (None, "", [])})
    headers = SecretFields({"Accept": "application/json"})
    client_auth.apply(form, headers, audience=endpoint, now=now)
    response = yield from send(HttpRequest(
        "POST", endpoint, headers=headers, form=form, idempotent=idempotent,
        purpose=TOKEN_ENDPOINT,
    ))
    refresh = grant_type == GRANT_REFRESH_TOKEN
    try:
        token = parse_token_response(response, now=now, requested_scope=requested_scope)
    except InvalidResponse:
        salvaged = None if idempotent else salvage_refresh_token(response, now=now)
        if salvaged is not None:
            yield Received(salvaged, refresh=refresh)
        raise
    if not idempotent:
        # The server may have spent what the request carried (a rotated refresh token, a code):
        # its answer is all there is, and is kept before the caller does anything else with it.
        yield Received(token, refresh=refresh)
    return token


def salvage_refresh_token(response: HttpResponse, *, now: float) -> Token | None:
    """The refresh token of a successful answer that failed its checks (a malformed
    ``expires_in``, an access token outside VSCHAR), when it carries a well-formed one.

    The server has acted on the request — spent a refresh token or a code — and rotated: keeping
    the new refresh token is what keeps the login. Nothing else of such an answer is used: the
    token holds no access token.
    """
    if response.status != 200:
        return None
    try:
        body = _body(response, "token endpoint")
    except InvalidResponse:
        return None
    refresh = body.get("refresh_token")
    # RFC 6749 Appendix A.17: "refresh-token = 1*VSCHAR".
    if isinstance(body.get("error"), str) or not isinstance(refresh, str) or not _VSCHARS.fullmatch(
            refresh):
        return None
    return Token(access_token="", expires_at=0.0, issued_at=now, refresh_token=refresh)


def _body(response: HttpResponse, purpose: str) -> SecretFields:
    """The response's members, from JSON or, for legacy servers, from a form; the tokens in it
    are held as secrets (it is a local of frames whose checks may raise)."""
    if response.content_type == "application/x-www-form-urlencoded":
        # Legacy servers (GitHub without an Accept header) answer with a form, errors included.
        from urllib.parse import parse_qsl

        return SecretFields(dict(parse_qsl(response.body.decode("utf-8", "replace"))))
    members = SecretFields(response.json_object(purpose))
    if "other_tokens" in members:
        # Globus Auth's token answers nested in a list: shown as a tag only, as the tokens are.
        members["other_tokens"] = Secret(members["other_tokens"])
    return members


def parse_error_response(response: HttpResponse, purpose: str) -> Exception:
    """The typed error for a non-success answer: the server's OAuth error when it sent one."""
    try:
        body = _body(response, purpose)
    except InvalidResponse as exc:
        if response.status != 401:
            return exc
        body = SecretFields({})  # a 401 without an OAuth body still says the same (below)
    error = body.get("error")
    description = body.get("error_description")
    uri = body.get("error_uri")
    fields = (description if isinstance(description, str) else None,
              uri if isinstance(uri, str) else None)
    if response.status == 401:
        # RFC 6749 §5.2, invalid_client: "Client authentication failed ... The authorization
        # server MAY return an HTTP 401 (Unauthorized) status code". The endpoints that parse
        # errors here (token, device authorization, revocation) all authenticate the client, so a
        # 401 says the client's credentials were refused, whatever code comes with it: Keycloak
        # sends "unauthorized_client", which would otherwise send the user to the grant settings.
        # Codes about the grant itself (a spent refresh token, a pending login) keep their class.
        code = error if isinstance(error, str) and error else "invalid_client"
        if code not in _GRANT_CODES:
            return InvalidClient(code, *fields, status=401, url=response.url, hint=_REFUSED_CLIENT)
    if isinstance(error, str) and error:
        alias = _PROVIDER_CODES.get(error)
        if alias is not None:
            return alias(error, *fields, status=response.status, url=response.url)
        return oauth_error(error, *fields, status=response.status, url=response.url)
    return InvalidResponse(
        f"the {purpose} answered HTTP {response.status} without an OAuth error code",
        url=response.url,
        status=response.status,
    )


def _seconds(body: Mapping[str, Any], name: str, response: HttpResponse) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    # Some servers (Azure AD v1) send "3599" as a string; a number in a string is still a number.
    # (ASCII digits only: str.isdigit() also accepts "²", which int() refuses.)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        with contextlib.suppress(ValueError):  # more digits than int() converts
            value = int(value)
    seconds: float | None = None
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        with contextlib.suppress(OverflowError):  # an integer beyond any float
            seconds = float(value)
    if seconds is None or not math.isfinite(seconds):
        raise InvalidResponse(
            f"the token endpoint sent {name}={str(value)[:20]!r}, which is not a number of seconds",
            url=response.url,
            status=response.status,
        )
    if seconds < 0:
        raise InvalidResponse(
            f"the token endpoint sent a negative {name} ({value})", url=response.url,
            status=response.status,
        )
    return seconds


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it: a hint about expiry, never trust."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):  # JsonError too: a hint that cannot be read is no hint
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)) or not math.isfinite(exp):
        return None
    return float(exp)


def _text(value: Any) -> str | None:
    """A non-empty string member, or None."""
    return value if isinstance(value, str) and value else None


def _granted_scope(scope: str) -> tuple[str, ...]:
    # RFC 6749 §3.3: "The value of the scope parameter is expressed as a list of space-delimited,
    # case-sensitive strings". GitHub answers "repo,gist": commas separate too (a comma is an
    # NQCHAR, but no provider keyturn knows puts one inside a scope name).
    return tuple(dict.fromkeys(part for part in re.split(r"[\s,]+", scope) if part))


def other_tokens(value: Secret[Any] | Any, *, issued_at: float, url: str = "") -> tuple[Token, ...]:
    """The tokens of a Globus Auth ``other_tokens`` member: a list of token answers, one per
    resource server (named in each one's ``resource_server``, kept in its ``extra``), checked as
    any token answer is. ``value`` may come as a :class:`Secret` (it holds tokens)."""
    answers = Secret.wrap(value)
    if not isinstance(answers.reveal(), list) or not all(
            isinstance(item, dict) for item in answers.reveal()):
        raise InvalidResponse("the token endpoint sent other_tokens that is not a list of token "
                              "answers", url=url or None, status=200)
    # Each answer only inside a Secret, and as bytes in a response (not in its repr): these
    # frames are in the traceback of an answer that fails its checks.
    return tuple(
        parse_token_response(HttpResponse(200, {"content-type": "application/json"},
                                          json.dumps(answer.reveal()).encode(), url), now=issued_at)
        for answer in map(Secret, answers.reveal())
    )


def response_members(response: HttpResponse, purpose: str) -> SecretFields:
    """The answer's members, from JSON or from a form (GitHub without ``Accept: application/json``),
    the tokens held as secrets: what the token and device parsers read."""
    return _body(response, purpose)


def parse_token_response(
    response: HttpResponse, *, now: float, requested_scope: tuple[str, ...] = ()
) -> Token:
    """A :class:`Token` from a successful answer (RFC 6749 §5.1), or the typed error."""
    if response.status != 200:
        raise parse_error_response(response, "token endpoint")
    body = _body(response, "token endpoint")
    if isinstance(body.get("error"), str):
        raise parse_error_response(response, "token endpoint")
    # The tokens stay in ``body`` until the Token is built: bound to a local, one would show in
    # the traceback of every check below.
    if not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise InvalidResponse(
            "the token endpoint answered HTTP 200 without an access_token", url=response.url,
            status=response.status,
        )
    # RFC 6749 Appendix A.12: "access-token = 1*VSCHAR" (%x20-7E). Anything else cannot go into
    # an Authorization header: a UnicodeEncodeError at the first request, or a header injected.
    if not _VSCHARS.fullmatch(body["access_token"]):
        raise InvalidResponse(
            "the token endpoint sent an access_token with characters outside printable ASCII "
            "(RFC 6749 Appendix A.12)", url=response.url, status=response.status,
        )
    token_type = body.get("token_type")
    if isinstance(token_type, str) and not _NAME_CHARS.fullmatch(token_type):
        # RFC 6749 Appendix A.13: "token-type = type-name / URI"; either is printable ASCII
        # without spaces, and it is written into the Authorization header before the token.
        raise InvalidResponse(
            "the token endpoint sent a token_type with characters outside printable ASCII "
            "(RFC 6749 Appendix A.13)", url=response.url, status=response.status,
        )
    expires_in = _seconds(body, "expires_in", response)
    if expires_in is None:
        # RFC 6749 §5.1 only RECOMMENDS expires_in. A JWT access token (RFC 9068) still says when
        # it expires; an opaque one without expires_in is used until a 401 says otherwise.
        exp = jwt_expiry(body["access_token"])
        if exp is not None:
            expires_in = max(0.0, exp - now)
    refresh_in = _seconds(body, "refresh_token_expires_in", response)
    if refresh_in is None:
        refresh_in = _seconds(body, "refresh_expires_in", response)
    scope = body.get("scope")
    # other_tokens: as token records (below), never the answers themselves, which hold tokens.
    extra = {k: v for k, v in body.items() if k not in _NOT_EXTRA and k != "other_tokens"}
    if "other_tokens" in body:
        # Globus Auth: one token answer per resource server. Checked now (a broken one fails the
        # answer here, not when it is used) and kept as token records: Token.other_tokens.
        extra["other_tokens"] = [token.to_record() for token in other_tokens(
            body.secret("other_tokens"), issued_at=now, url=response.url)]
    return Token(
        access_token=body["access_token"],
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        expires_at=None if expires_in is None else now + expires_in,
        issued_at=now,
        # RFC 6749 §5.1: scope is "OPTIONAL, if identical to the scope requested by the client".
        scope=_granted_scope(scope) if isinstance(scope, str) else (requested_scope or None),
        refresh_token=_text(body.get("refresh_token")),
        id_token=_text(body.get("id_token")),
        refresh_expires_at=None if not refresh_in else now + refresh_in,
        extra=extra,
    )
