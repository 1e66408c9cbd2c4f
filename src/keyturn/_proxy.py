"""Which proxy a request goes through: from ``proxy=``, or else from the environment as curl reads it.

Standard library only (the httpx side is :mod:`keyturn.transport`, which calls :func:`proxy_rules`
when it builds its clients, so the environment is read then, not at import). docs/proxies.md is the
user's description of these rules; tests/unit/test_proxy.py holds them.

- ``proxy="none"`` goes direct for every URL; ``proxy="http://host:port"`` (or ``https://``,
  ``socks5://``, ``socks5h://``) is used for every URL, whatever the environment says (as
  requests does with ``proxies=``; curl would still apply ``NO_PROXY`` to its ``-x``).
- ``proxy=None``: ``https_proxy`` for https URLs, ``http_proxy`` for http URLs, else ``all_proxy``;
  each also in upper case, the lower-case one taking precedence, an empty one counting as unset
  (curl). ``HTTP_PROXY`` in upper case is honoured as requests and urllib do, except under CGI
  (``REQUEST_METHOD`` set), where a request header ``Proxy:`` arrives as ``HTTP_PROXY``
  (httpoxy, CVE-2016-5385: the reason curl never reads it). A value without a scheme is
  ``http://`` (curl).
- ``no_proxy`` / ``NO_PROXY``: ``*`` alone bypasses every proxy; otherwise entries separated by
  commas or spaces: a domain matches itself and its subdomains (``example.org`` and
  ``.example.org`` alike, never ``notexample.org``), an IP address or CIDR (IPv4 or IPv6,
  brackets optional) matches the URLs whose host is such an address literal, and ``host:port``
  matches that port only. Loopback is not bypassed unless listed: curl does not either.
- A variable keyturn cannot use (``all_proxy=socks://...``, as desktop proxy settings may export)
  is a :class:`ConfigError` naming it at the first request that would go through it, never before:
  a variable no URL of the source picks (``all_proxy`` beside both scheme variables, a host in
  ``NO_PROXY``) changes nothing, as with curl, which reads only the variable it uses.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import ConfigError
from .secret import Secret

__all__ = ["DIRECT", "PROXY_SCHEMES", "ProxyRules", "Route", "check_proxy_url", "is_direct",
           "proxy_rules", "redact", "shown"]

#: ``proxy="none"``: no proxy for any URL, whatever the environment says.
DIRECT = "none"
#: What httpx can go through (SOCKS with the socksio package: ``pip install 'keyturn[socks]'``).
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EXAMPLE_URL = "http://proxy.example.org:3128"
_EXAMPLE = f'proxy="{_EXAMPLE_URL}" (or proxy="none" to go direct)'
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_direct(proxy: object) -> bool:
    """Whether ``proxy=`` says to go direct (``"none"``, in any case)."""
    if isinstance(proxy, Secret):
        proxy = proxy.reveal()
    return isinstance(proxy, str) and proxy.strip().lower() == DIRECT


def shown(proxy: str | Secret[str] | None) -> str | None:
    """``proxy=`` as a repr may show it: None, ``"none"``, or the URL redacted (given as a
    :class:`Secret` or a plain ``str`` alike)."""
    if proxy is None:
        return None
    if is_direct(proxy):
        return DIRECT
    url = _plain(proxy)
    return redact(url) if isinstance(url, str) else "<not a URL>"


def redact(url: str) -> str:
    """The proxy URL safe to show: scheme, host and port; credentials as ``***``."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable proxy URL>"
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    credentials = "***@" if "@" in parts.netloc else ""
    return f"{parts.scheme}://{credentials}{host}" if parts.scheme else f"{credentials}{host}"


def check_proxy_url(url: str | Secret[str], *, setting: str = "proxy") -> str:
    """``url`` if httpx can go through it, else a :class:`ConfigError` saying what to write.
    ``setting`` names where the URL came from (``proxy``, ``HTTPS_PROXY``...); the URL is shown
    redacted only. Give it as a :class:`Secret`: the frames of a ConfigError's traceback then hold
    the URL (and a password in it) only as a tag; the check itself runs in a frame that is gone
    by the time the error is raised."""
    problem = _proxy_url_problem(_plain(url), setting)
    if problem is not None:
        raise ConfigError(problem)
    return _plain(url).strip()


def _plain(url: str | Secret[str]) -> str:
    return url.reveal() if isinstance(url, Secret) else url


def _proxy_url_problem(url: object, setting: str) -> str | None:
    """What is wrong with ``url`` as a proxy URL (shown redacted), or None. The fix is said for
    where the URL came from: ``proxy=`` is rewritten, an environment variable set or unset."""
    variable = setting != "proxy"
    fix = (f"set it to a URL such as {_EXAMPLE_URL}, or unset it" if variable
           else f"write it as {_EXAMPLE}")
    if not isinstance(url, str) or not url.strip():
        return f"{setting} must be a proxy URL such as {_EXAMPLE}"
    shown = redact(url)
    if "://" not in url:
        shown = redact("http://" + url.strip()).removeprefix("http://")
        return f"{setting}={shown!r} has no scheme: {fix}"
    try:
        parts = urlsplit(url.strip())
        host, _ = parts.hostname, parts.port
    except ValueError:
        return f"{setting}={shown!r} is not a valid URL: {fix}"
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        hint = ""
        if scheme in ("socks", "socks4", "socks4a"):
            # curl reads socks:// as SOCKS4 (measured, curl 7.88.1: its first byte to the proxy
            # is 0x04); httpx speaks SOCKS5 only, so keyturn cannot go through it as written.
            hint = ("; socks:// means SOCKS4 (as curl reads it), which is not supported"
                    if scheme == "socks" else "; SOCKS4 is not supported")
            socks5 = "socks5://" + shown.split("://", 1)[-1]
            if variable:
                fix = f"set it to {socks5} if the proxy speaks SOCKS5, or unset it"
            else:
                fix = f"write it as proxy={socks5!r} if the proxy speaks SOCKS5"
        return (f"{setting}={shown!r}: keyturn goes through http://, https://, socks5:// "
                f"or socks5h:// proxies{hint}; {fix}")
    if not host:
        return f"{setting}={shown!r} names no host: {fix}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return f"{setting}={shown!r}: a proxy URL is scheme://host:port only"
    if scheme.startswith("socks") and importlib.util.find_spec("socksio") is None:
        return (f"{setting}={shown!r} is a SOCKS proxy, which needs the socksio package: "
                "pip install 'keyturn[socks]'")
    return None


@dataclass(frozen=True)
class Route:
    """A proxy to go through: its URL (with any credentials: never show it) and where it was set;
    ``problem``: why keyturn cannot go through it (a variable's value), said when a URL picks it."""

    url: str = field(repr=False)
    origin: str
    problem: str | None = None

    @property
    def shown(self) -> str:
        return f"{redact(self.url)} (from {self.origin})"

    @property
    def bypass_hint(self) -> str:
        """How to go without this proxy (``NO_PROXY`` does not apply to ``proxy=``)."""
        if self.origin == "proxy=":
            return 'go direct with proxy="none"'
        return 'go direct by listing the host in NO_PROXY (or with proxy="none")'

    def __repr__(self) -> str:
        return f"Route({self.shown})"


@dataclass(frozen=True)
class _Bypass:
    """One ``NO_PROXY`` entry."""

    domain: str | None = None
    network: _Network | None = None
    port: int | None = None

    def matches(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
                port: int | None) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            # curl: an address entry matches a URL whose host is an address, names match names.
            return address is not None and address.version == self.network.version and (
                address in self.network)
        assert self.domain is not None
        return address is None and (host == self.domain or host.endswith("." + self.domain))


@dataclass(frozen=True)
class ProxyRules:
    """The proxy of each URL, decided once the settings and the environment were read."""

    #: The proxy per URL scheme (``http``, ``https``, ``all``); empty: direct.
    routes: Mapping[str, Route]
    bypass: tuple[_Bypass, ...] = ()
    bypass_all: bool = False

    def route_for(self, url: str) -> Route | None:
        """The proxy for ``url``, or None to go direct; a :class:`ConfigError` naming the variable
        when it picks one keyturn cannot use (only then: see the module's docstring)."""
        if not self.routes:
            return None
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        route = self.routes.get(scheme) or self.routes.get("all")
        if route is None or self.bypass_all:
            return None
        if self.bypass:
            host = (parts.hostname or "").rstrip(".")
            try:
                port = parts.port or _DEFAULT_PORTS.get(scheme)
            except ValueError:
                port = None
            address = _address(host)
            if any(entry.matches(host, address, port) for entry in self.bypass):
                return None
        if route.problem is not None:
            # Not ignored (going direct instead): curl goes through it (socks:// as SOCKS4),
            # requests refuses it (urllib3 2.7: "Unable to determine SOCKS version"), and neither
            # goes around a proxy the environment names: a site's proxy may be its only way out.
            raise ConfigError(route.problem)
        return route

    def distinct(self) -> tuple[Route, ...]:
        """Each proxy keyturn can use once (a client keeps one connection pool per proxy)."""
        return tuple({route.url: route for route in self.routes.values()
                      if route.problem is None}.values())

    def __repr__(self) -> str:
        routes = ", ".join(f"{scheme}: {route.shown}" for scheme, route in self.routes.items())
        return (f"ProxyRules({{{routes}}}, no_proxy={'*' if self.bypass_all else len(self.bypass)}"
                " entries)")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def _getenv(environ: Mapping[str, str] | None, name: str) -> tuple[str, Secret[str]] | None:
    """(variable, value) for ``name`` (lower case first, as curl); empty counts as unset.
    ``environ`` None is :data:`os.environ`, read here: a frame that binds the whole environment
    would show every secret in it in a traceback with locals; the value comes back wrapped."""
    env = os.environ if environ is None else environ
    for variable in (name, name.upper()):
        if variable == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # CGI: HTTP_PROXY is the client's "Proxy:" header (httpoxy)
        if env.get(variable, "").strip():
            return variable, Secret(env[variable].strip())
    return None


def _route(variable: str, value: Secret[str]) -> Route:
    """The route a variable names, with what is wrong with it kept for the request that picks it
    (the check runs in a frame of its own; the message shows the URL redacted)."""
    url = value.reveal()
    if "://" not in url:
        url = "http://" + url  # curl's default scheme for a proxy
    return Route(url, variable, _proxy_url_problem(url, variable))


_PORT = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]*)(?::(?P<port>\d+))?$")


def _parse_bypass(value: str) -> tuple[_Bypass, ...]:
    entries = []
    for item in re.split(r"[,\s]+", value.lower()):
        if not item:
            continue
        port: int | None = None
        host = item
        if item.count(":") > 1 and not item.startswith("["):
            pass  # a bare IPv6 address (or CIDR): no port can be given without brackets
        else:
            match = _PORT.match(item)
            if match is None:
                continue  # not a host name curl or keyturn could match: ignored, as curl does
            host = match["host"]
            port = int(match["port"]) if match["port"] else None
        host = host.strip("[]")
        try:
            network = ipaddress.ip_network(host, strict=False) if (
                "/" in host or _address(host) is not None) else None
        except ValueError:
            continue
        if network is not None:
            entries.append(_Bypass(network=network, port=port))
        else:
            domain = host.strip(".")
            if domain:
                entries.append(_Bypass(domain=domain, port=port))
    return tuple(entries)


def proxy_rules(proxy: str | Secret[str] | None,
                environ: Mapping[str, str] | None = None) -> ProxyRules:
    """The rules for a source's ``proxy=`` setting; ``proxy=None`` reads ``environ`` (default:
    :data:`os.environ`, read now). A bad ``proxy=`` is a :class:`ConfigError` now; a proxy
    variable keyturn cannot use, at the first :meth:`ProxyRules.route_for` that picks it."""
    if proxy is not None:
        if is_direct(proxy):
            return ProxyRules({})
        route = Route(check_proxy_url(proxy), "proxy=")
        return ProxyRules({"http": route, "https": route})
    routes: dict[str, Route] = {}
    for scheme in ("http", "https", "all"):
        if scheme == "all" and {"http", "https"} <= routes.keys():
            break  # keyturn asks only http and https URLs: all_proxy is not read (curl)
        found = _getenv(environ, f"{scheme}_proxy")
        if found is not None:
            routes[scheme] = _route(*found)
    if not routes:
        return ProxyRules({})
    no_proxy = _getenv(environ, "no_proxy")
    bypass = no_proxy[1].reveal() if no_proxy else ""
    return ProxyRules(routes, _parse_bypass(bypass), bypass_all=bypass == "*")
