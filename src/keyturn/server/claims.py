"""Which of a person's claims a token or the userinfo answer may carry: OpenID Connect Core §5.4.

One mapping, for the id_token (:meth:`~.tokens.Signer.id_token`) and for userinfo
(:meth:`~.service.AuthorizationServer.userinfo`): a claim is released only when the scope granted
asks for it, and ``sub`` always. The claims of a login are kept with it (:func:`keep_login_claims`)
so that userinfo answers with those a person signed in with, also when they came from an upstream
provider and are in no configuration file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final

from .. import strictjson

if TYPE_CHECKING:
    from .storage.base import ServerStorage

__all__ = ["SCOPE_CLAIMS", "keep_login_claims", "login_claims", "released_claims",
           "renew_login_claims"]

#: OIDC Core §5.4: "profile OPTIONAL. This scope value requests access to the End-User's default
#: profile Claims, which are: name, family_name, given_name, middle_name, nickname,
#: preferred_username, profile, picture, website, gender, birthdate, zoneinfo, locale, and
#: updated_at." "email ... email and email_verified", "address ... address", "phone ...
#: phone_number and phone_number_verified".
SCOPE_CLAIMS: Final[Mapping[str, frozenset[str]]] = {
    "profile": frozenset({"name", "family_name", "given_name", "middle_name", "nickname",
                          "preferred_username", "profile", "picture", "website", "gender",
                          "birthdate", "zoneinfo", "locale", "updated_at"}),
    "email": frozenset({"email", "email_verified"}),
    "address": frozenset({"address"}),
    "phone": frozenset({"phone_number", "phone_number_verified"}),
}


def released_claims(claims: Mapping[str, str], scope: Iterable[str]) -> dict[str, str]:
    """The claims among ``claims`` that ``scope`` asks for (``sub`` is never among them: the
    caller sets it, from the token)."""
    wanted: set[str] = set()
    for value in scope:
        wanted |= SCOPE_CLAIMS.get(value, frozenset())
    return {name: value for name, value in claims.items() if name in wanted}


def _login_key(family_id: str) -> str:
    return f"login-claims:{family_id}"


def keep_login_claims(storage: ServerStorage, family_id: str, claims: Mapping[str, str],
                      now: float, until: float) -> None:
    """Keep the claims a person signed in with (a local user's, or those copied from an upstream
    provider) for the userinfo answers of that login (its refresh-token family).

    Kept even when there are none: the record is the login's own word on who signed in, so
    userinfo never answers an upstream login with the claims of a local user of the same name
    (review R19 H3)."""
    storage.put_once(_login_key(family_id), json.dumps(dict(claims)), now, until)


def renew_login_claims(storage: ServerStorage, family_id: str, claims: Mapping[str, str],
                       now: float, until: float) -> None:
    """Keep them until ``until`` (a rotation's new refresh token): userinfo answers with them
    as long as the login lives, not only the first refresh token's lifetime (review R19 M5).
    The claims are the refresh record's own, so a record that had expired comes back."""
    storage.take_once(_login_key(family_id), now)
    keep_login_claims(storage, family_id, claims, now, until)


def login_claims(storage: ServerStorage, family_id: str, now: float) -> dict[str, str] | None:
    """The claims :func:`keep_login_claims` kept for this login, or None."""
    text = storage.peek_once(_login_key(family_id), now)
    if text is None:
        return None
    try:
        data = strictjson.loads(text, as_written=True)
    except strictjson.JsonError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(name): value for name, value in data.items() if isinstance(value, str)}
