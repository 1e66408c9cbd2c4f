"""OpenIDSource.userinfo against the real provider, sync and async: one flow (keyturn.sources.oidc),
driven by either driver. The 401 is the provider's own: the saved access token is one it never
issued (revoking one at this provider ends its whole grant, refresh token included)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from keyturn import DeviceCode, MemoryStore
from keyturn.token import Token
from tests.support.providerfixture import Provider


def _saved_login(provider: Provider, access_token: str = "expired",
                 expires_at: float = 0.0) -> DeviceCode:
    """A silent DeviceCode whose store holds a login: ``access_token`` and a real refresh token."""
    store = MemoryStore()
    source = DeviceCode(issuer=provider.issuer, client_id="public", interactive=False, store=store)
    store.save(source.cache.key, Token(access_token=access_token, expires_at=expires_at,
                                       refresh_token=provider.mint_refresh_token("public")))
    return source


def _userinfo(source: DeviceCode, mode: str) -> dict[str, Any]:
    if mode == "sync":
        return source.userinfo()
    return asyncio.run(source.auserinfo())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_claims_of_the_current_login(fresh_stats: Provider, mode: str) -> None:
    source = _saved_login(fresh_stats)
    assert _userinfo(source, mode) == {"sub": "alice"}
    assert fresh_stats.token_requests("public", "refresh_token") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_access_token_is_renewed_once_and_the_call_made_again(
        fresh_stats: Provider, mode: str) -> None:
    provider = fresh_stats
    source = _saved_login(provider, "never-issued", time.time() + 3600)
    assert _userinfo(source, mode) == {"sub": "alice"}
    # The refused token was forgotten and renewed: one refresh, and the new token is the cache's.
    assert provider.token_requests("public", "refresh_token") == 1
    assert source.get_access_token() != "never-issued"
    assert provider.token_requests("public", "refresh_token") == 1
