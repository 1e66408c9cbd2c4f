"""UserLogin without a server: its typed keywords, the errors of bad arguments, no secret in its
repr, and that it is the two logins' sources (their cache keys, one store)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from keyturn import AuthorizationCode, ConfigError, DeviceCode, MemoryStore, UserLogin
from tests.support.mypycheck import mypy_errors

ISSUER = "https://id.example.org"


def test_its_keywords_are_typed(tmp_path: Path) -> None:
    call = f'UserLogin(issuer="{ISSUER}", client_id="c"'
    lines = ["from keyturn import DeviceVerification, UserLogin", "",
             "def show(verification: DeviceVerification) -> None: ...", "",
             f"{call}, prompt=show, login_timeout=60.0, redirect_port=8400)",
             f'{call}, prompt="login", open_browser=lambda url: True)',
             f'{call}, device_authorization_endpoint="{ISSUER}/device", clock_skew=5.0)']
    expect = {}
    for extra, code in (('clientid="x"', "call-arg"), ("scope=42", "arg-type"),
                        ("prompt=42", "arg-type"), ('login_timeout="60"', "arg-type"),
                        ("redirect_port=None", "arg-type")):
        lines.append(f"{call}, {extra})")
        expect[len(lines)] = code
    errors, stdout = mypy_errors(tmp_path, lines)
    assert set(errors) == set(expect), stdout
    for line, code in expect.items():
        assert code in errors[line], f"line {line}: {errors[line]} ({stdout})"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"client_id": "c"}, r"give issuer= \(for discovery\), or authorization_endpoint= or "
                         r"device_authorization_endpoint= with token_endpoint="),
    ({"issuer": ISSUER, "client_id": "c", "prompt": 42}, r"prompt= is a callable taking a"),
    ({"issuer": ISSUER, "client_id": "c", "login_timeout": 0}, r"login_timeout= must be a positive number"),
    ({"issuer": ISSUER, "client_id": "c", "open_browser": "firefox"}, r"open_browser= must be a callable"),
])
def test_bad_arguments_are_config_errors_at_once(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UserLogin(**kwargs)  # type: ignore[arg-type]


def test_its_logins_are_the_two_sources_with_one_store() -> None:
    store = MemoryStore()
    login = UserLogin(issuer=ISSUER, client_id="c", store=store, scope="openid offline_access api")
    device = DeviceCode(issuer=ISSUER, client_id="c", scope="openid offline_access api")
    browser = AuthorizationCode(issuer=ISSUER, client_id="c", scope="openid offline_access api")
    keys = {source.cache_key for source in login._sources.values()}
    assert keys == {device.cache_key, browser.cache_key}
    assert {id(source.cache.store) for source in login._sources.values()} == {id(store)}
    assert login.cache_key == {"device_code": device, "authorization_code": browser}[
        login.chosen].cache_key


def test_only_the_login_its_settings_allow() -> None:
    # Without an issuer only the login whose endpoint is given can happen.
    device = UserLogin(token_endpoint=f"{ISSUER}/token", client_id="c",
                       device_authorization_endpoint=f"{ISSUER}/device", store=None)
    assert device.chosen == "device_code" and {k[0] for k in device._sources} == {"device_code"}
    browser = UserLogin(token_endpoint=f"{ISSUER}/token", client_id="c",
                        authorization_endpoint=f"{ISSUER}/auth", store=None)
    assert browser.chosen == "authorization_code"


def test_no_secret_in_its_repr_and_it_does_not_pickle() -> None:
    login = UserLogin(issuer=ISSUER, client_id="c", client_secret="hunter2-secret", store=None)
    assert "hunter2" not in repr(login) and "hunter2" not in repr(login.__dict__)
    assert repr(login).startswith(f"UserLogin(issuer='{ISSUER}', client_id='c', chosen=")
    with pytest.raises(TypeError, match="holds secrets and cannot be pickled"):
        pickle.dumps(login)
