"""``account=``: a local name for one of several logins at one provider.

Two logins with the same issuer, client and scope (a person's work and test identities, say) are
two saved logins when their ``account`` differs: it is part of the cache key
(:mod:`keyturn.cachekey`). Where a login takes one, it is also sent as ``login_hint``, so the
provider can offer that identity first.
"""

from __future__ import annotations

from collections.abc import Mapping

from .errors import ConfigError

__all__ = ["check_account", "login_hint"]


def check_account(account: object) -> str | None:
    """``account`` when it is None or a usable name, else a :class:`ConfigError` saying why."""
    if account is None:
        return None
    if not isinstance(account, str) or not account.strip():
        raise ConfigError("account= must be a non-empty name (or left out for the one login "
                          "per issuer, client and scope)")
    if any(ord(c) < 32 or ord(c) == 127 for c in account):
        # It is sent in a URL and shown in keyturn status: no line breaks, tabs or escapes.
        raise ConfigError("account= must not hold control characters (line breaks, tabs, escapes)")
    return account


def login_hint(account: str | None, params: Mapping[str, object]) -> dict[str, str]:
    """The ``login_hint`` to add to a login request's ``params`` (empty when there is no account,
    or when ``params`` already has a login_hint: an explicit ``extra_params`` one wins)."""
    # OIDC Core §3.1.2.1: "login_hint OPTIONAL. Hint to the Authorization Server about the login
    # identifier the End-User might use to log in (if necessary)."
    if account is None or "login_hint" in params:
        return {}
    return {"login_hint": account}
