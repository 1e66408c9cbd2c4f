"""Whether a POST to the ``/device`` pages came from one of their own forms (review R19, M4).

The CSRF cookie is the first defence; a cookie can be tossed, though (a sibling subdomain, or
any plain-http page of the same host name, may set ``keyturn_csrf`` for this host). So a POST is
also refused when the browser says where it came from and that is not here:

* ``Sec-Fetch-Site`` (Fetch Metadata, sent by every current browser): only ``same-origin`` (and
  ``none``, a request the person made themselves) comes from this site's own pages; a sibling
  subdomain is ``same-site``, another site ``cross-site``.
* ``Origin`` (RFC 6454 §7): present and naming another origin than the issuer's. ``null`` is let
  through: the pages' ``Referrer-Policy: no-referrer`` makes a browser send ``Origin: null`` on
  their own form posts (Fetch, "append a request Origin header").

A request with neither header (curl, an old browser) is left to the CSRF check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

__all__ = ["from_own_page", "origin_of"]

_OWN: Final = frozenset({"same-origin", "none"})


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, as an ``Origin`` header writes it (default ports
    left out)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port is not None and parts.port != default else ""
    return f"{parts.scheme}://{(parts.hostname or '').lower()}{port}"


def from_own_page(headers: Mapping[str, str], issuer: str) -> bool:
    """False when the browser's headers say the POST came from somewhere else."""
    site = headers.get("sec-fetch-site")
    if site is not None and site.strip().lower() not in _OWN:
        return False
    origin = headers.get("origin")
    if origin is None or origin.strip() == "null":
        return True
    return origin.strip().lower().rstrip("/") == origin_of(issuer)
