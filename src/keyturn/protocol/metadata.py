"""Authorization server metadata: OpenID Connect Discovery 1.0 and RFC 8414.

The OpenID location ``{issuer}/.well-known/openid-configuration`` is tried first, then RFC 8414's
``/.well-known/oauth-authorization-server`` inserted between host and path. Both documents must
name the very issuer that was asked for (OIDC Discovery §4.3, RFC 8414 §3.3), or an attacker who
controls one document could redirect tokens elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import DiscoveryError, InvalidResponse, safe_url
from .endpoints import check_endpoint_url
from .http import Flow, HttpRequest, send

__all__ = ["ServerMetadata", "discover", "discovery_urls"]


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
        if issuer.rstrip("/") != expected_issuer.rstrip("/"):
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
        )


def discovery_urls(issuer: str) -> list[str]:
    """Where to look for the issuer's metadata, in order."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    oidc = urlunsplit((parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", ""))
    # RFC 8414 §3.1: "the well-known URI suffix ... is inserted between the host component and the
    # path component, if any".
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    return [oidc, rfc8414]


def discover(issuer: str, *, allow_http: bool = False) -> Flow[ServerMetadata]:
    """Fetch and check the issuer's metadata, OpenID location first, then RFC 8414."""
    check_endpoint_url(issuer, "issuer", allow_http=allow_http)
    failures: list[str] = []
    for url in discovery_urls(issuer):
        response = yield from send(HttpRequest(
            "GET", url, headers={"Accept": "application/json"}, purpose="discovery endpoint"
        ))
        if response.status != 200:
            failures.append(f"{safe_url(url)} answered HTTP {response.status}")
            continue
        try:
            doc = response.json_object("discovery endpoint")
        except InvalidResponse as exc:
            failures.append(exc.message)
            continue
        return ServerMetadata.from_document(
            doc, expected_issuer=issuer, url=url, allow_http=allow_http
        )
    raise DiscoveryError(
        f"no metadata for issuer {safe_url(issuer)} ({'; '.join(failures)}): check issuer= or "
        "give token_endpoint= explicitly",
        url=issuer,
    )
