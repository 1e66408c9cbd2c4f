"""A real Redis (Debian ``redis-server``) for keyturn's tests.

``tests/conftest.py`` does ``from tests.support.redisfixture import *``, which exposes the fixtures
``redis_server`` (session scope: one server for the whole run) and ``redis_url`` (function scope: the
session server's URL with its data flushed). ``start_redis()`` starts another one, e.g. to stop and
restart it in a test. Every server listens on 127.0.0.1 on a free port, keeps nothing on disk
(``--save '' --appendonly no``) and works in its own temporary directory. Tests that use them are
skipped, with the reason, when ``redis-server`` is not installed (``apt-get install redis-server``).
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "redis_url", "start_redis"]

READY_TIMEOUT = 10.0
_running: set[RedisServer] = set()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _command(port: int, line: bytes) -> bytes:
    """One inline command over a raw socket (the fixture does not depend on redis-py)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(line + b"\r\n")
        return sock.recv(4096)


class RedisServer:
    """One ``redis-server`` process. :meth:`stop` and :meth:`start` keep its port, so a test can
    take Redis away and bring it back at the same URL."""

    def __init__(self, work: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.work = work
        self.port = port or _free_port()
        self.log_path = work / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.work), "--daemonize", "no"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.work)
        _running.add(self)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            with contextlib.suppress(OSError):
                if _command(self.port, b"PING").startswith(b"+PONG"):
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server not ready on port {self.port} after "
                                   f"{READY_TIMEOUT}s")
            time.sleep(0.02)

    def stop(self) -> None:
        _running.discard(self)
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def flush(self) -> None:
        assert _command(self.port, b"FLUSHALL").startswith(b"+OK")

    def command(self, line: str) -> bytes:
        """One inline command (no quoting: arguments without spaces), e.g. ``"DBSIZE"``."""
        return _command(self.port, line.encode())


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()


def start_redis(work: Path | None = None) -> RedisServer:
    """A new, running server (skips the test when redis-server is missing)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    work = work or Path(tempfile.mkdtemp(prefix="keyturn-redis-"))
    for attempt in range(3):
        try:
            return RedisServer(work).start()
        except RuntimeError:  # the free port was taken meanwhile: try another
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, its data flushed before the test."""
    redis_server.flush()
    return redis_server.url
