"""account=: part of the cache key only when given, checked, and the login_hint it becomes."""

from __future__ import annotations

from typing import Any

import pytest

from keyturn.account import check_account, login_hint
from keyturn.config import Profile
from keyturn.errors import ConfigError
from keyturn.sources.client_credentials import ClientCredentials
from keyturn.sources.device_code import DeviceCode

DEVICE = {"issuer": "https://id.example.org", "client_id": "cli"}
# tests/unit/test_cachekey.py's pinned key of this device profile (saved logins stay found).
DEVICE_KEY = "keyturn:v1:5191330e880f2e9e29447fe94df0b910"


def _profile(**settings: Any) -> Profile:
    return Profile("p", {**DEVICE, "grant": "device_code", "store": "memory", **settings})


def test_without_an_account_the_key_is_unchanged() -> None:
    assert _profile().cache_key() == DEVICE_KEY
    assert DeviceCode(**DEVICE, store=None).cache_key == DEVICE_KEY
    assert DeviceCode(**DEVICE, account=None, store=None).cache_key == DEVICE_KEY


def test_two_accounts_are_two_keys_and_a_profile_derives_its_sources() -> None:
    work, test = (_profile(account=name) for name in ("work", "test"))
    assert len({work.cache_key(), test.cache_key(), DEVICE_KEY}) == 3
    assert work.build().cache_key == work.cache_key()
    assert DeviceCode(**DEVICE, account="work", store=None).cache_key == work.cache_key()
    machine = {"token_endpoint": "https://id.example.org/token", "client_id": "svc",
               "client_secret": "s", "store": None}
    assert ClientCredentials(**machine, account="a").cache_key != ClientCredentials(
        **machine).cache_key


@pytest.mark.parametrize("account", ["work", "alice@example.org", "Ünïcode name", "a b"])
def test_a_name_is_kept_as_given(account: str) -> None:
    assert check_account(account) == account
    assert DeviceCode(**DEVICE, account=account, store=None).account == account


@pytest.mark.parametrize("account", ["", " ", "a\nb", "a\rb", "a\tb", "\x1b[2J", "a\x7f", 3, b"x"])
def test_a_bad_account_says_what_to_fix(account: Any) -> None:
    with pytest.raises(ConfigError, match="account="):
        check_account(account)
    with pytest.raises(ConfigError, match="account="):
        _profile(account=account).build()


def test_login_hint() -> None:
    assert login_hint(None, {}) == {}
    assert login_hint("work", {"scope": "openid"}) == {"login_hint": "work"}
    # An explicit extra_params login_hint wins over the account's.
    assert login_hint("work", {"login_hint": "alice@example.org"}) == {}
