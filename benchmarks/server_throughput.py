"""keyturn's device authorization server under wrk, beside the npm oidc-provider, in one run.

    python benchmarks/server_throughput.py            # full run: 8 s per phase and server (~8 min)
    python benchmarks/server_throughput.py --quick    # 2 s per phase: checks that it works
    python benchmarks/server_throughput.py --seconds N

Load generator: Debian's ``wrk`` (a C program; its set-up here runs ``apt-get install -y wrk``
when it is missing), one thread and 16 keep-alive connections, pinned to CPU 1
(``taskset -c 1 wrk -t1 -c16 -d8s --latency``), with the Lua scripts of benchmarks/wrk/ so that
the requests vary: many clients, many device codes, many refresh tokens. Every server is pinned
to CPU 0 (``taskset -c 0``; for the Redis row redis-server too): the figures are per core.

Servers, all started first and measured one after the other, alternating per phase (discovery
on each, then device authorization on each, ...) so that a drift of the machine hits all:

1. keyturn on SQLite: ``python -m keyturn.server serve --config ... --data-dir ...``;
2. keyturn on Redis: the same with a private redis-server (127.0.0.1, a free port,
   ``--save '' --appendonly no``), its URL given in ``KEYTURN_REDIS_URL``;
3. the npm oidc-provider of the tests (tests/support/providerfixture.start_provider);
4. keyturn's same app on its in-memory storage (benchmarks/_memory_server.py, the storage of
   the tests; no ``keyturn serve`` option): oidc-provider here keeps its state in a JavaScript
   Map, so this row compares the request handling alone;
5. and, as a second figure, keyturn with ``--workers 2`` on SQLite and on Redis, on both cores
   (wrk then shares CPU 1 with a worker).

Same work on both sides: both sign JWT access tokens with ES256 (keyturn: ``signing_alg =
"ES256"``; oidc-provider: the tests' resource server ``https://api.example.test``, whose
access-token format is JWT signed with ES256, and id_tokens signed ES256 as the clients ask).
Phases, each on 64 public and 64 confidential clients:

* discovery: GET /.well-known/openid-configuration;
* device authorization: POST the device endpoint (64 public clients round robin);
* polling, pending: 8,000 pending device codes round robin (each polled every 1.5 s or so, past
  keyturn's 1 s interval, so every answer is authorization_pending);
* polling, slow_down: 200 codes round robin (keyturn answers slow_down; oidc-provider
  authorization_pending: it does not enforce the interval);
* client credentials: 64 confidential clients (client_secret_basic), scope api:read;
* refresh: refresh tokens minted beforehand, each used once (keyturn: through its storage API in
  this process before the server starts; oidc-provider: POST /__test/mint_refresh_token). Every
  answer carries a new refresh token, an access token and an id_token.

Before the measured phases, each server gets every phase for 1 s (not recorded: V8 compiles).
At the end, the resident memory of each server's processes is recorded.

Rate limits: keyturn's bench configuration raises every [rate_limits] (all requests come from
127.0.0.1); every answer other than the expected ones is counted and reported, and makes the run
exit 1 after writing the results.

Recorded per phase: requests/s, p50/p99 latency (wrk --latency), server CPU ms per request (user
+ system of the server's processes from /proc/PID/stat, redis-server included for Redis), wrk's
own CPU, and the CPU every other process on the machine used meanwhile. Figures only: nothing
here asserts on time. Writes benchmarks/server_results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from _infra import BENCH_DIR, ROOT, keyturn_revision, machine_info

from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN

WRK_DIR = BENCH_DIR / "wrk"
CONNECTIONS = 16
SERVER_CPUS = {0}
WRK_CPU = "1"
PUBLIC_CLIENTS = 64
SERVICE_CLIENTS = 64
PENDING_CODES = 8000
SLOW_DOWN_CODES = 200
DEVICE_CODE_LIFETIME = 1800
#: keyturn's interval in the bench: a code polled again within 0.8 s gets slow_down (20 % jitter),
#: one polled later authorization_pending.
INTERVAL = 1
RESOURCE = "https://api.example.test"  # the provider's JWT (ES256) resource server
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: Refresh tokens minted per server and phase run, per second of the run (more than any server
#: answers: each is used once and the run stops early if they run out).
REFRESH_PER_SECOND = 3500

EXPECTED = {
    "discovery": {"200"},
    "device_authorization": {"200"},
    "poll_pending": {"400 authorization_pending"},
    "poll_slow_down": {"400 slow_down", "400 authorization_pending"},
    "client_credentials": {"200"},
    "refresh": {"200"},
}
PHASES = tuple(EXPECTED)


# ------------------------------------------------------------------------------------------------
# Processes and CPU
# ------------------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing and apt-get install -y wrk did not install it")
    return found


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included; fields 14, 15)."""
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (uvicorn's workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of ``pid`` onto ``cpus`` (threads made later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(task.name), cpus)


def uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * CLK_TCK


def all_cpu() -> dict[int, tuple[str, float]]:
    """Every process: (start time, CPU seconds of it and of its reaped children); under the key
    -1, when the snapshot was taken (clock ticks since boot, as start times)."""
    out: dict[int, tuple[str, float]] = {-1: (str(uptime_ticks()), 0.0)}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat(int(entry.name))
        except OSError:
            continue
        # utime, stime, cutime, cstime, starttime: fields 14-17 and 22 of proc(5)
        out[int(entry.name)] = (fields[19], sum(int(v) for v in fields[11:15]) / CLK_TCK)
    return out


def cpu_between(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                only: set[int] | None = None, exclude: set[int] | None = None) -> float:
    """CPU seconds used between two snapshots: a process started meanwhile counts whole, one
    that was there but could not be read in ``before`` not at all."""
    taken = float(before[-1][0]) - CLK_TCK  # a second of slack: start times are in ticks
    total = 0.0
    for pid, (started, cpu) in after.items():
        if pid == -1 or (only is not None and pid not in only) or (
                exclude is not None and pid in exclude):
            continue
        previous = before.get(pid)
        if previous is not None and previous[0] == started:
            total += cpu - previous[1]
        elif float(started) >= taken:
            total += cpu
    return total


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# ------------------------------------------------------------------------------------------------
# The servers
# ------------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    issuer: str
    discovery: str
    device_endpoint: str
    token_endpoint: str
    root_pid: int
    extra_pids: set[int] = field(default_factory=set)
    cpus: set[int] = field(default_factory=lambda: set(SERVER_CPUS))
    resource: str | None = None  # sent with client credentials (the provider's JWT format)
    secrets: dict[str, str] = field(default_factory=dict)
    mint: Callable[[int], list[tuple[str, str]]] | None = None  # n -> [(client_id, token)]
    inputs: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def pids(self) -> set[int]:
        return descendants(self.root_pid) | self.extra_pids


def public_ids() -> list[str]:
    return [f"device-{i:02d}" for i in range(PUBLIC_CLIENTS)]


def service_ids() -> list[str]:
    return [f"service-{i:02d}" for i in range(SERVICE_CLIENTS)]


def keyturn_config(work: Path, service_secrets: dict[str, str]) -> Path:
    from keyturn.server import hash_password

    lines = [
        'signing_alg = "ES256"',
        f"[lifetimes]\ndevice_code = {DEVICE_CODE_LIFETIME}\ninterval = {INTERVAL}",
        # Every request comes from 127.0.0.1 and every limit is raised: no figure is a 429.
        "[rate_limits]\n" + "\n".join(f"{name} = 1000000000" for name in (
            "per_address", "overall", "secret_per_address", "secret_per_client",
            "pending_per_client", "pending_per_address")),
    ]
    for client_id in public_ids():
        lines.append(f'[clients.{client_id}]\ngrants = ["device_code", "refresh_token"]\n'
                     'scopes = ["openid", "offline_access", "api:read"]')
    for client_id, secret in service_secrets.items():
        # A cheap scrypt: each secret is hashed once per worker (then remembered by digest), and
        # the warm-up must not spend its second on 64 hashes of 0.1 s.
        lines.append(f'[clients.{client_id}]\ngrants = ["client_credentials"]\n'
                     f'scopes = ["api:read"]\nsecret_hash = "{hash_password(secret, n=2**10)}"')
    path = work / "server.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def mint_keyturn_tokens(storage: Any, n: int) -> list[tuple[str, str]]:
    """``n`` refresh tokens stored as the server's device grant would store them."""
    from keyturn.server.device_flow import hash_code
    from keyturn.server.storage.base import RefreshRecord

    now = time.time()
    clients = public_ids()
    minted = []
    for i in range(n):
        token = secrets.token_urlsafe(32)
        client_id = clients[i % len(clients)]
        storage.add_refresh_token(RefreshRecord(
            token_hash=hash_code(token), family_id=secrets.token_urlsafe(12), client_id=client_id,
            subject=f"user{i % 500}", scope=("openid", "offline_access", "api:read"),
            created_at=now, expires_at=now + 86400, auth_time=now))
        minted.append((client_id, token))
    return minted


@contextlib.contextmanager
def keyturn_server(work: Path, name: str, *, workers: int, cpus: set[int], redis_url: str | None,
                   redis_pid: int | None, refresh_tokens: int) -> Iterator[Target]:
    from keyturn.server.runner import open_storage

    work.mkdir(parents=True)
    service_secrets = {client_id: secrets.token_urlsafe(24) for client_id in service_ids()}
    config = keyturn_config(work, service_secrets)
    data = work / "data"
    # Refresh tokens through the storage API, before the server starts (its own process).
    storage = open_storage(data, redis_url)
    try:
        minted = mint_keyturn_tokens(storage, refresh_tokens)
    finally:
        storage.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if redis_url is not None:
        env["KEYTURN_REDIS_URL"] = redis_url  # not on the command line (ps shows argv)
    command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), sys.executable, "-m",
               "keyturn.server", "serve", "--config", str(config), "--data-dir", str(data),
               "--workers", str(workers)]
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, text=True)
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        if not issuer.startswith("http"):
            raise RuntimeError(f"keyturn serve did not start (exit {process.poll()}):\n"
                               + (work / "server.log").read_text()[-2000:])
        wait_ready(f"{issuer}/.well-known/openid-configuration")
        pool = iter(minted)
        target = Target(
            name=name, issuer=issuer, discovery=f"{issuer}/.well-known/openid-configuration",
            device_endpoint=f"{issuer}/device_authorization", token_endpoint=f"{issuer}/token",
            root_pid=process.pid, extra_pids={redis_pid} if redis_pid else set(), cpus=cpus,
            secrets=service_secrets,
            mint=lambda n: [next(pool) for _ in range(n)],
            info={"workers": workers, "storage": "Redis" if redis_url else "SQLite"})
        yield target
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def keyturn_memory_server(work: Path, *, refresh_tokens: int) -> Iterator[Target]:
    """_memory_server.py: the same app on its in-memory storage, as oidc-provider's Map."""
    work.mkdir(parents=True)
    service_secrets = {client_id: secrets.token_urlsafe(24) for client_id in service_ids()}
    config = keyturn_config(work, service_secrets)
    tokens = work / "tokens.json"
    command = ["taskset", "-c", ",".join(map(str, sorted(SERVER_CPUS))), sys.executable,
               str(BENCH_DIR / "_memory_server.py"), str(config), str(refresh_tokens), str(tokens)]
    log = open(work / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=BENCH_DIR)
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        if not issuer.startswith("http"):
            raise RuntimeError(f"_memory_server.py did not start (exit {process.poll()}):\n"
                               + (work / "server.log").read_text()[-2000:])
        wait_ready(f"{issuer}/.well-known/openid-configuration")
        pool = iter([(client_id, token) for client_id, token in json.loads(tokens.read_text())])
        yield Target(
            name="keyturn (memory storage)", issuer=issuer,
            discovery=f"{issuer}/.well-known/openid-configuration",
            device_endpoint=f"{issuer}/device_authorization", token_endpoint=f"{issuer}/token",
            root_pid=process.pid, secrets=service_secrets,
            mint=lambda n: [next(pool) for _ in range(n)],
            info={"workers": 1, "storage": "memory (benchmarks/_memory_server.py)"})
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def redis_server(work: Path) -> Iterator[Any]:
    from tests.support.redisfixture import RedisServer  # 127.0.0.1, --save '' --appendonly no

    work.mkdir(parents=True)
    server = RedisServer(work).start()
    try:
        assert server.process is not None
        pin(server.process.pid, SERVER_CPUS)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def provider_server(work: Path) -> Iterator[Target]:
    from tests.support.providerfixture import make_client, start_provider

    work.mkdir(parents=True)
    clients = [make_client(client_id, "none", grant_types=[GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN],
                           id_token_signed_response_alg="ES256") for client_id in public_ids()]
    clients += [make_client(client_id, "client_secret_basic") for client_id in service_ids()]
    provider = start_provider(clients, tmp_dir=work, device_code_ttl=DEVICE_CODE_LIFETIME)
    try:
        pin(provider.pid, SERVER_CPUS)
        client_ids = public_ids()

        def mint(n: int) -> list[tuple[str, str]]:
            out: list[tuple[str, str]] = []
            per_client = -(-n // len(client_ids))
            with httpx.Client(trust_env=False, timeout=120) as http:
                for client_id in client_ids:
                    answer = http.post(f"{provider.url}/__test/mint_refresh_token", json={
                        "client_id": client_id, "scope": "openid offline_access api:read",
                        "resource": RESOURCE, "count": per_client})
                    answer.raise_for_status()
                    out += [(client_id, token) for token in answer.json()["refresh_tokens"]]
            # Interleaved over the clients, as keyturn's.
            return [out[(i % len(client_ids)) * per_client + i // len(client_ids)]
                    for i in range(n)]

        version = json.loads((ROOT / "tests" / "provider" / "node_modules" / "oidc-provider"
                              / "package.json").read_text())["version"]
        yield Target(
            name="oidc-provider (npm)", issuer=provider.issuer,
            discovery=f"{provider.issuer}/.well-known/openid-configuration",
            device_endpoint=provider.device_authorization_endpoint,
            token_endpoint=provider.token_endpoint, root_pid=provider.pid, resource=RESOURCE,
            secrets={client_id: provider.clients[client_id].client_secret or ""
                     for client_id in service_ids()},
            mint=mint, info={"oidc_provider_version": version})
    finally:
        provider.stop()


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, trust_env=False, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.1)


# ------------------------------------------------------------------------------------------------
# Inputs: request lines for wrk/*.lua ("AUTHORIZATION<TAB>BODY")
# ------------------------------------------------------------------------------------------------


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def write_lines(path: Path, lines: list[tuple[str, dict[str, str]]]) -> Path:
    path.write_text("".join(f"{auth}\t{urlencode(form)}\n" for auth, form in lines))
    return path


async def _device_codes(target: Target, n: int) -> list[tuple[str, str]]:
    clients = public_ids()
    forms = [{"client_id": clients[i % len(clients)], "scope": "openid"} for i in range(n)]
    out: list[tuple[str, str]] = []
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as http:
        async def worker() -> None:
            while forms:
                form = forms.pop()
                answer = await http.post(target.device_endpoint, data=form)
                if answer.status_code != 200:
                    raise RuntimeError(f"{target.name}: device authorization answered "
                                       f"{answer.status_code} {answer.text[:200]}")
                out.append((form["client_id"], answer.json()["device_code"]))

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return out


def prepare(target: Target, work: Path, seconds: float, warm_seconds: float) -> None:
    """The request lines of every phase (and of the warm-up, for refresh: tokens are single-use)."""
    work.mkdir(parents=True, exist_ok=True)
    clients = public_ids()
    write_lines(work / "device_authorization", [
        ("", {"client_id": clients[i % len(clients)], "scope": "openid"}) for i in range(len(clients))])
    codes = asyncio.run(_device_codes(target, PENDING_CODES + SLOW_DOWN_CODES))
    polls = [("", {"client_id": client_id, "grant_type": GRANT_DEVICE_CODE, "device_code": code})
             for client_id, code in codes]
    write_lines(work / "poll_pending", polls[:PENDING_CODES])
    write_lines(work / "poll_slow_down", polls[PENDING_CODES:])
    service = []
    for client_id, secret in target.secrets.items():
        form = {"grant_type": GRANT_CLIENT_CREDENTIALS, "scope": "api:read"}
        if target.resource is not None:
            form["resource"] = target.resource
        service.append((basic(client_id, secret), form))
    write_lines(work / "client_credentials", service)
    assert target.mint is not None
    for name, duration in (("refresh", seconds), ("refresh_warm", warm_seconds)):
        minted = target.mint(int(REFRESH_PER_SECOND * duration))
        write_lines(work / name, [("", {"client_id": client_id, "grant_type": GRANT_REFRESH_TOKEN,
                                         "refresh_token": token}) for client_id, token in minted])
    target.inputs = {phase: work / phase for phase in PHASES if phase != "discovery"}
    target.inputs["refresh_warm"] = work / "refresh_warm"


# ------------------------------------------------------------------------------------------------
# One wrk run
# ------------------------------------------------------------------------------------------------


def run_wrk(wrk: str, target: Target, phase: str, seconds: float, work: Path, *,
            warm: bool = False) -> dict[str, Any]:
    out = work / f"{target.name}-{phase}{'-warm' if warm else ''}.json".replace(" ", "_")
    env = {**os.environ, "WRK_DIR": str(WRK_DIR), "WRK_OUT": str(out)}
    if phase == "discovery":
        script, url = "get.lua", target.discovery
    else:
        script = "once.lua" if phase == "refresh" else "form.lua"
        url = target.token_endpoint if phase != "device_authorization" else target.device_endpoint
        env["WRK_LINES"] = str(target.inputs["refresh_warm" if warm and phase == "refresh" else phase])
    command = ["taskset", "-c", WRK_CPU, wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s",
               "--latency", "--timeout", "10s", "-s", str(WRK_DIR / script), url]
    server_pids = target.pids()
    before = all_cpu()
    process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60)
    after = all_cpu()
    if process.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed on {target.name} {phase}: {process.stderr[-1000:]}")
    figures = json.loads(out.read_text())
    seconds_run = figures["duration_us"] / 1e6
    requests = max(1, figures["requests"])
    server_cpu = cpu_between(before, after, only=server_pids)
    # wrk is this process's child: reaped, its CPU shows in our cutime/cstime.
    others = cpu_between(before, after, exclude=server_pids | {os.getpid()})
    expected = EXPECTED[phase]
    unexpected = {k: v for k, v in figures["answers"].items() if k not in expected}
    errors = {k: v for k, v in figures["socket_errors"].items() if v}
    if errors:
        unexpected["socket errors"] = errors
    return {
        "requests": figures["requests"], "seconds": round(seconds_run, 2),
        "per_s": round(figures["requests"] / seconds_run, 1),
        "p50_ms": round(figures["latency_us"]["p50"] / 1000, 2),
        "p99_ms": round(figures["latency_us"]["p99"] / 1000, 2),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / requests, 3),
        "other_cpu_s": round(others, 2), "answers": dict(sorted(figures["answers"].items())),
        "unexpected": unexpected,
    }


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> list[str]:
    problems = []
    print(f"\n{'phase':22} {'server':34} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'CPU ms/req':>10} {'vs provider':>11} {'other CPU s':>11}  answers")
    for phase in PHASES:
        rows = results["phases"][phase]
        reference = rows.get("oidc-provider (npm)")
        for name, figures in rows.items():
            ratio = ""
            if reference is not None and name != "oidc-provider (npm)":
                ratio = f"{figures['per_s'] / reference['per_s']:.2f}x"
                figures["ratio_per_s"] = round(figures["per_s"] / reference["per_s"], 2)
                figures["ratio_cpu"] = round(reference["server_cpu_ms_per_request"]
                                             / max(1e-9, figures["server_cpu_ms_per_request"]), 2)
            print(f"{phase:22} {name:34} {figures['per_s']:>9} {figures['p50_ms']:>7} "
                  f"{figures['p99_ms']:>7} {figures['server_cpu_ms_per_request']:>10} {ratio:>11} "
                  f"{figures['other_cpu_s']:>11}  {json.dumps(figures['answers'])}")
            if figures["unexpected"]:
                problems.append(f"{name} {phase}: {figures['unexpected']}")
    for problem in problems:
        print(f"UNEXPECTED ANSWERS: {problem}")
    return problems


PHASE_NAMES = {
    "discovery": "discovery (GET)", "device_authorization": "device authorization",
    "poll_pending": "polling, pending", "poll_slow_down": "polling, slow_down",
    "client_credentials": "client credentials", "refresh": "refresh",
}


def markdown(results: dict[str, Any]) -> str:
    """The tables of SERVER_RESULTS.md, from server_results.json (``--report``)."""
    def answers(figures: dict[str, Any]) -> str:
        return ", ".join(f"{n:,} x {key}" for key, n in figures["answers"].items())

    lines = ["| phase | server | req/s | vs provider | p50 ms | p99 ms | server CPU ms/req "
             "| provider's CPU / this | other CPU s | answers |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for phase in PHASES:
        for name, figures in results["phases"][phase].items():
            ratio = f"{figures['ratio_per_s']:.2f}" if "ratio_per_s" in figures else ""
            per_core = f"{figures['ratio_cpu']:.2f}" if "ratio_cpu" in figures else ""
            lines.append(f"| {PHASE_NAMES[phase]} | {name} | {figures['per_s']:,.0f} | {ratio} "
                         f"| {figures['p50_ms']} | {figures['p99_ms']} "
                         f"| {figures['server_cpu_ms_per_request']} | {per_core} "
                         f"| {figures['other_cpu_s']} | {answers(figures)} |")
    return "\n".join(lines) + "\n"


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("uvicorn", "starlette", "httptools", "uvloop", "redis", "hiredis",
                 "cryptography", "joserfc"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--report", action="store_true",
                        help="print server_results.json as the tables of SERVER_RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="2 s per phase (checks the script)")
    parser.add_argument("--seconds", type=float, help="seconds per phase and server (default 8)")
    parser.add_argument("--no-workers", action="store_true", help="skip the --workers 2 rows")
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads((BENCH_DIR / "server_results.json").read_text())), end="")
        return
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    warm = 1.0
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(), "keyturn": keyturn_revision(), "wrk": wrk_version.strip(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "command": " ".join(["python benchmarks/server_throughput.py", *sys.argv[1:]]),
        "connections": CONNECTIONS, "seconds_per_phase": seconds, "server_cpus": sorted(SERVER_CPUS),
        "wrk_cpu": WRK_CPU, "public_clients": PUBLIC_CLIENTS, "service_clients": SERVICE_CLIENTS,
        "pending_codes": PENDING_CODES, "slow_down_codes": SLOW_DOWN_CODES,
        "interval_s": INTERVAL, "servers": {}, "phases": {phase: {} for phase in PHASES},
        "versions": versions(),
    }
    tokens = int(REFRESH_PER_SECOND * (seconds + warm))
    with tempfile.TemporaryDirectory(prefix="keyturn-server-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        work = Path(tmp)
        redis = stack.enter_context(redis_server(work / "redis"))
        assert redis.process is not None
        targets = [
            stack.enter_context(keyturn_server(
                work / "sqlite", "keyturn serve (SQLite)", workers=1, cpus=SERVER_CPUS,
                redis_url=None, redis_pid=None, refresh_tokens=tokens)),
            stack.enter_context(keyturn_server(
                work / "redis-1", "keyturn serve (Redis)", workers=1, cpus=SERVER_CPUS,
                redis_url=redis.url, redis_pid=redis.process.pid, refresh_tokens=tokens)),
            stack.enter_context(provider_server(work / "provider")),
            stack.enter_context(keyturn_memory_server(work / "memory", refresh_tokens=tokens)),
        ]
        if not args.no_workers:
            targets += [
                stack.enter_context(keyturn_server(
                    work / "sqlite-2", "keyturn serve (SQLite, 2 workers)", workers=2,
                    cpus={0, 1}, redis_url=None, redis_pid=None, refresh_tokens=tokens)),
                stack.enter_context(keyturn_server(
                    work / "redis-2", "keyturn serve (Redis, 2 workers)", workers=2, cpus={0, 1},
                    redis_url=redis.url.rsplit("/", 1)[0] + "/1", redis_pid=redis.process.pid,
                    refresh_tokens=tokens)),
            ]
        results["redis_server"] = redis.command("INFO server").decode(errors="replace").split(
            "redis_version:", 1)[1].split()[0]
        for target in targets:
            print(f"== preparing {target.name} ({target.issuer})", flush=True)
            prepare(target, work / "inputs" / target.name.replace(" ", "_"), seconds, warm)
            results["servers"][target.name] = target.info
            for phase in PHASES:
                run_wrk(wrk, target, phase, warm, work, warm=True)
        for phase in PHASES:
            for target in targets:
                figures = run_wrk(wrk, target, phase, seconds, work)
                results["phases"][phase][target.name] = figures
                print(f"{phase:22} {target.name:34} {figures['per_s']:>9} req/s "
                      f"{figures['server_cpu_ms_per_request']:>7} ms CPU/req", flush=True)
        for target in targets:
            # Resident memory at the end (every grant, token and counter of the run still held;
            # for Redis, redis-server counts in each Redis row, shared by them).
            results["servers"][target.name]["rss_mib_at_end"] = round(
                sum(rss_mib(pid) for pid in target.pids()), 1)
    results["run_time_s"] = round(time.time() - started, 1)
    problems = print_report(results)
    results["unexpected_answers"] = problems
    print(f"\nrun time {results['run_time_s']} s")
    (BENCH_DIR / "server_results.json").write_text(json.dumps(results, indent=1) + "\n")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
