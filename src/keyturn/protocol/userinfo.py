"""The OpenID Connect UserInfo endpoint (OpenID Connect Core 1.0 §5.3)."""

from __future__ import annotations

from typing import Any

from ..errors import InvalidIdToken, InvalidResponse, oauth_error
from ..secret import Secret, SecretFields
from .http import Flow, HttpRequest, send

__all__ = ["userinfo_flow"]


def userinfo_flow(
    *, endpoint: str, access_token: str | Secret[str], token_type: str = "Bearer",
    expected_sub: str | None = None,
) -> Flow[dict[str, Any]]:
    """The claims the UserInfo endpoint returns for ``access_token``."""
    access_token = Secret.wrap(access_token)  # this frame is in the traceback of a refusal
    scheme = "DPoP" if token_type.lower() == "dpop" else "Bearer"
    response = yield from send(HttpRequest(
        "GET", endpoint, headers=SecretFields({
            "Authorization": f"{scheme} {access_token.reveal()}", "Accept": "application/json"}),
        purpose="userinfo endpoint",
    ))
    if response.status != 200:
        # RFC 6750 §3: the error comes in the WWW-Authenticate header, e.g.
        # `Bearer error="invalid_token", error_description="..."`.
        challenge = response.headers.get("www-authenticate", "")
        error = _challenge_param(challenge, "error") or "invalid_token"
        raise oauth_error(error, _challenge_param(challenge, "error_description"),
                          status=response.status, url=endpoint)
    if response.content_type == "application/jwt":
        raise InvalidResponse("the userinfo endpoint answered a signed JWT, which keyturn does not "
                              "read yet", url=endpoint, status=response.status)
    claims: dict[str, Any] = response.json_object("userinfo endpoint")
    # OIDC Core §5.3.2: "The sub Claim in the UserInfo Response MUST be verified to exactly match
    # the sub Claim in the ID Token; if they do not match, the UserInfo Response values MUST NOT be
    # used."
    if expected_sub is not None and claims.get("sub") != expected_sub:
        raise InvalidIdToken("the userinfo sub does not match the id_token sub")
    return claims


def _challenge_param(challenge: str, name: str) -> str | None:
    marker = f'{name}="'
    start = challenge.find(marker)
    if start < 0:
        return None
    start += len(marker)
    end = challenge.find('"', start)
    return challenge[start:end] if end > start else None
