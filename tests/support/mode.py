"""The ``mode`` fixture: one test body drives a token source or a ``TokenCache`` sync, then async.

A grant is written once and serves sync and async callers (design §4), so its tests are written
once too: ``mode.token(source)`` is ``source.get_token()`` in the ``sync`` run and
``await source.aget_token()`` in the ``async`` one. Tests stay plain ``def`` functions; in async
mode each call runs on an event loop that belongs to the test (the same loop for every call of one
test, so whatever the cache binds to its loop stays valid) and that runs only while the call runs.
No loop is running in sync mode, so a sync call there is a plain sync caller's: the cache's path for
"a sync call on a running loop" is its own test (``tests/unit/test_cache.py``), never taken by
accident.

Usage::

    def test_x(mode: Mode) -> None:
        token = mode.token(source)
        mode.invalidate(source, token.access_token)
        assert mode.access_token(source) != token.access_token
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, TypeVar

import pytest

from keyturn.cache import TokenCache
from keyturn.sources.base import Source
from keyturn.sources.oidc import OpenIDSource
from keyturn.token import Token

T = TypeVar("T")
ModeName = Literal["sync", "async"]
MODES: tuple[ModeName, ...] = ("sync", "async")


class Mode:
    """How a test calls a source or a cache: directly (``sync``) or through its ``a``-twin (``async``)."""

    def __init__(self, name: ModeName) -> None:
        self.name: ModeName = name
        self._loop = asyncio.new_event_loop() if name == "async" else None

    def __repr__(self) -> str:
        return f"Mode({self.name!r})"

    @property
    def is_async(self) -> bool:
        return self._loop is not None

    def pick(self, sync: T, asynchronous: T) -> T:
        """The value for this mode (a method name, a keyword, an expected call kind)."""
        return asynchronous if self.is_async else sync

    def call(self, sync: Callable[[], T], asynchronous: Callable[[], Awaitable[T]]) -> T:
        """``sync()``, or ``asynchronous()`` awaited on this test's loop (the other methods use it)."""
        if self._loop is None:
            return sync()

        async def awaited() -> T:
            return await asynchronous()

        return self._loop.run_until_complete(awaited())

    # -- a source or a cache ---------------------------------------------------------------------------

    def access_token(self, source: Source | TokenCache) -> str:
        if isinstance(source, TokenCache):
            return self.call(source.access_token, source.aaccess_token)
        return self.call(source.get_access_token, source.aget_access_token)

    def token(self, source: Source | TokenCache) -> Token:
        if isinstance(source, TokenCache):
            return self.call(source.token, source.atoken)
        return self.call(source.get_token, source.aget_token)

    def invalidate(self, source: Source | TokenCache, access_token: str | None = None) -> None:
        self.call(lambda: source.invalidate(access_token), lambda: source.ainvalidate(access_token))

    # -- a cache -----------------------------------------------------------------------------------------

    def forget(self, cache: TokenCache) -> Token | None:
        return self.call(cache.forget, cache.aforget)

    # -- a source ----------------------------------------------------------------------------------------

    def logout(self, source: Source) -> None:
        self.call(source.logout, source.alogout)

    def userinfo(self, source: OpenIDSource) -> dict[str, Any]:
        return self.call(source.userinfo, source.auserinfo)

    # -- the loop ----------------------------------------------------------------------------------------

    def close(self) -> None:
        """End the loop as ``asyncio.run`` does: cancel what is left, then close."""
        loop = self._loop
        if loop is None:
            return
        self._loop = None
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Iterator[Mode]:
    """The test runs twice: ``[sync]`` calls the sync methods, ``[async]`` their async twins."""
    chosen = Mode(request.param)
    try:
        yield chosen
    finally:
        chosen.close()
