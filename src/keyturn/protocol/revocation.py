"""Token revocation (RFC 7009)."""

from __future__ import annotations

from ..secret import Secret, SecretFields
from .client_auth import ClientAuth
from .grants import parse_error_response
from .http import Flow, HttpRequest, send

__all__ = ["revocation_flow"]


def revocation_flow(
    *, endpoint: str, token: str | Secret[str], token_type_hint: str, client_auth: ClientAuth,
    audience: str, now: float,
) -> Flow[None]:
    """Ask the server to revoke ``token``; ``token_type_hint`` is ``refresh_token`` or
    ``access_token`` (RFC 7009 §2.1)."""
    token = Secret.wrap(token)  # this frame is in the traceback of a refusal
    form = SecretFields({"token": token, "token_type_hint": token_type_hint})
    headers = SecretFields({"Accept": "application/json"})
    client_auth.apply(form, headers, audience=audience, now=now)
    response = yield from send(HttpRequest("POST", endpoint, headers=headers, form=form,
                                           purpose="revocation endpoint"))
    # RFC 7009 §2.2: "The authorization server responds with HTTP status code 200 if the token
    # has been revoked successfully or if the client submitted an invalid token."
    if response.status != 200:
        raise parse_error_response(response, "revocation endpoint")
