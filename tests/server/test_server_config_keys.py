"""The configuration's keys (issue 12 §2, review R18 #5, #9, #10): an unknown key at the top level
or in a ``[clients.*]`` table is refused by name (TOML puts a key written below a table header
into that table, where it used to be ignored without a word); the examples in config.py's
docstring and docs/server.md parse as written; ``rotate-keys`` refuses to guess its storage and
reports an unreachable one in one line with exit code 3, as ``serve`` does."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from keyturn.errors import ConfigError
from keyturn.server import config as config_module
from keyturn.server.config import parse_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def docstring_example() -> str:
    doc = config_module.__doc__ or ""
    block = doc.split("::", 1)[1].split("Hashes are made", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


def docs_example() -> str:
    text = (ROOT / "docs" / "server.md").read_text()
    section = text.split("## Configuration file", 1)[1]
    match = re.search(r"```toml\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("example", [docstring_example, docs_example],
                         ids=["config.py docstring", "docs/server.md"])
def test_the_documented_examples_parse_with_their_keys_at_the_top_level(example, monkeypatch):
    monkeypatch.setenv("KEYTURN_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SITE_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("KEYTURN_METRICS_TOKEN", "a-scrape-token")
    config = parse_config(tomllib.loads(example()))
    assert config.signing_key_secret_env == "KEYTURN_SIGNING_KEK"
    assert config.rotate_keys_every == 30 * 86400
    assert config.redis_url == "redis://127.0.0.1:1/0"
    assert "cli" in config.clients and "alice" in config.users


def test_an_unknown_top_level_key_is_refused_by_name():
    with pytest.raises(ConfigError, match="top level has an unknown key 'rotate_key_every'"):
        parse_config({"rotate_key_every": "30d"})


def test_a_top_level_key_written_under_a_client_table_is_refused():
    """The mistake the docstring used to show: the key lands in [clients.cli]."""
    data = tomllib.loads('[clients.cli]\nname = "CLI"\n'
                         'signing_key_secret_env = "KEYTURN_SIGNING_KEK"\n')
    with pytest.raises(ConfigError,
                       match=r"\[clients\.cli\] has an unknown key 'signing_key_secret_env'"):
        parse_config(data)


def run_rotate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "keyturn.server", "rotate-keys", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_rotate_keys_without_a_storage_refuses(tmp_path, monkeypatch):
    """The demo server keeps its keys in a temporary directory: rotating the default data
    directory would make a keyring no server reads."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = run_rotate(env=env)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "give --config" in result.stderr and "--data-dir or --redis" in result.stderr
    assert not (tmp_path / "xdg").exists()


def test_rotate_keys_with_redis_down_is_one_line_and_exit_3(tmp_path):
    from tests.support.redisfixture import start_redis

    redis = start_redis(tmp_path)
    url = redis.url
    redis.stop()  # a real outage: nothing listens on its port any more
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = run_rotate("--redis", url, env=env)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "cannot read the signing keys from RedisStorage" in result.stderr
