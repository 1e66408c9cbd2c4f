"""The herd at fleet scale: processes x threads calling get_access_token() when the token expires.

Stores compared: RedisStore (one real redis-server; the processes could be on any host), FileStore
(one directory; processes of one host), and a MemoryStore per process (no sharing: the baseline a
fleet gets without a shared cache). For each, every process starts ``threads`` threads that wait on
one event; a cross-process barrier releases all processes, each sets its event, and every thread
calls ``get_access_token()`` once. Reported: token requests counted at the real provider (the test
oidc-provider, client ``short``, 2-second tokens) per herd, and the latency each caller sees, from
its release to its token (median, p99, max), over ``--rounds`` herds at expiry plus the cold herd
on an empty store.

    /work/venv/bin/python benchmarks/herd_redis.py [--processes 8] [--threads 16] [--rounds 5]

Everything listens on 127.0.0.1. Needs node (the provider) and redis-server on PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _infra import machine_info, median, percentile  # also puts the repository root on sys.path

STORES = ("redis", "file", "memory")


def _make_store(kind: str, where: str) -> Any:
    import keyturn

    if kind == "redis":
        return keyturn.RedisStore(where)
    if kind == "file":
        return keyturn.FileStore(where)
    return keyturn.MemoryStore()


def _worker(kind: str, where: str, issuer: str, client_id: str, secret: str, threads: int,
            rounds: int, barrier: Any, queue: Any) -> None:
    import keyturn

    source = keyturn.ClientCredentials(issuer=issuer, client_id=client_id, client_secret=secret,
                                       store=_make_store(kind, where))
    for _ in range(rounds):
        go = threading.Event()
        released = [0.0]
        results: list[tuple[float, str]] = []

        def call() -> None:
            go.wait()
            try:
                token = source.get_access_token()
            except Exception as exc:  # reported, never hidden
                token = f"error: {type(exc).__name__}"
            results.append((time.perf_counter(), token))

        pool = [threading.Thread(target=call) for _ in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        released[0] = time.perf_counter()
        go.set()
        for thread in pool:
            thread.join()
        current = source.cache.current
        queue.put({
            "latencies_ms": [(end - released[0]) * 1000 for end, _ in results],
            "tokens": sorted({t for _, t in results}),
            "expires_at": current.expires_at if current is not None else None,
            "released": released[0], "ends": [end for end, _ in results],
        })


def herd(kind: str, where: str, provider: Any, processes: int, threads: int,
         rounds: int) -> list[dict[str, Any]]:
    """A cold herd then ``rounds`` herds at expiry; one dict per herd."""
    client = provider.clients["short"]
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes + 1), context.Queue()
    workers = [context.Process(target=_worker, args=(
        kind, where, provider.issuer, client.client_id, client.client_secret, threads, rounds + 1,
        barrier, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    herds: list[dict[str, Any]] = []
    expires_at = 0.0
    try:
        for round_ in range(rounds + 1):
            # Wait until every process's token has expired: the herd meets no valid token.
            time.sleep(max(0.0, expires_at - time.time()) + 0.05)
            provider.reset_stats()
            barrier.wait(timeout=120)
            reports = [queue.get(timeout=120) for _ in workers]
            latencies = [ms for r in reports for ms in r["latencies_ms"]]
            tokens = {t for r in reports for t in r["tokens"]}
            herds.append({
                "round": "cold" if round_ == 0 else "expiry",
                "token_requests": provider.token_requests("short"),
                "distinct_tokens": len(tokens),
                "errors": sorted(t for t in tokens if t.startswith("error")),
                "callers": len(latencies),
                "latencies_ms": latencies,
                "wall_ms": (max(e for r in reports for e in r["ends"])
                            - min(r["released"] for r in reports)) * 1000,
            })
            expires_at = max(r["expires_at"] or 0.0 for r in reports)
        for worker in workers:
            worker.join(timeout=60)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    return herds


def summarize(herds: list[dict[str, Any]]) -> dict[str, Any]:
    at_expiry = [h for h in herds if h["round"] == "expiry"]
    latencies = [ms for h in at_expiry for ms in h["latencies_ms"]]
    return {
        "cold_token_requests": herds[0]["token_requests"],
        "expiry_token_requests_per_herd": [h["token_requests"] for h in at_expiry],
        "distinct_tokens_per_herd": [h["distinct_tokens"] for h in at_expiry],
        "errors": sorted({e for h in herds for e in h["errors"]}),
        "callers_per_herd": at_expiry[0]["callers"] if at_expiry else 0,
        "latency_ms": {"median": round(median(latencies), 2), "p99": round(percentile(latencies, 99), 2),
                       "max": round(max(latencies), 2) if latencies else None},
        "herd_wall_ms_median": round(median([h["wall_ms"] for h in at_expiry]), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="herds at expiry per store")
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from tests.support.providerfixture import start_provider
    from tests.support.redisfixture import start_redis

    work = Path(tempfile.mkdtemp(prefix="keyturn-herd-redis-"))
    provider = start_provider(None, work / "provider")
    redis_server = start_redis(work)
    results: dict[str, Any] = {
        "meta": {**machine_info(), "python": platform.python_version(), "processes": args.processes,
                 "threads": args.threads, "rounds": args.rounds,
                 "redis": subprocess.run([redis_server.binary, "--version"], capture_output=True,
                                         text=True, check=False).stdout.split()[2]},
        "stores": {},
    }
    try:
        for kind in args.stores.split(","):
            where = {"redis": redis_server.url, "file": str(work / "tokens"), "memory": ""}[kind]
            print(f"{kind}: {args.processes} processes x {args.threads} threads, "
                  f"{args.rounds} herds at expiry ...", file=sys.stderr, flush=True)
            results["stores"][kind] = summarize(
                herd(kind, where, provider, args.processes, args.threads, args.rounds))
    finally:
        redis_server.stop()
        provider.stop()

    print(f"\nHerd at expiry: {args.processes} processes x {args.threads} threads "
          f"({args.processes * args.threads} callers), {args.rounds} herds per store\n")
    print("| store | token requests per herd (cold; at expiry) | caller latency median | p99 | max |")
    print("| --- | --- | --- | --- | --- |")
    names = {"redis": "RedisStore (shared)", "file": "FileStore (shared)",
             "memory": "MemoryStore per process"}
    for kind, row in results["stores"].items():
        lat = row["latency_ms"]
        print(f"| {names[kind]} | {row['cold_token_requests']}; "
              f"{', '.join(map(str, row['expiry_token_requests_per_herd']))} | "
              f"{lat['median']} ms | {lat['p99']} ms | {lat['max']} ms |")
        if row["errors"]:
            print(f"|   errors: {row['errors']} | | | | |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
