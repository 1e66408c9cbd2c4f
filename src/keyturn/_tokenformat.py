"""What ``keyturn token`` prints: the access token alone, an ``Authorization`` header line, a JSON
object, or a kubectl ExecCredential.

One module for both printers of a token: the fast path (:mod:`keyturn._fastpath`, from the record
in the token file) and the full command line (:mod:`keyturn.cli.token`, from ``Token.to_record()``),
so an answer reads the same whichever of them gave it. Standard library only (time; json only for
the two JSON outputs, as importing it costs the fast path more than the rest of its work): the fast
path imports it.
"""

from __future__ import annotations

import time

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = ["FORMATS", "authorization", "render"]

#: ``keyturn token`` option -> output format (the default is "plain": the access token alone).
FORMATS = {"--header": "header", "--json": "json", "--exec-credential": "exec-credential"}


def authorization(token_type: str, access_token: str) -> str:
    """The ``Authorization`` request header value that presents ``access_token``
    (:meth:`keyturn.token.Token.authorization`, and ``keyturn token --header``).

    The scheme is the token type the server gave: RFC 6749 §5.1 says the ``token_type`` "value is
    case insensitive", and RFC 6750 §2.1 spells the scheme ``Bearer``, so ``bearer`` (what many
    servers answer) is sent as ``Bearer``, and no type at all too; any other type (``DPoP``,
    ``MAC``) is sent as given.
    """
    scheme = token_type or "Bearer"
    if scheme != "Bearer" and scheme.lower() == "bearer":
        scheme = "Bearer"
    return f"{scheme} {access_token}"


def render(token: Mapping[str, Any], output: str, now: float) -> str:
    """``token`` (a Token record: access_token, token_type, expires_at, scope) as ``output``."""
    access = str(token["access_token"])
    expires_at = token.get("expires_at")
    if output == "header":
        return f"Authorization: {authorization(str(token.get('token_type') or ''), access)}"
    if output == "json":
        import json

        scope = token.get("scope")
        return json.dumps({
            "access_token": access,
            "token_type": token.get("token_type") or "Bearer",
            "expires_at": expires_at,
            "expires_in": None if expires_at is None else int(expires_at - now),
            "scope": " ".join(scope) if isinstance(scope, list | tuple) else scope,
        })
    if output == "exec-credential":
        import json

        status: dict[str, Any] = {"token": access}
        if expires_at is not None:
            status["expirationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(expires_at))
        return json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                           "kind": "ExecCredential", "status": status})
    return access
