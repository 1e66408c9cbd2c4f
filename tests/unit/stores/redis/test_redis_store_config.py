"""RedisStore without a server: configuration, record lifetimes, secrets, lazy import of redis-py.
(The store against a real redis-server: tests/integration/test_redis_store.py.)"""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from keyturn import ConfigError, RedisStore, Token
from keyturn.secret import Secret
from keyturn.stores.redis.store import _url_secrets

NOW = 1_800_000_000.0
DAY = 86400.0


def test_repr_and_errors_show_the_url_without_credentials() -> None:
    store = RedisStore("redis://user:s3cr%40t@cache.example:6380/2?password=also-secret")
    assert repr(store) == "RedisStore('redis://cache.example:6380/2', prefix='keyturn')"
    assert store.url == "redis://cache.example:6380/2"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(store)
    # Kept as Secrets: the store's repr and the locals of its frames show only tags.
    assert [s.reveal() for s in _url_secrets(Secret("redis://user:s3cr%40t@h/0?password=also-secret"))
            ] == ["also-secret", "s3cr%40t", "s3cr@t", "user"]
    assert _url_secrets(Secret("redis://h:6379")) == ()


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fallback": "file"}, "fallback"),
    ({"lease": 0}, "lease"),
    ({"idle_ttl": -1}, "idle_ttl"),
])
def test_bad_settings_are_config_errors(kwargs, match) -> None:
    with pytest.raises(ConfigError, match=match):
        RedisStore("redis://127.0.0.1:6379/0", **kwargs)


def test_a_url_that_is_not_redis_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a Redis URL"):
        RedisStore("http://user:pw@127.0.0.1:6379/0")


def test_record_lifetimes() -> None:
    store = RedisStore("redis://127.0.0.1:6379/0", retention=600, idle_ttl=90 * DAY)
    access = Token(access_token="a", expires_at=NOW + 300, issued_at=NOW)
    assert store.ttl(access, NOW) == 900
    assert store.ttl(Token(access_token="a", expires_at=NOW - 50), NOW) == 600
    assert store.ttl(Token(access_token="a"), NOW) == 90 * DAY  # never expires
    # A refresh token keeps the record until it could no longer be used.
    assert store.ttl(access.with_refresh_token("r"), NOW) == 90 * DAY
    known = Token(access_token="a", expires_at=NOW + 300, refresh_token="r",
                  refresh_expires_at=NOW + 7 * DAY)
    assert store.ttl(known, NOW) == 7 * DAY + 600
    # ... and never before its access token, should a server say otherwise.
    odd = Token(access_token="a", expires_at=NOW + 900, refresh_token="r",
                refresh_expires_at=NOW + 100)
    assert store.ttl(odd, NOW) == 1500
    # A refresh_expires_at without a refresh token (it was dropped) does not count.
    dropped = Token(access_token="a", expires_at=NOW + 10, refresh_expires_at=NOW + 7 * DAY)
    assert store.ttl(dropped, NOW) == 610


def test_keys_of_one_token_share_a_cluster_hash_tag() -> None:
    lock, record = RedisStore("redis://127.0.0.1:6379/0", prefix="fleet")._names("keyturn:v1:abc")
    assert lock.startswith("fleet:{") and record.startswith("fleet:{")
    assert lock.split("}")[0] == record.split("}")[0]
    assert lock.endswith(":lock") and record.endswith(":token")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          check=False)


def test_importing_keyturn_and_its_stores_does_not_import_redis() -> None:
    done = _python("import sys, keyturn, keyturn.stores; keyturn.RedisStore; "
                   "print('redis' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_the_redis_package_the_error_says_what_to_install() -> None:
    done = _python("import sys; sys.modules['redis'] = None\n"
                   "from keyturn import RedisStore, ConfigError\n"
                   "try:\n    RedisStore('redis://127.0.0.1:6379/0')\n"
                   "except ConfigError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr
    assert "pip install 'keyturn[redis]'" in done.stdout
