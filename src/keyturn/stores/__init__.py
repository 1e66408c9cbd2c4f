"""Token stores: memory, file, Redis."""

from .base import Store, StoreLock
from .file import FileStore
from .memory import MemoryStore

__all__ = ["FileStore", "MemoryStore", "Store", "StoreLock"]
