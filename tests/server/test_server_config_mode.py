"""``keyturn serve`` (the real server as a process, JSON logs) warns when its configuration file
holds password or client-secret hashes and every local user may read it (offline guessing gets
around the password limits), and not for the documented ``0640 root:keyturn``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from keyturn.server.passwords import hash_password

PASSWORD = "mode-test-password-1618"


def started_warnings(tmp_path: Path, mode: int) -> list[str]:
    """Start the server on a configuration file of ``mode``; its warnings, until it stopped."""
    config = tmp_path / f"server-{mode:o}.toml"
    hashed = hash_password(PASSWORD, n=2**12)
    config.write_text(f'[clients.cli]\ngrants = ["device_code"]\nscopes = ["openid"]\n\n'
                      f'[users.carol]\npassword_hash = "{hashed}"\n')
    os.chmod(config, mode)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYTURN_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "keyturn.server", "serve", "--config", str(config), "--port", "0",
         "--host", "127.0.0.1", "--data-dir", str(tmp_path / f"data-{mode:o}"),
         "--log-format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**env, "PYTHONUNBUFFERED": "1"}, stdin=subprocess.DEVNULL)
    assert process.stdout is not None
    try:
        assert process.stdout.readline().startswith("http://127.0.0.1:")  # it is running
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines()]  # every line is JSON
    assert hashed not in stderr and PASSWORD not in stderr
    return [r["message"] for r in records if r.get("level") == "warning"]


def test_hashes_in_a_world_readable_configuration_are_warned_of(tmp_path: Path) -> None:
    (warning,) = started_warnings(tmp_path, 0o644)
    assert "holds password or client secret hashes and every local user may read it" in warning
    assert "chmod 640" in warning and str(tmp_path) in warning
    assert started_warnings(tmp_path, 0o640) == []  # the documented mode: the server's group
