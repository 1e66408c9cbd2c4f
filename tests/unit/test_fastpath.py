"""keyturn._fastpath: what ``keyturn token`` costs when the cache answers (what it imports), the
refresh margin it shares with the cache, and that it never answers from a token file FileStore
refuses. A real FileStore token file under a real profile's key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyturn._fastpath import cached_answer
from keyturn.cachekey import file_name
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
             " 'tomllib', 'hashlib', 'encodings.utf_8_sig') if m in sys.modules]\n"
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


# -- never looser than FileStore: a record FileStore moves aside is no answer ----------------------

KEY_FIELDS = ("format", "key", "written_at", "generation", "token")
TOKEN_FIELDS = (*Token(access_token="x").to_record(), "unknown")


def nested(depth: int) -> object:
    value: object = {}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def valid_record(home: Path) -> dict[str, Any]:
    save(home, 3600, 3000)
    return json.loads(token_file(home).read_bytes())


def token_file(home: Path) -> Path:
    return home / "cache" / "keyturn" / f"{file_name(load_profile('p').cache_key())}.json"


def write_private(path: Path, data: bytes) -> None:
    # As FileStore writes it (0600): the fast path would refuse anything else for another reason.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def answers(home: Path, data: bytes) -> tuple[str | None, Token | None]:
    """(what the fast path prints, what FileStore.load gives) for a token file holding ``data``;
    the fast path is asked first, as FileStore moves a damaged file aside."""
    path = token_file(home)
    write_private(path, data)
    fast = cached_answer(["token", "--profile", "p"])
    write_private(path, data)
    return fast, FileStore(home / "cache" / "keyturn").load(load_profile("p").cache_key())


def with_token_field(record: dict[str, Any], name: str, value: object) -> bytes:
    return json.dumps({**record, "token": {**record["token"], name: value}}).encode()


@pytest.mark.parametrize(("name", "value", "why"), [
    # The two reproductions of the second reading (report V, item 1).
    ("extra", nested(70), "deeper than 64 levels"),
    ("extra", "x", "its extra is neither an object nor null"),
])
def test_a_record_filestore_moves_aside_is_no_answer(home: Path, name: str, value: object,
                                                     why: str, caplog: pytest.LogCaptureFixture) -> None:
    record = valid_record(home)
    assert cached_answer(["token", "--profile", "p"]) == "AT-fast"  # and now in the index
    path = token_file(home)
    write_private(path, with_token_field(record, name, value))
    assert cached_answer(["token", "--profile", "p"]) is None  # by the index's way
    assert cached_answer(["token", "--profile", "p", "--scope", ""]) is None  # by the config's way
    with caplog.at_level("WARNING", logger="keyturn.stores.file"):
        assert FileStore(path.parent).load(load_profile("p").cache_key()) is None
    assert why in caplog.text and "AT-fast" not in caplog.text
    assert not path.exists() and len(list(path.parent.glob(f"{path.name}.corrupt-*"))) == 1


DAMAGED: list[tuple[str, object]] = [
    ("extra", nested(62)), ("extra", nested(63)), ("extra", []), ("extra", [["a", "b"]]),
    ("extra", 0), ("extra", False), ("scope", "a b"), ("scope", [1]), ("scope", {}),
    ("expires_at", "4102444800"), ("expires_at", True), ("expires_at", 10**400),
    ("expires_at", float("nan")), ("expires_at", float("inf")), ("issued_at", "x"),
    ("issued_at", 10**400), ("issued_at", float("-inf")), ("refresh_expires_at", [1]),
    ("access_token", 5), ("access_token", ""), ("access_token", None), ("token_type", 5),
    ("token_type", None), ("refresh_token", 5), ("id_token", ["x"]), ("unknown", nested(62)),
]


@pytest.mark.parametrize(("name", "value"), DAMAGED,
                         ids=[f"{name}-{i}" for i, (name, _) in enumerate(DAMAGED)])
def test_the_fast_path_answers_only_when_filestore_loads(home: Path, name: str,
                                                         value: object) -> None:
    fast, loaded = answers(home, with_token_field(valid_record(home), name, value))
    assert fast is None or (loaded is not None and loaded.access_token == fast), (fast, loaded)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_the_fast_path_reads_the_encodings_filestore_reads(home: Path, encoding: str) -> None:
    text = json.dumps(valid_record(home))
    fast, loaded = answers(home, text.encode(encoding))
    assert (fast, loaded is not None) == (("AT-fast", True) if encoding.startswith("utf-8")
                                          else (None, False))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                       children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_no_damage_makes_the_fast_path_answer_where_filestore_refuses(home: Path,
                                                                      data: st.DataObject) -> None:
    record = valid_record(home)
    damage = data.draw(st.sampled_from(["token field", "no token field", "record field",
                                        "no record field", "deep extra", "cut"]))
    if damage == "token field":
        payload = with_token_field(record, data.draw(st.sampled_from(TOKEN_FIELDS)),
                                   data.draw(json_values))
    elif damage == "no token field":
        token = dict(record["token"])
        token.pop(data.draw(st.sampled_from(TOKEN_FIELDS)), None)
        payload = json.dumps({**record, "token": token}).encode()
    elif damage == "record field":
        payload = json.dumps({**record, data.draw(st.sampled_from(KEY_FIELDS)):
                              data.draw(json_values)}).encode()
    elif damage == "no record field":
        payload = json.dumps({k: v for k, v in record.items()
                              if k != data.draw(st.sampled_from(KEY_FIELDS))}).encode()
    elif damage == "deep extra":
        payload = with_token_field(record, "extra", nested(data.draw(st.integers(55, 75))))
    else:
        whole = json.dumps(record).encode()
        payload = whole[:len(whole) * data.draw(st.integers(0, 999)) // 1000]  # cut short
    fast, loaded = answers(home, payload)
    assert fast is None or (loaded is not None and loaded.access_token == fast), (fast, loaded)
