"""``keyturn serve --workers N``: several processes on one socket and one storage, one signing key.

Real processes (``python -m keyturn.server serve``), a real SQLite file or a real redis-server:
the keyring is made once, before the fork, so on a first start every worker signs with the same
key (the one the storage holds, the only one the JWKS publishes); a worker that dies is
replaced; SIGTERM stops them all.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from joserfc import jws

from keyturn.server.keys import KeyPolicy, KeyStore
from keyturn.server.runner import open_storage
from tests.support.serverkit import basic

SECRET = "worker-test-secret"


def write_config(path: Path) -> Path:
    from keyturn.server.passwords import hash_password

    path.write_text(f"""
signing_alg = "ES256"
[clients.svc]
grants = ["client_credentials"]
scopes = ["api"]
secret_hash = "{hash_password(SECRET, n=2**10)}"
""")
    return path


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextmanager
def workers(tmp_path: Path, *store: str, count: int = 2) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    config = write_config(tmp_path / "server.toml")
    process = subprocess.Popen(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
         "--workers", str(count), *store],
        stdout=subprocess.PIPE, stderr=open(tmp_path / "stderr", "w"),  # noqa: SIM115
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        wait_for(lambda: len(children(process.pid)) == count, f"{count} workers")
        yield issuer, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def kid_of(token: str) -> str:
    return str(jws.extract_compact(token.encode()).headers()["kid"])


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_two_workers_sign_with_the_one_key_made_on_the_first_start(tmp_path, request, backend):
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        store, data, redis = ("--redis", url, "--data-dir", str(tmp_path / "unused")), None, url
    else:
        data = tmp_path / "data"
        store, redis = ("--data-dir", str(data)), None
    with workers(tmp_path, *store) as (issuer, _):
        kids = set()
        # A new connection each: the kernel hands them to either worker.
        for _ in range(40):
            with httpx.Client(trust_env=False) as http:
                answer = http.post(f"{issuer}/token", headers=basic("svc", SECRET),
                                   data={"grant_type": "client_credentials", "scope": "api"})
                assert answer.status_code == 200, answer.text
                kids.add(kid_of(answer.json()["access_token"]))
            jwks = httpx.get(f"{issuer}/jwks").json()["keys"]
            assert [key["kid"] for key in jwks] == list(kids)
        storage = open_storage(data or tmp_path / "unused", redis)
        try:
            ring = KeyStore(storage, KeyPolicy(alg="ES256")).load(time.time())
        finally:
            storage.close()
        assert [key.kid for key in ring] == list(kids)  # one key, stored, signing everywhere
        assert [key["alg"] for key in jwks] == ["ES256"]
        log = (tmp_path / "stderr").read_text()
        assert "2 workers" in log and "HTTP parser" in log


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_all(tmp_path):
    with workers(tmp_path, "--data-dir", str(tmp_path / "data")) as (issuer, process):
        first = children(process.pid)
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: len(set(children(process.pid)) - set(first)) == 1, "a new worker")
        assert len(children(process.pid)) == 2
        for _ in range(5):  # answered, whichever worker takes the connection
            with httpx.Client(trust_env=False) as http:
                assert http.get(f"{issuer}/.well-known/openid-configuration").status_code == 200
        now = children(process.pid)
        process.terminate()
        assert process.wait(timeout=20) == 0
        for pid in now:  # reaped by the supervisor: gone from /proc
            assert not Path(f"/proc/{pid}").exists()
        assert "ended (killed by signal 9): starting another" in (tmp_path / "stderr").read_text()


def test_workers_must_be_at_least_one(tmp_path):
    config = write_config(tmp_path / "server.toml")
    done = subprocess.run([sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
                           "--workers", "0", "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "workers must be at least 1" in done.stderr


def gone(pid: int) -> bool:
    """No such process, or only its exit status left (a zombie whoever adopted it has not reaped)."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z"
    except OSError:
        return True


@contextmanager
def no_orphans(pids: list[int]) -> Iterator[None]:
    """On a failure, the workers that outlived their supervisor are ended here."""
    try:
        yield
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def port_free(issuer: str) -> bool:
    from keyturn.errors import ConfigError
    from keyturn.server.runner import _bind

    try:
        _bind("127.0.0.1", int(issuer.rsplit(":", 1)[1]))  # what a restarted `keyturn serve` does
    except ConfigError:
        return False
    else:
        return True


def test_workers_end_when_the_supervisor_is_killed(tmp_path):
    # SIGKILL or the OOM killer leaves no orphan serving on (and holding the port): each worker
    # is sent SIGTERM when its parent dies (review R19 of 12.3, M3).
    with workers(tmp_path, "--data-dir", str(tmp_path / "data")) as (issuer, process):
        pids = children(process.pid)
        with no_orphans(pids):
            with httpx.Client(trust_env=False) as http:
                assert http.get(f"{issuer}/.well-known/openid-configuration").status_code == 200
            assert not port_free(issuer)
            process.kill()
            process.wait(timeout=20)
            wait_for(lambda: all(gone(pid) for pid in pids), "the workers to end")
            wait_for(lambda: port_free(issuer), "the port to be free")


def test_sighup_stops_the_supervisor_and_its_workers(tmp_path):
    # SIGHUP (the terminal closed, `kill -HUP`) is a stop like SIGTERM: before, it killed the
    # supervisor alone and its workers served on.
    with workers(tmp_path, "--data-dir", str(tmp_path / "data")) as (issuer, process):
        pids = children(process.pid)
        with no_orphans(pids):
            process.send_signal(signal.SIGHUP)
            assert process.wait(timeout=20) == 0
            assert all(gone(pid) for pid in pids)
            assert port_free(issuer)


def test_sigterm_lets_each_worker_close_its_storage(tmp_path):
    # uvicorn raises the signal again once it has shut down: a worker that died of it skipped
    # its storage's close (review R19 of 12.3, L2). SQLite removes the WAL file when the last
    # connection to the database closes, and only then.
    data = tmp_path / "data"
    with workers(tmp_path, "--data-dir", str(data)) as (issuer, process):
        for _ in range(4):  # writes, on either worker
            with httpx.Client(trust_env=False) as http:
                assert http.post(f"{issuer}/token", headers=basic("svc", SECRET),
                                 data={"grant_type": "client_credentials"}).status_code == 200
        assert (data / "keyturn-server.sqlite3-wal").exists()
        process.terminate()
        assert process.wait(timeout=20) == 0
    assert not (data / "keyturn-server.sqlite3-wal").exists()
    assert "failed" not in (tmp_path / "stderr").read_text()
