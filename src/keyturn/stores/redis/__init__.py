"""Tokens in Redis, shared by every process on every host, with an expiring lock and fenced writes.

:mod:`.store` holds the records (:class:`RedisStore`), :mod:`.lock` the lock and its fences
(:class:`RedisLock`), :mod:`.scripts` the Lua scripts both run inside Redis. Importing this package
does not import redis-py; making a :class:`RedisStore` does.
"""

from .lock import RedisLock
from .store import RedisStore

__all__ = ["RedisLock", "RedisStore"]
