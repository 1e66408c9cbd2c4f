"""django-oauth-toolkit as a real server on 127.0.0.1: ``with running_dot(directory) as dot:``.

It is an OAuth server written independently of keyturn and of the npm test provider, and it
publishes what issue 11.4 is about: mounted under ``/o/``, its OpenID document
(``/o/.well-known/openid-configuration``) names no revocation endpoint, while its RFC 8414 document
at the appended location (``/o/.well-known/oauth-authorization-server``) names
``/o/revoke_token/``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DotProvider", "running_dot"]

READY_TIMEOUT = 60.0  # migrations on a 2-core shared machine
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DotProvider:
    base: str
    issuer: str
    client_id: str
    client_secret: str
    directory: Path

    def log_tail(self, n: int = 30) -> str:
        lines: list[str] = []
        for name in ("out.log", "dot.log", "requests.log"):
            path = self.directory / name
            if path.exists():
                lines += [f"-- {name}", *path.read_text().splitlines()[-n:]]
        return "\n".join(lines)


@contextmanager
def running_dot(directory: Path) -> Iterator[DotProvider]:
    """DOT serving from ``directory`` (its database, key and logs) until the block ends."""
    with open(directory / "out.log", "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.support.dot_provider.serve",
                                    str(directory)], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        ready = directory / "ready.json"
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("django-oauth-toolkit did not start:\n"
                                   + (directory / "out.log").read_text()[-3000:])
            time.sleep(0.1)
        info = json.loads(ready.read_text())
        yield DotProvider(info["base"], info["issuer"], info["client_id"], info["client_secret"],
                          directory)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
