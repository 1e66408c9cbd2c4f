"""Signing keys at rest and their rotation (issue 12 §2): the keyring in the real SQLite file is
AES-GCM ciphertext when a key-encryption key is configured, a wrong or missing one stops the start
with one clear line, and ``rotate-keys`` makes a new key sign while tokens of the old one stay
valid for the keyturn client, until the old key is dropped once they have all expired."""

from __future__ import annotations

import base64
import json
import os
import pickle
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from joserfc import jwk

from keyturn import DeviceCode, MemoryStore
from keyturn.cli import serve as serve_cli
from keyturn.errors import ConfigError
from keyturn.protocol.idtoken import KeySetCache, validate_id_token_flow
from keyturn.protocol.metadata import discover
from keyturn.server import keys as keys_module
from keyturn.server.config import load_config
from keyturn.server.keys import (
    REFRESH_SECONDS,
    SEALED_PREFIX,
    UNKNOWN_KID_REFRESH_SECONDS,
    KeyEncryptionKey,
    KeyPolicy,
    Keyring,
    KeyStore,
)
from keyturn.server.passwords import hash_password
from keyturn.server.runner import DATABASE_NAME, ServerThread
from keyturn.server.storage.sqlite import SQLiteStorage
from keyturn.transport import run
from tests.support.serverkit import page_approve

KEK_ENV = "KT_TEST_SIGNING_KEK"
BOB_PW = "bob-keys-pw"
RS_SECRET = "rs-keys-secret-1234"


def new_kek() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def write_config(path: Path, *, kek_env: str | None = KEK_ENV, extra: str = "") -> Path:
    kek_line = f'signing_key_secret_env = "{kek_env}"\n' if kek_env else ""
    path.write_text(f"""{kek_line}{extra}
[lifetimes]
interval = 1

[clients.cli]
name = "Cluster CLI"
grants = ["device_code", "refresh_token"]
scopes = ["openid", "profile", "offline_access"]

[clients.rs]
name = "Resource server"
grants = ["client_credentials"]
scopes = ["introspect"]
secret_hash = "{hash_password(RS_SECRET, n=2**12)}"

[users.bob]
password_hash = "{hash_password(BOB_PW, n=2**12)}"
name = "Bob"
""")
    path.chmod(0o600)
    return path


def stored_keyring(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / DATABASE_NAME) as db:
        row = db.execute("SELECT value FROM settings WHERE name = 'signing_key'").fetchone()
    assert row is not None
    return str(row[0])


@contextmanager
def server_process(config: Path, data_dir: Path, env: dict[str, str], port: int = 0
                   ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
         "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env})
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        yield issuer, process
    finally:
        process.terminate()
        process.wait(timeout=15)


def start(config: Path, data_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A server start expected to fail before it listens."""
    return subprocess.run(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config), "--data-dir",
         str(data_dir)], capture_output=True, text=True, timeout=60,
        env={**os.environ, **env})


def login(issuer: str) -> DeviceCode:
    return DeviceCode(issuer=issuer, client_id="cli", store=MemoryStore(), scope="openid profile",
                      prompt=lambda v: page_approve(issuer, v.user_code, username="bob",
                                                    password=BOB_PW))


def header_kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def validate(issuer: str, id_token: str, cache: KeySetCache) -> dict:
    with httpx.Client(timeout=10) as client:
        metadata = run(discover(issuer, allow_http=True), client)
        return run(validate_id_token_flow(id_token, metadata=metadata, client_id="cli",
                                          now=time.time(), keys=cache), client)


# -- encrypted at rest -------------------------------------------------------------------------


def test_stored_keyring_is_ciphertext_with_a_kek(tmp_path):
    kek = new_kek()
    config, data = write_config(tmp_path / "server.toml"), tmp_path / "data"
    with server_process(config, data, {KEK_ENV: kek}) as (issuer, _):
        token = login(issuer).get_token()
        assert token.claims["sub"] == "bob"  # the client validated the id_token with the JWKS
        published = httpx.get(f"{issuer}/jwks").json()["keys"]
    stored = stored_keyring(data)
    assert stored.startswith(SEALED_PREFIX)
    # Nothing of the private key, nor of the key's public half, is readable in the row.
    assert '"d"' not in stored and published[0]["n"] not in stored and "kty" not in stored
    assert kek not in stored


def test_without_a_kek_the_keyring_is_plain_json(tmp_path):
    """As before: the private key is protected by the database's 0600 mode only (docs say so)."""
    config, data = write_config(tmp_path / "server.toml", kek_env=None), tmp_path / "data"
    with server_process(config, data, {}) as (issuer, _):
        assert httpx.get(f"{issuer}/jwks").status_code == 200
    stored = json.loads(stored_keyring(data))
    assert "d" in stored["keys"][0]["jwk"]
    assert (data / DATABASE_NAME).stat().st_mode & 0o077 == 0


def test_start_with_a_wrong_or_missing_kek_fails_clearly(tmp_path):
    data = tmp_path / "data"
    right, wrong = new_kek(), new_kek()
    KeyStore(SQLiteStorage(data / DATABASE_NAME),
             KeyPolicy(kek=KeyEncryptionKey(base64.b64decode(right), KEK_ENV))).load(time.time())
    config = write_config(tmp_path / "server.toml")

    result = start(config, data, {KEK_ENV: wrong})
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"do not decrypt with the key in {KEK_ENV}" in result.stderr
    assert wrong not in result.stderr and right not in result.stderr

    unset = {k: v for k, v in os.environ.items() if k != KEK_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config), "--data-dir",
         str(data)], capture_output=True, text=True, timeout=60, env=unset)
    assert result.returncode == 3 and f"names {KEK_ENV}, which is not set" in result.stderr

    result = start(config, data, {KEK_ENV: "not-a-key"})
    assert result.returncode == 3 and "256-bit key in base64" in result.stderr
    assert "not-a-key" not in result.stderr

    result = start(write_config(tmp_path / "nokek.toml", kek_env=None), data, {})
    assert result.returncode == 3 and "are encrypted: set signing_key_secret_env" in result.stderr
    assert stored_keyring(data).startswith(SEALED_PREFIX)  # nothing was overwritten


def test_a_plain_keyring_is_sealed_and_rotated_once_a_kek_is_configured(tmp_path, caplog):
    """A site that adds signing_key_secret_env loses the plaintext: the key as keyturn stored it
    before (a bare JWK) is sealed at the next start, and a new key signs, since whoever copied the
    plaintext holds the old one; the old key stays published (its tokens stay valid) until they
    have expired. One log line says so."""
    storage = SQLiteStorage(tmp_path / DATABASE_NAME)
    legacy = jwk.RSAKey.generate_key(2048, private=True)
    storage.setting("signing_key", lambda: json.dumps(legacy.as_dict(private=True)))
    kek = KeyEncryptionKey(secrets.token_bytes(32), KEK_ENV)
    with caplog.at_level("WARNING", logger="keyturn.server.keys"):
        ring = Keyring(KeyStore(storage, KeyPolicy(kek=kek, retention=600)))
    assert ring.current.kid != legacy.thumbprint()
    held = ring.keys()
    assert [key.kid for key in held][1:] == [legacy.thumbprint()]
    assert held[1].drop_at is not None
    said = [r.getMessage() for r in caplog.records if "plaintext" in r.getMessage()]
    assert len(said) == 1 and legacy.thumbprint() in said[0] and KEK_ENV in said[0]
    sealed = storage.setting("signing_key", lambda: "unused")
    assert sealed.startswith(SEALED_PREFIX) and legacy.as_dict(private=True)["d"] not in sealed
    reread = KeyStore(storage, KeyPolicy(kek=kek)).load(time.time())
    assert [key.kid for key in reread] == [ring.current.kid, legacy.thumbprint()]
    # Sealed now: the next start neither rotates again nor says it again.
    caplog.clear()
    with caplog.at_level("WARNING", logger="keyturn.server.keys"):
        again = Keyring(KeyStore(storage, KeyPolicy(kek=kek, retention=600)))
    assert again.current.kid == ring.current.kid
    assert not [r for r in caplog.records if "plaintext" in r.getMessage()]


def test_repr_and_errors_hold_no_key_material(tmp_path):
    raw = secrets.token_bytes(32)
    kek = KeyEncryptionKey(raw, KEK_ENV)
    storage = SQLiteStorage(tmp_path / DATABASE_NAME)
    ring = Keyring(KeyStore(storage, KeyPolicy(kek=kek)))
    shown = repr(kek) + repr(ring) + repr(ring.current)
    assert base64.b64encode(raw).decode() not in shown
    assert str(ring.current.key.as_dict(private=True)["d"]) not in shown
    with pytest.raises(TypeError):
        pickle.dumps(kek)


# -- rotation ----------------------------------------------------------------------------------


def test_rotate_keys_keeps_old_tokens_valid_and_new_ones_use_the_new_key(tmp_path):
    kek = new_kek()
    config, data = write_config(tmp_path / "server.toml"), tmp_path / "data"
    with server_process(config, data, {KEK_ENV: kek}) as (issuer, _):
        cache = KeySetCache()  # one client's cache, across the rotation
        before = login(issuer).get_token()
        old_kid = header_kid(before.id_token)
        assert header_kid(before.access_token) == old_kid
        assert validate(issuer, before.id_token, cache)["sub"] == "bob"

        result = CliRunner().invoke(serve_cli.command, [
            "rotate-keys", "--config", str(config), "--data-dir", str(data)],
            env={KEK_ENV: kek})
        assert result.exit_code == 0, result.output
        new_kid = result.output.splitlines()[0].rsplit(" ", 1)[1]
        assert new_kid != old_kid and f"retired key {old_kid}" in result.output
        port = int(issuer.rsplit(":", 1)[1])
    # A running server picks the new key up at its next read of the ring (REFRESH_SECONDS,
    # test_a_replica_signs_with_a_rotated_key_after_its_next_read); a restarted one at once.
    with server_process(config, data, {KEK_ENV: kek}, port=port) as (issuer, _):
        kids = [key["kid"] for key in httpx.get(f"{issuer}/jwks").json()["keys"]]
        assert kids == [new_kid, old_kid]
        after = login(issuer).get_token()
        assert after.claims["sub"] == "bob"
        assert header_kid(after.id_token) == new_kid == header_kid(after.access_token)
        # The client cached only the old key: the unknown kid makes it fetch the JWKS again.
        assert validate(issuer, after.id_token, cache)["sub"] == "bob"
        assert validate(issuer, before.id_token, KeySetCache())["sub"] == "bob"
        # The server itself (introspection for resource servers) accepts both access tokens.
        for token in (before, after):
            introspected = httpx.post(f"{issuer}/introspect", data={"token": token.access_token},
                                      auth=("rs", RS_SECRET))
            assert introspected.json()["active"] is True, introspected.text
    assert stored_keyring(data).startswith(SEALED_PREFIX)


def test_a_retired_key_is_dropped_once_its_tokens_have_expired(tmp_path):
    storage = SQLiteStorage(tmp_path / DATABASE_NAME)
    store = KeyStore(storage, KeyPolicy(retention=600))
    t0 = 1_000_000.0
    first = store.load(t0)[0]
    ring = store.rotate(now=t0 + 10)
    assert [key.kid for key in ring][1] == first.kid and ring[1].retired_at == t0 + 10
    keep_until = t0 + 10 + 600 + REFRESH_SECONDS
    assert [key.kid for key in store.maintain(now=keep_until - 1)] == [ring[0].kid, first.kid]
    assert [key.kid for key in store.maintain(now=keep_until + 1)] == [ring[0].kid]
    assert first.kid not in storage.setting("signing_key", lambda: "unused")


def test_scheduled_rotation(tmp_path):
    storage = SQLiteStorage(tmp_path / DATABASE_NAME)
    store = KeyStore(storage, KeyPolicy(rotate_every=3600, retention=600))
    t0 = 2_000_000.0
    first = store.load(t0)[0]
    assert [key.kid for key in store.maintain(now=t0 + 3599)] == [first.kid]
    rotated = store.maintain(now=t0 + 3600)
    assert rotated[0].kid != first.kid and rotated[1].kid == first.kid
    # A second replica checking the schedule at the same moment finds it done: no third key.
    assert [key.kid for key in store.maintain(now=t0 + 3600)] == [key.kid for key in rotated]


def test_a_replica_signs_with_a_rotated_key_after_its_next_read(tmp_path):
    storage = SQLiteStorage(tmp_path / DATABASE_NAME)
    clock = [3_000_000.0]
    ring = Keyring(KeyStore(storage, KeyPolicy()), clock=lambda: clock[0])
    old = ring.current.kid
    new = KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()).rotate(clock[0])[0].kid
    clock[0] += REFRESH_SECONDS - 1
    assert ring.current.kid == old
    clock[0] += 1
    assert ring.current.kid == new
    assert {key.kid for key in ring.verification_keys().keys} == {old, new}


@pytest.mark.parametrize(("text", "seconds"), [('"30d"', 30 * 86400), ('"12h"', 43200),
                                               ('"90m"', 5400), ("3600", 3600)])
def test_rotate_keys_every_in_the_configuration(tmp_path, text, seconds):
    config = write_config(tmp_path / "s.toml", extra=f"rotate_keys_every = {text}\n")
    assert load_config(config).rotate_keys_every == seconds


def test_a_bad_schedule_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="rotate_keys_every must be a duration"):
        load_config(write_config(tmp_path / "s.toml", extra='rotate_keys_every = "30x"\n'))


def test_a_server_rotates_a_key_older_than_the_schedule_at_start(tmp_path):
    """rotate_keys_every is checked at start: a keyring made two hours ago, a schedule of one
    hour, and the server signs with a new key while the old one stays published."""
    kek = new_kek()
    data = tmp_path / "data"
    store = KeyStore(SQLiteStorage(data / DATABASE_NAME),
                     KeyPolicy(kek=KeyEncryptionKey(base64.b64decode(kek), KEK_ENV)))
    old = store.load(time.time() - 7200)[0].kid
    config = write_config(tmp_path / "server.toml", extra='rotate_keys_every = "1h"\n')
    with server_process(config, data, {KEK_ENV: kek}) as (issuer, _):
        kids = [key["kid"] for key in httpx.get(f"{issuer}/jwks").json()["keys"]]
        assert len(kids) == 2 and kids[1] == old
        token = login(issuer).get_token()
        assert header_kid(token.id_token) == kids[0] and token.claims["sub"] == "bob"


# -- /jwks off the event loop, cached; an unknown kid re-reads the ring ---------------------------


class SignalledSQLite(SQLiteStorage):
    """The real SQLite storage, telling the test when the keyring's write has begun (so the test
    knows /jwks is waiting on the lock)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = threading.Event()

    def replace_setting(self, name: str, expected: str, value: str) -> bool:
        self.writing.set()
        return super().replace_setting(name, expected, value)


def test_jwks_waiting_on_a_locked_database_does_not_stall_other_requests(tmp_path, monkeypatch):
    """A /jwks whose re-read of the ring must write (here a scheduled rotation is due) waits on
    a SQLite file another connection holds with BEGIN IMMEDIATE; meanwhile discovery answers."""
    monkeypatch.setattr(keys_module, "REFRESH_SECONDS", 0.0)  # every request re-reads the ring
    storage = SignalledSQLite(tmp_path / DATABASE_NAME)
    config = load_config(write_config(tmp_path / "s.toml", kek_env=None,
                                      extra='rotate_keys_every = "1h"\n'))
    with ServerThread(config, storage=storage) as running:
        # A key made two hours ago signs: the next read of the ring rotates, which writes.
        KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()).rotate(time.time() - 7200)
        holder = sqlite3.connect(tmp_path / DATABASE_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        answers: list[httpx.Response] = []
        waiting = threading.Thread(
            target=lambda: answers.append(httpx.get(f"{running.issuer}/jwks", timeout=60)))
        try:
            waiting.start()
            assert storage.writing.wait(20), "/jwks never reached the keyring's write"
            metadata = httpx.get(f"{running.issuer}/.well-known/openid-configuration", timeout=10)
            assert metadata.status_code == 200 and not answers  # /jwks still waits on the lock
        finally:
            holder.execute("ROLLBACK")
            holder.close()
            waiting.join(60)
        assert answers[0].status_code == 200 and len(answers[0].json()["keys"]) == 2


def test_jwks_is_not_re_read_per_request(tmp_path):
    """The JWKS is rebuilt when the ring is re-read (every REFRESH_SECONDS), not for each GET:
    a key rotated in by another process is not published by the very next request."""
    config = load_config(write_config(tmp_path / "s.toml", kek_env=None))
    with ServerThread(config, data_dir=tmp_path) as running:
        first = httpx.get(f"{running.issuer}/jwks").json()["keys"]
        KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()).rotate()
        assert httpx.get(f"{running.issuer}/jwks").json()["keys"] == first


def test_a_token_signed_with_a_key_another_replica_rotated_in_is_valid_at_once(tmp_path):
    """Replicas A and B share one SQLite file and one issuer. B read the ring before the
    rotation; A started after it and signs with the new key. B re-reads the ring for the unknown
    kid instead of refusing A's token at /introspect."""
    config = load_config(write_config(tmp_path / "s.toml", kek_env=None))
    with ServerThread(config, data_dir=tmp_path) as b:
        old = [key["kid"] for key in httpx.get(f"{b.issuer}/jwks").json()["keys"]]
        new = KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()).rotate()[0].kid
        with ServerThread(replace(config, issuer=b.issuer), data_dir=tmp_path) as a:
            a_url = f"http://127.0.0.1:{a.port}"
            issued = httpx.post(f"{a_url}/token", data={"grant_type": "client_credentials",
                                                        "scope": "introspect"},
                                auth=("rs", RS_SECRET))
            assert issued.status_code == 200, issued.text
            token = issued.json()["access_token"]
        assert header_kid(token) == new and new not in old
        introspected = httpx.post(f"{b.issuer}/introspect", data={"token": token},
                                  auth=("rs", RS_SECRET))
        assert introspected.json()["active"] is True, introspected.text
        assert introspected.json()["client_id"] == "rs"


def test_an_unknown_kid_re_reads_the_ring_at_most_once_a_second(tmp_path):
    """Tokens with made-up kids cannot turn every request into a storage read."""
    clock = [4_000_000.0]
    ring = Keyring(KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()),
                   clock=lambda: clock[0])
    assert not ring.knows("made-up")  # this one re-read the ring
    new = KeyStore(SQLiteStorage(tmp_path / DATABASE_NAME), KeyPolicy()).rotate(clock[0])[0].kid
    assert not ring.knows(new)  # within the second: no read, the new key is not seen yet
    clock[0] += UNKNOWN_KID_REFRESH_SECONDS
    assert ring.knows(new) and ring.current.kid == new
