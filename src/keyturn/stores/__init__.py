"""Token stores: memory, file, Redis."""

from .base import Store, StoreLock
from .file import FileStore
from .memory import MemoryStore
from .redis import RedisStore  # imports the redis package only when a RedisStore is made

__all__ = ["FileStore", "MemoryStore", "RedisStore", "Store", "StoreLock"]
