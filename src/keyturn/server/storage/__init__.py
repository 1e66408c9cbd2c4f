"""Server storage backends: SQLite (default); the interface in :mod:`.base` admits Redis."""

from .base import RefreshRecord, ServerStorage
from .sqlite import SQLiteStorage

__all__ = ["RefreshRecord", "SQLiteStorage", "ServerStorage"]
