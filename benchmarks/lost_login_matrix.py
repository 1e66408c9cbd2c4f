"""The lost-login matrix as a figure (issue 9): interruptions tried and logins lost, per server.

    python benchmarks/lost_login_matrix.py [--against REV] [--no-write]

Runs ``tests/integration/test_lost_login_matrix.py`` with pytest in a child process, with a small
plugin (below) that writes each scenario's report (its verdict, recorded by the test with
``record_property``) to a JSON file; prints the tables and writes
``benchmarks/LOST_LOGIN_RESULTS.md``. With ``--against REV`` the matrix runs a second time with
the job processes importing keyturn as it was at ``REV`` (``git archive REV src``; the servers,
stores and test stay as they are): what the same interruptions did to a login before.

A login is *lost* when a fresh process cannot get a token and a second one after ``invalidate()``
without a login, or when the server refused a refresh token (``invalid_grant``: both servers then
end the whole login). A *known limit* is a point no client can survive (the rotated refresh token
existed only in a process killed before it was stored); it is counted apart. Target: 0 logins lost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULE = "tests/integration/test_lost_login_matrix.py"
RESULTS_MD = ROOT / "benchmarks" / "LOST_LOGIN_RESULTS.md"
SRC_VARIABLE = "LOSTLOGIN_KEYTURN_SRC"  # tests/support/lostlogin.py reads it
SERVERS = ("oidc-provider", "keyturn")


# -- the pytest side (run as: lost_login_matrix.py --collect OUT.json) ------------------------------


class Collector:
    """A pytest plugin: one record per test, with the scenario report the test recorded."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def pytest_runtest_logreport(self, report: Any) -> None:
        record = self.records.setdefault(report.nodeid, {"nodeid": report.nodeid,
                                                         "outcome": "passed", "seconds": 0.0})
        record["seconds"] += report.duration
        if report.failed:
            record["outcome"] = "failed" if report.when == "call" else "error"
        elif report.skipped:
            record["outcome"] = "skipped"
        for name, value in report.user_properties:
            if name == "lostlogin":
                record["report"] = json.loads(value)


def collect(out: Path) -> int:
    import pytest

    collector = Collector()
    code = pytest.main([MODULE, "-q", "-p", "no:cacheprovider"], plugins=[collector])
    out.write_text(json.dumps(list(collector.records.values())))
    return int(code)


def run_matrix(keyturn_src: Path | None) -> tuple[list[dict[str, Any]], float]:
    env = dict(os.environ)
    env.pop(SRC_VARIABLE, None)
    if keyturn_src is not None:
        env[SRC_VARIABLE] = str(keyturn_src)
    with tempfile.TemporaryDirectory(prefix="lostlogin-bench-") as work:
        out = Path(work) / "records.json"
        started = time.monotonic()
        done = subprocess.run([sys.executable, __file__, "--collect", str(out)], cwd=ROOT, env=env,
                              timeout=900, check=False, capture_output=True, text=True)
        seconds = time.monotonic() - started
        records = json.loads(out.read_text()) if out.exists() else []
    # pytest's own last line; its whole report only when the run found nothing to count.
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "(no pytest output)")
    if not records:
        print(done.stdout[-5000:], done.stderr[-5000:], sep="\n")
    return records, seconds


# -- the figures -----------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in cells)])


def _reports(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for record in records:
        report = record.get("report")
        if report is not None:
            found.append({**report, "outcome": record["outcome"]})
    return found


def summary(records: list[dict[str, Any]]) -> str:
    reports = _reports(records)
    rows = []
    for server in SERVERS:
        mine = [r for r in reports if r["server"] == server]
        judged = [r for r in mine if r["lost"] is not None]
        survivable = [r for r in judged if r["expected"] == "survives"]
        limits = [r for r in judged if r["expected"] != "survives"]
        rows.append([
            server, len(judged), len(survivable),
            sum(1 for r in survivable if r["lost"]),
            f"{sum(1 for r in limits if r['lost'])} of {len(limits)}",
            sum(1 for r in mine if r["failures"]),
            len(mine) - len(judged),
        ])
    return _table(["server", "interruptions tried", "survivable", "logins lost (target 0)",
                   "known limits: lost as documented", "scenarios with a failed step",
                   "not run / no verdict"], rows)


def matrix(records: list[dict[str, Any]]) -> str:
    by_scenario: dict[str, dict[str, dict[str, Any]]] = {}
    order: list[str] = []
    for report in _reports(records):
        if report["scenario"] not in by_scenario:
            order.append(report["scenario"])
        by_scenario.setdefault(report["scenario"], {})[report["server"]] = report

    def cell(report: dict[str, Any] | None) -> str:
        if report is None or report["lost"] is None:
            return "not run" if report is None else "no verdict"
        if report["expected"] != "survives":
            text = "lost (limit)" if report["lost"] else "kept (limit!)"
        else:
            text = "LOST" if report["lost"] else "kept"
        return text + (" *" if report["failures"] else "")

    rows = []
    for name in order:
        reports = by_scenario[name]
        first = next(iter(reports.values()))
        rows.append([name, first["point"], first["means"],
                     "known limit" if first["expected"] != "survives" else "survives",
                     *(cell(reports.get(server)) for server in SERVERS)])
    return _table(["scenario", "point", "means", "expected", *SERVERS], rows)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=False).stdout.strip()


def export(rev: str, into: Path) -> Path:
    """keyturn's source at ``rev`` (``git archive``: the repository is only read)."""
    archive = into / "src.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, stdout=out, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def render(command: str, runs: list[tuple[str, list[dict[str, Any]], float]]) -> str:
    revision = _git("rev-parse", "--short", "HEAD")
    dirty = "+dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    lines = [
        "# The lost-login matrix: results",
        "",
        f"Command: `{command}` (from the repository root), keyturn at commit {revision}{dirty}.",
        "",
        f"Machine: {os.cpu_count()} cores, CPython {platform.python_version()}, "
        f"{platform.platform()}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Each interruption is one test of `tests/integration/test_lost_login_matrix.py`: a new "
        "login at a real server that ends the login when a refresh token comes back (the npm "
        "oidc-provider with a public client, rotating at every use; keyturn's own server), a job "
        "process refreshing on a real store (FileStore; RedisStore on redis-server; a 1 MiB "
        "tmpfs for the full disk), interrupted at its point, then a fresh process that must get "
        "a token and, after `invalidate()`, another one, with no login and no `invalid_grant` at "
        "the server. *Lost* means it could not, or the server refused a refresh token. A *known "
        "limit* is a point no client can survive (a SIGKILL after the server rotated the refresh "
        "token and before its answer was stored; a holder stopped past its lease after it "
        "confirmed its lock, its request already on its way): it is asserted as it is and "
        "counted apart. `*`: a step of the scenario did not go as the test expects.",
    ]
    lines += ["", f"The test module alone: `python -m pytest {MODULE} -q -p no:cacheprovider`."]
    if len(runs) > 1:
        lines += ["", "In a run against an older revision only the job processes (the client) run "
                  "the old code. There `*` mostly marks a step the old code does not have (no lock "
                  "check before a send, so the stalled holder is never stopped; one save instead "
                  "of two); the verdict is given all the same."]
    for title, records, seconds in runs:
        lines += ["", f"## {title}", "", f"Run time: {seconds:.0f} s.", "", summary(records), "",
                  matrix(records)]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collect", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--against", metavar="REV",
                        help="also run the job processes on keyturn as it was at REV")
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args()
    if args.collect is not None:
        return collect(args.collect)

    runs: list[tuple[str, list[dict[str, Any]], float]] = []
    records, seconds = run_matrix(None)
    runs.append(("keyturn in the working tree", records, seconds))
    if args.against:
        with tempfile.TemporaryDirectory(prefix="lostlogin-rev-") as work:
            src = export(args.against, Path(work))
            label = _git("log", "-1", "--format=%h %s", args.against)
            records, seconds = run_matrix(src)
            runs.append((f"keyturn at {label[:90]} (the job processes only)", records, seconds))
    for title, records, seconds in runs:
        print(f"\n{title} ({seconds:.0f} s)\n{summary(records)}\n\n{matrix(records)}")
    command = "python benchmarks/lost_login_matrix.py" + (
        f" --against {args.against}" if args.against else "")
    if not args.no_write:
        RESULTS_MD.write_text(render(command, runs))
        print(f"\nwritten: {RESULTS_MD.relative_to(ROOT)}")
    current = _reports(runs[0][1])
    lost = sum(1 for r in current if r["expected"] == "survives" and r["lost"])
    return 1 if lost or not current else 0


if __name__ == "__main__":
    sys.exit(main())
