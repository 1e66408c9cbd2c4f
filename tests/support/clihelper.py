"""Runs the keyturn command line as a subprocess, in a private environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class Cli:
    """Runs ``python -m keyturn`` (the same entry point as the ``keyturn`` script) in a private
    environment: XDG_CONFIG_HOME and XDG_CACHE_HOME in tmp dirs."""

    def __init__(self, tmp_path: Path) -> None:
        self.config_home = tmp_path / "config"
        self.cache_home = tmp_path / "cache"
        (self.config_home / "keyturn").mkdir(parents=True)
        self.config_file = self.config_home / "keyturn" / "config.toml"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("KEYTURN_", "SSH_", "XDG_")) and k not in ("DISPLAY",
                                                                                   "BROWSER")}
        self.env.update(XDG_CONFIG_HOME=str(self.config_home), XDG_CACHE_HOME=str(self.cache_home),
                        NO_COLOR="1")
        self.command = [sys.executable, "-m", "keyturn"]

    def write_config(self, text: str, mode: int = 0o600) -> None:
        self.config_file.write_text(text)
        os.chmod(self.config_file, mode)

    def run(self, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.command, *args], env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([*self.command, *args], env=self.env, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)

    def shell(self, script: str, args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        # ``keyturn`` in the script is this interpreter's ``python -m keyturn``.
        env = {**self.env, "KEYTURN": " ".join(self.command)}
        return subprocess.run(["bash", "-c", script, "bash", *args], env=env, capture_output=True,
                              text=True, timeout=60)

