"""``keyturn token`` with a valid cached token, beside bare ``python -c pass``, in one run.

Wall-time medians over N interleaved runs of each (subprocess + time.perf_counter; no hyperfine).
Target (issue 10): keyturn token <= 1.5x python -c pass. The cached token is written through the real
FileStore under the profile's cache key, so the command takes exactly the path a script's loop does.

Run it with the Python of a fresh virtual environment (``python -m venv v && v/bin/pip install -e .``):
each ``.pth`` file in site-packages adds the same milliseconds to ``python -c pass`` and to ``keyturn
token``, which hides the ratio. Two floors that are not keyturn's: ``python -m __hello__`` (a frozen
module that prints a line) is that of any ``python -m``, whose runpy and importlib machinery cost
about 0.35x of ``python -c pass`` before keyturn runs; and the console script's wrapper is pip's, and
the one pip 23.2.1 (what Python 3.11's venv installs) writes imports ``re``, about 0.5x more (pip
26.3's imports nothing).

    python benchmarks/cli_token.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _prepare(root: Path) -> dict[str, str]:
    config = root / "config" / "keyturn"
    config.mkdir(parents=True)
    (config / "config.toml").write_text(
        '[profiles.bench]\ngrant = "client_credentials"\nissuer = "http://127.0.0.1:9"\n'
        'client_id = "bench"\nclient_secret_env = "BENCH_SECRET"\n')
    env = {**os.environ, "XDG_CONFIG_HOME": str(root / "config"),
           "XDG_CACHE_HOME": str(root / "cache"), "BENCH_SECRET": "not-a-real-secret"}
    env.pop("KEYTURN_PROFILE", None)
    # As installed (pip compiles bytecode): with PYTHONDONTWRITEBYTECODE set, every run would
    # compile keyturn's modules from source again, which no user's machine does.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("KEYTURN_CONFIG", None)
    os.environ.update({k: env[k] for k in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "BENCH_SECRET")})
    from keyturn.config import load_profile
    from keyturn.stores.file import FileStore
    from keyturn.token import Token

    profile = load_profile("bench")
    now = time.time()
    FileStore(root / "cache" / "keyturn").save(
        profile.cache_key(), Token(access_token="bench-token", expires_at=now + 86400, issued_at=now))
    return env


def _time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = _prepare(Path(tmp))
        commands = {"python -c pass": [sys.executable, "-c", "pass"],
                    "python -m __hello__ (-m floor)": [sys.executable, "-m", "__hello__"],
                    "python -m keyturn token": [sys.executable, "-m", "keyturn", "token",
                                                "--profile", "bench"]}
        script = shutil.which("keyturn", path=str(Path(sys.executable).parent))
        if script:
            commands["keyturn token (console script)"] = [script, "token", "--profile", "bench"]
        check = subprocess.run(commands["python -m keyturn token"], env=env, capture_output=True,
                               text=True, check=True)
        assert check.stdout.strip() == "bench-token", check
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(3):  # warm the page cache
            for name, command in commands.items():
                _time(command, env)
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(_time(command, env))
    base = statistics.median(times["python -c pass"])
    print(f"{'command':34} {'median ms':>10} {'x python -c pass':>17}   ({args.runs} runs each)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34} {median * 1000:10.1f} {median / base:17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
