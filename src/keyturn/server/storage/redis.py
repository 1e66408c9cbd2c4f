"""Storage in Redis, for several server replicas behind one load balancer (``--redis URL``).

Every key expires on its own (TTL), so nothing needs sweeping. The operations that must not race
are single Redis commands or one Lua script: ``SET NX`` for a new user code, a refresh token's
first use and a setting; a compare-and-set script for a device grant's version; one script for
each redemption (rotating a refresh token, redeeming a device code), which spends the old
credential and stores the new refresh token (and, for a rotation, the retry answer) together;
``INCRBY`` for the rate-limit counters. Redis runs a script alone and does not undo a script
that fails half way, so each script checks everything first and then only issues writes
(``SET``, and ``HSET``/``HDEL``/``EXPIRE`` for the index of a subject's logins), which cannot fail on a
key this server wrote. ``redis`` (redis-py) is imported only
when this backend is used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote, urlsplit

from ..device_flow import DeviceGrant
from .base import (
    Login,
    RefreshRecord,
    Replay,
    ServerStorage,
    grant_from_json,
    grant_to_json,
    live_logins,
    login_from_json,
    login_to_json,
    newest_first,
    refresh_from_json,
    refresh_to_json,
    replay_from_json,
    replay_to_json,
)

__all__ = ["RedisStorage"]

#: As in SQLite: a grant outlives its expiry by an hour, to answer expired_token and spot reuse.
_GRACE = 3600

# One round trip each (a script is atomic): a counter and its expiry; a user code and its grant.
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return count
"""
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
return 1
"""

#: A grant is replaced only by whoever read its current version (KEYS[1] the grant, ARGV[1] the
#: version read): the compare half of every compare-and-swap of a grant, in one place.
_IF_GRANT_VERSION = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if tonumber(cjson.decode(current)['version']) ~= tonumber(ARGV[1]) then return 0 end
"""

_SWAP = _IF_GRANT_VERSION + """
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""

#: The subject's logins (a hash: family id -> its Login, see RedisStorage.logins), in a script:
#: KEYS[n] the hash, ARGV[m] the family id, ARGV[m + 1] its Login's JSON, ARGV[t] its TTL. The
#: hash lives as long as its newest login.
_INDEX_LOGIN = """
redis.call('HSET', KEYS[{n}], ARGV[{m}], ARGV[{m} + 1])
if redis.call('TTL', KEYS[{n}]) < tonumber(ARGV[{t}]) then redis.call('EXPIRE', KEYS[{n}], ARGV[{t}]) end
"""

# KEYS: the old token's record, its used mark, the successor's record, the retry answer, the
# subject's logins. ARGV: now, the mark's TTL, the successor's JSON and TTL, the answer's JSON
# and TTL, the family id and its login's JSON.
_ROTATE = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[6])
""" + _INDEX_LOGIN.format(n=5, m=7, t=4) + """
return 1
"""

# KEYS: the grant, the refresh token it issued, the retry answer, the subject's logins. ARGV: the
# version expected, the new grant's JSON, the refresh token's JSON ('' when none is issued) and
# TTL, the answer's JSON ('' when none is kept) and TTL, the family id and its login's JSON.
_REDEEM = _IF_GRANT_VERSION + """
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] ~= '' then
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
-- A new login prunes the subject's ended ones from the hash (it has one TTL, its newest login's,
-- and no TTL per field): the hash holds at most the logins that have not expired. Now is the new
-- login's last use; a field that does not decode is left (HDEL cannot fail, decoding could).
local now = tonumber(cjson.decode(ARGV[8])['last_used_at'])
local held = redis.call('HGETALL', KEYS[4])
for i = 1, #held, 2 do
local ok, login = pcall(cjson.decode, held[i + 1])
if ok and tonumber(login['expires_at']) <= now then redis.call('HDEL', KEYS[4], held[i]) end
end
""" + _INDEX_LOGIN.format(n=4, m=7, t=4) + """
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6]) end
return 1
"""


#: Compare-and-set of a setting (key rotation): replaced only if it still holds ARGV[1].
_REPLACE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


def shown_url(url: str) -> str:
    """The URL as logs and reprs show it: scheme, host, port and database path only. redis-py
    takes a password as userinfo or as ``?password=`` (and a user as ``?username=``), so both
    the userinfo and the whole query are dropped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<unparsable redis URL>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _ttl(until: float, now: float) -> int:
    return max(1, math.ceil(until - now))


#: Seconds a Redis command or connection may take before it is an outage: far above a round trip
#: (under a millisecond on a LAN) or the longest script here (a purge batch).
REDIS_TIMEOUT: Final = 5.0


class RedisStorage(ServerStorage):
    def __init__(self, url: str, *, prefix: str = "keyturn-server", clock: Callable[[], float] | None = None,
                 client: Any = None, timeout: float = REDIS_TIMEOUT) -> None:
        import time

        from .redis_outage import OutageAwareRedis

        # A client that names a MISCONF reply by a class of its own: an outage, not a bug (503).
        # Bounded waits: a Redis that stops answering (paused, a network partition) is an outage
        # (TimeoutError: 503 with Retry-After), not a request held open for ever.
        self._redis: Any = client if client is not None else OutageAwareRedis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._prefix = prefix
        self._clock = clock or time.time
        self._swap = self._redis.register_script(_SWAP)
        self._hit = self._redis.register_script(_HIT)
        self._create = self._redis.register_script(_CREATE)
        self._replace = self._redis.register_script(_REPLACE)
        self._rotate = self._redis.register_script(_ROTATE)
        self._redeem = self._redis.register_script(_REDEEM)
        self._url_shown = shown_url(url)

    def __repr__(self) -> str:
        return f"RedisStorage({self._url_shown!r}, prefix={self._prefix!r})"

    def _key(self, *parts: str) -> str:
        return ":".join((self._prefix, *parts))

    # -- device grants -----------------------------------------------------------------------------

    def create_device_grant(self, grant: DeviceGrant) -> bool:
        ttl = _ttl(grant.expires_at + _GRACE, grant.created_at)
        return bool(self._create(
            keys=[self._key("uc", grant.user_code), self._key("dg", grant.device_code_hash)],
            args=[grant.device_code_hash, grant_to_json(grant), ttl]))

    def device_grant(self, device_code_hash: str) -> DeviceGrant | None:
        body = self._redis.get(self._key("dg", device_code_hash))
        return grant_from_json(body.decode()) if body else None

    def device_grant_by_user_code(self, user_code: str) -> DeviceGrant | None:
        code_hash = self._redis.get(self._key("uc", user_code))
        return self.device_grant(code_hash.decode()) if code_hash else None

    def swap_device_grant(self, updated: DeviceGrant) -> bool:
        return bool(self._swap(keys=[self._key("dg", updated.device_code_hash)],
                               args=[updated.version - 1, grant_to_json(updated)]))

    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        now = self._clock()
        refresh_key = self._key("rt", refresh.token_hash if refresh else "none")
        replay_key = self._key("replay", replay.key if replay else "none")
        return bool(self._redeem(
            keys=[self._key("dg", updated.device_code_hash), refresh_key, replay_key,
                  self._logins_key(refresh.subject if refresh else "")],
            args=[updated.version - 1, grant_to_json(updated),
                  refresh_to_json(refresh) if refresh else "",
                  _ttl(refresh.expires_at, now) if refresh else 1,
                  replay_to_json(replay) if replay else "",
                  _ttl(replay.expires_at, now) if replay else 1,
                  *self._login_args(refresh)],
        ))

    def replay(self, key: str) -> Replay | None:
        body = self._redis.get(self._key("replay", key))
        return replay_from_json(body.decode()) if body else None

    # -- refresh tokens ----------------------------------------------------------------------------

    def add_refresh_token(self, record: RefreshRecord) -> None:
        ttl = _ttl(record.expires_at, self._clock())
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(self._key("rt", record.token_hash), refresh_to_json(record), ex=ttl)
        pipe.hset(self._logins_key(record.subject), *self._login_args(record))
        pipe.expire(self._logins_key(record.subject), ttl, nx=True)  # a new hash has no TTL
        pipe.expire(self._logins_key(record.subject), ttl, gt=True)
        pipe.execute()

    # -- a subject's logins (keyturn serve admin) --------------------------------------------------

    def _logins_key(self, subject: str) -> str:
        return self._key("logins", quote(subject, safe=""))  # a subject may hold ":"

    @staticmethod
    def _login_args(newest: RefreshRecord | None) -> list[str]:
        if newest is None:
            return ["", ""]
        return [newest.family_id, login_to_json(Login.of(newest, newest.created_at))]

    def logins(self, subject: str, now: float) -> list[Login]:
        key = self._logins_key(subject)
        live, gone = [], []
        for family, body in self._redis.hgetall(key).items():
            login = login_from_json(body.decode())
            if login.expires_at <= now or self.family_revoked(login.family_id):
                gone.append(family)
            else:
                live.append(login)
        if gone:  # ended logins leave the hash here (it has no TTL per field)
            self._redis.hdel(key, *gone)
        # A server from before this index wrote refresh tokens into no hash: one SCAN of them
        # finds those logins too (an operator's command, on no request's path; SCAN does not
        # block Redis). A login in both is shown by its newest token.
        found = {login.family_id: login for login in
                 live_logins(self._refresh_tokens_of(subject), now, self.family_revoked)}
        for login in live:
            held = found.get(login.family_id)
            if held is None or login.last_used_at > held.last_used_at:
                found[login.family_id] = login
        return newest_first(found.values())

    def _refresh_tokens_of(self, subject: str) -> list[RefreshRecord]:
        # SCAN's MATCH is a glob: the glob characters of the prefix are escaped.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._key("rt")) + ":*"
        records: list[RefreshRecord] = []
        batch: list[bytes] = []
        for name in [*self._redis.scan_iter(match=pattern, count=1000), None]:
            if name is not None:
                batch.append(name)
            if batch and (name is None or len(batch) == 500):
                for body in self._redis.mget(batch):
                    record = refresh_from_json(body.decode()) if body else None
                    if record is not None and record.subject == subject:
                        records.append(record)
                batch = []
        return records

    def refresh_token(self, token_hash: str) -> RefreshRecord | None:
        body, used = self._redis.mget([self._key("rt", token_hash), self._key("rtu", token_hash)])
        if not body:
            return None
        record = refresh_from_json(body.decode())
        return replace(record, used_at=float(used)) if used else record

    def use_refresh_token(self, token_hash: str, now: float) -> bool:
        record = self.refresh_token(token_hash)
        ttl = _ttl(record.expires_at, now) if record else 60
        return bool(self._redis.set(self._key("rtu", token_hash), repr(now), nx=True, ex=ttl))

    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        # The used mark lives as long as the new token could: a reuse is recognised until then.
        return bool(self._rotate(
            keys=[self._key("rt", token_hash), self._key("rtu", token_hash),
                  self._key("rt", successor.token_hash), self._key("replay", replay.key),
                  self._logins_key(successor.subject)],
            args=[repr(now), _ttl(successor.expires_at, now), refresh_to_json(successor),
                  _ttl(successor.expires_at, now), replay_to_json(replay),
                  _ttl(replay.expires_at, now), *self._login_args(successor)],
        ))

    def revoke_family(self, family_id: str, until: float) -> None:
        self._redis.set(self._key("family", family_id), "1", ex=_ttl(until, self._clock()))

    def family_revoked(self, family_id: str) -> bool:
        return bool(self._redis.exists(self._key("family", family_id)))

    def revoke_jti(self, jti: str, until: float) -> None:
        self._redis.set(self._key("jti", jti), "1", ex=_ttl(until, self._clock()))

    def jti_revoked(self, jti: str) -> bool:
        return bool(self._redis.exists(self._key("jti", jti)))

    # -- counters and settings ---------------------------------------------------------------------

    def hit(self, key: str, window: int, now: float, amount: int = 1) -> int:
        window_end = (math.floor(now / window) + 1) * window
        counter = self._key("ctr", key, str(window_end))
        if amount == 0:
            value = self._redis.get(counter)
            return int(value) if value else 0
        return int(self._hit(keys=[counter], args=[amount, _ttl(window_end, now)]))

    def setting(self, name: str, make: Callable[[], str]) -> str:
        key = self._key("setting", name)
        value = self._redis.get(key)
        if value is None:
            self._redis.set(key, make(), nx=True)
            value = self._redis.get(key)
        return str(value.decode())

    def replace_setting(self, name: str, expected: str, value: str) -> bool:
        return bool(self._replace(keys=[self._key("setting", name)], args=[expected, value]))

    # -- values taken once ------------------------------------------------------------------------

    def put_once(self, key: str, value: str, now: float, expires_at: float) -> bool:
        return bool(self._redis.set(self._key("once", key), value, nx=True,
                                    ex=_ttl(expires_at, now)))

    def take_once(self, key: str, now: float) -> str | None:
        # GETDEL is one command: of several replicas taking one key, one gets it (Redis 6.2).
        value = self._redis.getdel(self._key("once", key))
        return value.decode() if value else None

    def peek_once(self, key: str, now: float) -> str | None:
        value = self._redis.get(self._key("once", key))
        return value.decode() if value else None

    def purge(self, now: float) -> None:
        """Nothing to do: every key has a TTL."""

    def ping(self) -> None:
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()
