"""Checks on endpoint URLs given by the user or by a metadata document."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from ..errors import ConfigError, safe_url

__all__ = ["check_endpoint_url", "is_loopback_host"]


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str, name: str, *, allow_http: bool = False) -> None:
    """Refuse what cannot be an endpoint, and plain http except on loopback or when allowed.

    RFC 6749 §3.2: "the authorization server MUST require the use of TLS ... when sending requests
    to the token endpoint"; loopback is exempt because the traffic never leaves the host.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError(f"{name} must be an absolute https:// URL, got {safe_url(url)!r}")
    if parts.fragment:
        raise ConfigError(f"{name} must not have a #fragment")
    if parts.scheme == "http" and not allow_http and not is_loopback_host(host):
        raise ConfigError(
            f"{name} {safe_url(url)} is plain http on a non-loopback host: use https, or pass "
            "allow_insecure_http=True if this is a test network"
        )
