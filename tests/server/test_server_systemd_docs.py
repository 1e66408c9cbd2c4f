"""docs/server.md "systemd": the unit's ``ExecStart=`` line and the admin line beside it, parsed
out of the docs and run as written (the venv's paths mapped onto this interpreter's, the
configuration file and the port onto temporary ones), with only the extras the docs' ``pip
install`` names: the CLI extra's modules are made unimportable, as in a venv without it."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

DOCS = Path(__file__).resolve().parents[2] / "docs" / "server.md"
VENV = "/opt/keyturn/bin/"
CONFIG = "/etc/keyturn/server.toml"
#: The modules each extra brings that a site without it lacks (pyproject.toml; click comes
#: with uvicorn, so the server extra has it anyway).
EXTRA_MODULES = {"cli": ("rich",)}


def _section(title: str) -> str:
    text = DOCS.read_text()
    start = text.index(f"\n### {title}\n")
    return text[start:text.index("\n### ", start + 1)]


def _lines(section: str, fence: str) -> list[str]:
    """The lines of the section's code blocks in ``fence``, continuation lines joined."""
    blocks = re.findall(rf"```{fence}\n(.*?)```", section, re.S)
    return "\n".join(blocks).replace("\\\n", " ").splitlines()


def _argv(line: str, config: Path, port: int) -> list[str]:
    """The documented command line on this machine: /opt/keyturn/bin/NAME is this venv's NAME."""
    argv = shlex.split(line)
    assert argv[0].startswith(VENV), argv
    argv[0] = str(Path(sys.executable).parent / argv[0].removeprefix(VENV))
    argv = [str(config) if arg == CONFIG else arg for arg in argv]
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    return argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without_extras(tmp_path: Path, installed: set[str]) -> dict[str, str]:
    """An environment in which the modules of every extra the docs do not install fail to
    import (fault injection: a package shadowing each one that raises ModuleNotFoundError)."""
    blocked = tmp_path / "not-installed"
    for extra, modules in EXTRA_MODULES.items():
        if extra in installed:
            continue
        for module in modules:
            (blocked / module).mkdir(parents=True)
            (blocked / module / "__init__.py").write_text(
                f"raise ModuleNotFoundError({module!r}, name={module!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYTURN_", "XDG_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocked), env.get("PYTHONPATH")]))
    return env


def test_the_documented_unit_starts_with_the_documented_extras(tmp_path: Path) -> None:
    section = _section("systemd")
    shell = _lines(section, "sh")
    (install,) = [line for line in shell if "pip install" in line]
    extras = set(re.search(r"'keyturn\[([a-z,]+)\]'", install)[1].split(","))  # type: ignore[index]
    env = _without_extras(tmp_path, extras)
    if "cli" not in extras:  # the shadowing works: the CLI's command fails as it would there
        refused = subprocess.run([sys.executable, "-m", "keyturn", "serve", "--help"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert "pip install 'keyturn[cli]'" in refused.stderr

    data = tmp_path / "state"
    config = tmp_path / "server.toml"
    config.write_text(f'data_dir = "{data}"\n\n[clients.cli]\ngrants = ["device_code", '
                      '"refresh_token"]\nscopes = ["openid", "offline_access"]\n')
    os.chmod(config, 0o600)
    port = _free_port()
    (exec_start,) = [line.removeprefix("ExecStart=") for line in _lines(section, "ini")
                     if line.startswith("ExecStart=")]
    server = subprocess.Popen(_argv(exec_start, config, port), env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL)
    try:
        for _ in range(300):  # at most 30 s to start
            assert server.poll() is None, server.communicate()[1][-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError("the documented ExecStart did not answer /health in 30 s")

        (admin,) = [line.removeprefix("sudo -u keyturn ") for line in shell
                    if line.startswith("sudo -u keyturn ")]
        listed = subprocess.run(_argv(admin, config, port), env=env, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.startswith("no live logins for 'alice' in SQLiteStorage(")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.communicate()
    assert server.returncode == 0
