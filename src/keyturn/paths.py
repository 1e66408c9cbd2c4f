"""Where keyturn keeps its files, and when a token is refreshed (the leeway and its cap): the facts
the library, the profiles and the ``keyturn token`` fast path share, in one place. Standard library
only (``os``): the fast path imports it before anything else.
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT_LEEWAY", "cache_dir", "config_file", "fast_path_index", "refresh_margin"]

#: The sources' default ``leeway=``: seconds before expiry at which a token is refreshed (at most
#: half its lifetime, see :func:`refresh_margin`); a token with less left than this is refreshed,
#: not printed, by ``keyturn token``.
DEFAULT_LEEWAY = 60.0


def refresh_margin(lifetime: float | None, leeway: float) -> float:
    """Seconds before expiry at which to refresh: the cache refreshes then, and ``keyturn token``
    prints no token that has less left.

    The leeway is capped at half the token's lifetime: a provider that hands out 30-second tokens to
    a client with a 60-second leeway would otherwise make every call refresh (a refresh loop).
    """
    if lifetime is None:
        return 0.0
    return max(0.0, min(leeway, lifetime / 2))


def _xdg(variable: str, fallback: str) -> str:
    # XDG Base Directory Specification: "If $XDG_CACHE_HOME is either not set or empty, a default
    # equal to $HOME/.cache should be used" (and $HOME/.config for $XDG_CONFIG_HOME).
    return os.environ.get(variable) or os.path.join(os.path.expanduser("~"), fallback)


def cache_dir() -> str:
    """The default FileStore directory: ``$XDG_CACHE_HOME/keyturn``."""
    return os.path.join(_xdg("XDG_CACHE_HOME", ".cache"), "keyturn")


def config_file() -> str:
    """The profiles: ``$KEYTURN_CONFIG``, else ``$XDG_CONFIG_HOME/keyturn/config.toml``."""
    return os.environ.get("KEYTURN_CONFIG") or os.path.join(
        _xdg("XDG_CONFIG_HOME", ".config"), "keyturn", "config.toml")


def fast_path_index() -> str:
    """Where the full CLI remembers, per command line, which token file answers it."""
    return os.path.join(cache_dir(), "fastpath.json")
