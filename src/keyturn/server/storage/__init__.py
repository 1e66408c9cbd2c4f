"""Server storage backends: SQLite (default), Redis (replicas), memory (tests); :mod:`.base` is
the interface."""

from .base import RefreshRecord, ServerStorage
from .memory import MemoryStorage
from .sqlite import SQLiteStorage

__all__ = ["MemoryStorage", "RefreshRecord", "SQLiteStorage", "ServerStorage"]
