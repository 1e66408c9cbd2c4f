"""The device authorization server under load, beside the npm oidc-provider, in one run.

    python benchmarks/server_throughput.py                 # full run (3,000 requests per phase)
    python benchmarks/server_throughput.py --quick         # 500 requests per phase
    python benchmarks/server_throughput.py --requests N    # N requests per phase

Servers, each its own process(es) on 127.0.0.1, measured one after the other (never two at once,
so they do not share the 2 cores with each other):

1. keyturn on SQLite: ``python -m keyturn.server serve --config ... --data-dir ...``;
2. keyturn on Redis: the same with ``--redis redis://127.0.0.1:PORT/0`` and a private
   ``redis-server`` (127.0.0.1, a free port, ``--save '' --appendonly no``, a temporary directory),
   started before and stopped right after this server;
3. the npm oidc-provider of the tests (tests/support/providerfixture.start_provider, a public device
   client, the same 1,800 s device-code lifetime as keyturn);
4. a reference: a Node endpoint that answers 200 "ok" to anything (benchmarks/fast_endpoint.mjs),
   the ceiling of this load generator on this machine.

One load generator (asyncio + httpx in this process, ``CONCURRENCY`` workers sharing
``CONCURRENCY`` keep-alive connections; the same request list for every server) measures, per
server:

1. device authorization requests (every answer must be 200 with a device_code);
2. token polling of 200 pending codes, round robin (every answer must be 400
   authorization_pending or slow_down);
3. 200 device authorization requests on one connection, one at a time (latency without queueing);
4. then 10,000 more pending device codes are created through the same endpoint (same
   generator; every answer must be 200), and 1-3 are measured again.

The 200 codes to poll are created (and timed) first; that load also warms the connections up.

Recorded per phase: throughput, p50/p99 latency, HTTP status and OAuth error counts, CPU seconds
used by the server process(es), by the generator, and by every other process on the machine. Memory:
resident set of the server process(es) (for Redis: keyturn + redis-server, with Redis's own
used_memory and key count), and for SQLite the size of the files in the data directory, at start,
before and after the 10,000.

Rate limits: keyturn's only limits ([rate_limits] in config.py) count wrong user codes typed on
the /device page; device authorization and polling are not limited. The bench configuration still
raises them, and the oidc-provider has none. Any answer other than the expected ones is printed
and makes the run exit 1 (after writing the results).

Figures only: nothing here asserts on time. Writes benchmarks/server_results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from _infra import BENCH_DIR, NodeServer, keyturn_revision, machine_info, percentile

from keyturn.protocol.grants import GRANT_DEVICE_CODE

CONCURRENCY = 16
HELD = 10_000
POLLED_CODES = 200
SEQUENTIAL = 200  # device authorization requests on one connection, one at a time
DEVICE_CODE_LIFETIME = 1800  # keyturn's default; the provider's fixture default is 600
CLK_TCK = os.sysconf("SC_CLK_TCK")

AUTHORIZE_OK = frozenset({"200"})
POLL_OK = frozenset({"400 authorization_pending", "400 slow_down"})


# ------------------------------------------------------------------------------------------------
# Process figures
# ------------------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def other_processes(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """Every other process: (start time, CPU seconds of it and of its reaped children)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # utime, stime, cutime, cstime, starttime: fields 14-17 and 22 of proc(5)
        out[int(entry.name)] = (fields[19], sum(int(v) for v in fields[11:15]) / CLK_TCK)
    return out


def other_cpu_s(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> float:
    """CPU seconds other processes used between two snapshots (a process started meanwhile counts
    whole; one that started and ended meanwhile counts only once its parent reaped it)."""
    total = 0.0
    for pid, (started, cpu) in after.items():
        previous = before.get(pid)
        total += cpu - previous[1] if previous is not None and previous[0] == started else cpu
    return total


class Target:
    """One server under test: its endpoints, the processes whose RSS/CPU count, extra memory probes."""

    def __init__(self, name: str, *, device_endpoint: str, token_endpoint: str, client_id: str,
                 pids: dict[str, int], probe: Callable[[], dict[str, Any]] | None = None) -> None:
        self.name = name
        self.device_endpoint = device_endpoint
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self.pids = pids
        self.probe = probe

    def cpu(self) -> float:
        return sum(cpu_s(pid) for pid in self.pids.values())

    def memory(self) -> dict[str, Any]:
        rss = {name: round(rss_mib(pid), 1) for name, pid in self.pids.items()}
        out: dict[str, Any] = {"rss_mib": rss, "rss_mib_total": round(sum(rss.values()), 1)}
        if self.probe is not None:
            out.update(self.probe())
        return out


# ------------------------------------------------------------------------------------------------
# The load generator
# ------------------------------------------------------------------------------------------------


def outcome(response: httpx.Response) -> str:
    """"200" for a device authorization answer with a device_code, else "STATUS error"."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} (not JSON)"
    if response.status_code == 200 and isinstance(body, dict) and "device_code" in body:
        return "200"
    error = body.get("error", "?") if isinstance(body, dict) else "?"
    return f"{response.status_code} {error}"


async def load(requests: list[tuple[str, dict[str, str]]], *, keep: str | None = None,
               concurrency: int = CONCURRENCY) -> tuple[dict[str, Any], list[str]]:
    """POST every (url, form) with ``concurrency`` workers on as many keep-alive connections.

    Returns latency/throughput figures with the count of every outcome, and the values of the
    JSON member ``keep`` of the answers (the device codes when creating codes)."""
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    kept: list[str] = []
    queue = list(reversed(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        async def worker() -> None:
            while queue:
                url, form = queue.pop()
                started = time.perf_counter()
                response = await client.post(url, data=form)
                latencies.append((time.perf_counter() - started) * 1000)
                seen = outcome(response)
                outcomes[seen] = outcomes.get(seen, 0) + 1
                if keep is not None and seen == "200":
                    kept.append(response.json()[keep])

        cpu = time.process_time()
        wall = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return {"requests": len(latencies), "concurrency": concurrency, "wall_s": round(wall, 2),
            "per_s": round(len(latencies) / wall, 1),
            "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "outcomes": dict(sorted(outcomes.items())), "generator_cpu_s": round(cpu, 2)}, kept


def phase(target: Target, requests: list[tuple[str, dict[str, str]]], expected: frozenset[str], *,
          keep: str | None = None, concurrency: int = CONCURRENCY) -> tuple[dict[str, Any], list[str]]:
    """One measured load, with the server's CPU seconds over it and a check of every outcome."""
    mine = {os.getpid(), *target.pids.values()}
    others = other_processes(mine)
    before = target.cpu()
    figures, kept = asyncio.run(load(requests, keep=keep, concurrency=concurrency))
    server_cpu = target.cpu() - before
    figures["server_cpu_s"] = round(server_cpu, 2)
    # Whatever else ran on the machine meanwhile: near 0 when the run had the 2 cores to itself.
    figures["other_cpu_s"] = round(other_cpu_s(others, other_processes(mine)), 2)
    figures["server_cpu_ms_per_request"] = round(server_cpu * 1000 / max(1, figures["requests"]), 3)
    figures["unexpected"] = {k: v for k, v in figures["outcomes"].items() if k not in expected}
    return figures, kept


def authorize_requests(target: Target, n: int) -> list[tuple[str, dict[str, str]]]:
    return [(target.device_endpoint, {"client_id": target.client_id, "scope": "openid"})] * n


def measure(target: Target, n: int) -> dict[str, Any]:
    def scenario() -> dict[str, Any]:
        setup, pending = phase(target, authorize_requests(target, POLLED_CODES), AUTHORIZE_OK,
                               keep="device_code")
        polls = [(target.token_endpoint, {"client_id": target.client_id, "grant_type": GRANT_DEVICE_CODE,
                                          "device_code": pending[i % len(pending)]}) for i in range(n)]
        authorize, _ = phase(target, authorize_requests(target, n), AUTHORIZE_OK)
        poll, _ = phase(target, polls, POLL_OK)
        # Latency without queueing: one connection, one request at a time.
        single, _ = phase(target, authorize_requests(target, SEQUENTIAL), AUTHORIZE_OK, concurrency=1)
        return {"codes_to_poll": setup, "device_authorization": authorize, "token_poll": poll,
                "device_authorization_1_connection": single}

    print(f"== {target.name}", flush=True)
    result: dict[str, Any] = {"server": target.name, "memory_at_start": target.memory()}
    result["empty"] = scenario()
    result["memory_before_10k"] = target.memory()
    result["create_10k"], _ = phase(target, authorize_requests(target, HELD), AUTHORIZE_OK)
    result["memory_after_10k"] = target.memory()
    result["with_10k_pending"] = scenario()
    result["memory_at_end"] = target.memory()
    return result


# ------------------------------------------------------------------------------------------------
# The servers
# ------------------------------------------------------------------------------------------------


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@contextlib.contextmanager
def keyturn_server(work: Path, redis_url: str | None = None) -> Iterator[tuple[str, int]]:
    """``python -m keyturn.server serve``: yields (issuer, pid)."""
    config = work / "server.toml"
    # [rate_limits] only count wrong user codes on /device; raised anyway, so no bench ever
    # measures 429s. The interval is keyturn's default, written out.
    config.write_text(f'[lifetimes]\ndevice_code = {DEVICE_CODE_LIFETIME}\ninterval = 5\n'
                      '[rate_limits]\noverall = 1000000\nper_address = 1000000\n'
                      '[clients.bench]\ngrants = ["device_code", "refresh_token"]\nscopes = ["openid"]\n')
    command = [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config),
               "--data-dir", str(work / "data")]
    if redis_url is not None:
        command += ["--redis", redis_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        if not issuer.startswith("http"):
            raise RuntimeError(f"keyturn serve did not start (exit {process.poll()})")
        yield issuer, process.pid
    finally:
        stop(process)


def sqlite_files(data_dir: Path) -> dict[str, Any]:
    sizes = {p.name: p.stat().st_size for p in sorted(data_dir.iterdir()) if p.is_file()}
    return {"sqlite_files_bytes": sizes, "sqlite_files_mib_total": round(sum(sizes.values()) / 2**20, 2)}


def redis_probe(url: str) -> Callable[[], dict[str, Any]]:
    import redis

    client = redis.Redis.from_url(url)

    def probe() -> dict[str, Any]:
        info = client.info("memory")
        return {"redis_used_memory_mib": round(info["used_memory"] / 2**20, 2),
                "redis_keys": int(client.dbsize())}

    return probe


def run_keyturn_sqlite(work: Path, n: int) -> dict[str, Any]:
    with keyturn_server(work) as (issuer, pid):
        target = Target("keyturn serve (SQLite)", device_endpoint=f"{issuer}/device_authorization",
                        token_endpoint=f"{issuer}/token", client_id="bench", pids={"keyturn": pid},
                        probe=lambda: sqlite_files(work / "data"))
        return measure(target, n)


def run_keyturn_redis(work: Path, n: int) -> dict[str, Any]:
    from tests.support.redisfixture import (
        RedisServer,  # binds 127.0.0.1, --save '' --appendonly no, --dir work
    )

    (work / "redis").mkdir()
    redis_server = RedisServer(work / "redis").start()
    try:
        assert redis_server.process is not None
        redis_pid = redis_server.process.pid
        with keyturn_server(work, redis_server.url) as (issuer, pid):
            target = Target("keyturn serve (Redis)", device_endpoint=f"{issuer}/device_authorization",
                            token_endpoint=f"{issuer}/token", client_id="bench",
                            pids={"keyturn": pid, "redis-server": redis_pid},
                            probe=redis_probe(redis_server.url))
            result = measure(target, n)
            result["redis_server"] = {"version": redis_server.command("INFO server").decode(
                errors="replace").split("redis_version:", 1)[1].split()[0],
                "args": "--bind 127.0.0.1 --save '' --appendonly no"}
            return result
    finally:
        redis_server.stop()


def run_provider(work: Path, n: int) -> dict[str, Any]:
    from tests.support.providerfixture import make_client, start_provider

    client = make_client("bench-device", "none", grant_types=[
        GRANT_DEVICE_CODE, "refresh_token", "authorization_code"])
    provider = start_provider([client], tmp_dir=work, device_code_ttl=DEVICE_CODE_LIFETIME)
    try:
        target = Target("oidc-provider (npm)", device_endpoint=provider.device_authorization_endpoint,
                        token_endpoint=provider.token_endpoint, client_id="bench-device",
                        pids={"node": provider.pid})
        result = measure(target, n)
        version = json.loads((Path(__file__).resolve().parent.parent / "tests" / "provider" / "node_modules"
                              / "oidc-provider" / "package.json").read_text())["version"]
        result["oidc_provider_version"] = version
        return result
    finally:
        provider.stop()


def run_null_endpoint(work: Path, n: int) -> dict[str, Any]:
    """The generator's ceiling: same request shape and concurrency, a server that does nothing."""
    server = NodeServer("fast_endpoint.mjs", [], work, "null-endpoint")
    try:
        target = Target("null endpoint (Node, reference)", device_endpoint=server.url,
                        token_endpoint=server.url, client_id="bench", pids={"node": server.process.pid})
        ok = frozenset({"200 (not JSON)"})
        warm_up, _ = phase(target, authorize_requests(target, POLLED_CODES), ok)
        figures, _ = phase(target, authorize_requests(target, n), ok)
        single, _ = phase(target, authorize_requests(target, SEQUENTIAL), ok, concurrency=1)
        return {"server": target.name, "warm_up": warm_up, "post": figures, "post_1_connection": single}
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def memory_line(memory: dict[str, Any]) -> str:
    parts = [f"RSS {memory['rss_mib_total']} MiB"]
    if len(memory["rss_mib"]) > 1:
        parts[0] += " (" + " + ".join(f"{k} {v}" for k, v in memory["rss_mib"].items()) + ")"
    if "sqlite_files_mib_total" in memory:
        parts.append(f"SQLite files {memory['sqlite_files_mib_total']} MiB")
    if "redis_used_memory_mib" in memory:
        parts.append(f"Redis used_memory {memory['redis_used_memory_mib']} MiB, {memory['redis_keys']} keys")
    return ", ".join(parts)


def phases(server: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, figures) of every load a server took, in order."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if "post" in server:
        rows += [("POST (device authorization form)", server["post"]),
                 ("POST, 1 connection", server["post_1_connection"])]
    for stage in ("empty", "with_10k_pending"):
        if stage in server:
            rows += [(f"{stage} {kind}", figures) for kind, figures in server[stage].items()]
        if stage == "empty" and "create_10k" in server:
            rows.append((f"create {HELD} pending codes", server["create_10k"]))
    return rows


def print_report(results: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    print(f"\n{'server':32} {'phase':52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'srv CPU ms/req':>15} "
          f"{'other CPU s':>12}  outcomes")
    for server in results["servers"]:
        for label, figures in phases(server):
            print(f"{server['server']:32} {label:52} {figures['per_s']:>8} {figures['p50_ms']:>8} "
                  f"{figures['p99_ms']:>8} {figures['server_cpu_ms_per_request']:>15} "
                  f"{figures['other_cpu_s']:>12}  {json.dumps(figures['outcomes'])}")
            if figures["unexpected"]:
                problems.append(f"{server['server']} {label}: {figures['unexpected']}")
    print()
    for server in results["servers"]:
        if "memory_at_start" not in server:
            continue
        print(f"{server['server']}:")
        for when in ("memory_at_start", "memory_before_10k", "memory_after_10k", "memory_at_end"):
            print(f"  {when[7:]:12} {memory_line(server[when])}")
    for problem in problems:
        print(f"UNEXPECTED ANSWERS: {problem}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="500 requests per phase")
    parser.add_argument("--requests", type=int, help="requests per measured phase (default 3000)")
    args = parser.parse_args()
    n = args.requests or (500 if args.quick else 3000)
    started = time.time()
    results: dict[str, Any] = {
        "machine": machine_info(), "keyturn": keyturn_revision(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "command": "python benchmarks/server_throughput.py" + (" --quick" if args.quick else "")
                   + (f" --requests {args.requests}" if args.requests else ""),
        "concurrency": CONCURRENCY, "connections": CONCURRENCY, "requests": n, "held": HELD,
        "polled_codes": POLLED_CODES, "device_code_lifetime_s": DEVICE_CODE_LIFETIME, "servers": [],
    }
    with tempfile.TemporaryDirectory(prefix="keyturn-server-bench-") as tmp:
        for name, run in (("sqlite", run_keyturn_sqlite), ("redis", run_keyturn_redis),
                          ("provider", run_provider), ("null", run_null_endpoint)):
            work = Path(tmp) / name
            work.mkdir()
            results["servers"].append(run(work, n))
    results["run_time_s"] = round(time.time() - started, 1)
    problems = print_report(results)
    results["unexpected_answers"] = problems
    print(f"\nrun time {results['run_time_s']} s")
    (BENCH_DIR / "server_results.json").write_text(json.dumps(results, indent=1) + "\n")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
