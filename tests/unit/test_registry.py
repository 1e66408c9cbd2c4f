"""The registry of grants and stores is the one place their facts live: every source has its row,
every row its source, and the profiles and the sources read the same values from it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import keyturn.sources
from keyturn import config, registry
from keyturn.config import Profile
from keyturn.protocol import wire
from keyturn.sources.authorization_code import DEFAULT_SCOPE as BROWSER_SCOPE
from keyturn.sources.base import Source
from keyturn.sources.device_code import DEFAULT_SCOPE as DEVICE_SCOPE
from keyturn.sources.oidc import OpenIDSource
from keyturn.sources.options import OpenIDOptions, SourceOptions
from keyturn.stores.file import FileStore
from keyturn.stores.memory import MemoryStore

#: Modules of keyturn.sources that hold what the sources share, not a source.
SHARED_MODULES = {"base", "oidc", "options", "paired"}
#: Keywords of a source that a config file cannot hold: objects, callables, keyturn's own.
NOT_PROFILE_SETTINGS = {"store", "on_refresh", "subject", "seed", "prompt", "interactive",
                        "token_response_hook", "device_response_hook",
                        "open_browser", "token", "token_type"}


def _row_class(row: registry.GrantRow) -> type:
    cls: type = getattr(importlib.import_module(row.module), row.cls)
    return cls


def _keywords(cls: type) -> set[str]:
    """Every keyword the constructors of ``cls`` (up to Source) name."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        names |= {p.name for p in inspect.signature(init).parameters.values()
                  if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}
        if klass is Source:
            break
    return names


def test_every_source_module_has_a_row_and_every_row_a_source() -> None:
    package = Path(keyturn.sources.__file__).parent
    modules = {m.name for m in pkgutil.iter_modules([str(package)])} - SHARED_MODULES
    # UserLogin picks a grant's row, it has none (registry.USER_LOGIN).
    assert modules - {registry.USER_LOGIN[0].rsplit(".", 1)[1]} == {
        row.module.rsplit(".", 1)[1] for row in registry.GRANT_ROWS}
    for row in registry.GRANT_ROWS:
        cls = _row_class(row)
        assert cls.grant_name == row.name  # type: ignore[attr-defined]
        assert cls.__module__ == row.module
    assert len({row.name for row in registry.GRANT_ROWS}) == len(registry.GRANT_ROWS)


@pytest.mark.parametrize("row", [r for r in registry.GRANT_ROWS if r.grant_type], ids=str)
def test_a_source_takes_its_grant_type_and_default_scope_from_its_row(
        row: registry.GrantRow) -> None:
    cls = _row_class(row)
    assert issubclass(cls, Source)
    assert cls.grant_type == row.grant_type
    assert cls.default_scope == row.default_scope
    assert row.interactive == ("interactive" in _keywords(cls))  # a login may be made silent
    # What a profile may set for this grant, the source's constructors take.
    assert set(row.settings) <= _keywords(cls)
    # And every keyword of its own that a config file can write is a profile setting.
    own = _keywords(cls) - _keywords(Source) - NOT_PROFILE_SETTINGS
    assert own <= set(row.settings) or not row.profile, own - set(row.settings)


def test_user_login_takes_what_both_logins_take() -> None:
    """UserLogin stands for either login of the pair: every keyword of theirs is one of its own,
    typed (OpenIDOptions) or spelled out, and it is no grant (no row, no grant type)."""
    module, name = registry.USER_LOGIN
    cls = getattr(importlib.import_module(module), name)
    assert name not in {row.cls for row in registry.GRANT_ROWS}
    pair = set().union(*(_keywords(_row_class(registry.grant(g))) for g in registry.LOGIN_PAIR))
    own = {p.name for p in inspect.signature(cls.__init__).parameters.values()
           if p.kind is p.KEYWORD_ONLY}
    typed = set(OpenIDOptions.__annotations__)
    assert pair - {"subject", "seed"} == own | typed  # subject, seed: a source's own business
    assert not issubclass(cls, Source)


def test_the_default_scopes_are_the_registrys() -> None:
    assert DEVICE_SCOPE == registry.grant("device_code").default_scope == ("openid", "offline_access")
    assert registry.grant("authorization_code").default_scope == BROWSER_SCOPE


def test_the_profile_settings_are_the_typed_options_and_the_grants_own() -> None:
    typed = set(SourceOptions.__annotations__)
    assert set(registry.SHARED_SETTINGS) == typed - NOT_PROFILE_SETTINGS
    openid = set(OpenIDOptions.__annotations__) - typed
    assert openid == _keywords(OpenIDSource) - _keywords(Source)
    own = {s for row in registry.grants(profile=True) for s in row.settings}
    assert set(registry.SHARED_SETTINGS) | own == config._KEYWORDS


def test_the_config_names_are_views_of_the_registry() -> None:
    assert set(config.GRANTS) == {r.name for r in registry.GRANT_ROWS if r.profile}
    assert config.GRANTS["device_code"] == (
        "keyturn.sources.device_code", "DeviceCode", wire.GRANT_DEVICE_CODE, ("openid", "offline_access"))
    assert {"device_code", "authorization_code"} == config.INTERACTIVE_GRANTS
    assert config.FLOW_ALIASES == {"device": "device_code", "browser": "authorization_code"}


@pytest.mark.parametrize(("value", "cls"), [
    ("file", "FileStore"), ("memory", "MemoryStore"), ("redis://localhost/0", "RedisStore"),
    ("rediss://cache.example.org", "RedisStore"), ("unix:///run/redis.sock", "RedisStore"),
])
def test_a_store_value_selects_its_row(value: str, cls: str) -> None:
    row = registry.store_for(value)
    assert row is not None and row.cls == cls
    assert getattr(importlib.import_module(row.module), row.cls).__name__ == cls


def test_an_unknown_store_is_a_config_error_naming_the_choices(tmp_path: Path) -> None:
    from keyturn.errors import ConfigError

    assert registry.store_for("sqlite") is None
    profile = Profile("p", {"grant": "client_credentials", "token_endpoint": "https://id.example.org/t",
                            "client_id": "c", "store": "sqlite"})
    with pytest.raises(ConfigError, match=r"'file', 'memory' or a redis://, rediss://, unix:// URL"):
        profile.build()


def test_a_profile_builds_its_store_from_the_row(tmp_path: Path) -> None:
    settings = {"grant": "client_credentials", "token_endpoint": "https://id.example.org/t",
                "client_id": "c"}
    memory = Profile("m", {**settings, "store": "memory"}).build()
    assert type(memory.cache.store) is MemoryStore
    file = Profile("f", {**settings, "store": "file", "cache_dir": str(tmp_path)}).build()
    assert isinstance(file.cache.store, FileStore)
    assert Path(file.cache.store.path) == tmp_path  # type: ignore[attr-defined]
    redis = Profile("r", {**settings, "store": "unix:///run/keyturn-test.sock"}).build()
    assert type(redis.cache.store).__name__ == "RedisStore"  # built, not connected


def test_a_profile_keeps_the_other_logins_settings_for_with_grant() -> None:
    profile = Profile("p", {"issuer": "http://127.0.0.1:9", "client_id": "c", "grant": "device_code",
                            "login_timeout": 42, "device_authorization_endpoint": "http://127.0.0.1:9/d"})
    assert "login_timeout" not in profile.kwargs
    browser = profile.with_grant("authorization_code")
    assert browser.kwargs["login_timeout"] == 42
    assert "device_authorization_endpoint" not in browser.kwargs
    assert browser.build().login_timeout == 42.0  # type: ignore[attr-defined]


def test_a_source_whose_grant_has_no_row_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"UserLogin\.grant_name 'user_login' has no row in "
                                        r"keyturn\.registry\.GRANT_ROWS"):
        type("UserLogin", (Source,), {"grant_name": "user_login"})


#: Run in a process of its own: the registry grows a third interactive (and profile) row before
#: the profiles and the command line read it, as a new login source's row would.
THIRD_LOGIN = """
import sys, time
from keyturn import registry
from keyturn.protocol import wire
third = registry.GrantRow("user_login", "keyturn.sources.device_code", "DeviceCode",
                          wire.GRANT_DEVICE_CODE, interactive=True, profile=True)
registry.GRANT_ROWS += (third,)
registry._BY_NAME[third.name] = third
from keyturn import config
from keyturn.cli.common import other_login
from keyturn.stores.file import FileStore
from keyturn.token import Token
assert config.INTERACTIVE_GRANTS == {"device_code", "authorization_code", "user_login"}
settings = {"issuer": "https://id.example.org", "client_id": "c", "cache_dir": sys.argv[1]}
for grant in registry.LOGIN_PAIR:  # each one's saved login answers for the other
    prof = config.Profile("p", settings)
    prof.grant = grant  # as the automatic choice would have made it (prof.chosen stays True)
    other = prof.with_grant(registry.paired_login(grant))
    FileStore(sys.argv[1]).save(other.cache_key(), Token(access_token="AT-" + other.grant,
                                                         expires_at=time.time() + 3600))
    found = other_login(prof)
    assert found is not None, grant
    print(found[0].grant, found[2].access_token)
assert other_login(config.Profile("p", {**settings, "grant": "user_login"})) is None
"""


def test_the_login_pair_answers_for_each_other_beside_a_third_interactive_grant(
        tmp_path: Path) -> None:
    assert registry.LOGIN_PAIR == ("authorization_code", "device_code")
    assert registry.paired_login("device_code") == "authorization_code"
    assert registry.paired_login("client_credentials") is None
    out = subprocess.run([sys.executable, "-c", THIRD_LOGIN, str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["device_code AT-device_code",
                                          "authorization_code AT-authorization_code"]
