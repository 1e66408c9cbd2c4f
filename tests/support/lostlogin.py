"""The lost-login matrix: job processes, servers behind fault proxies, and one scenario per point
where a refresh can be interrupted (issue 9, "How it is shown").

``tests/integration/test_lost_login_matrix.py`` runs every scenario against every server and
``benchmarks/lost_login_matrix.py`` counts them. A scenario logs in at a real server that revokes a
login when a refresh token comes back twice (the npm oidc-provider; keyturn's own server), starts a
job process (:mod:`lostlogin_child`) that refreshes on a real store, interrupts it at its point —
SIGINT, SIGKILL, a task cancellation, ``asyncio.run`` shutting down, a JWKS that fails, a stalled
lock holder, a full disk — and then asks a *fresh* process for a token, twice (the second time
after ``invalidate()``, so the login must still refresh at the server). The login is lost when the
fresh process cannot get its tokens without a login, or when the server saw a refresh token come
back (``invalid_grant``: both servers then end the whole login).

A point where no client can survive is a scenario too, marked ``KNOWN_LIMIT``: a SIGKILL after the
server rotated the refresh token and before its answer was stored (the new refresh token existed
only in the killed process), and a holder stopped past its lease *after* it confirmed its lock (its
refresh token already on its way). Such a scenario asserts that exactly this happens — the fresh
process is told to log in again, the server refused a refresh token — so that a change that makes
it survivable, or one that loses the login otherwise, shows. A known limit is the client's alone
at a server that answers an identical refresh retried within a grace with the same tokens
(keyturn's own, ``[lifetimes] retry_grace``, issue 12): the fresh process sends the refresh token
the killed one had sent, and gets what it was given. There every scenario must survive.

Every wait is bounded; the test and the job processes wait for each other's events (pipes, a
proxy's gate), and the only poll, for a process to be stopped, has a deadline.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from tests.support.faultproxy import Exchange, FaultProxy, Gate, TcpFaultProxy

CHILD = Path(__file__).with_name("lostlogin_child.py")
#: Longest the test waits for one event of a job process, or for its end.
EVENT_WAIT = 15.0
#: A directory to import keyturn from in the job processes instead of the installed one (a source
#: tree of another revision, e.g. from ``git archive``): what the matrix shows of older code.
SRC_VARIABLE = "LOSTLOGIN_KEYTURN_SRC"
SURVIVES = "survives"
KNOWN_LIMIT = "known limit"
REFRESH = "refresh_token"


# -- job processes ------------------------------------------------------------------------------------


class Zygote:
    """The test's end of ``lostlogin_child.py``'s zygote: spawns job processes, learns their exits."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._sock = ours
        env = dict(os.environ)
        if os.environ.get(SRC_VARIABLE):
            # The job processes import keyturn from there (another revision), the test does not.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (os.environ[SRC_VARIABLE], env.get("PYTHONPATH")) if p)
        with open(log_dir / "zygote.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(CHILD), str(theirs.fileno())], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=log_dir, env=env,
            )
        theirs.close()
        self._exits: dict[int, int] = {}
        self._spawned: dict[str, int] = {}
        self._changed = threading.Condition()
        self._spawn_lock = threading.Lock()
        ready = self._receive(timeout=30.0)
        assert ready is not None and "ready" in ready, f"the zygote did not start: {ready}"
        self._reader = threading.Thread(target=self._read, daemon=True, name="zygote-reader")
        self._reader.start()

    def _receive(self, timeout: float | None = None) -> dict[str, Any] | None:
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(1 << 16)
        except (TimeoutError, OSError):
            return None
        return json.loads(data) if data else None

    def _read(self) -> None:
        while (message := self._receive()) is not None:
            with self._changed:
                if "exit" in message:
                    self._exits[message["exit"]] = message["code"]
                elif "spawned" in message:
                    self._spawned[message["id"]] = message["spawned"]
                self._changed.notify_all()

    def spawn(self, spec: dict[str, Any], name: str) -> Child:
        """A new job process running ``spec`` (see lostlogin_child.run_job)."""
        job_id = uuid.uuid4().hex[:10]
        stderr = self.log_dir / f"{name}-{job_id}.stderr"
        events_r, events_w = os.pipe()
        control_r, control_w = os.pipe()
        with self._spawn_lock:
            socket.send_fds(self._sock, [json.dumps({**spec, "id": job_id,
                                                     "stderr": str(stderr)}).encode()],
                            [events_w, control_r])
        os.close(events_w)
        os.close(control_r)
        with self._changed:
            assert self._changed.wait_for(lambda: job_id in self._spawned, EVENT_WAIT), \
                "the zygote did not fork the job"
            pid = self._spawned.pop(job_id)
        return Child(self, pid, events_r, control_w, stderr, name)

    def exit_code(self, pid: int, timeout: float) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits, timeout)
            return self._exits.get(pid)

    def close(self) -> None:
        # shutdown() first: the reader thread blocks in recv(), which keeps a merely closed
        # socket open. At the end of its socket the zygote kills what is left of its jobs, exits.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


class Child:
    """One job process: its events (in order), its control pipe, its exit code."""

    def __init__(self, zygote: Zygote, pid: int, events: int, control: int, stderr: Path,
                 name: str) -> None:
        self.zygote = zygote
        self.pid = pid
        self.name = name
        self._events_fd = events
        self._control_fd: int | None = control
        self._buffer = b""
        self._eof = False
        self.events: list[dict[str, Any]] = []
        self._taken = 0
        self.stderr_path = stderr
        self.code: int | None = None

    def __repr__(self) -> str:
        return f"<job {self.name} pid={self.pid}>"

    def _pump(self, timeout: float) -> bool:
        """Read what the process wrote within ``timeout``; False at the end of its events."""
        if self._eof:
            return False
        ready, _, _ = select.select([self._events_fd], [], [], max(0.0, timeout))
        if not ready:
            return True
        chunk = os.read(self._events_fd, 65536)
        if not chunk:
            self._eof = True
            os.close(self._events_fd)
            return False
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            self.events.append(json.loads(line))
        return True

    def expect(self, name: str, timeout: float = EVENT_WAIT) -> dict[str, Any]:
        """The next event called ``name`` (events before it are kept in :attr:`events`)."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._taken, len(self.events)):
                if self.events[index]["event"] == name:
                    self._taken = index + 1
                    return self.events[index]
            left = deadline - time.monotonic()
            if left <= 0 or not self._pump(left):  # every event so far was looked at above
                raise AssertionError(f"{self}: no {name!r} event within {timeout:.0f} s; "
                                     f"events {self.names()}\n{self.stderr_tail()}")

    def go(self) -> None:
        """Let the process go on from the point where it waits."""
        if self._control_fd is not None:
            os.write(self._control_fd, b"go\n")

    def kill(self, sig: signal.Signals) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = EVENT_WAIT) -> int:
        """Its exit code (negative: the signal it died of), after reading all its events."""
        deadline = time.monotonic() + timeout
        while self._pump(deadline - time.monotonic()):
            if time.monotonic() >= deadline:
                break
        code = self.zygote.exit_code(self.pid, max(0.1, deadline - time.monotonic()))
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            raise AssertionError(f"{self} did not end within {timeout:.0f} s (killed now); "
                                 f"events {self.names()}\n{self.stderr_tail()}")
        self.code = code
        if self._control_fd is not None:
            os.close(self._control_fd)
            self._control_fd = None
        return code

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def all(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]

    def result(self) -> dict[str, Any]:
        found = self.all("result")
        assert found, f"{self} reported no result; events {self.names()}\n{self.stderr_tail()}"
        return found[-1]

    def stderr_tail(self, lines: int = 25) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no stderr)"
        return f"stderr of {self}:\n" + "\n".join(text)

    def state(self) -> str:
        """The process state letter of /proc/PID/stat ("T" when stopped)."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return "gone"
        return stat.rsplit(")", 1)[1].split()[0]

    def cleanup(self) -> None:
        """Make sure it is gone (a test that failed half-way leaves nothing behind)."""
        if self.code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(AssertionError):
                self.wait(5.0)


# -- the servers ----------------------------------------------------------------------------------------


@dataclass
class Server:
    """A real server that revokes a login on refresh-token reuse, behind a fault proxy: its issuer
    is the proxy's URL, so every endpoint it advertises (token, JWKS) goes through the proxy."""

    name: str
    issuer: str
    proxy: FaultProxy
    client_id: str
    login: Callable[[], str]  # a new login's refresh token (scope "openid offline_access")
    server_invalid_grants: Callable[[], int] = lambda: 0  # refused refreshes the server counted
    server_refreshes: Callable[[], int] | None = None  # refreshes the server counted, if it says
    reset: Callable[[], None] = lambda: None
    #: Seconds within which the server answers an identical refresh again with the same tokens
    #: (0: it revokes the login at once, as oidc-provider does).
    retry_grace: float = 0.0


@contextlib.contextmanager
def npm_server(work: Path) -> Iterator[Server]:
    """panva oidc-provider, its issuer the proxy's URL, with a public client that rotates the
    refresh token at every use (reuse revokes the grant) and whose access tokens last 10 minutes,
    so that a token another process stored is adopted rather than refreshed again."""
    from tests.support.providerfixture import DEVICE_CODE_GRANT, make_client, start_provider

    client = make_client("public-long", "none", access_token_ttl=600,
                         grant_types=["authorization_code", REFRESH, DEVICE_CODE_GRANT])
    with FaultProxy() as proxy:
        provider = start_provider([client], work, issuer=proxy.url)
        try:
            proxy.retarget(provider.url)

            def invalid_grants() -> int:
                log = provider.stats(log=True)["log"]
                return sum(1 for e in log if e["grant_type"] == REFRESH and e["status"] == 400)

            yield Server(
                name="oidc-provider", issuer=proxy.url, proxy=proxy, client_id="public-long",
                login=lambda: provider.mint_refresh_token("public-long",
                                                          scope="openid offline_access"),
                server_invalid_grants=invalid_grants,
                server_refreshes=lambda: provider.token_requests("public-long", REFRESH),
                reset=provider.reset_stats,
            )
        finally:
            provider.stop()


@dataclass
class _Shown:
    verification_uri: str
    user_code: str


@contextlib.contextmanager
def keyturn_server(work: Path) -> Iterator[Server]:
    """keyturn's own server (in-process, real uvicorn and SQLite) with its demo client, its
    issuer the proxy's URL. It rotates refresh tokens and revokes the family on reuse."""
    from keyturn.cli.walkthrough import approve_in_page
    from keyturn.protocol.grants import GRANT_DEVICE_CODE
    from keyturn.server.config import Lifetimes, demo_config
    from keyturn.server.runner import ServerThread

    password = "lost-login-matrix"
    with FaultProxy() as proxy:
        # A grace longer than any scenario takes, so that a slow machine does not turn a retry
        # within it into a reuse after it.
        grace = 600
        config = replace(demo_config(password), issuer=proxy.url,
                         lifetimes=Lifetimes(interval=1, retry_grace=grace))
        running = ServerThread(config, data_dir=work / "keyturn-server")
        try:
            proxy.retarget(f"http://127.0.0.1:{running._sock.getsockname()[1]}")

            def login() -> str:
                # A device login as a person does it: ask, approve on the page, redeem (once).
                with httpx.Client(timeout=10, trust_env=False) as http:
                    asked = http.post(f"{proxy.url}/device_authorization",
                                      data={"client_id": "demo", "scope": "openid offline_access"})
                    asked.raise_for_status()
                    shown = asked.json()
                    approve_in_page(_Shown(shown["verification_uri"], shown["user_code"]),  # type: ignore[arg-type]
                                    password)
                    redeemed = http.post(f"{proxy.url}/token", data={
                        "grant_type": GRANT_DEVICE_CODE, "device_code": shown["device_code"],
                        "client_id": "demo"})
                    redeemed.raise_for_status()
                    return str(redeemed.json()["refresh_token"])

            yield Server(name="keyturn", issuer=proxy.url, proxy=proxy, client_id="demo",
                         login=login, retry_grace=grace)
        finally:
            running.stop()


# -- one case -------------------------------------------------------------------------------------------


@dataclass
class Env:
    """What a scenario runs with: the zygote, one server, a fresh directory, Redis if needed."""

    zygote: Zygote
    server: Server
    work: Path
    redis_url: str | None = None
    redis_proxy: TcpFaultProxy | None = None


@dataclass
class Report:
    """A scenario's outcome, for the test's assertions and the benchmark's table."""

    scenario: str
    server: str
    means: str
    point: str
    expected: str
    lost: bool | None = None  # None until the fresh process has given the verdict
    notes: list[str] = field(default_factory=list)
    #: What did not go as the scenario expects (the test fails on any); the verdict is still
    #: given after a failed step, so that a benchmark run counts every login.
    failures: list[str] = field(default_factory=list)

    def properties(self) -> list[tuple[str, Any]]:
        return [("lostlogin", json.dumps({
            "scenario": self.scenario, "server": self.server, "means": self.means,
            "point": self.point, "expected": self.expected, "lost": self.lost,
            "notes": self.notes, "failures": self.failures}))]


class Case:
    """One interruption: a new login, a store, the job processes, and the verdict."""

    def __init__(self, env: Env, *, kind: str = "refresh", store: str = "file",
                 lease: float = 2.0, redis_url: str | None = None, store_dir: Path | None = None,
                 timeout: float = 10.0) -> None:
        self.env = env
        self.server = env.server
        self.proxy = env.server.proxy
        self.proxy.clear()
        self.server.reset()
        self.rt0 = self.server.login()
        self.source: dict[str, Any] = {
            "kind": kind, "issuer": self.server.issuer, "client_id": self.server.client_id,
            "refresh_token": self.rt0, "timeout": timeout,
        }
        if store == "file":
            self.store: dict[str, Any] = {"kind": "file",
                                          "path": str(store_dir or env.work / "store")}
        else:
            assert env.redis_url is not None
            self.store = {"kind": "redis", "url": redis_url or env.redis_url,
                          "prefix": f"ll-{uuid.uuid4().hex[:8]}", "lease": lease}
        self.direct_store = dict(self.store, url=env.redis_url) if store != "file" else self.store
        if kind == "device":
            self._seed()
        self.start = self.proxy.mark()
        self.children: list[Child] = []
        self.gates: list[Gate] = []

    def gate(self) -> Gate:
        """A gate for a held answer, opened at the latest by :meth:`cleanup`."""
        gate = Gate()
        self.gates.append(gate)
        return gate

    @contextlib.contextmanager
    def soft(self, report: Report) -> Iterator[None]:
        """The interruption: a step that does not go as expected is a failure of the scenario,
        and the verdict is given all the same, after what is left of its processes is gone."""
        try:
            yield
        except AssertionError as exc:
            report.failures.append(f"{report.scenario} on {report.server}: {exc}")
            self.cleanup()

    def _seed(self) -> None:
        """A saved login: the refresh token alone, under the source's own cache key."""
        from keyturn.token import Token
        from tests.support.lostlogin_child import _store, build_source

        source = build_source(self.source, _store(self.direct_store))
        source.cache.store.save(source.cache.key, Token.refresh_only(self.rt0))

    def spawn(self, name: str, *, store: dict[str, Any] | None = None,
              source: dict[str, Any] | None = None, **spec: Any) -> Child:
        child = self.env.zygote.spawn(
            {"source": source or self.source, "store": store or self.store, **spec}, name)
        self.children.append(child)
        return child

    def refreshes(self, since: int | None = None) -> list[Exchange]:
        """The refresh requests through the proxy since the case began (or since ``since``)."""
        return self.proxy.token_exchanges(self.start if since is None else since, REFRESH)

    def fresh(self, *, faults: dict[str, Any] | None = None) -> Child:
        """A fresh process asks for a token, then (after invalidate()) for another one."""
        child = self.spawn("fresh", store=self.direct_store, again=1, faults=faults or {})
        # One that never ends (it waits for a lock for ever) is killed: no result, a lost login.
        with contextlib.suppress(AssertionError):
            child.wait()
        return child

    def cleanup(self) -> None:
        for gate in self.gates:
            gate.open()
        for child in self.children:
            child.cleanup()

    def verdict(self, report: Report, fresh: Child) -> Report:
        """Lost: the fresh process could not get both tokens without a login, or a refresh token
        came back to the server (invalid_grant ends the login at both servers)."""
        found = fresh.all("result")
        result = found[-1] if found else {
            "outcome": "none", "classes": [], "tokens": [],
            "error": f"no result (exit {fresh.code}): {fresh.stderr_tail(5)}"}
        refused = [e for e in self.refreshes() if e.status == 400]
        server_refused = self.server.server_invalid_grants()
        ok = (result["outcome"] == "ok" and len(result["tokens"]) == 2
              and all(result["tokens"]) and result["tokens"][0] != result["tokens"][1])
        report.lost = not ok or bool(refused) or server_refused > 0
        report.notes.append(f"fresh process: {result.get('outcome')} "
                            f"{result.get('error', '')}".strip())
        if refused or server_refused:
            report.notes.append(f"invalid_grant at the server: {max(len(refused), server_refused)}")
        where = f"{report.scenario} on {report.server}"
        if report.expected == SURVIVES and report.lost:
            report.failures.append(
                f"LOGIN LOST in {where}: fresh process {result}; refresh statuses "
                f"{[e.status for e in self.refreshes()]}\n"
                + "\n".join(c.stderr_tail() for c in self.children))
        elif report.expected == KNOWN_LIMIT and not report.lost:
            report.failures.append(f"{where} survived: it is no longer a known limit, update it")
        elif report.expected == KNOWN_LIMIT and not (
                result["outcome"] == "error"
                and {"InvalidGrant", "LoginRequired"} & set(result["classes"]) and refused):
            # The known limit, as it is: the fresh process is told to log in again (its refresh
            # token was spent by the killed process), and the server refused it.
            report.failures.append(f"{where}: lost otherwise than known: {result}, refused "
                                   f"{len(refused)}")
        return report


def saved_refresh_tokens(child: Child) -> list[str | None]:
    return [e["refresh_token"] for e in child.all("saved")]


# -- the scenarios ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    means: str
    point: str
    expected: str
    run: Callable[[Env, Report], None]
    needs: tuple[str, ...] = ()


SCENARIOS: list[Scenario] = []


def scenario(name: str, means: str, point: str, expected: str = SURVIVES,
             needs: tuple[str, ...] = ()) -> Callable[[Callable[[Env, Report], None]],
                                                      Callable[[Env, Report], None]]:
    def register(run: Callable[[Env, Report], None]) -> Callable[[Env, Report], None]:
        SCENARIOS.append(Scenario(name, means, point, expected, run, needs))
        return run

    return register


def expected_at(item: Scenario, server: Server) -> str:
    """What ``item`` should come to at ``server``: a known limit is survived where the server
    answers the retried refresh (see the module's docstring)."""
    return SURVIVES if item.expected == KNOWN_LIMIT and server.retry_grace else item.expected


def run_scenario(item: Scenario, env: Env) -> Report:
    report = Report(item.name, env.server.name, item.means, item.point,
                    expected_at(item, env.server))
    item.run(env, report)
    return report


def _finish(case: Case, report: Report, **fresh: Any) -> None:
    case.verdict(report, case.fresh(**fresh))


def _assert_died_of(child: Child, sig: signal.Signals) -> None:
    code = child.wait()
    assert code == -sig, f"{child} ended with {code}, not of {sig.name}; events {child.names()}\n" \
                         f"{child.stderr_tail()}"


def _assert_saved_new(case: Case, child: Child) -> None:
    """The child kept the rotated refresh token before it ended."""
    kept = [rt for rt in saved_refresh_tokens(child) if rt]
    assert kept and kept[0] != case.rt0, f"{child} saved no new refresh token: {child.names()}"
    answered = [e for e in case.refreshes() if e.status == 200]
    assert len(answered) == 1, [e.status for e in case.refreshes()]


# before sending ----------------------------------------------------------------------------------


def _before_send(env: Env, report: Report, sig: signal.Signals, faults: dict[str, Any]) -> None:
    case = Case(env)
    try:
        with case.soft(report):
            child = case.spawn("child", faults=faults)
            child.expect("at-load" if "pause_load" in faults else "at-send")
            child.kill(sig)
            if sig == signal.SIGINT and "pause_send" in faults:
                # The interrupt reaches a process whose refresh is in its critical step: it is
                # held there, the request goes out, the answer is kept, then the process dies.
                child.expect("sigint")
                child.go()
                _assert_died_of(child, sig)
                _assert_saved_new(case, child)
            else:
                _assert_died_of(child, sig)
                assert case.refreshes() == [], "a refresh was sent before the interrupt point"
                if env.server.server_refreshes is not None:
                    assert env.server.server_refreshes() == 0
        _finish(case, report)
    finally:
        case.cleanup()


for _sig in (signal.SIGINT, signal.SIGKILL):
    def _lock_held(env: Env, report: Report, sig: signal.Signals = _sig) -> None:
        # Under the store's lock, before the token request: the load of the stored token.
        _before_send(env, report, sig, {"pause_load": 2})

    def _about_to_send(env: Env, report: Report, sig: signal.Signals = _sig) -> None:
        # In the critical step, right before the token request goes out.
        _before_send(env, report, sig, {"pause_send": True})

    scenario(f"before-send-{_sig.name}", _sig.name, "before sending (lock held)")(_lock_held)
    scenario(f"about-to-send-{_sig.name}", _sig.name,
             "before sending (critical step begun)")(_about_to_send)


# after sending, before the answer -------------------------------------------------------------------


def _held(env: Env, report: Report, how: str, kind: str = "refresh") -> None:
    case = Case(env, kind=kind)
    gate = case.gate()
    case.proxy.on("/token", ("hold_answer", gate))
    try:
        with case.soft(report):
            spec: dict[str, Any] = {"mode": "sync"}
            if how == "wait_for":
                spec = {"mode": "wait_for", "wait_for": 1.0}
            elif how in ("main_returns", "main_raises"):
                spec = {"mode": how}
            child = case.spawn("child", **spec)
            assert gate.answered.wait(EVENT_WAIT), "the refresh never reached the server"
            assert gate.status == 200, gate.status
            if how == "SIGINT":
                child.kill(signal.SIGINT)
                child.expect("sigint")
            elif how == "SIGKILL":
                child.kill(signal.SIGKILL)
                child.wait()
            elif how == "wait_for":
                child.expect("cancelled")  # wait_for gave up; asyncio.run cancels the refresh
            else:
                child.expect("main-waiting")
                child.go()
                child.expect("main-ends")
                child.expect("cancelled")  # asyncio.run's shutdown cancelled the refresh task
            gate.open()
            if how == "SIGKILL":
                assert child.code == -signal.SIGKILL
            else:
                code = child.wait()
                _assert_saved_new(case, child)
                if how == "SIGINT":
                    assert code == -signal.SIGINT, (code, child.names())
                    # Kept first, then the interrupt.
                    assert child.names().index("saved") < child.names().index("died"), \
                        child.names()
                elif how == "wait_for":
                    assert "timed-out" in child.names(), child.names()
                elif how == "main_raises":
                    assert child.result()["error"] == "RuntimeError", child.result()
        _finish(case, report)
    finally:
        case.cleanup()


for _how, _means in (("SIGINT", "SIGINT"), ("wait_for", "task cancellation (wait_for)"),
                     ("main_returns", "asyncio.run shutdown (main returns)"),
                     ("main_raises", "asyncio.run shutdown (main raises)")):
    scenario(f"answer-held-{_how}", _means, "after sending, before the answer")(
        lambda env, report, how=_how: _held(env, report, how))
scenario("answer-held-SIGINT-oidc", "SIGINT", "after sending, before the answer (DeviceCode)")(
    lambda env, report: _held(env, report, "SIGINT", kind="device"))
scenario("answer-held-SIGKILL", "SIGKILL", "after sending, before the answer",
         expected=KNOWN_LIMIT)(lambda env, report: _held(env, report, "SIGKILL"))


# after the answer, before the save -----------------------------------------------------------------


@scenario("slow-save-SIGINT", "SIGINT", "after the answer, before the save")
def _slow_save(env: Env, report: Report) -> None:
    case = Case(env)
    try:
        with case.soft(report):
            child = case.spawn("child", faults={"pause_save": {"n": 1, "at": "entry"}})
            child.expect("at-save")
            child.kill(signal.SIGINT)
            child.expect("sigint")
            child.go()
            _assert_died_of(child, signal.SIGINT)
            _assert_saved_new(case, child)
        _finish(case, report)
    finally:
        case.cleanup()


# id_token validation and the JWKS fetch --------------------------------------------------------------


def _tampered_id_token(body: bytes) -> bytes:
    answer = json.loads(body)
    head, payload, sig = answer["id_token"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[0] ^= 0xFF  # one byte of the signature: the token no longer checks out
    answer["id_token"] = ".".join((head, payload,
                                   base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()))
    return json.dumps(answer).encode()


def _validation_fails(env: Env, report: Report, faults: Callable[[FaultProxy], None],
                      error: str, timeout: float = 10.0) -> None:
    case = Case(env, kind="device", timeout=timeout)
    try:
        with case.soft(report):
            faults(case.proxy)
            child = case.spawn("child")
            assert child.wait(EVENT_WAIT + 5) == 1, child.names()
            result = child.result()
            assert error in result["classes"], result
            _assert_saved_new(case, child)
        case.proxy.clear()
        _finish(case, report)
    finally:
        case.cleanup()


scenario("jwks-503", "JWKS 503 x3", "during the JWKS fetch")(
    lambda env, report: _validation_fails(
        env, report, lambda proxy: proxy.on("/jwks", *[("status", 503, "application/json",
                                                         b'{"error":"unavailable"}')] * 3),
        "InvalidResponse"))
scenario("jwks-timeout", "JWKS timeout x3", "during the JWKS fetch")(
    lambda env, report: _validation_fails(
        env, report, lambda proxy: proxy.on("/jwks", "hold", "hold", "hold"), "TransportError",
        timeout=1.0))
scenario("id-token-invalid", "id_token signature fails", "during id_token validation")(
    lambda env, report: _validation_fails(
        env, report, lambda proxy: proxy.on("/token", ("rewrite", _tampered_id_token)),
        "InvalidIdToken"))


def _jwks_interrupted(env: Env, report: Report, sig: signal.Signals) -> None:
    case = Case(env, kind="device")
    gate = case.gate()
    case.proxy.on("/jwks", ("hold_answer", gate))
    try:
        with case.soft(report):
            child = case.spawn("child")
            assert gate.answered.wait(EVENT_WAIT), "the JWKS was never fetched"
            child.kill(sig)
            _assert_died_of(child, sig)
            _assert_saved_new(case, child)
        _finish(case, report)
    finally:
        case.cleanup()


for _sig in (signal.SIGINT, signal.SIGKILL):
    scenario(f"jwks-held-{_sig.name}", _sig.name, "during the JWKS fetch")(
        lambda env, report, sig=_sig: _jwks_interrupted(env, report, sig))


# on_refresh ---------------------------------------------------------------------------------------------


def _in_callback(env: Env, report: Report, sig: signal.Signals) -> None:
    case = Case(env)
    try:
        with case.soft(report):
            child = case.spawn("child", on_refresh="block")
            called = child.expect("in-on-refresh")
            assert called["thread"] == "MainThread", called
            child.kill(sig)
            _assert_died_of(child, sig)
            _assert_saved_new(case, child)
        _finish(case, report)
    finally:
        case.cleanup()


for _sig in (signal.SIGINT, signal.SIGKILL):
    scenario(f"on-refresh-{_sig.name}", _sig.name, "during on_refresh")(
        lambda env, report, sig=_sig: _in_callback(env, report, sig))


@scenario("on-refresh-reenters", "callback asks for a token", "during on_refresh")
def _reentrant_callback(env: Env, report: Report) -> None:
    case = Case(env)
    try:
        with case.soft(report):
            child = case.spawn("child", on_refresh="reenter")
            # Bounded: a callback that deadlocks on the refresh lock would never end.
            assert child.wait(EVENT_WAIT) == 0, child.names()
            reentered = child.expect("reentered")
            assert reentered["same"] and reentered["usable"], reentered
            assert child.result()["outcome"] == "ok"
        _finish(case, report)
    finally:
        case.cleanup()


# the file write -------------------------------------------------------------------------------------


def _file_write(env: Env, report: Report, n: int, at: str) -> None:
    case = Case(env)
    try:
        with case.soft(report):
            child = case.spawn("child", faults={"pause_save": {"n": n, "at": at}})
            child.expect("at-save")
            child.kill(signal.SIGKILL)
            _assert_died_of(child, signal.SIGKILL)
        _finish(case, report)
    finally:
        case.cleanup()


for _n, _at, _expected, _what in (
        (1, "entry", KNOWN_LIMIT, "kept record: before the tmp write"),
        (1, "before-rename", SURVIVES, "kept record: after fsync, before rename"),
        (1, "after-rename", SURVIVES, "kept record: after rename"),
        (2, "entry", SURVIVES, "final record: before the tmp write"),
        (2, "before-rename", SURVIVES, "final record: after fsync, before rename")):
    scenario(f"file-save{_n}-{_at}-SIGKILL", "SIGKILL", f"during the file write ({_what})",
             expected=_expected)(
        lambda env, report, n=_n, at=_at: _file_write(env, report, n, at))


# the Redis save -------------------------------------------------------------------------------------


def _write_script_sha() -> bytes:
    import hashlib

    from keyturn.stores.redis import scripts as lua

    return hashlib.sha1(lua.WRITE.encode()).hexdigest().encode()


@scenario("redis-save-entry-SIGKILL", "SIGKILL", "during the Redis save (before it is sent)",
          expected=KNOWN_LIMIT, needs=("redis",))
def _redis_entry(env: Env, report: Report) -> None:
    case = Case(env, store="redis")
    try:
        with case.soft(report):
            child = case.spawn("child", faults={"pause_redis_save": 1})
            child.expect("at-redis-save")
            child.kill(signal.SIGKILL)
            _assert_died_of(child, signal.SIGKILL)
        _finish(case, report)
    finally:
        case.cleanup()


@scenario("redis-save-reply-held-SIGKILL", "SIGKILL",
          "during the Redis save (written, reply not yet read)", needs=("redis",))
def _redis_reply_held(env: Env, report: Report) -> None:
    assert env.redis_proxy is not None
    case = Case(env, store="redis", redis_url=env.redis_proxy.url())
    gate = case.gate()
    env.redis_proxy.arm("hold_reply", (_write_script_sha(),), gate)
    try:
        with case.soft(report):
            child = case.spawn("child")
            assert gate.answered.wait(EVENT_WAIT), "the job never saved to Redis"
            child.kill(signal.SIGKILL)
            _assert_died_of(child, signal.SIGKILL)
        _finish(case, report)
    finally:
        case.cleanup()


def _redis_drop(env: Env, report: Report, mode: str) -> None:
    assert env.redis_proxy is not None
    case = Case(env, store="redis", redis_url=env.redis_proxy.url())
    env.redis_proxy.arm(mode, (_write_script_sha(),))
    try:
        with case.soft(report):
            child = case.spawn("child")
            child.wait()
            assert env.redis_proxy.hits[-1:] == [mode], env.redis_proxy.hits
            report.notes.append(f"job process: {child.result()['outcome']}")
        _finish(case, report)
    finally:
        case.cleanup()


for _mode, _what in (("drop_before", "before Redis got the save"),
                     ("drop_after", "after Redis wrote, before the reply")):
    scenario(f"redis-{_mode.replace('_', '-')}", "Redis drops the connection",
             f"during the Redis save ({_what})", needs=("redis",))(
        lambda env, report, mode=_mode: _redis_drop(env, report, mode))


def _stalled_holder(env: Env, report: Report, fault: str) -> None:
    case = Case(env, store="redis", lease=1.0)
    a: Child | None = None
    try:
        with case.soft(report):
            a = case.spawn("A", faults={fault: True})
            a.expect("stopping")
            deadline = time.monotonic() + EVENT_WAIT
            while a.state() != "T":
                assert time.monotonic() < deadline, f"A never stopped (state {a.state()})"
                time.sleep(0.01)
            # B takes the lock once A's lease ran out (nobody renews it while A is stopped).
            b = case.spawn("B")
            assert b.wait() == 0, (b.events, b.stderr_tail())
            b_token = b.result()["tokens"][0]
            assert len(case.refreshes()) == 1
            a.kill(signal.SIGCONT)
            assert a.wait() == 0, (a.names(), a.stderr_tail())
            statuses = [e.status for e in case.refreshes()]
            if fault == "stop_at_confirm":
                # A confirmed its lock before sending, found it lost, started over and adopted
                # B's token.
                assert "confirm-raised" in a.names(), a.names()
                assert a.result()["tokens"] == [b_token], a.result()
                assert statuses == [200], (
                    f"A sent its stale refresh token: statuses {statuses}; events of A "
                    f"{a.names()}\n{a.stderr_tail()}")
                if env.server.server_refreshes is not None:
                    assert env.server.server_refreshes() == 1
            elif env.server.retry_grace:
                # Stopped after its lock was confirmed, its refresh token on its way: B spent it,
                # and the server answers A's identical refresh within its grace with B's tokens.
                assert statuses == [200, 200], statuses
            else:
                # Stopped after its lock was confirmed: its refresh token was on its way, and
                # nothing on the client can call it back once B has spent it.
                assert statuses == [200, 400], statuses
        _finish(case, report)
    finally:
        if a is not None and a.code is None:
            with contextlib.suppress(ProcessLookupError):
                a.kill(signal.SIGCONT)
        case.cleanup()


scenario("redis-stalled-holder", "SIGSTOP past the lease",
         "a stalled Redis lock holder (before confirm)", needs=("redis",))(
    lambda env, report: _stalled_holder(env, report, "stop_at_confirm"))
scenario("redis-stalled-after-confirm", "SIGSTOP past the lease",
         "a stalled Redis lock holder (after confirm, before the send)", expected=KNOWN_LIMIT,
         needs=("redis",))(
    lambda env, report: _stalled_holder(env, report, "stop_at_send"))


# a full disk ----------------------------------------------------------------------------------------


class MountRefused(Exception):
    """``mount -t tmpfs`` is not permitted here (not root, or no CAP_SYS_ADMIN)."""


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "1m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise MountRefused(done.stderr.strip() or f"mount exited with {done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10, check=False)


def fill(path: Path, name: str = "filler") -> Path:
    """Fill the file system of ``path`` to the last byte; the filler file."""
    filler = path / name
    chunk = b"\0" * 4096
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            for _ in range(1 << 20):  # bounded: 4 GiB
                out.write(chunk)
        with contextlib.suppress(OSError):
            for _ in range(4096):
                out.write(b"\0")
    probe = path / "probe"
    try:
        probe.write_bytes(b"x")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    else:
        raise AssertionError("the disk is not full")
    return filler


@scenario("disk-full", "a full disk", "after sending, before the answer (disk fills)",
          needs=("tmpfs",))
def _disk_full(env: Env, report: Report) -> None:
    with small_tmpfs(env.work / "disk") as disk:
        case = Case(env, store_dir=disk / "store")
        gate = case.gate()
        case.proxy.on("/token", ("hold_answer", gate))
        try:
            with case.soft(report):
                child = case.spawn("child")
                assert gate.answered.wait(EVENT_WAIT), "the refresh never reached the server"
                fill(disk)
                gate.open()
                child.wait()
                _assert_saved_new(case, child)
                report.notes.append(f"job process on the full disk: "
                                    f"{child.result()['outcome']}, {len(child.all('saved'))} saves")
                # Its save gave back the rest of its reservation: fill the disk up again. A
                # process that must refresh another login there may not spend that login's
                # refresh token, whose answer it could not keep: it fails before sending anything.
                fill(disk, "filler2")
                other = case.server.login()
                before = case.proxy.mark()
                blocked = case.spawn("blocked", source=dict(case.source, refresh_token=other))
                blocked.wait()
                assert blocked.result().get("error") == "StoreError", blocked.result()
                assert case.refreshes(since=before) == [], "a refresh was sent onto a full disk"
            for left in disk.glob("filler*"):
                left.unlink()
            _finish(case, report)
        finally:
            case.cleanup()


# 8 processes, flock failing with ENOLCK ------------------------------------------------------------


@scenario("enolck-8-processes", "8 processes, flock ENOLCK", "one rotating token, at once")
def _eight_without_flock(env: Env, report: Report) -> None:
    case = Case(env)
    faults = {"enolck": True}
    try:
        with case.soft(report):
            herd = [case.spawn(f"herd{i}", faults=faults, barrier=True) for i in range(8)]
            for child in herd:
                child.expect("ready")
            for child in herd:
                child.go()
            results = []
            for child in herd:
                child.wait()
                results.append(child.result())
            statuses = [e.status for e in case.refreshes()]
            report.notes.append(f"refresh requests at the server: {len(statuses)}")
            assert all(r["outcome"] == "ok" for r in results), results
            assert statuses == [200], f"{len(statuses)} refresh requests, statuses {statuses}"
            if env.server.server_refreshes is not None:
                assert env.server.server_refreshes() == 1  # as the server counted them
            assert len({r["tokens"][0] for r in results}) == 1, "the processes hold different tokens"
        _finish(case, report, faults=faults)
    finally:
        case.cleanup()
