"""The cost of a change on the cached path: ``get_access_token()`` with a valid token, at a base
revision and in the working tree, side by side, each as a ratio to the same floor.

    python benchmarks/cached_path_change.py [--base REV] [--rounds 7]

The base revision is checked out in a temporary git worktree. Each round runs one fresh Python
process per tree, alternating, so both see the same machine noise; each process times the floor
(a dict lookup, one ``time.monotonic()`` and a compare: the least any cache can do) and keyturn's
cached call with a MemoryStore and with a FileStore, and ``await aget_access_token()`` beside an
async floor (one coroutine doing the floor's work), and prints ns per call. Figures only: nothing
is asserted.
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

CHILD = r"""
import json, sys, tempfile, time, timeit
sys.path.insert(0, sys.argv[1])
from keyturn import ClientCredentials, FileStore, MemoryStore, Token

CACHE = {"key": ("x" * 43, float("inf"))}
def floor():
    e = CACHE["key"]
    if time.monotonic() < e[1]:
        return e[0]

def source(store):
    s = ClientCredentials(token_endpoint="https://as.example/token", client_id="bench",
                          client_secret="bench-secret", store=store)
    now = time.time()
    s.cache.store.save(s.cache.key, Token(access_token="x" * 43, expires_at=now + 3600,
                                          issued_at=now))
    s.get_access_token()  # adopts the stored token: no request
    return s

async def afloor():
    e = CACHE["key"]
    if time.monotonic() < e[1]:
        return e[0]

async def atime(fn, n):
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, time.perf_counter() - start)
    return best

with tempfile.TemporaryDirectory() as d:
    calls = {"floor": floor, "memory": source(MemoryStore()).get_access_token,
             "file": source(FileStore(d)).get_access_token}
    out = {}
    n = 200_000
    for name, fn in calls.items():
        out[name] = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9
    asource = source(MemoryStore())
    import asyncio
    async def main():
        out["async floor"] = await atime(afloor, n) / n * 1e9
        out["async"] = await atime(asource.aget_access_token, n) / n * 1e9
    asyncio.run(main())
    print(json.dumps(out))
"""


def measure(src: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(src)], capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="04914d2", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with revision_src(args.base) as base_src:
        trees = {f"base {args.base}": base_src, "working tree": ROOT / "src"}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, src in trees.items():
                runs[name].append(measure(src))
    print(f"{'tree':<22} {'floor ns':>9} {'Memory ns':>10} {'ratio':>6} {'File ns':>8} {'ratio':>6}"
          f" {'async floor ns':>15} {'async ns':>9} {'ratio':>6}")
    for name, rows in runs.items():
        floor = statistics.median(r["floor"] for r in rows)
        memory = statistics.median(r["memory"] for r in rows)
        file = statistics.median(r["file"] for r in rows)
        afloor = statistics.median(r["async floor"] for r in rows)
        amem = statistics.median(r["async"] for r in rows)
        print(f"{name:<22} {floor:9.0f} {memory:10.0f} {memory / floor:5.2f}x {file:8.0f} "
              f"{file / floor:5.2f}x {afloor:15.0f} {amem:9.0f} {amem / afloor:5.2f}x")
    print(f"(medians of {args.rounds} rounds; each figure the best of 5 repeats of 200,000 calls)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
