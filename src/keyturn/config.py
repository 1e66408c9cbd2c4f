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

from . import registry
from .cachekey import cache_key, refresh_subject
from .interactive.browser import can_open_browser
from .interactive.choice import choose_login
from .paths import cache_dir as default_cache_dir
from .paths import config_file
from .protocol.wire import auth_method_for
from .secret import Secret

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from .sources.base import Source
    from .sources.user_login import UserLogin
    from .stores.base import Store

__all__ = [
    "GRANTS",
    "Profile",
    "can_open_browser",
    "config_path",
    "from_profile",
    "load_profile",
    "profile_names",
    "profile_settings",
]

#: ``grant =`` name -> (module, class, wire grant type used in the cache key, default scope): a
#: view of :mod:`keyturn.registry`'s rows of the grants a profile may name.
GRANTS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    row.name: (row.module, row.cls, row.grant_type or "", row.default_scope)
    for row in registry.grants(profile=True)
}
#: What ``--flow`` accepts besides the grant names.
FLOW_ALIASES = registry.FLOW_ALIASES
#: Grants that may start a login a person has to finish.
INTERACTIVE_GRANTS = frozenset(row.name for row in registry.grants(profile=True, interactive=True))

_SECRETS = ("client_secret", "private_key", "refresh_token")
#: The settings held as :class:`~keyturn.secret.Secret` from the moment they are read: the secrets,
#: and the proxy URL, which may carry the proxy's password (``http://user:password@host:3128``).
_CONCEALED = (*_SECRETS, "proxy")
#: What a profile may set: the settings every source takes, and each grant's own. One profile
#: may hold the settings of several grants (its flow may be picked per machine: the browser
#: login's settings are of no use to the device flow); a source is given its grant's only.
_KEYWORDS = frozenset(registry.SHARED_SETTINGS).union(
    *(row.settings for row in registry.grants(profile=True)))
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
        if loose and _has_password(table.get("proxy")):
            raise _config_error(
                f"{path} holds a proxy URL with a password (profile {name!r}) but is readable by "
                f"others: run chmod 600 {path}, or put the proxy in HTTPS_PROXY")
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
            for key in _CONCEALED:
                if table.get(key) is not None:
                    table[key] = Secret.wrap(table[key])


def _has_password(proxy: object) -> bool:
    """Whether a profile's ``proxy`` (wrapped) names credentials: ``user:password@`` before the host."""
    url = proxy.reveal() if isinstance(proxy, Secret) else proxy
    return isinstance(url, str) and "@" in url.partition("://")[2].partition("/")[0]


def profile_names(path: str | None = None) -> list[str]:
    _, data = _read_config(path)
    return sorted(data.get("profiles", {}))


def profile_settings(name: str, path: str | None = None) -> dict[str, Any]:
    """Profile ``name`` as the config file writes it, unresolved (inline secrets as
    :class:`~keyturn.secret.Secret`): what ``keyturn status`` shows of a profile that does not
    resolve. Empty when there is no such profile."""
    _, data = _read_config(path)
    table = data.get("profiles", {}).get(name, {})
    return dict(table) if isinstance(table, dict) else {}


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
            if not os.path.exists(config_file):
                raise _config_error(
                    f"no profile {name!r}: there is no config file at {config_file}; create it "
                    f"with a [profiles.{name}] table, or pass --issuer and --client-id")
            known = ", ".join(sorted(profiles)) or "none"
            raise _config_error(f"no profile {name!r} in {config_file} (profiles: {known})")
        table = dict(profiles[name])
    elif not overrides:
        if not os.path.exists(config_file):
            raise _config_error(
                f"no config file at {config_file}: create it with a profile, or pass "
                "--issuer and --client-id")
        raise _config_error(
            f"no profile given and no default in {config_file}: pass --profile NAME or "
            "--issuer and --client-id")
    table.update(overrides)
    return Profile(name or "(ad hoc)", table)


def _available(grant: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(registry.grant(grant).module) is not None


class Profile:
    """One resolved profile: its grant and the source's keyword arguments (secrets resolved)."""

    __slots__ = ("cache_dir", "chosen", "grant", "kwargs", "name", "secret_env", "secret_files",
                 "settings", "store")

    def __init__(self, name: str, table: Mapping[str, Any]) -> None:
        # First: secrets given as overrides are wrapped too (the file's already are), so that this
        # frame, which the ConfigErrors below have in their traceback, holds them only as tags.
        table = {k: Secret.wrap(v) if k in _CONCEALED and v is not None else v
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
                # The one rule of keyturn.interactive.choice, as UserLogin asks it: the browser
                # where it can reach the loopback redirect, else the device flow.
                grant = choose_login(offered=[login for login in registry.LOGIN_PAIR
                                              if _available(login)])
        if grant not in GRANTS:
            raise _config_error(f"profile {name!r}: grant {grant!r} is not one of "
                                f"{', '.join(sorted(GRANTS))}")
        self.grant: str = grant
        self.store: str = str(table.get("store", "file"))
        cache_dir = table.get("cache_dir")
        self.cache_dir: str | None = os.path.expanduser(cache_dir) if cache_dir else None
        #: Every source setting of the profile; :attr:`kwargs` those of its grant.
        self.settings: dict[str, Any] = {k: v for k, v in table.items() if k in _KEYWORDS}
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
                self.settings[secret] = Secret(os.environ[str(env_name)])
                self.secret_env.append(str(env_name))
            elif file_name:
                self.secret_files.append(os.path.expanduser(str(file_name)))
                try:
                    with open(os.path.expanduser(str(file_name)), encoding="utf-8") as handle:
                        self.settings[secret] = Secret(handle.read().strip())
                except OSError as exc:
                    raise _config_error(
                        f"profile {name!r}: cannot read {secret}_file {file_name}: "
                        f"{exc.strerror}") from None
        self.kwargs: dict[str, Any] = _keywords_of(grant, self.settings)

    def with_grant(self, grant: str) -> Profile:
        """This profile with another grant (the same settings otherwise)."""
        other = object.__new__(Profile)
        for slot in Profile.__slots__:
            setattr(other, slot, getattr(self, slot))
        other.grant, other.chosen = grant, False
        other.kwargs = _keywords_of(grant, self.settings)
        return other

    def __repr__(self) -> str:
        # getattr: also for a profile whose __init__ raised (a traceback with locals shows it).
        kwargs = getattr(self, "kwargs", {})
        return (f"Profile({getattr(self, 'name', None)!r}, grant={getattr(self, 'grant', None)!r}, "
                f"issuer={kwargs.get('issuer')!r}, client_id={kwargs.get('client_id')!r})")

    @property
    def interactive_grant(self) -> bool:
        return registry.grant(self.grant).interactive

    def store_file(self) -> str | None:
        """The FileStore record of this profile's tokens, or None when it uses another store."""
        if self.store != registry.FILE_STORE:  # the record format read here is the FileStore's
            return None
        from .cachekey import file_name

        directory = self.cache_dir or default_cache_dir()
        return os.path.join(directory, f"{file_name(self.cache_key())}.json")

    def cache_key(self) -> str:
        """The key the source built from this profile stores its tokens under: derived by
        :func:`keyturn.cachekey.cache_key` from the same settings (pinned equal by tests/e2e)."""
        kw = self.kwargs
        row = registry.grant(self.grant)
        return cache_key(
            issuer=kw.get("issuer"), token_endpoint=kw.get("token_endpoint"), client_id=kw.get("client_id"),
            auth_method=auth_method_for(kw.get("auth_method"), client_secret=kw.get("client_secret"),
                                        private_key=kw.get("private_key"),
                                        has_client_cert=kw.get("cert") is not None),
            grant=row.grant_type or "",
            subject=refresh_subject(_text(kw.get("refresh_token")))
            if self.grant == "refresh_token" else None,
            scope=kw.get("scope"), default_scope=row.default_scope, audience=kw.get("audience"),
            resource=kw.get("resource"), extra=kw.get("extra_params"), account=kw.get("account"),
        )

    def build(self, **extra: Any) -> Source:
        """The source this profile describes. ``extra`` (e.g. ``interactive=False``,
        ``prompt=``) is passed to interactive grants only."""
        import importlib

        row = registry.grant(self.grant)
        try:
            cls = getattr(importlib.import_module(row.module), row.cls)
        except ImportError:
            raise _config_error(f"the {self.grant} grant is not available in this keyturn") from None
        kwargs = dict(self.kwargs)
        kwargs["store"] = self._store()
        if row.interactive:
            kwargs.update(extra)
        source: Source = cls(**kwargs)
        return source

    def build_user_login(self, **extra: Any) -> UserLogin:
        """A :class:`~keyturn.sources.user_login.UserLogin` with the settings of both logins of
        the pair, for a profile whose flow was picked by this machine (:attr:`chosen`): the
        library's rule and its fallbacks, which ``keyturn login`` uses too."""
        from .sources.user_login import UserLogin

        kwargs: dict[str, Any] = {}
        for grant in registry.LOGIN_PAIR:
            kwargs.update(_keywords_of(grant, self.settings))
        return UserLogin(**kwargs, store=self._store(), **extra)

    def _store(self) -> Store | None:
        import importlib

        store = registry.store_for(self.store)
        if store is None:
            raise _config_error(f"profile {self.name!r}: store {self.store!r} is not "
                                f"{registry.store_choices()}")
        store_cls = getattr(importlib.import_module(store.module), store.cls)
        made: Store | None = (store_cls(self.cache_dir) if store.takes == "cache_dir" else
                              store_cls(self.store) if store.takes == "url" else store_cls())
        return made


def _keywords_of(grant: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a source of ``grant`` takes: the shared ones and the grant's own."""
    own = registry.grant(grant).settings
    return {k: v for k, v in settings.items() if k in registry.SHARED_SETTINGS or k in own}


def _text(value: Any) -> str:
    return value.reveal() if isinstance(value, Secret) else str(value)


def from_profile(name: str | None = None, **overrides: Any) -> Source:
    """The token source of profile ``name`` in the keyturn config file::

        source = keyturn.from_profile("hpc")
        source.get_access_token()
    """
    return load_profile(name, overrides=overrides).build()
