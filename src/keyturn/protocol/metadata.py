"""Authorization server metadata: OpenID Connect Discovery 1.0 and RFC 8414.

Three locations are tried, in order: the OpenID one ``{issuer}/.well-known/openid-configuration``,
RFC 8414's ``/.well-known/oauth-authorization-server`` inserted between host and path, and (for an
issuer with a path) that suffix appended to the issuer, where some servers serve their RFC 8414
document. The first document found is the base; the others only fill the endpoints it omits (a
server whose OpenID document lacks ``revocation_endpoint`` may name it in its RFC 8414 one).
Every document must name the very issuer that was asked for (OIDC Discovery §4.3, RFC 8414 §3.3),
or an attacker who controls one document could redirect tokens elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import DiscoveryError, InvalidResponse, KeyturnError, TransportError, safe_url
from .endpoints import check_endpoint_url
from .http import Flow, HttpRequest, send
from .tenants import document_names_issuer

__all__ = ["ENDPOINTS_USED", "ServerMetadata", "discover", "discovery_urls"]

#: The endpoints keyturn uses: when the first document names all of them, no other is fetched.
ENDPOINTS_USED = ("token_endpoint", "authorization_endpoint", "device_authorization_endpoint",
                  "revocation_endpoint", "userinfo_endpoint", "jwks_uri")


@dataclass(frozen=True)
class ServerMetadata:
    """The parts of a metadata document keyturn uses; ``raw`` keeps the whole document."""

    issuer: str
    token_endpoint: str | None = None
    authorization_endpoint: str | None = None
    device_authorization_endpoint: str | None = None
    revocation_endpoint: str | None = None
    introspection_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    jwks_uri: str | None = None
    token_endpoint_auth_methods_supported: tuple[str, ...] | None = None
    grant_types_supported: tuple[str, ...] | None = None
    mtls_endpoint_aliases: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    #: The URLs of the documents this metadata was merged from, the base first.
    locations: tuple[str, ...] = ()

    @classmethod
    def from_document(
        cls, doc: Mapping[str, Any], *, expected_issuer: str, url: str, allow_http: bool = False
    ) -> ServerMetadata:
        issuer = doc.get("issuer")
        if not isinstance(issuer, str):
            raise DiscoveryError(
                f"the metadata at {safe_url(url)} has no issuer: is this an OAuth server?", url=url
            )
        # OIDC Discovery §4.3: "The issuer value returned MUST be identical to the Issuer URL that
        # was used as the prefix to /.well-known/openid-configuration to retrieve the
        # configuration information."
        # Entra ID's /common and /organizations documents name the template
        # ".../{tenantid}/v2.0": that is this issuer's document (keyturn.protocol.tenants).
        if not document_names_issuer(issuer, expected_issuer):
            raise DiscoveryError(
                f"the metadata at {safe_url(url)} is for issuer {safe_url(issuer)}, not "
                f"{safe_url(expected_issuer)}: check issuer=",
                url=url,
            )

        def endpoint(name: str) -> str | None:
            value = doc.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise DiscoveryError(f"{name} in {safe_url(url)} is not a string", url=url)
            check_endpoint_url(value, name, allow_http=allow_http)
            return value

        def names(name: str) -> tuple[str, ...] | None:
            value = doc.get(name)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            return None

        aliases = doc.get("mtls_endpoint_aliases")
        return cls(
            issuer=issuer,
            token_endpoint=endpoint("token_endpoint"),
            authorization_endpoint=endpoint("authorization_endpoint"),
            device_authorization_endpoint=endpoint("device_authorization_endpoint"),
            revocation_endpoint=endpoint("revocation_endpoint"),
            introspection_endpoint=endpoint("introspection_endpoint"),
            userinfo_endpoint=endpoint("userinfo_endpoint"),
            jwks_uri=endpoint("jwks_uri"),
            token_endpoint_auth_methods_supported=names("token_endpoint_auth_methods_supported"),
            grant_types_supported=names("grant_types_supported"),
            mtls_endpoint_aliases=(
                {k: v for k, v in aliases.items() if isinstance(v, str)}
                if isinstance(aliases, dict)
                else {}
            ),
            raw=dict(doc),
            locations=(url,),
        )

    def names_every_endpoint_used(self) -> bool:
        """Whether every endpoint of :data:`ENDPOINTS_USED` is named (no other document needed)."""
        return all(getattr(self, name) for name in ENDPOINTS_USED)

    def filled_from(self, other: ServerMetadata) -> ServerMetadata:
        """This metadata with what it omits taken from ``other`` (another document of the same
        issuer). Where both name a value, this one's wins: the base document is the one the
        server publishes first (OpenID's before RFC 8414's), and a server whose documents
        disagree is more likely to keep its primary one current than a secondary copy."""
        missing = {f.name: getattr(other, f.name) for f in fields(self)
                   if f.name not in ("issuer", "raw", "locations")
                   and getattr(self, f.name) in (None, {}) and getattr(other, f.name) not in (None, {})}
        if not missing:
            return replace(self, locations=(*self.locations, *other.locations))
        raw = {**other.raw, **self.raw}
        return replace(self, **missing, raw=raw, locations=(*self.locations, *other.locations))


def discovery_urls(issuer: str) -> list[str]:
    """Where to look for the issuer's metadata, in order (each URL once)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oidc = urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", ""))
    # RFC 8414 §3.1: "the well-known URI suffix ... is inserted between the host component and the
    # path component, if any".
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    # Not RFC 8414's form but some servers' (the suffix appended to the issuer, as OpenID does):
    # it differs from the inserted form only when the issuer has a path.
    appended = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/oauth-authorization-server", "", "")
    )
    return [oidc, rfc8414] + ([appended] if appended != rfc8414 else [])


def discover(issuer: str, *, allow_http: bool = False) -> Flow[ServerMetadata]:
    """Fetch and check the issuer's metadata: the first document found (OpenID location first,
    then RFC 8414's) is the base, and when it does not name every endpoint keyturn uses the other
    locations fill what it omits. A base document for another issuer is an error; another
    document that is not for this issuer, or is broken, is not merged."""
    check_endpoint_url(issuer, "issuer", allow_http=allow_http)
    failures: list[str] = []
    metadata: ServerMetadata | None = None
    for url in discovery_urls(issuer):
        if metadata is not None and metadata.names_every_endpoint_used():
            break  # one request where the first document is complete (most providers)
        request = HttpRequest("GET", url, headers={"Accept": "application/json"},
                              purpose="discovery endpoint")
        if metadata is None:
            response = yield from send(request)
        else:
            try:
                response = yield from send(request)
            except TransportError:
                # A location that does not answer only fills nothing in: the base was found.
                continue
        if response.status != 200:
            failures.append(f"{safe_url(url)} answered HTTP {response.status}")
            continue
        try:
            doc = response.json_object("discovery endpoint")
        except InvalidResponse as exc:
            failures.append(exc.message)
            continue
        if metadata is None:
            metadata = ServerMetadata.from_document(
                doc, expected_issuer=issuer, url=url, allow_http=allow_http
            )
            continue
        try:
            # RFC 8414 §3.3: "The "issuer" value returned MUST be identical to the authorization
            # server's issuer identifier value into which the well-known URI string was inserted
            # to create the URL used to retrieve the metadata." A document for another issuer
            # fills nothing (the base already proved where this issuer's metadata is).
            other = ServerMetadata.from_document(
                doc, expected_issuer=issuer, url=url, allow_http=allow_http
            )
        except KeyturnError:
            continue
        metadata = metadata.filled_from(other)
    if metadata is not None:
        return metadata
    raise DiscoveryError(
        f"no metadata for issuer {safe_url(issuer)} ({'; '.join(failures)}): check issuer= or "
        "give token_endpoint= explicitly",
        url=issuer,
    )
