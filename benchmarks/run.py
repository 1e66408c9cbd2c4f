"""keyturn's benchmarks, side by side with peer libraries, in one process and one run.

    python benchmarks/run.py            # full run (a few minutes on 2 cores)
    python benchmarks/run.py --quick    # shorter run, same measurements, fewer repeats

Starts the local oidc-provider (tests/support/providerfixture.start_provider), a loopback TLS proxy in
front of it (MSAL needs https), and a fast local HTTP endpoint; then measures

1. the cached path: ns per "give me a valid token" call, beside a floor and each peer;
2. herds with nothing cached: 64 threads, 50 asyncio tasks, 8 processes; token requests counted
   at the provider, wall time, per-caller latency;
3. auth-plugin overhead: requests through httpx / requests with each library's auth object
   against the same client with a hard-coded Authorization header, interleaved.

Prints tables, writes benchmarks/results.json and benchmarks/RESULTS.md. Figures only: nothing here
asserts on time. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _infra
import _report
import bench_cached
import bench_herds
import bench_overhead
import peers
from _infra import BENCH_DIR, Config


def _silence_authlib_httpx2_notice() -> None:
    """authlib 1.9 warns, once imported, that its httpx integration will move to the "httpx2"
    package; it works as is. (authlib.deprecate installs an "always" filter on import: ours goes
    in front of it.)"""
    try:
        import authlib.deprecate  # noqa: F401
    except ImportError:
        return
    warnings.filterwarnings("ignore", message="The httpx module is deprecated")


def _check_installed() -> None:
    missing = [name for name, version in peers.versions().items() if version == "not installed"]
    if missing:
        sys.exit(f"benchmarks/run.py needs {', '.join(missing)}: "
                 "pip install -e '.[bench]' trustme msal-extensions")


# requests-oauthlib refuses http:// without it (everything here is on loopback).
os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    args = parser.parse_args()
    cfg = Config(args.quick)
    _check_installed()
    _silence_authlib_httpx2_notice()
    started = time.monotonic()
    command = "python benchmarks/run.py" + (" --quick" if args.quick else "")

    from tests.support.providerfixture import start_provider

    work = Path(tempfile.mkdtemp(prefix="keyturn-bench-"))
    servers: list[Any] = []
    provider = None
    results: dict[str, Any] = {}
    try:
        print("starting the local oidc-provider, TLS proxy and fast endpoint ...", flush=True)
        provider = start_provider(peers.bench_clients(), work / "provider")
        tls = _infra.make_tls(work)
        proxy = _infra.NodeServer("tls_proxy.mjs", [provider.issuer, "realm", str(tls.cert_pem),
                                                    str(tls.key_pem)], work, "tls-proxy")
        servers.append(proxy)
        fast = _infra.NodeServer("fast_endpoint.mjs", [], work, "fast-endpoint")
        servers.append(fast)
        env = peers.Env(provider=provider, work=work, tls=tls, proxy_url=proxy.url, fast_url=fast.url)

        with _infra.quiet_logging("keyturn", "httpx_auth", "msal", "google"):
            print("1/3 cached path ...", flush=True)
            results["cached"] = bench_cached.bench_cached(env, cfg)
            env.close()
            print("2/3 herds: threads ...", flush=True)
            herds: dict[str, Any] = {"threads": bench_herds.bench_thread_herds(env, cfg)}
            print("2/3 herds: asyncio ...", flush=True)
            herds["asyncio"] = bench_herds.bench_async_herds(env, cfg)
            print("2/3 herds: processes ...", flush=True)
            herds["processes"] = bench_herds.bench_process_herds(env, cfg)
            results["herds"] = herds
            print("3/3 auth-plugin overhead ...", flush=True)
            results["overhead"] = bench_overhead.bench_overhead(env, cfg)
        oidc_provider = json.loads((_infra.TESTS_DIR / "provider" / "node_modules" / "oidc-provider" /
                                    "package.json").read_text())["version"]
    finally:
        for server in servers:
            server.stop()
        if provider is not None:
            provider.stop()
        shutil.rmtree(work, ignore_errors=True)

    results["meta"] = {
        "command": command, "quick": cfg.quick,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "runtime_s": round(time.monotonic() - started, 1), "machine": _infra.machine_info(),
        "versions": peers.versions(), "oidc_provider": oidc_provider,
        "keyturn_revision": _infra.keyturn_revision(),
        "sizes": {"threads": bench_herds.THREADS, "tasks": bench_herds.TASKS,
                  "processes": bench_herds.PROCESSES,
                  "herd_repeats": cfg.herd_repeats, "process_herd_repeats": cfg.proc_repeats,
                  "overhead_requests_per_variant": cfg.overhead_requests},
    }
    results["notes"] = _report.NOTES
    body = _report.render(results)
    print()
    print(body)
    ordered = {"meta": results["meta"], **{k: results[k] for k in ("cached", "herds", "overhead", "notes")}}
    (BENCH_DIR / "results.json").write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")
    _report.write_markdown(results, body)
    print(f"\nwrote {BENCH_DIR / 'results.json'} and {BENCH_DIR / 'RESULTS.md'} "
          f"in {results['meta']['runtime_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
