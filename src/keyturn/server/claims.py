"""Which of a person's claims a token or the userinfo answer may carry: OpenID Connect Core §5.4.

One mapping, for the id_token (:meth:`~.tokens.Signer.id_token`) and for userinfo
(:meth:`~.service.AuthorizationServer.userinfo`): a claim is released only when the scope granted
asks for it, and ``sub`` always.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["SCOPE_CLAIMS", "released_claims"]

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
