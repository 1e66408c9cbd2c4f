"""The cached-path test is inlined in four places for speed (TokenCache.access_token, .aaccess_token,
.token and Source.get_token, .aget_access_token): each must serve the cached token just before
``refresh_at`` and refresh at it, the same boundary for all."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from keyturn import ClientCredentials
from keyturn._transactions import Entry
from keyturn.protocol.http import Keeper
from keyturn.token import Token

REFRESH_AT = 1000.0
OLD = Token(access_token="old-token", expires_at=None)
NEW = Token(access_token="new-token", expires_at=None)


def _source(now: float) -> tuple[ClientCredentials, list[str]]:
    source = ClientCredentials(token_endpoint="https://id.example.org/token", client_id="c",
                               client_secret="s", store=None)
    fetched: list[str] = []

    def fetch(previous: Token | None, keeper: Keeper | None = None) -> Token:
        fetched.append("sync")
        return NEW

    async def afetch(previous: Token | None, keeper: Keeper | None = None) -> Token:
        fetched.append("async")
        return NEW

    cache = source.cache
    cache._fetch, cache._afetch = fetch, afetch
    cache.clock = lambda: now
    cache.entry = Entry(OLD, refresh_at=REFRESH_AT, expires_at=REFRESH_AT + 60)
    return source, fetched


CALLS: dict[str, Callable[[ClientCredentials], Any]] = {
    "Source.get_access_token": lambda s: s.get_access_token(),
    "Source.get_token": lambda s: s.get_token().access_token,
    "Source.aget_access_token": lambda s: asyncio.run(s.aget_access_token()),
    "Source.aget_token": lambda s: asyncio.run(s.aget_token()).access_token,
    "TokenCache.access_token": lambda s: s.cache.access_token(),
    "TokenCache.aaccess_token": lambda s: asyncio.run(s.cache.aaccess_token()),
    "TokenCache.token": lambda s: s.cache.token().access_token,
    "TokenCache.atoken": lambda s: asyncio.run(s.cache.atoken()).access_token,
}


@pytest.mark.parametrize("call", list(CALLS))
def test_every_fast_path_serves_the_cached_token_until_refresh_at(call: str) -> None:
    source, fetched = _source(REFRESH_AT - 0.001)
    assert CALLS[call](source) == "old-token"
    assert fetched == []


@pytest.mark.parametrize("call", list(CALLS))
def test_every_fast_path_refreshes_at_refresh_at(call: str) -> None:
    source, fetched = _source(REFRESH_AT)
    assert CALLS[call](source) == "new-token"
    method = call.split(".")[1]
    assert fetched == ["async" if method.startswith(("aget", "aaccess", "atoken")) else "sync"]
