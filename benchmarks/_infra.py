"""Plumbing shared by the benchmarks: the local servers, statistics, timing loops, herds.

Everything listens on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
TESTS_DIR = ROOT / "tests"

# The benchmarks run as scripts (``python benchmarks/run.py``), which puts benchmarks/ on sys.path,
# not the repository root: this makes the ``tests`` package (tests.support.providerfixture, ...)
# importable, as examples/quickstart.py does.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

READY_TIMEOUT = 20.0


class Config:
    """Sizes of a full run and of a --quick one."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.cached_target_s = 0.05 if quick else 0.2
        self.cached_repeats = 3 if quick else 9
        self.herd_repeats = 1 if quick else 3
        self.proc_repeats = 1 if quick else 2
        self.overhead_requests = 400 if quick else 2000
        self.overhead_gc_every = 50


# ------------------------------------------------------------------------------------------------
# Local servers (Node): a TLS-terminating proxy for MSAL, and a fast endpoint for plugin overhead
# ------------------------------------------------------------------------------------------------


class NodeServer:
    """A small Node script from benchmarks/ that writes ``{"url": ...}`` to a ready file."""

    def __init__(self, script: str, args: list[str], work: Path, name: str) -> None:
        node = shutil.which("node")
        if not node:
            raise RuntimeError("node is not on PATH (the test provider needs it too)")
        ready = work / f"{name}.ready"
        self.log_path = work / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [node, str(BENCH_DIR / script), *args, str(ready)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=BENCH_DIR,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{script} did not start:\n{self.log_path.read_text()[-2000:]}")
            time.sleep(0.02)
        self.url: str = json.loads(ready.read_text())["url"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@dataclass
class Tls:
    """A trustme CA and a server certificate for 127.0.0.1, as PEM files."""

    ca_pem: Path
    cert_pem: Path
    key_pem: Path


@contextlib.contextmanager
def revision_src(revision: str) -> Iterator[Path]:
    """The ``src/`` of ``revision``, checked out in a temporary git worktree while the block runs:
    what the before/after benchmarks import in their base-revision subprocesses."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
                       check=True, capture_output=True)
        try:
            yield tree / "src"
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False, capture_output=True)


def make_tls(work: Path) -> Tls:
    import trustme

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    tls = Tls(work / "ca.pem", work / "server-cert.pem", work / "server-key.pem")
    ca.cert_pem.write_to_path(str(tls.ca_pem))
    with open(tls.cert_pem, "wb") as out:
        for blob in server.cert_chain_pems:
            out.write(blob.bytes())
    server.private_key_pem.write_to_path(str(tls.key_pem))
    return tls


# ------------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil(p/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Timing:
    """ns per call of one cached-path row: median and min over repeats of ``number`` calls."""

    ns_median: float
    ns_min: float
    number: int
    repeats: int


# ------------------------------------------------------------------------------------------------
# Herds
# ------------------------------------------------------------------------------------------------


@dataclass
class HerdRun:
    """One herd: every caller's (start, end) on the perf_counter clock, and its error if any."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_requests: int = 0
    loop_stall_ms: float | None = None
    timed_out: int = 0
    logged_errors: list[str] = field(default_factory=list)

    @property
    def wall_s(self) -> float:
        return (max(self.ends) - min(self.starts)) if self.ends else float("nan")

    @property
    def latencies_ms(self) -> list[float]:
        return [(e - s) * 1000 for s, e in zip(self.starts, self.ends)]


def thread_herd(n: int, call: Callable[[], Any], *, timeout: float = 120.0) -> HerdRun:
    """``n`` threads released together by a barrier, each calling ``call()`` once."""
    barrier = threading.Barrier(n + 1)
    results: list[tuple[float, float, str | None, str | None] | None] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
        except threading.BrokenBarrierError:
            return
        start = time.perf_counter()
        token: str | None = None
        error: str | None = None
        try:
            token = call()
        except Exception as exc:  # recorded, reported
            error = f"{type(exc).__name__}: {str(exc)[:120]}"
        results[i] = (start, time.perf_counter(), error, token)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=timeout)
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    run = HerdRun()
    for result in results:
        if result is None:
            run.timed_out += 1
            continue
        start, end, error, token = result
        run.starts.append(start)
        run.ends.append(end)
        if error:
            run.errors.append(error)
        elif isinstance(token, str):
            run.tokens.append(token)
    return run


def async_herd(n: int, make_call: Callable[[], Any], *,
               timeout: float = 120.0) -> HerdRun:
    """``n`` asyncio tasks released together by an Event, each awaiting the call once; a heartbeat
    task records the longest event-loop stall (a blocking call inside an async path shows there).

    ``make_call`` runs inside the event loop (so objects bound to the loop can be built there) and
    returns the coroutine function every task awaits, or (that function, an async closer).
    """

    async def main() -> HerdRun:
        made = make_call()
        call, aclose = made if isinstance(made, tuple) else (made, None)
        go = asyncio.Event()
        run = HerdRun()
        stall = 0.0
        done = False

        async def heartbeat() -> None:
            nonlocal stall
            last = time.perf_counter()
            while not done:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                stall = max(stall, now - last - 0.001)
                last = now

        async def one() -> None:
            await go.wait()
            start = time.perf_counter()
            try:
                token = await call()
                error = None
            except Exception as exc:
                token, error = None, f"{type(exc).__name__}: {str(exc)[:120]}"
            run.starts.append(start)
            run.ends.append(time.perf_counter())
            if error:
                run.errors.append(error)
            elif isinstance(token, str):
                run.tokens.append(token)

        beat = asyncio.create_task(heartbeat())
        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.05)  # every task is parked on the event, the heartbeat is running
        go.set()
        _done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        run.timed_out = len(pending)
        done = True
        await beat
        run.loop_stall_ms = stall * 1000
        if aclose is not None:
            await aclose()
        return run

    return asyncio.run(main())


def summarize_runs(runs: list[HerdRun]) -> dict[str, Any]:
    """Counts of every repeat; wall time median; latency median/p99 pooled over all callers."""
    latencies = [x for run in runs for x in run.latencies_ms]
    walls = [run.wall_s for run in runs]
    out: dict[str, Any] = {
        "token_requests": [run.token_requests for run in runs],
        "wall_ms_median": median(walls) * 1000,
        "latency_ms_median": median(latencies),
        "latency_ms_p99": percentile(latencies, 99),
        "callers": sum(len(run.ends) + run.timed_out for run in runs),
        "errors": sum(len(run.errors) for run in runs),
        "error_samples": sorted({e for run in runs for e in run.errors})[:3],
        "timed_out": sum(run.timed_out for run in runs),
        "distinct_tokens": [len(set(run.tokens)) for run in runs],
        # how far apart the callers really started (threads wake from the barrier one by one)
        "start_spread_ms_median": median([(max(r.starts) - min(r.starts)) * 1000 for r in runs if r.starts]),
        "library_logged_errors": sum(len(run.logged_errors) for run in runs),
        "library_logged_samples": sorted({m for run in runs for m in run.logged_errors})[:2],
    }
    stalls = [run.loop_stall_ms for run in runs if run.loop_stall_ms is not None]
    if stalls:
        out["loop_stall_ms_max"] = max(stalls)
    return out


@contextlib.contextmanager
def quiet_logging(*names: str) -> Any:
    import logging

    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for logger, _ in saved:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def keyturn_revision() -> str:
    """The commit measured, with "+dirty" when src/ has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10,
                              check=False).stdout.strip()
    clocksource = ""
    with contextlib.suppress(OSError):
        clocksource = Path("/sys/devices/system/clocksource/clocksource0/current_clocksource"
                           ).read_text().strip()
    monotonic_ns = min(timeit.repeat(time.monotonic, number=100_000, repeat=5)) / 100_000 * 1e9
    return {
        "clocksource": clocksource,
        "time_monotonic_ns": round(monotonic_ns, 1),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "node": node,
    }
