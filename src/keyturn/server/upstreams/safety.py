"""Configurations that would let the wrong people in, refused at load (review R19, H2 and H3).

* **A multi-tenant Entra ID issuer** (``/common``, ``/organizations``, ``/consumers``): its
  id_tokens may come from any tenant, and anyone can make a tenant and give its users any name
  or address. Refused unless every allow rule names a tenant (``{claim = "tid", equals = ...}``).
* **Subjects that can collide**: the local ``sub`` of an upstream's person is its
  ``subject_prefix`` and its ``subject_claim``. An empty prefix beside local users, or beside
  another upstream, lets an account there become someone here (the same tokens' ``sub``, the
  same logins in ``keyturn serve admin``); so do two prefixes one of which starts the other
  (``a`` and ``ab``: ``a`` + ``bx`` is ``ab`` + ``x``), and a local user whose name starts with a
  prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from ...errors import ConfigError

if TYPE_CHECKING:  # config.py calls this module
    from .config import UpstreamConfig

__all__ = ["SHARED_TENANTS", "check_subjects", "check_tenant", "shared_tenant"]

#: Entra ID's tenant-independent endpoints (``https://login.microsoftonline.com/{tenant}/v2.0``):
#: "common" (any work account or personal one), "organizations" (any work account),
#: "consumers" (any personal Microsoft account).
SHARED_TENANTS: Final = frozenset({"common", "organizations", "consumers"})


def shared_tenant(issuer: str) -> str | None:
    """The multi-tenant segment of an Entra-shaped issuer (``/common`` or ``/common/v2.0``),
    else None."""
    segments = [s for s in urlsplit(issuer).path.split("/") if s]
    if segments[1:] not in ([], ["v2.0"]) or not segments:
        return None
    return segments[0] if segments[0].lower() in SHARED_TENANTS else None


def check_tenant(upstream: UpstreamConfig) -> None:
    """Refuse a multi-tenant issuer unless the allow-list admits named tenants only."""
    segment = shared_tenant(upstream.issuer)
    if segment is None:
        return
    pinned = bool(upstream.allow) and all(
        rule.claim == "tid" and rule.equals is not None for rule in upstream.allow)
    if not pinned:
        tenant_issuer = upstream.issuer.replace(f"/{segment}", "/TENANT-ID", 1)
        raise ConfigError(
            f"[upstreams.{upstream.name}] issuer {upstream.issuer!r} is Entra ID's multi-tenant "
            f"endpoint: any tenant, including one anyone can create, signs its id_tokens. Use "
            f"your tenant's issuer ({tenant_issuer!r}), or let in named tenants only: allow = "
            "[{claim = \"tid\", equals = \"TENANT-ID\"}]")


def check_subjects(upstreams: Mapping[str, UpstreamConfig], local_users: Iterable[str]) -> None:
    """Refuse subject prefixes under which two people could get one local ``sub``."""
    users = sorted(local_users)
    for name, upstream in upstreams.items():
        if upstream.subject_prefix:
            continue
        if users:
            raise ConfigError(
                f"[upstreams.{name}] needs a subject_prefix (e.g. \"{name}:\") because local "
                f"users are configured: without one, an account {name} calls {users[0]!r} would "
                "get the local user's sub")
        if len(upstreams) > 1:
            raise ConfigError(
                f"[upstreams.{name}] needs a subject_prefix (e.g. \"{name}:\") because other "
                "upstreams are configured: without one, two providers' accounts of one name "
                "would get the same sub")
    for name, upstream in upstreams.items():
        for other, theirs in upstreams.items():
            if other != name and theirs.subject_prefix.startswith(upstream.subject_prefix):
                raise ConfigError(
                    f"[upstreams.{name}] subject_prefix {upstream.subject_prefix!r} begins "
                    f"[upstreams.{other}]'s {theirs.subject_prefix!r}: their subjects could "
                    "collide; give each a prefix that does not start another (e.g. "
                    f"\"{name}:\" and \"{other}:\")")
        for user in users:
            if user.startswith(upstream.subject_prefix):
                raise ConfigError(
                    f"[users.{user}] begins with [upstreams.{name}]'s subject_prefix "
                    f"{upstream.subject_prefix!r}: an account there could get this user's sub; "
                    "rename the user or change the prefix")
