"""The source identity: the cache key stays bit for bit what it was (tokens saved by an earlier
keyturn are still found), and a profile derives the same key as the source it builds."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from keyturn.cachekey import cache_key, refresh_subject
from keyturn.config import Profile
from keyturn.sources.jwt_bearer import JwtBearer
from keyturn.sources.refresh_token import RefreshToken
from keyturn.sources.token_exchange import TokenExchange

# Computed with keyturn at 386abce, before the key's derivation moved into keyturn.cachekey.
PROFILE_KEYS: dict[str, tuple[str, dict[str, Any], str]] = {
    "client_credentials": ("client_credentials", {
        "issuer": "https://id.example.org/", "client_id": "batch", "client_secret": "s3cret",
        "scope": "api:read api:write", "audience": "https://api.example.org",
        "resource": ["https://b.example.org/", "https://a.example.org/"],
        "extra_params": {"b": "2", "a": "1"}}, "keyturn:v1:aa5678c09026a7189110bffc9d8d8db6"),
    "device_code": ("device_code", {"issuer": "https://id.example.org", "client_id": "cli"},
                    "keyturn:v1:5191330e880f2e9e29447fe94df0b910"),
    "authorization_code": ("authorization_code", {
        "issuer": "https://id.example.org", "client_id": "cli", "scope": ["openid  email", "openid"]},
        "keyturn:v1:f6f6bb411c65e1f045bcf185bbedf586"),
    "refresh_token": ("refresh_token", {
        "token_endpoint": "https://id.example.org/token", "client_id": "cli",
        "refresh_token": "rt-value-1"}, "keyturn:v1:ec94bfd89657906e6144df9426d5fcda"),
    "client_secret_post": ("client_credentials", {
        "token_endpoint": "https://id.example.org/token", "client_id": "svc",
        "auth_method": "client_secret_post", "client_secret": "x"},
        "keyturn:v1:6508b552dce502052b70458a808b462e"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_KEYS))
def test_the_key_of_a_profile_and_of_its_source_is_todays(case: str) -> None:
    grant, settings, key = PROFILE_KEYS[case]
    profile = Profile(case, {**settings, "grant": grant, "store": "memory"})
    source = profile.build()
    assert profile.cache_key() == key
    assert source.cache_key == key


def test_the_key_of_the_sources_no_profile_names_is_todays() -> None:
    endpoint = "https://id.example.org/token"
    jwt = JwtBearer(token_endpoint=endpoint, client_id="svc", auth_method="none",
                    assertion="a.b.c", store=None)
    assert jwt.cache_key == "keyturn:v1:8e73573e27b1d2ebf8666dbf41fb26ba"
    exchange = TokenExchange(token_endpoint=endpoint, client_id="gw", client_secret="s",
                             subject_token="tok", audience="https://orders.example.org", store=None)
    assert exchange.cache_key == "keyturn:v1:0322e8c082a0e357ddbdcb63eb144040"


def test_order_repeats_and_the_default_scope_do_not_change_the_key() -> None:
    base: dict[str, Any] = {"issuer": "https://id.example.org", "token_endpoint": None,
                            "client_id": "c", "auth_method": "none", "grant": "g",
                            "subject": None, "audience": None, "extra": None,
                            "account": None}
    plain = {**base, "scope": None, "default_scope": (), "resource": None}
    one = cache_key(**base, scope="b a", default_scope=(), resource=["https://r/2", "https://r/1"])
    assert one == cache_key(**base, scope=["a", "b a"], default_scope=(),
                            resource=["https://r/1", "https://r/2"])
    assert cache_key(**{**plain, "default_scope": ("x",)}) == cache_key(**{**plain, "scope": "x"})
    assert cache_key(**{**plain, "scope": "", "default_scope": ("x",)}) != cache_key(
        **{**plain, "scope": "x"})
    assert cache_key(**{**plain, "issuer": "https://id.example.org/"}) == cache_key(**plain)


def test_every_argument_of_the_key_is_required() -> None:
    # A caller that left one out would derive another key and lose its saved tokens.
    with pytest.raises(TypeError, match="default_scope"):
        cache_key(issuer=None, token_endpoint="https://t", client_id="c",  # type: ignore[call-arg]
                  auth_method="none", grant="g", subject=None, scope=None, audience=None,
                  resource=None, extra=None, account=None)


def test_the_refresh_subject_is_a_tag_of_the_token() -> None:
    assert refresh_subject("rt-value-1") == "rt:" + hashlib.sha256(b"rt-value-1").hexdigest()[:8]
    assert "rt-value-1" not in refresh_subject("rt-value-1")


def test_a_refresh_token_source_may_name_its_record() -> None:
    # The initial refresh token names the record, unless subject= does: a program restarted with
    # another initial token then still finds the rotated one it saved.
    common: dict[str, Any] = {"token_endpoint": "https://id.example.org/token", "client_id": "c",
                              "store": None}
    first = RefreshToken(refresh_token="rt-1", **common)
    assert first.cache_key != RefreshToken(refresh_token="rt-2", **common).cache_key
    named = RefreshToken(refresh_token="rt-1", subject="batch-job", **common)
    assert named.cache_key == RefreshToken(refresh_token="rt-2", subject="batch-job",
                                           **common).cache_key
    assert named.cache_key != first.cache_key
