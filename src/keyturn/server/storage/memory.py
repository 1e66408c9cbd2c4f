"""Storage in this process's memory: for unit tests of the sans-I/O server, and one-process demos.

It keeps the interface's promises as the real backends do (compare-and-set on a grant's version, a
refresh token's first use wins, counters per fixed window, the first setting wins), under one
lock, and keeps records as the JSON the real backends write, so a test sees what they would
return (a copy, never the object it stored). Nothing is shared between processes: replicas need
:class:`~.sqlite.SQLiteStorage` on one host or :class:`~.redis.RedisStorage`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import replace

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

__all__ = ["MemoryStorage"]

#: As in SQLite: a grant outlives its expiry by an hour, to answer expired_token and spot reuse.
_GRACE = 3600.0


class MemoryStorage(ServerStorage):
    may_wait = False  # a lock of this process, held for microseconds

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, tuple[int, float, str]] = {}  # hash -> (version, kept until, json)
        self._user_codes: dict[str, str] = {}                  # user code -> device code hash
        self._refresh: dict[str, str] = {}                     # token hash -> json
        self._used: dict[str, float] = {}                      # token hash -> first use
        self._revoked: dict[tuple[str, str], float] = {}       # (kind, id) -> kept until
        self._counters: dict[str, tuple[float, int]] = {}      # key -> (window end, count)
        self._settings: dict[str, str] = {}
        self._replays: dict[str, tuple[float, str]] = {}      # key -> (expires at, json)
        self._once: dict[str, tuple[float, str]] = {}         # key -> (expires at, value)

    def __repr__(self) -> str:
        return "MemoryStorage()"

    # -- device grants -----------------------------------------------------------------------------

    def create_device_grant(self, grant: DeviceGrant) -> bool:
        with self._lock:
            taken = self._user_codes.get(grant.user_code)
            if taken is not None:
                held = self._grants.get(taken)
                # An expired grant's user code may be drawn again (once its grace is over, as in
                # SQLite).
                if held is not None and held[1] >= grant.created_at:
                    return False
                self._grants.pop(taken, None)
            self._grants[grant.device_code_hash] = (grant.version, grant.expires_at + _GRACE,
                                                    grant_to_json(grant))
            self._user_codes[grant.user_code] = grant.device_code_hash
        return True

    def device_grant(self, device_code_hash: str) -> DeviceGrant | None:
        with self._lock:
            held = self._grants.get(device_code_hash)
        return grant_from_json(held[2]) if held else None

    def device_grant_by_user_code(self, user_code: str) -> DeviceGrant | None:
        with self._lock:
            code_hash = self._user_codes.get(user_code)
        return self.device_grant(code_hash) if code_hash else None

    def swap_device_grant(self, updated: DeviceGrant) -> bool:
        with self._lock:
            held = self._grants.get(updated.device_code_hash)
            if held is None or held[0] != updated.version - 1:
                return False
            self._grants[updated.device_code_hash] = (updated.version, held[1],
                                                      grant_to_json(updated))
        return True

    # -- refresh tokens ----------------------------------------------------------------------------

    def add_refresh_token(self, record: RefreshRecord) -> None:
        with self._lock:
            self._refresh[record.token_hash] = refresh_to_json(record)

    def refresh_token(self, token_hash: str) -> RefreshRecord | None:
        with self._lock:
            body, used = self._refresh.get(token_hash), self._used.get(token_hash)
        if body is None:
            return None
        record = refresh_from_json(body)
        return replace(record, used_at=used) if used is not None else record

    def use_refresh_token(self, token_hash: str, now: float) -> bool:
        with self._lock:
            if token_hash not in self._refresh or token_hash in self._used:
                return False
            self._used[token_hash] = now
        return True

    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        with self._lock:  # one step under the lock: nothing half done
            if token_hash not in self._refresh or token_hash in self._used:
                return False
            self._used[token_hash] = now
            self._refresh[successor.token_hash] = refresh_to_json(successor)
            self._replays[replay.key] = (replay.expires_at, replay_to_json(replay))
        return True

    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        with self._lock:
            held = self._grants.get(updated.device_code_hash)
            if held is None or held[0] != updated.version - 1:
                return False
            self._grants[updated.device_code_hash] = (updated.version, held[1],
                                                      grant_to_json(updated))
            if refresh is not None:
                self._refresh[refresh.token_hash] = refresh_to_json(refresh)
            if replay is not None:
                self._replays[replay.key] = (replay.expires_at, replay_to_json(replay))
        return True

    def replay(self, key: str) -> Replay | None:
        with self._lock:
            held = self._replays.get(key)
        return replay_from_json(held[1]) if held else None

    def revoke_family(self, family_id: str, until: float) -> None:
        self._revoke("family", family_id, until)

    def family_revoked(self, family_id: str) -> bool:
        with self._lock:
            return ("family", family_id) in self._revoked

    def logins(self, subject: str, now: float) -> list[Login]:
        with self._lock:
            records = [replace(record, used_at=self._used.get(token_hash))
                       for token_hash, body in self._refresh.items()
                       if (record := refresh_from_json(body)).subject == subject]
        return live_logins(records, now, self.family_revoked)

    def revoke_jti(self, jti: str, until: float) -> None:
        self._revoke("jti", jti, until)

    def jti_revoked(self, jti: str) -> bool:
        with self._lock:
            return ("jti", jti) in self._revoked

    def _revoke(self, kind: str, ident: str, until: float) -> None:
        with self._lock:
            self._revoked[(kind, ident)] = max(until, self._revoked.get((kind, ident), until))

    # -- counters and settings ---------------------------------------------------------------------

    def hit(self, key: str, window: int, now: float, amount: int = 1) -> int:
        window_end = (math.floor(now / window) + 1) * window
        with self._lock:
            end, count = self._counters.get(key, (window_end, 0))
            count = count + amount if end == window_end else amount
            self._counters[key] = (window_end, count)
        return count

    def setting(self, name: str, make: Callable[[], str]) -> str:
        with self._lock:
            if name in self._settings:
                return self._settings[name]
        value = make()  # outside the lock: making a signing key takes a while
        with self._lock:
            return self._settings.setdefault(name, value)

    def replace_setting(self, name: str, expected: str, value: str) -> bool:
        with self._lock:
            if self._settings.get(name) != expected:
                return False
            self._settings[name] = value
            return True

    # -- values taken once ------------------------------------------------------------------------

    def put_once(self, key: str, value: str, now: float, expires_at: float) -> bool:
        with self._lock:
            held = self._once.get(key)
            if held is not None and held[0] > now:
                return False
            self._once[key] = (expires_at, value)
        return True

    def take_once(self, key: str, now: float) -> str | None:
        with self._lock:
            held = self._once.pop(key, None)
        return held[1] if held is not None and held[0] > now else None

    def peek_once(self, key: str, now: float) -> str | None:
        with self._lock:
            held = self._once.get(key)
        return held[1] if held is not None and held[0] > now else None

    def purge(self, now: float) -> None:
        with self._lock:
            self._once = {key: held for key, held in self._once.items() if held[0] >= now}
            for code_hash, (_, until, _) in list(self._grants.items()):
                if until < now:
                    del self._grants[code_hash]
            self._user_codes = {code: code_hash for code, code_hash in self._user_codes.items()
                                if code_hash in self._grants}
            for token_hash, body in list(self._refresh.items()):
                if refresh_from_json(body).expires_at < now:
                    del self._refresh[token_hash]
                    self._used.pop(token_hash, None)
            self._revoked = {key: until for key, until in self._revoked.items() if until >= now}
            self._replays = {key: held for key, held in self._replays.items() if held[0] >= now}
            self._counters = {key: value for key, value in self._counters.items()
                              if value[0] >= now}

    def ping(self) -> None:
        """Always reachable."""
