"""Refresh-token rotation and device-code redemption are one atomic storage step, and an identical
refresh retried within the grace gets the same answer (issue 12 §2, "Rotation and redemption are
not atomic").

The real server over HTTP on 127.0.0.1, on a real SQLite file and on the real redis-server. The
faults are injected by subclasses of the real backends (the only stand-in): one step of the
redemption raises :class:`StoreError` once, either inside the atomic step (SQLite: after the old
token was marked used, before the new one is stored, inside the transaction; Redis: the script
call itself, which either runs whole or not at all) or just after it committed (the answer is
lost on its way to the client).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from keyturn.errors import StoreError
from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from keyturn.server.config import Lifetimes
from keyturn.server.device_flow import DeviceGrant, hash_code
from keyturn.server.replay import Sealer
from keyturn.server.runner import ServerThread
from keyturn.server.storage.base import RefreshRecord, Replay, ServerStorage
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.storage.redis import RedisStorage
from keyturn.server.storage.sqlite import SQLiteStorage
from tests.support.serverkit import RS_SECRET, basic, make_config, page_approve, poll, start_device

#: The grace of the servers that show a reuse after it (long enough to be sure the retry is
#: within it for the others).
SHORT_GRACE = 1
LONG_GRACE = 60
#: Identical refreshes sent at once.
RACERS = 4

#: The steps a test can make fail once.
STORE_NEW_TOKEN = "store the new refresh token"
AFTER_COMMIT = "after the redemption committed"


@dataclass
class Faults:
    armed: set[str] = field(default_factory=set)
    tripped: list[str] = field(default_factory=list)

    def trip(self, step: str) -> None:
        if step in self.armed:
            self.armed.discard(step)
            self.tripped.append(step)
            raise StoreError(f"injected fault: {step}")


class FaultySQLite(SQLiteStorage):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.faults = Faults()

    def add_refresh_token(self, record: RefreshRecord) -> None:  # the step before issue 12.2
        self.faults.trip(STORE_NEW_TOKEN)
        super().add_refresh_token(record)

    def _insert_refresh(self, db: sqlite3.Connection, record: RefreshRecord) -> None:  # type: ignore[override]
        # Inside BEGIN IMMEDIATE, after the old token was marked used (or the grant consumed).
        self.faults.trip(STORE_NEW_TOKEN)
        SQLiteStorage._insert_refresh(db, record)

    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        done = super().rotate_refresh_token(token_hash, now, successor, replay)
        self.faults.trip(AFTER_COMMIT)
        return done

    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        done = super().redeem_device_grant(updated, refresh, replay)
        self.faults.trip(AFTER_COMMIT)
        return done


class FaultyRedis(RedisStorage):
    def __init__(self, url: str) -> None:
        super().__init__(url, prefix=f"kt-{uuid.uuid4().hex[:8]}")
        self.faults = Faults()

    def add_refresh_token(self, record: RefreshRecord) -> None:  # the step before issue 12.2
        self.faults.trip(STORE_NEW_TOKEN)
        super().add_refresh_token(record)

    def rotate_refresh_token(self, token_hash: str, now: float, successor: RefreshRecord,
                             replay: Replay) -> bool:
        self.faults.trip(STORE_NEW_TOKEN)  # the script does not run (a script runs whole or not)
        done = super().rotate_refresh_token(token_hash, now, successor, replay)
        self.faults.trip(AFTER_COMMIT)
        return done

    def redeem_device_grant(self, updated: DeviceGrant, refresh: RefreshRecord | None,
                            replay: Replay | None = None) -> bool:
        self.faults.trip(STORE_NEW_TOKEN)
        done = super().redeem_device_grant(updated, refresh, replay)
        self.faults.trip(AFTER_COMMIT)
        return done


@dataclass
class Site:
    server: ServerThread
    storage: FaultySQLite | FaultyRedis

    @property
    def issuer(self) -> str:
        return self.server.issuer

    @property
    def faults(self) -> Faults:
        return self.storage.faults


def _start(kind: str, grace: int, request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    storage: FaultySQLite | FaultyRedis
    if kind == "redis":
        storage = FaultyRedis(request.getfixturevalue("redis_server").url)
    else:
        storage = FaultySQLite(tmp_path / "server.db")
    config = make_config(lifetimes=Lifetimes(interval=1, retry_grace=grace))
    return Site(ServerThread(config, storage=storage), storage)


@pytest.fixture(params=["sqlite", "redis"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    running = _start(request.param, LONG_GRACE, request, tmp_path)
    yield running
    running.server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def short_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    running = _start(request.param, SHORT_GRACE, request, tmp_path)
    yield running
    running.server.stop()


# -- HTTP helpers ----------------------------------------------------------------------------------


def login(issuer: str) -> dict[str, Any]:
    started = start_device(issuer, scope="openid offline_access")
    assert page_approve(issuer, started["user_code"]).status_code == 200
    response = poll(issuer, started["device_code"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def refresh(issuer: str, token: str, **form: str) -> httpx.Response:
    return httpx.post(f"{issuer}/token", data={"grant_type": GRANT_REFRESH_TOKEN,
                                               "refresh_token": token, "client_id": "demo", **form})


def active(issuer: str, token: str) -> bool:
    response = httpx.post(f"{issuer}/introspect", data={"token": token},
                          headers=basic("rs", RS_SECRET))
    assert response.status_code == 200
    return bool(response.json()["active"])


def refused_as_used(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


# -- refresh-token rotation -------------------------------------------------------------------------


def test_a_fault_inside_the_rotation_leaves_the_old_token_working(site: Site) -> None:
    tokens = login(site.issuer)
    site.faults.armed.add(STORE_NEW_TOKEN)
    failed = refresh(site.issuer, tokens["refresh_token"])
    assert failed.status_code >= 500 and site.faults.tripped == [STORE_NEW_TOKEN]
    # Nothing was half done: the old token was not spent, and the login was not revoked.
    assert active(site.issuer, tokens["refresh_token"])
    retried = refresh(site.issuer, tokens["refresh_token"])
    assert retried.status_code == 200, retried.text
    rotated = retried.json()
    assert active(site.issuer, tokens["access_token"]) and active(site.issuer, rotated["access_token"])
    assert refresh(site.issuer, rotated["refresh_token"]).status_code == 200


def test_an_answer_lost_after_the_rotation_is_given_again_on_the_retry(site: Site) -> None:
    tokens = login(site.issuer)
    site.faults.armed.add(AFTER_COMMIT)
    assert refresh(site.issuer, tokens["refresh_token"]).status_code >= 500
    assert site.faults.tripped == [AFTER_COMMIT]
    retried = refresh(site.issuer, tokens["refresh_token"])
    assert retried.status_code == 200, retried.text
    again = refresh(site.issuer, tokens["refresh_token"])
    # The one answer the rotation stored, each time; no second set of tokens was made.
    assert again.json() == retried.json()
    assert active(site.issuer, tokens["access_token"])
    assert refresh(site.issuer, retried.json()["refresh_token"]).status_code == 200


def test_the_identical_retry_within_the_grace_gets_the_identical_answer(site: Site) -> None:
    tokens = login(site.issuer)
    first = refresh(site.issuer, tokens["refresh_token"])
    assert first.status_code == 200
    retried = refresh(site.issuer, tokens["refresh_token"])
    assert retried.status_code == 200 and retried.json() == first.json()
    assert retried.headers["cache-control"] == "no-store"
    assert active(site.issuer, first.json()["access_token"])
    assert active(site.issuer, first.json()["refresh_token"])


def test_identical_refreshes_at_once_all_get_the_one_answer(site: Site) -> None:
    tokens = login(site.issuer)
    barrier = threading.Barrier(RACERS)

    def race() -> httpx.Response:
        barrier.wait(timeout=30)
        return refresh(site.issuer, tokens["refresh_token"])

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(lambda _: race(), range(RACERS)))
    # One rotation won; the others, racing it, were given its answer rather than a revocation.
    assert [a.status_code for a in answers] == [200] * RACERS
    assert all(a.json() == answers[0].json() for a in answers)
    assert active(site.issuer, answers[0].json()["access_token"])


def test_a_retry_after_the_client_moved_on_revokes_the_family(site: Site) -> None:
    tokens = login(site.issuer)
    first = refresh(site.issuer, tokens["refresh_token"]).json()
    second = refresh(site.issuer, first["refresh_token"]).json()
    # The new token was used: whoever sends the old one now is not the client that lost an answer.
    assert refused_as_used(refresh(site.issuer, tokens["refresh_token"]))
    assert not active(site.issuer, second["access_token"])
    assert refused_as_used(refresh(site.issuer, second["refresh_token"]))


def test_a_different_request_with_a_used_token_revokes_the_family(site: Site) -> None:
    tokens = login(site.issuer)
    first = refresh(site.issuer, tokens["refresh_token"]).json()
    # Not the identical request (another scope): a reuse, even within the grace.
    assert refused_as_used(refresh(site.issuer, tokens["refresh_token"], scope="openid"))
    assert not active(site.issuer, first["access_token"])
    assert refused_as_used(refresh(site.issuer, first["refresh_token"]))


def test_a_reuse_after_the_grace_revokes_the_family(short_site: Site) -> None:
    tokens = login(short_site.issuer)
    first = refresh(short_site.issuer, tokens["refresh_token"])
    assert first.status_code == 200
    time.sleep(SHORT_GRACE + 1.1)  # past the grace (whole seconds in Redis TTLs)
    reused = refresh(short_site.issuer, tokens["refresh_token"])
    assert refused_as_used(reused) and reused.json()["error_description"] == \
        "the refresh token was already used"
    assert not active(short_site.issuer, first.json()["access_token"])
    assert refused_as_used(refresh(short_site.issuer, first.json()["refresh_token"]))


def test_the_kept_answer_holds_no_readable_token(site: Site) -> None:
    tokens = login(site.issuer)
    answer = refresh(site.issuer, tokens["refresh_token"]).json()
    stored = _stored_replays(site)
    assert len(stored) == 2  # the login's (the device code's) and the rotation's
    for secret in (answer["access_token"], answer["refresh_token"], answer["id_token"],
                   tokens["refresh_token"], tokens["access_token"]):
        assert not [text for text in stored if secret in text]
    # Found by the hash only.
    assert [text for text in stored if f"rt:{hash_code(tokens['refresh_token'])}" in text]


def _stored_replays(site: Site) -> list[str]:
    if isinstance(site.storage, FaultySQLite):
        with sqlite3.connect(site.storage.path) as db:
            return [str(row[0]) for row in db.execute("SELECT key || body FROM replays")]
    redis = site.storage._redis
    keys = list(redis.scan_iter(match=f"{site.storage._prefix}:replay:*"))
    return [key.decode() + redis.get(key).decode() for key in keys]


# -- device-code redemption -------------------------------------------------------------------------


def test_a_fault_during_redemption_leaves_the_code_to_redeem_once(site: Site) -> None:
    started = start_device(site.issuer, scope="openid offline_access")
    assert page_approve(site.issuer, started["user_code"]).status_code == 200
    site.faults.armed.add(STORE_NEW_TOKEN)
    assert poll(site.issuer, started["device_code"]).status_code >= 500
    assert site.faults.tripped == [STORE_NEW_TOKEN]
    retried = poll(site.issuer, started["device_code"])
    assert retried.status_code == 200, retried.text
    tokens = retried.json()
    assert refresh(site.issuer, tokens["refresh_token"]).status_code == 200
    # Once: the code is spent now, and a second redemption ends the login.
    assert refused_as_used(poll(site.issuer, started["device_code"]))
    assert not active(site.issuer, tokens["access_token"])


def test_an_answer_lost_after_the_redemption_is_given_again_on_the_retry(site: Site) -> None:
    started = start_device(site.issuer, scope="openid offline_access")
    assert page_approve(site.issuer, started["user_code"]).status_code == 200
    site.faults.armed.add(AFTER_COMMIT)
    assert poll(site.issuer, started["device_code"]).status_code >= 500
    assert site.faults.tripped == [AFTER_COMMIT]
    retried = poll(site.issuer, started["device_code"])
    assert retried.status_code == 200, retried.text
    again = poll(site.issuer, started["device_code"])
    # The one answer the redemption stored, each time; the login was not revoked.
    assert again.status_code == 200 and again.json() == retried.json()
    tokens = retried.json()
    assert active(site.issuer, tokens["access_token"])
    assert refresh(site.issuer, tokens["refresh_token"]).status_code == 200
    # The client moved on (its refresh token was used): the code coming back is a reuse again.
    assert refused_as_used(poll(site.issuer, started["device_code"]))
    assert not active(site.issuer, tokens["access_token"])


def test_a_device_code_polled_again_after_the_grace_revokes_the_login(short_site: Site) -> None:
    started = start_device(short_site.issuer, scope="openid offline_access")
    assert page_approve(short_site.issuer, started["user_code"]).status_code == 200
    first = poll(short_site.issuer, started["device_code"])
    assert first.status_code == 200
    time.sleep(SHORT_GRACE + 1.1)  # past the grace (whole seconds in Redis TTLs)
    assert refused_as_used(poll(short_site.issuer, started["device_code"]))
    assert not active(short_site.issuer, first.json()["access_token"])


def test_the_kept_device_answer_holds_no_readable_token(site: Site) -> None:
    started = start_device(site.issuer, scope="openid offline_access")
    assert page_approve(site.issuer, started["user_code"]).status_code == 200
    answer = poll(site.issuer, started["device_code"]).json()
    stored = _stored_replays(site)
    assert len(stored) == 1
    for secret in (answer["access_token"], answer["refresh_token"], answer["id_token"],
                   started["device_code"]):
        assert secret not in stored[0]
    assert f"dc:{hash_code(started['device_code'])}" in stored[0]  # found by the hash only


# -- the storage operations themselves, on each backend ----------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "redis"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerStorage]:
    store: ServerStorage
    if request.param == "redis":
        store = RedisStorage(request.getfixturevalue("redis_server").url,
                             prefix=f"kt-{uuid.uuid4().hex[:8]}")
    elif request.param == "sqlite":
        store = SQLiteStorage(tmp_path / "server.db")
    else:
        store = MemoryStorage()
    yield store
    store.close()


def _record(token_hash: str, now: float) -> RefreshRecord:
    return RefreshRecord(token_hash=token_hash, family_id="fam", client_id="demo", subject="alice",
                         scope=("openid",), created_at=now, expires_at=now + 600)


def _replay(key: str, now: float) -> Replay:
    return Replay(key=key, fingerprint="f", expires_at=now + 30, sealed="x", family_id="fam",
                  successor_hash="new")


def test_a_rotation_happens_once_and_a_refused_one_writes_nothing(storage: ServerStorage) -> None:
    now = time.time()
    storage.add_refresh_token(_record("old", now))
    assert storage.rotate_refresh_token("old", now, _record("new", now), _replay("rt:old", now))
    held = storage.refresh_token("old")
    assert held is not None and held.used_at == now
    assert storage.refresh_token("new") is not None
    assert storage.replay("rt:old") == _replay("rt:old", now)
    # A second rotation of the spent token, and one of an unknown token: refused, nothing written.
    assert not storage.rotate_refresh_token("old", now, _record("other", now), _replay("rt:x", now))
    assert not storage.rotate_refresh_token("nope", now, _record("other", now),
                                            _replay("rt:y", now))
    assert storage.refresh_token("other") is None
    assert storage.replay("rt:x") is None and storage.replay("rt:y") is None


def test_a_redemption_that_loses_the_race_writes_nothing(storage: ServerStorage) -> None:
    now = time.time()
    grant = DeviceGrant(device_code_hash="dc", user_code="BCDFGHJK", client_id="demo",
                        scope=("openid",), created_at=now, expires_at=now + 600, interval=1)
    assert storage.create_device_grant(grant)
    approved = grant.approve("alice", now)
    assert storage.swap_device_grant(approved)
    stale = replace(approved, family_id="lost")  # the version read is not the stored one
    assert not storage.redeem_device_grant(stale, _record("lost", now), _replay("dc:lost", now))
    assert storage.refresh_token("lost") is None and storage.replay("dc:lost") is None
    consumed = replace(approved, version=approved.version + 1, family_id="fam")
    assert storage.redeem_device_grant(consumed, _record("won", now), _replay("dc:dc", now))
    assert storage.refresh_token("won") is not None
    kept = storage.replay("dc:dc")  # stored in the same step as the consumed grant
    assert kept is not None and kept.family_id == "fam"
    held = storage.device_grant("dc")
    assert held is not None and held.family_id == "fam"


# -- the sealed answer ------------------------------------------------------------------------------


def test_only_the_credential_redeemed_opens_its_answer() -> None:
    answer = {"access_token": "a.b.c", "refresh_token": "new-refresh"}
    sealed = Sealer("old-refresh").seal(answer)
    assert "new-refresh" not in sealed and "a.b.c" not in sealed
    assert Sealer("old-refresh").open(sealed) == answer
    assert Sealer("another-refresh").open(sealed) is None
    assert Sealer("old-refresh").open(sealed[:-4] + "AAAA") is None
    assert Sealer("old-refresh").open("not a jwe") is None
    assert "old-refresh" not in repr(Sealer("old-refresh"))
    kept = Replay(key="rt:h", fingerprint="f", expires_at=1.0, sealed=sealed, family_id="fam")
    assert sealed not in repr(kept)
