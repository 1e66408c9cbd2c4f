"""Tokens kept in this process's memory: the default for machine grants."""

from __future__ import annotations

import threading

from ..token import Token
from .base import LocalLock, Store, StoreLock

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """A dict of tokens with one lock per key. Share one instance between sources to share tokens."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._tokens)} tokens)"

    def load(self, key: str) -> Token | None:
        return self._tokens.get(key)

    def save(self, key: str, token: Token) -> None:
        self._tokens[key] = token

    def delete(self, key: str) -> None:
        self._tokens.pop(key, None)

    def lock(self, key: str) -> StoreLock:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        return LocalLock(lock)

    async def aload(self, key: str) -> Token | None:
        return self.load(key)

    async def asave(self, key: str, token: Token) -> None:
        self.save(key, token)

    async def adelete(self, key: str) -> None:
        self.delete(key)
