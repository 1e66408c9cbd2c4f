"""Multi-tenant issuers: Microsoft Entra ID's ``{tenantid}`` placeholder.

Entra ID serves one discovery document for every tenant at its multi-tenant endpoints
(``https://login.microsoftonline.com/common/v2.0`` and ``/organizations/v2.0``), and that
document's ``issuer`` is a template: ``https://login.microsoftonline.com/{tenantid}/v2.0``. The
ID Tokens it issues then carry the real tenant: ``iss`` is the template with the tenant's GUID in
place of ``{tenantid}`` (and the same GUID in ``tid``).

OIDC Discovery §4.3 and Core §3.1.3.7 ask for issuers that are identical, which such a provider
can never satisfy; these two functions are the one relaxation keyturn makes, for this template
only: the document of ``/common`` or ``/organizations`` counts as naming that issuer, and an ID
Token's ``iss`` matches when it is the template with a GUID tenant. The token's signature is still
checked against the keys of the document's ``jwks_uri``, which are Microsoft's for every tenant:
so an application that signs in with ``/common`` accepts people of any Entra tenant, which is what
``/common`` means. To accept one tenant only, use its issuer
(``https://login.microsoftonline.com/<tenant GUID>/v2.0``), which is checked exactly.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MULTI_TENANT_SEGMENTS", "TENANT_PLACEHOLDER", "document_names_issuer", "iss_matches"]

TENANT_PLACEHOLDER: Final = "{tenantid}"
#: The path segments of Entra ID's multi-tenant endpoints, whose documents hold the template.
MULTI_TENANT_SEGMENTS: Final = frozenset({"common", "organizations"})
_GUID: Final = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def document_names_issuer(document_issuer: str, expected: str) -> bool:
    """Whether a discovery document whose ``issuer`` is ``document_issuer`` is the document of
    the issuer ``expected``: identical (a trailing slash aside), or the ``{tenantid}`` template
    fetched from a multi-tenant endpoint (``/common``, ``/organizations``) of the same host."""
    document_issuer, expected = document_issuer.rstrip("/"), expected.rstrip("/")
    if document_issuer == expected:
        return True
    if document_issuer.count(TENANT_PLACEHOLDER) != 1:
        return False
    before, after = document_issuer.split(TENANT_PLACEHOLDER)
    if not (expected.startswith(before) and expected.endswith(after)):
        return False
    segment = expected[len(before):len(expected) - len(after)]
    return segment in MULTI_TENANT_SEGMENTS


def iss_matches(issuer: str, iss: object) -> bool:
    """Whether an ID Token's ``iss`` claim names ``issuer``: identical, or for the template
    issuer, the template with a tenant GUID in place of ``{tenantid}``."""
    if not isinstance(iss, str):
        return False
    if issuer.count(TENANT_PLACEHOLDER) != 1:
        return iss == issuer
    # The template itself is no tenant's issuer: Entra ID never signs a token with it.
    before, after = issuer.split(TENANT_PLACEHOLDER)
    return re.fullmatch(re.escape(before) + _GUID + re.escape(after), iss) is not None
