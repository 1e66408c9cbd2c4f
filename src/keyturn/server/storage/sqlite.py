"""The default storage: one SQLite database in the server's data directory, in WAL mode.

WAL lets readers go on while one writer commits, and ``busy_timeout`` makes a second server
process on the same file wait for the lock instead of failing. The database file is created 0600
(it holds the signing key) in a directory created 0700. Each thread gets its own connection
(its statements prepared once: the sqlite3 module caches them per connection).

Checkpoints (copying the WAL back into the database, with an fsync of each file) are mostly
not left to the commit that happens to cross the WAL's size mark, which then waits for the disk:
a thread of the storage's own runs a PASSIVE checkpoint (it holds up no reader or writer) every
:data:`CHECKPOINT_SECONDS`, and the mark is raised to :data:`WAL_PAGES`, so the commit that
still checkpoints (the one step that lets the WAL start over) comes ten times less often and
finds most pages copied already.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

from ..device_flow import DeviceGrant
from .base import (
    Login,
    RefreshRecord,
    Replay,
    ServerStorage,
    grant_from_json,
    grant_to_json,
    live_logins,
    refresh_from_json,
    refresh_to_json,
    replay_from_json,
    replay_to_json,
)

__all__ = ["SQLiteStorage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_grants (
    device_code_hash TEXT PRIMARY KEY,
    user_code TEXT NOT NULL UNIQUE,
    version INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    used_at REAL,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (kind, id)
);
-- A person's logins, for `keyturn serve admin` (ServerStorage.logins).
CREATE INDEX IF NOT EXISTS refresh_tokens_by_subject
    ON refresh_tokens (json_extract(body, '$.subject'));
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    window_end REAL NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS replays (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS once (
    key TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,
    value TEXT NOT NULL
);
"""
#: Seconds between the background checkpoints of the WAL.
CHECKPOINT_SECONDS = 1.0
#: The page cache of each connection, in KiB (SQLite's default: 2,000). Bounded for the sum:
#: there is one connection per thread that touches the storage (the event loop's, and up to
#: anyio's 40 threadpool threads, where the endpoints make their SQLite calls), each cache filling
#: on its own up to the database's size: 8 MiB each is at most ~330 MiB per worker process (64
#: MiB each could reach 2.6 GB). A page past it is read again, mostly from the OS's page cache.
CACHE_KIB = 8 * 1024
#: The WAL size (in pages of 4 KiB) past which a commit checkpoints (SQLite's default: 1,000).
WAL_PAGES = 10_000
#: A grant is kept this long past its expiry, so a late poll still gets expired_token rather than
#: invalid_grant, and a reused code is still recognised.
_GRACE = 3600.0


def _checkpoint_periodically(path: Path, closing: threading.Event,
                             storage: weakref.ref[SQLiteStorage]) -> None:
    """A PASSIVE checkpoint every CHECKPOINT_SECONDS, until the storage is closed or dropped."""
    uri = f"file:{quote(str(path.absolute()))}?mode=rw"
    while not closing.wait(CHECKPOINT_SECONDS) and storage() is not None:
        # Another process's exclusive lock, a disk error: the next round tries again
        # (correctness never depends on a checkpoint: the WAL is the data). A connection of
        # its own per round: between rounds the thread holds no file open. mode=rw: it never
        # creates the file: a database removed while the server runs (an operator's reset) would
        # come back empty with the umask's mode (0644), and the restarted server would keep that
        # mode and store its signing key in it; a missing file only fails this round.
        with contextlib.suppress(sqlite3.Error), contextlib.closing(
                sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)) as db:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class SQLiteStorage(ServerStorage):
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._connection().executescript(_SCHEMA)
        self._closing = threading.Event()
        # The thread holds the storage only weakly: a storage dropped without close() (a test's,
        # a script's) is collected, and its thread then ends.
        self._checkpointer = threading.Thread(
            target=_checkpoint_periodically, args=(self.path, self._closing, weakref.ref(self)),
            daemon=True, name="keyturn-sqlite-checkpoint")
        self._checkpointer.start()

    def __repr__(self) -> str:
        return f"SQLiteStorage({str(self.path)!r})"

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=30000")
            # Fewer checkpoints at commit time: _checkpoint_periodically does most of them.
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            # Codes and token hashes are random keys: each write touches pages all over the
            # indexes, which SQLite's default 2 MB page cache would read again and again.
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> tuple[object, ...] | None:
        row: tuple[object, ...] | None = self._connection().execute(sql, args).fetchone()
        return row

    # -- device grants -----------------------------------------------------------------------------

    def create_device_grant(self, grant: DeviceGrant) -> bool:
        # First the one statement (autocommit) that nearly always succeeds; only a user code that
        # is taken needs the transaction that frees an expired holder of it.
        with contextlib.suppress(sqlite3.IntegrityError):
            self._insert_grant(self._connection(), grant)
            return True
        with self._tx() as db:
            # An expired grant's user code may be drawn again.
            db.execute("DELETE FROM device_grants WHERE user_code = ? AND expires_at < ?",
                       (grant.user_code, grant.created_at))
            try:
                self._insert_grant(db, grant)
            except sqlite3.IntegrityError:
                return False
        return True

    @staticmethod
    def _insert_grant(db: sqlite3.Connection, grant: DeviceGrant) -> None:
        db.execute("INSERT INTO device_grants VALUES (?, ?, ?, ?, ?)",
                   (grant.device_code_hash, grant.user_code, grant.version,
                    grant.expires_at + _GRACE, grant_to_json(grant)))

    def device_grant(self, device_code_hash: str) -> DeviceGrant | None:
        row = self._one("SELECT body FROM device_grants WHERE device_code_hash = ?", device_code_hash)
        return grant_from_json(str(row[0])) if row else None

    def device_grant_by_user_code(self, user_code: str) -> DeviceGrant | None:
        row = self._one("SELECT body FROM device_grants WHERE user_code = ?", user_code)
        return grant_from_json(str(row[0])) if row else None

    def swap_device_grant(self, updated: DeviceGrant) -> bool:
        # One UPDATE (compare-and-set on the version): atomic on its own, in autocommit.
        return self._swap(self._connection(), updated)

    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        # One BEGIN IMMEDIATE ... COMMIT: an error at any step rolls the consumed grant back.
        with self._tx() as db:
            if not self._swap(db, updated):
                return False
            if refresh is not None:
                self._insert_refresh(db, refresh)
            if replay is not None:
                self._insert_replay(db, replay)
        return True

    @staticmethod
    def _swap(db: sqlite3.Connection, updated: DeviceGrant) -> bool:
        cursor = db.execute(
            "UPDATE device_grants SET version = ?, body = ? "
            "WHERE device_code_hash = ? AND version = ?",
            (updated.version, grant_to_json(updated), updated.device_code_hash,
             updated.version - 1),
        )
        return cursor.rowcount == 1

    # -- refresh tokens ----------------------------------------------------------------------------

    def add_refresh_token(self, record: RefreshRecord) -> None:
        with self._tx() as db:
            self._insert_refresh(db, record)

    @staticmethod
    def _insert_refresh(db: sqlite3.Connection, record: RefreshRecord) -> None:
        db.execute("INSERT INTO refresh_tokens VALUES (?, ?, ?, ?)",
                   (record.token_hash, None, record.expires_at, refresh_to_json(record)))

    @staticmethod
    def _insert_replay(db: sqlite3.Connection, replay: Replay) -> None:
        db.execute("INSERT OR REPLACE INTO replays VALUES (?, ?, ?)",
                   (replay.key, replay.expires_at, replay_to_json(replay)))

    def refresh_token(self, token_hash: str) -> RefreshRecord | None:
        row = self._one("SELECT body, used_at FROM refresh_tokens WHERE token_hash = ?", token_hash)
        if row is None:
            return None
        record = refresh_from_json(str(row[0]))
        used = row[1]
        if isinstance(used, float):
            record = replace(record, used_at=used)
        return record

    def use_refresh_token(self, token_hash: str, now: float) -> bool:
        with self._tx() as db:
            return self._mark_used(db, token_hash, now)

    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        # One BEGIN IMMEDIATE ... COMMIT: an error after the mark rolls it back, so the old token
        # still works for the retry.
        with self._tx() as db:
            if not self._mark_used(db, token_hash, now):
                return False
            self._insert_refresh(db, successor)
            self._insert_replay(db, replay)
        return True

    @staticmethod
    def _mark_used(db: sqlite3.Connection, token_hash: str, now: float) -> bool:
        cursor = db.execute(
            "UPDATE refresh_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
            (now, token_hash),
        )
        return cursor.rowcount == 1

    def replay(self, key: str) -> Replay | None:
        row = self._one("SELECT body FROM replays WHERE key = ?", key)
        return replay_from_json(str(row[0])) if row else None

    def revoke_family(self, family_id: str, until: float) -> None:
        self._revoke("family", family_id, until)

    def logins(self, subject: str, now: float) -> list[Login]:
        rows = self._connection().execute(
            "SELECT body, used_at FROM refresh_tokens "
            "WHERE json_extract(body, '$.subject') = ? AND expires_at > ?", (subject, now))
        records = [replace(refresh_from_json(str(body)),
                           used_at=used if isinstance(used, float) else None)
                   for body, used in rows.fetchall()]
        return live_logins(records, now, self.family_revoked)

    def family_revoked(self, family_id: str) -> bool:
        return self._one("SELECT 1 FROM revoked WHERE kind = 'family' AND id = ?", family_id) is not None

    def revoke_jti(self, jti: str, until: float) -> None:
        self._revoke("jti", jti, until)

    def jti_revoked(self, jti: str) -> bool:
        return self._one("SELECT 1 FROM revoked WHERE kind = 'jti' AND id = ?", jti) is not None

    def _revoke(self, kind: str, ident: str, until: float) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO revoked VALUES (?, ?, ?) ON CONFLICT (kind, id) DO UPDATE "
                       "SET until = max(until, excluded.until)", (kind, ident, until))

    # -- counters and settings ---------------------------------------------------------------------

    def hit(self, key: str, window: int, now: float, amount: int = 1) -> int:
        window_end = (math.floor(now / window) + 1) * window
        # One statement, so atomic without a transaction around it (autocommit); fetchall runs it
        # to its end, which commits it.
        rows = self._connection().execute(
            "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
            "count = CASE WHEN window_end = excluded.window_end THEN count + excluded.count "
            "ELSE excluded.count END, window_end = excluded.window_end RETURNING count",
            (key, window_end, amount),
        ).fetchall()
        return int(rows[0][0])

    def setting(self, name: str, make: Callable[[], str]) -> str:
        row = self._one("SELECT value FROM settings WHERE name = ?", name)
        if row is not None:
            return str(row[0])
        value = make()
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO settings VALUES (?, ?)", (name, value))
            row = db.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
        return str(row[0])

    def replace_setting(self, name: str, expected: str, value: str) -> bool:
        with self._tx() as db:
            changed = db.execute("UPDATE settings SET value = ? WHERE name = ? AND value = ?",
                                 (value, name, expected)).rowcount
        return bool(changed)

    # -- values taken once ------------------------------------------------------------------------

    def put_once(self, key: str, value: str, now: float, expires_at: float) -> bool:
        with self._tx() as db:
            # An expired value is no value: it may be replaced.
            db.execute("DELETE FROM once WHERE key = ? AND expires_at <= ?", (key, now))
            cursor = db.execute("INSERT OR IGNORE INTO once VALUES (?, ?, ?)",
                                (key, expires_at, value))
        return cursor.rowcount == 1

    def take_once(self, key: str, now: float) -> str | None:
        # One statement in one transaction: two connections (processes) taking the same key
        # cannot both see the row.
        with self._tx() as db:
            rows = db.execute("DELETE FROM once WHERE key = ? RETURNING expires_at, value",
                              (key,)).fetchall()  # all: the statement ends before the COMMIT
        if not rows or float(rows[0][0]) <= now:
            return None
        return str(rows[0][1])

    def peek_once(self, key: str, now: float) -> str | None:
        row = self._one("SELECT value FROM once WHERE key = ? AND expires_at > ?", key, now)
        return str(row[0]) if row else None

    def purge(self, now: float) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM once WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM device_grants WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM refresh_tokens WHERE expires_at < ?", (now,))
            db.execute("DELETE FROM revoked WHERE until < ?", (now,))
            db.execute("DELETE FROM counters WHERE window_end < ?", (now,))
            db.execute("DELETE FROM replays WHERE expires_at < ?", (now,))

    def ping(self) -> None:
        self._one("SELECT 1")

    def close(self) -> None:
        """Close every thread's connection (call it once no request is running)."""
        self._closing.set()
        if self._checkpointer is not threading.current_thread():
            self._checkpointer.join(timeout=10)
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()
