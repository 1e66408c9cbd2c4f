"""The signing keyring is never re-read on the event loop (review R19 of 12.3, L1).

A re-read waits on the storage and decodes every private key (tens of milliseconds for RSA):
on the loop it would hold every other request. A real server (ServerThread, whose event loop
runs in the thread named ``keyturn-server``) on the in-memory storage, whose endpoints run on
the loop; the storage records in which thread the ring is read. A re-read falling due between
an endpoint's check and its use of the ring, and a token naming a kid the ring does not hold
(at /introspect and /revoke), are both read in the threadpool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from keyturn.server import keys as keys_module
from keyturn.server.config import load_config
from keyturn.server.keys import KeyPolicy, KeyStore
from keyturn.server.passwords import hash_password
from keyturn.server.runner import ServerThread
from keyturn.server.storage.memory import MemoryStorage

SECRET = "rs-off-loop-secret-1234"
LOOP_THREAD = "keyturn-server"  # ServerThread's thread, where uvicorn runs the event loop


class RecordingMemory(MemoryStorage):
    """The real in-memory storage, noting the thread of every read of the keyring."""

    def __init__(self) -> None:
        super().__init__()
        self.ring_reads: list[str] = []

    def setting(self, name: str, make: Callable[[], str]) -> str:
        if name == keys_module.SETTING:
            self.ring_reads.append(threading.current_thread().name)
        return super().setting(name, make)


@contextmanager
def server(tmp_path: Path, storage: MemoryStorage, issuer: str | None = None
           ) -> Iterator[ServerThread]:
    path = tmp_path / "server.toml"
    path.write_text(f"""{f'issuer = "{issuer}"' if issuer else ""}
[clients.rs]
grants = ["client_credentials"]
scopes = ["introspect"]
secret_hash = "{hash_password(SECRET, n=2**10)}"
""")
    with ServerThread(load_config(path), storage=storage) as running:
        yield running


def token(url: str) -> str:
    answer = httpx.post(f"{url}/token", data={"grant_type": "client_credentials"},
                        auth=("rs", SECRET))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_a_re_read_falling_due_after_the_endpoints_check_is_not_made_on_the_loop(tmp_path):
    storage = RecordingMemory()
    with server(tmp_path, storage) as running:
        token(running.issuer)  # the secret hashed (in the threadpool): the next ones on the loop
        keyring = running.app.state.server.signer._keys
        # Fault injection, the unlucky timing: every look at the clock is half a refresh period
        # later than the one before, so a re-read not due when the endpoint checks is due by the
        # time the ring is used.
        moment = [time.time()]

        def clock() -> float:
            moment[0] += keys_module.REFRESH_SECONDS / 2 + 0.001
            return moment[0]

        keyring._clock = clock
        storage.ring_reads.clear()
        for _ in range(6):
            token(running.issuer)
            assert httpx.get(f"{running.issuer}/jwks").status_code == 200
    assert storage.ring_reads  # the ring was re-read, as due ...
    assert LOOP_THREAD not in storage.ring_reads  # ... never on the event loop


def test_an_unknown_kid_is_looked_up_in_the_threadpool(tmp_path):
    # Replica A signs with a key rotated in after replica B read the ring: B re-reads the ring
    # for the kid it does not know (in the threadpool), and A's token is active at B.
    storage = RecordingMemory()
    with server(tmp_path, storage) as b:
        token(b.issuer)  # the secret hashed: /introspect's next try is on the loop
        new = KeyStore(storage, KeyPolicy()).rotate()[0].kid
        with server(tmp_path, storage, issuer=b.issuer) as a:
            issued = token(f"http://127.0.0.1:{a.port}")
        storage.ring_reads.clear()
        introspected = httpx.post(f"{b.issuer}/introspect", data={"token": issued},
                                  auth=("rs", SECRET))
        assert introspected.json()["active"] is True, introspected.text
        assert b.app.state.server.signer.kid == new
        assert storage.ring_reads and LOOP_THREAD not in storage.ring_reads
        # A made-up kid at /revoke (any client may call it): no read on the loop either.
        head = "eyJhbGciOiJSUzI1NiIsImtpZCI6Im1hZGUtdXAiLCJ0eXAiOiJhdCtqd3QifQ"  # kid "made-up"
        storage.ring_reads.clear()
        for _ in range(3):
            revoked = httpx.post(f"{b.issuer}/revoke", data={"token": f"{head}.e30.c2ln"},
                                 auth=("rs", SECRET))
            assert revoked.status_code == 200, revoked.text
        assert LOOP_THREAD not in storage.ring_reads
