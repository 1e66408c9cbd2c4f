"""The per-request cost of each adapter with a valid cached token, at a base revision and in the
working tree, side by side, each as a ratio to the cached-path floor of benchmarks/run.py.

    python benchmarks/adapter_overhead.py [--base REV] [--rounds 7] [--repeats 9]

The hooks are what each library calls once per request: httpx ``next(source.sync_auth_flow(request))``,
requests ``source(prepared)``, globus-sdk ``source.get_authorization_header()`` and pyFirecREST
``source.auth_headers()``, on a ClientCredentials source whose MemoryStore holds a valid token (no
request is made). The base revision is checked out in a temporary git worktree and imported in a
subprocess of its own. Each round runs one fresh Python process per tree, alternating, so both see
the same machine noise; in each process the floor (a dict lookup, one ``time.monotonic()`` and a
compare: the least any cache can do) and the hooks are timed interleaved (floor, hook 1, hook 2, ...,
the order rotated each repeat), the median of the repeats per row. Ratios are taken in the process
that measured them; the table shows their medians over the rounds. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _infra import revision_src

ROOT = Path(__file__).resolve().parent.parent

ROWS = ("floor", "httpx", "requests", "globus", "firecrest")
CALLS = {
    "floor": "e = CACHE[key]; if time.monotonic() < e[1]: return e[0]",
    "httpx": "next(source.sync_auth_flow(request))",
    "requests": "source(prepared)",
    "globus": "source.get_authorization_header()",
    "firecrest": "source.auth_headers()",
}

CHILD = r"""
import gc, json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
repeats = int(sys.argv[2])
import httpx, requests
from keyturn import ClientCredentials, MemoryStore, Token

CACHE = {"key": ("x" * 43, float("inf"))}
def floor():  # benchmarks/bench_cached.floor_get_token
    e = CACHE["key"]
    if time.monotonic() < e[1]:
        return e[0]

source = ClientCredentials(token_endpoint="https://as.example/token", client_id="bench",
                           client_secret="bench-secret", store=MemoryStore())
now = time.time()
source.cache.store.save(source.cache.key, Token(access_token="x" * 43, expires_at=now + 3600,
                                                issued_at=now))
source.get_access_token()  # adopts the stored token: no request
request = httpx.Request("GET", "https://api.example/data")
prepared = requests.Request("GET", "https://api.example/data").prepare()

def requests_hook():
    prepared.hooks["response"] = []  # the adapter registers its 401 hook on each call
    return source(prepared)

calls = {"floor": floor, "httpx": lambda: next(source.sync_auth_flow(request)),
         "requests": requests_hook, "globus": source.get_authorization_header,
         "firecrest": source.auth_headers}
assert source.get_authorization_header() == "Bearer " + "x" * 43
assert source.auth_headers() == {"Authorization": "Bearer " + "x" * 43}

def timed(fn, number):
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return time.perf_counter() - start

number = 50_000
names = list(calls)
for name in names:  # warm up
    timed(calls[name], number // 10)
runs = {name: [] for name in names}
gc.disable()
for rep in range(repeats):
    for k in range(len(names)):
        name = names[(rep + k) % len(names)]
        runs[name].append(timed(calls[name], number) / number * 1e9)
print(json.dumps({"median": {name: statistics.median(values) for name, values in runs.items()},
                  "min": {name: min(values) for name, values in runs.items()}}))
"""


def measure(src: Path, repeats: int) -> dict[str, dict[str, float]]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(src), str(repeats)], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="36958fc", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats per process")
    args = parser.parse_args()
    with revision_src(args.base) as base_src:
        trees = {f"base {args.base}": base_src, "working tree": ROOT / "src"}
        runs: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                runs[name].append(measure(src, args.repeats))
    names = list(trees)
    print(f"{'hook':<10}" + "".join(f" | {name:^30}" for name in names))
    print(f"{'':<10}" + f" | {'ns':>8} {'ratio':>9} {'ratio of mins':>13}" * len(names))
    for row in ROWS:
        line = f"{row:<10}"
        for name in names:
            ns = statistics.median(r["median"][row] for r in runs[name])
            ratio = statistics.median(r["median"][row] / r["median"]["floor"] for r in runs[name])
            of_mins = statistics.median(r["min"][row] / r["min"]["floor"] for r in runs[name])
            line += f" | {ns:8.0f} {ratio:8.2f}x {of_mins:12.2f}x"
        print(line)
    print("\n".join(f"{row:<10} {CALLS[row]}" for row in ROWS))
    print(f"(medians over {args.rounds} rounds, one process per tree per round, alternating; in each "
          f"process {args.repeats} interleaved repeats of 50,000 calls per row: ns and ratio from "
          "their medians, the ratio of mins from their minima, timeit's advice on a noisy machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
