"""Profiles: named source configurations in ``$XDG_CONFIG_HOME/keyturn/config.toml``.

::

    default_profile = "hpc"

    [profiles.hpc]
    grant = "device_code"
    issuer = "https://id.example.org"
    client_id = "cli"
    scope = "openid offline_access compute"

    [profiles.batch]
    grant = "client_credentials"
    issuer = "https://id.example.org"
    client_id = "batch"
    client_secret_env = "BATCH_SECRET"      # or client_secret_file = "~/.secrets/batch"

A profile holds the keyword arguments of the source (design.md section 2) plus ``grant``. Secrets
(``client_secret``, ``private_key``, ``refresh_token``) may be given inline, from an environment
variable (``NAME_env``) or from a file (``NAME_file``); a config file that holds an inline secret
must be readable by its owner only.

This module is imported by ``keyturn token``'s fast path: it uses the standard library only
(no dataclasses, no pathlib, no typing at run time) and imports the sources only in
:meth:`Profile.build`.
"""

from __future__ import annotations

import os
import stat
import sys

from .cachekey import cache_key
from .paths import cache_dir as default_cache_dir
from .paths import config_file
from .secret import Secret

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .sources.base import Source

__all__ = [
    "GRANTS",
    "Profile",
    "can_open_browser",
    "config_path",
    "from_profile",
    "load_profile",
    "profile_names",
]

#: ``grant =`` name -> (module, class, wire grant type used in the cache key, default scope).
GRANTS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "client_credentials": ("keyturn.sources.client_credentials", "ClientCredentials",
                           "client_credentials", ()),
    "refresh_token": ("keyturn.sources.refresh_token", "RefreshToken", "refresh_token", ()),
    "device_code": ("keyturn.sources.device_code", "DeviceCode",
                    "urn:ietf:params:oauth:grant-type:device_code", ("openid", "offline_access")),
    "authorization_code": ("keyturn.sources.authorization_code", "AuthorizationCode",
                           "authorization_code", ("openid", "offline_access")),
}
#: What ``--flow`` accepts besides the grant names.
FLOW_ALIASES = {"device": "device_code", "browser": "authorization_code"}
#: Grants that may start a login a person has to finish.
INTERACTIVE_GRANTS = frozenset({"device_code", "authorization_code"})

_SECRETS = ("client_secret", "private_key", "refresh_token")
_STRINGS = ("issuer", "token_endpoint", "device_authorization_endpoint", "authorization_endpoint",
            "client_id", "auth_method", "signing_alg", "audience")
_OTHER = ("scope", "resource", "extra_params", "leeway", "verify", "cert", "timeout",
          "allow_insecure_http", "id_token_algorithms", "clock_skew")
#: Settings of the browser login only: a profile whose flow is picked per machine may end up with
#: the device flow, which has no use for them (and no such arguments).
_BROWSER_ONLY = ("landing_page", "login_timeout", "redirect_port")
_KEYWORDS = frozenset(_STRINGS + _OTHER + _SECRETS + _BROWSER_ONLY)
_META = frozenset({"grant", "store", "cache_dir"}
                  | {f"{s}_env" for s in _SECRETS} | {f"{s}_file" for s in _SECRETS})


class ConfigProblem(Exception):
    """Raised here instead of :class:`keyturn.errors.ConfigError` while on the fast path (which
    must not import the error tree's dependencies); :func:`_config_error` converts it."""


def _config_error(message: str) -> Exception:
    try:
        from .errors import ConfigError
    except ImportError:  # pragma: no cover
        return ConfigProblem(message)
    return ConfigError(message)


config_path = config_file


def _read_config(path: str | None = None) -> tuple[str, dict[str, Any]]:
    path = path or config_path()
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            data = tomllib.load(handle)
    except FileNotFoundError:
        return path, {}
    except (OSError, ValueError) as exc:
        raise _config_error(f"cannot read the keyturn config {path}: {exc}") from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables by recursion.
        raise _config_error(f"cannot read the keyturn config {path}: arrays or inline tables "
                            "are nested too deeply") from None
    _conceal_inline(data)
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise _config_error(f"{path}: [profiles] must be a table")
    loose = stat.S_IMODE(info.st_mode) & 0o077
    for name, table in profiles.items():
        if not isinstance(table, dict):
            raise _config_error(f"{path}: [profiles.{name}] must be a table")
        inline = [key for key in _SECRETS if key in table]
        if inline and loose:
            # A secret in a file others can read is a secret no longer.
            raise _config_error(
                f"{path} holds an inline {inline[0]} (profile {name!r}) but is readable by "
                f"others: run chmod 600 {path}, or use {inline[0]}_env / {inline[0]}_file"
            )
    return path, data


def _conceal_inline(data: dict[str, Any]) -> None:
    """Wrap the inline secrets of every profile as :class:`~keyturn.secret.Secret`, in place, as
    soon as the file is parsed: the document is a local of the frames that raise ConfigErrors
    about it, and the sources take the Secrets as they are."""
    profiles = data.get("profiles")
    for table in profiles.values() if isinstance(profiles, dict) else ():
        if isinstance(table, dict):
            for key in _SECRETS:
                if table.get(key) is not None:
                    table[key] = Secret.wrap(table[key])


def profile_names(path: str | None = None) -> list[str]:
    _, data = _read_config(path)
    return sorted(data.get("profiles", {}))


def _default_name(data: Mapping[str, Any]) -> str | None:
    name = os.environ.get("KEYTURN_PROFILE") or data.get("default_profile")
    if isinstance(name, str) and name:
        return name
    profiles = data.get("profiles", {})
    if "default" in profiles:
        return "default"
    if len(profiles) == 1:
        return str(next(iter(profiles)))
    return None


def load_profile(
    name: str | None = None, *, overrides: Mapping[str, Any] | None = None, path: str | None = None,
) -> Profile:
    """The profile ``name`` (default: ``$KEYTURN_PROFILE``, ``default_profile``, a profile named
    ``default``, or the only one), with ``overrides`` (ad-hoc ``--issuer`` etc.) applied on top.
    With no profile at all, ``overrides`` alone define one."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    config_file, data = _read_config(path)
    profiles = data.get("profiles", {})
    if name is None and not ("issuer" in overrides or "token_endpoint" in overrides):
        name = _default_name(data)
    table: dict[str, Any] = {}
    if name is not None:
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise _config_error(f"no profile {name!r} in {config_file} (profiles: {known})")
        table = dict(profiles[name])
    elif not overrides:
        raise _config_error(
            f"no profile given and no default in {config_file}: pass --profile NAME or "
            "--issuer and --client-id")
    table.update(overrides)
    return Profile(name or "(ad hoc)", table)


def can_open_browser() -> bool:
    """Whether a login can open a browser here: not over SSH, and with a display on Linux."""
    try:
        import importlib

        check = importlib.import_module("keyturn.interactive.browser").can_open_browser
    except (ImportError, AttributeError):
        pass  # the browser flow's own check is not there: decide from the environment
    else:
        return bool(check())
    env = os.environ
    if env.get("BROWSER"):
        return True
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY"):
        return False
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def _available(grant: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(GRANTS[grant][0]) is not None


class Profile:
    """One resolved profile: its grant and the source's keyword arguments (secrets resolved)."""

    __slots__ = ("cache_dir", "chosen", "grant", "kwargs", "name", "secret_env", "secret_files",
                 "store")

    def __init__(self, name: str, table: Mapping[str, Any]) -> None:
        # First: secrets given as overrides are wrapped too (the file's already are), so that this
        # frame, which the ConfigErrors below have in their traceback, holds them only as tags.
        table = {k: Secret.wrap(v) if k in _SECRETS and v is not None else v
                 for k, v in table.items()}
        self.name = name
        unknown = sorted(set(table) - _KEYWORDS - _META)
        if unknown:
            raise _config_error(f"profile {name!r}: unknown setting {unknown[0]!r}")
        grant = table.get("grant")
        grant = FLOW_ALIASES.get(grant, grant) if isinstance(grant, str) else grant
        #: The grant was picked here, not named: a login made with the other interactive grant
        #: (on another terminal, say over SSH) is as good.
        self.chosen: bool = grant in (None, "auto")
        if grant in (None, "auto"):
            if "refresh_token" in table or "refresh_token_env" in table or (
                    "refresh_token_file" in table):
                grant = "refresh_token"
            elif table.get("client_secret") or "client_secret_env" in table or (
                    "client_secret_file" in table) or "private_key" in table:
                grant = "client_credentials"
            else:
                grant = "authorization_code" if (
                    can_open_browser() and _available("authorization_code")) else "device_code"
        if grant not in GRANTS:
            raise _config_error(f"profile {name!r}: grant {grant!r} is not one of "
                                f"{', '.join(sorted(GRANTS))}")
        self.grant: str = grant
        self.store: str = str(table.get("store", "file"))
        cache_dir = table.get("cache_dir")
        self.cache_dir: str | None = os.path.expanduser(cache_dir) if cache_dir else None
        kwargs = {k: v for k, v in table.items() if k in _KEYWORDS
                  and (grant == "authorization_code" or k not in _BROWSER_ONLY)}
        #: Where the secrets came from (names only), so the fast path can tell the profile still
        #: resolves the same way.
        self.secret_env: list[str] = []
        self.secret_files: list[str] = []
        for secret in _SECRETS:
            env_name, file_name = table.get(f"{secret}_env"), table.get(f"{secret}_file")
            if env_name:
                if not os.environ.get(str(env_name)):
                    raise _config_error(
                        f"profile {name!r}: {secret}_env names ${env_name}, which is not set")
                kwargs[secret] = Secret(os.environ[str(env_name)])
                self.secret_env.append(str(env_name))
            elif file_name:
                self.secret_files.append(os.path.expanduser(str(file_name)))
                try:
                    with open(os.path.expanduser(str(file_name)), encoding="utf-8") as handle:
                        kwargs[secret] = Secret(handle.read().strip())
                except OSError as exc:
                    raise _config_error(
                        f"profile {name!r}: cannot read {secret}_file {file_name}: "
                        f"{exc.strerror}") from None
        self.kwargs: dict[str, Any] = kwargs

    def with_grant(self, grant: str) -> Profile:
        """This profile with another grant (the same settings otherwise)."""
        other = object.__new__(Profile)
        for slot in Profile.__slots__:
            setattr(other, slot, getattr(self, slot))
        other.grant, other.chosen = grant, False
        return other

    def __repr__(self) -> str:
        # getattr: also for a profile whose __init__ raised (a traceback with locals shows it).
        kwargs = getattr(self, "kwargs", {})
        return (f"Profile({getattr(self, 'name', None)!r}, grant={getattr(self, 'grant', None)!r}, "
                f"issuer={kwargs.get('issuer')!r}, client_id={kwargs.get('client_id')!r})")

    @property
    def interactive_grant(self) -> bool:
        return self.grant in INTERACTIVE_GRANTS

    def store_file(self) -> str | None:
        """The FileStore record of this profile's tokens, or None when it uses another store."""
        if self.store != "file":
            return None
        from .cachekey import file_name

        directory = self.cache_dir or default_cache_dir()
        return os.path.join(directory, f"{file_name(self.cache_key())}.json")

    def cache_key(self) -> str:
        """The key the source built from this profile stores its tokens under (the same
        derivation as :meth:`Source._cache_key`; pinned equal by tests/e2e)."""
        kw = self.kwargs
        _, _, grant_type, default_scope = GRANTS[self.grant]
        scope = kw.get("scope")
        if scope is None:
            scope = default_scope
        items = scope.split() if isinstance(scope, str) else [s for p in scope for s in p.split()]
        resource = kw.get("resource")
        resources = sorted(set([resource] if isinstance(resource, str) else resource or []))
        method = kw.get("auth_method") or (
            "private_key_jwt" if kw.get("private_key") is not None else
            "client_secret_basic" if kw.get("client_secret") else
            "tls_client_auth" if kw.get("cert") is not None else "none")
        subject = None
        if self.grant == "refresh_token":
            import hashlib

            subject = f"rt:{hashlib.sha256(_text(kw.get('refresh_token')).encode()).hexdigest()[:8]}"
        issuer = kw.get("issuer")
        return cache_key(
            issuer=issuer.rstrip("/") if issuer else None,
            token_endpoint=kw.get("token_endpoint"), client_id=kw.get("client_id"),
            auth_method=method, grant=grant_type, subject=subject,
            scope=dict.fromkeys(items), audience=kw.get("audience"), resource=resources,
            extra=dict(kw.get("extra_params") or {}),
        )

    def build(self, **extra: Any) -> Source:
        """The source this profile describes. ``extra`` (e.g. ``interactive=False``,
        ``prompt=``) is passed to interactive grants only."""
        import importlib

        module, cls_name, _, _ = GRANTS[self.grant]
        try:
            cls = getattr(importlib.import_module(module), cls_name)
        except ImportError:
            raise _config_error(f"the {self.grant} grant is not available in this keyturn") from None
        kwargs = dict(self.kwargs)
        if self.store == "file":
            from .stores.file import FileStore

            kwargs["store"] = FileStore(self.cache_dir)
        elif self.store == "memory":
            from .stores.memory import MemoryStore

            kwargs["store"] = MemoryStore()
        elif self.store.startswith(("redis://", "rediss://", "unix://")):
            from .stores.redis import RedisStore

            kwargs["store"] = RedisStore(self.store)
        else:
            raise _config_error(f"profile {self.name!r}: store {self.store!r} is not 'file', "
                                "'memory' or a redis:// URL")
        if self.interactive_grant:
            kwargs.update(extra)
        source: Source = cls(**kwargs)
        return source


def _text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def from_profile(name: str | None = None, **overrides: Any) -> Source:
    """The token source of profile ``name`` in the keyturn config file::

        source = keyturn.from_profile("hpc")
        source.get_access_token()
    """
    return load_profile(name, overrides=overrides).build()
