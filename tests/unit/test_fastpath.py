"""keyturn._fastpath: what ``keyturn token`` costs when the cache answers (what it imports), and the
refresh margin it shares with the cache. A real FileStore token file under a real profile's key."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyturn._fastpath import cached_answer
from keyturn.config import load_profile
from keyturn.paths import refresh_margin
from keyturn.stores.file import FileStore
from keyturn.token import Token

CONFIG = ('[profiles.p]\ngrant = "client_credentials"\nissuer = "http://127.0.0.1:9"\n'
          'client_id = "fast"\nclient_secret_env = "FAST_SECRET"\nleeway = 60\n')


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "config" / "keyturn").mkdir(parents=True)
    (tmp_path / "config" / "keyturn" / "config.toml").write_text(CONFIG)
    for name, value in {"XDG_CONFIG_HOME": str(tmp_path / "config"), "FAST_SECRET": "s",
                        "XDG_CACHE_HOME": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KEYTURN_CONFIG", raising=False)
    monkeypatch.delenv("KEYTURN_PROFILE", raising=False)
    return tmp_path


def save(home: Path, lifetime: float, left: float) -> None:
    now = time.time()
    FileStore(home / "cache" / "keyturn").save(
        load_profile("p").cache_key(),
        Token(access_token="AT-fast", expires_at=now + left, issued_at=now + left - lifetime))


def test_the_answer_imports_neither_json_nor_re_nor_typing(home: Path) -> None:
    # Importing json (and the re, enum and collections it needs) costs more than the rest of the
    # answer (benchmarks/cli_token.py). -S: no site, so no .pth file imports any of them either.
    save(home, 3600, 3000)
    assert cached_answer(["token", "--profile", "p"]) == "AT-fast"  # the config's way; now indexed
    probe = ("import sys\nfrom keyturn._fastpath import main\n"
             "rc = main(['token', '--profile', 'p', '--header'])\n"
             "heavy = [m for m in ('json', 're', 'typing', 'dataclasses', 'enum', 'collections',"
             " 'tomllib', 'hashlib') if m in sys.modules]\n"
             "print('RESULT', rc, heavy, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=60)
    assert "RESULT 0 []" in done.stderr, done.stderr
    assert done.stdout == "Authorization: Bearer AT-fast\n"


@pytest.mark.parametrize(("lifetime", "left"), [(3600, 61), (3600, 59), (60, 31), (60, 29), (10, 6)])
def test_a_token_the_cache_would_refresh_is_not_printed(home: Path, lifetime: float,
                                                        left: float) -> None:
    # The cache's rule, capped at half the lifetime (60 s leeway: a 60 s token is due at 30 s left).
    save(home, lifetime, left)
    printed = cached_answer(["token", "--profile", "p"])
    assert printed == ("AT-fast" if left > refresh_margin(lifetime, 60) + 0.5 else None)
