"""Real proxies on 127.0.0.1 for the proxy tests: Debian's ``tinyproxy`` (HTTP, ``CONNECT``, Basic
proxy authentication) and ``microsocks`` (SOCKS5, username/password), each started in the
foreground on a free port and stopped by the caller.

Each exposes its URL and what went through it, read from its own log: tinyproxy logs every request
line (``GET http://...``, ``CONNECT host:port``), microsocks every connection it made
(``connected to host:port``). A missing binary is an error naming the Debian package (``.ci/run``
installs both), never a skip.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["ProxyFixtureError", "RunningProxy", "start_microsocks", "start_tinyproxy"]

READY_TIMEOUT = 10.0


class ProxyFixtureError(RuntimeError):
    """A test proxy could not be started."""


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise ProxyFixtureError(f"the proxy tests need Debian's {name}: apt-get install -y {name} "
                                "(.ci/run installs it)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


class RunningProxy:
    """One proxy process: ``url`` (with the credentials, if any), ``address`` (host:port),
    ``seen()`` (what went through it since the last ``reset()``), ``stop()``."""

    def __init__(self, kind: str, scheme: str, port: int, process: subprocess.Popen[bytes],
                 log_path: Path, pattern: re.Pattern[str], auth: tuple[str, str] | None) -> None:
        self.kind, self.port, self.process, self.log_path = kind, port, process, log_path
        self.address = f"127.0.0.1:{port}"
        self.auth = auth
        credentials = f"{auth[0]}:{auth[1]}@" if auth else ""
        #: The URL to give keyturn (credentials included).
        self.url = f"{scheme}://{credentials}{self.address}"
        self._pattern = pattern
        self._mark = 0

    def __repr__(self) -> str:
        return f"RunningProxy({self.kind} on {self.address})"

    def _lines(self) -> list[str]:
        try:
            data = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        return data[self._mark:].decode(errors="replace").splitlines()

    def seen(self) -> list[str]:
        """What went through the proxy since the last :meth:`reset`: tinyproxy's request lines
        (``"POST http://127.0.0.1:PORT/token"``, ``"CONNECT 127.0.0.1:PORT"``), microsocks'
        destinations (``"127.0.0.1:PORT"``)."""
        return [m.group(1) for line in self._lines() if (m := self._pattern.search(line))]

    def log(self) -> str:
        """The whole log since the last :meth:`reset` (to check what it never shows)."""
        return "\n".join(self._lines())

    def reset(self) -> None:
        try:
            self._mark = self.log_path.stat().st_size
        except FileNotFoundError:
            self._mark = 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProxyFixtureError(f"{what} exited with code {process.returncode} before it "
                                    f"listened on port {port}; log {log_path}:\n{_tail(log_path)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise ProxyFixtureError(f"{what} not listening on port {port} after {READY_TIMEOUT}s; log "
                            f"{log_path}:\n{_tail(log_path)}")


_TINYPROXY_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+ \S+) HTTP/")


def start_tinyproxy(work: Path, *, connect_ports: tuple[int, ...] = (),
                    auth: tuple[str, str] | None = None) -> RunningProxy:
    """tinyproxy on a free 127.0.0.1 port, logging at Info to ``work``. ``CONNECT`` is allowed to
    ``connect_ports`` only (tinyproxy's own default is 443 and 563 when a config lists none; a
    config without ``ConnectPort`` would allow every port). ``auth`` = (user, password) asks
    clients for Basic proxy credentials."""
    binary = _binary("tinyproxy")
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = work / f"tinyproxy-{port}.log"
    config = [f"Port {port}", "Listen 127.0.0.1", f'LogFile "{log_path}"', "LogLevel Info",
              "Allow 127.0.0.1", "MaxClients 50", "Timeout 30", "DisableViaHeader Yes"]
    # With no ConnectPort line at all tinyproxy allows CONNECT to any port: list one that no
    # test uses so that only the given ports are allowed.
    config += [f"ConnectPort {p}" for p in (connect_ports or (9,))]
    if auth is not None:
        config.append(f"BasicAuth {auth[0]} {auth[1]}")
    config_path = work / f"tinyproxy-{port}.conf"
    config_path.write_text("\n".join(config) + "\n")
    with open(work / f"tinyproxy-{port}.out", "wb") as out:
        process = subprocess.Popen([binary, "-d", "-c", str(config_path)], stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log_path, "tinyproxy")
    except BaseException:
        if process.poll() is None:
            process.kill()
        raise
    return RunningProxy("tinyproxy", "http", port, process, log_path, _TINYPROXY_REQUEST, auth)


_MICROSOCKS_CONNECTED = re.compile(r"connected to (\S+)")


def start_microsocks(work: Path, *, auth: tuple[str, str] | None = None) -> RunningProxy:
    """microsocks (SOCKS5) on a free 127.0.0.1 port; ``auth`` = (user, password) requires them."""
    binary = _binary("microsocks")
    work.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = work / f"microsocks-{port}.log"
    command = [binary, "-i", "127.0.0.1", "-p", str(port)]
    if auth is not None:
        command += ["-u", auth[0], "-P", auth[1]]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        _wait_listening(process, port, log_path, "microsocks")
    except BaseException:
        if process.poll() is None:
            process.kill()
        raise
    return RunningProxy("microsocks", "socks5", port, process, log_path, _MICROSOCKS_CONNECTED,
                        auth)
