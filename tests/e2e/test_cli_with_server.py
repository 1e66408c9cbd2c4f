"""The README's walk-through, as a newcomer runs it: ``keyturn serve`` with the demo configuration
in one process, ``keyturn login`` / ``keyturn token`` / ``curl`` in others, and ``keyturn demo``
with nobody at a terminal. Everything is the real command line, the real server and real HTTP."""

from __future__ import annotations

import json
import os
import pty
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from keyturn import ClientCredentials
from keyturn.cli.walkthrough import approve_in_page
from keyturn.errors import InvalidClient
from tests.support.clihelper import Cli

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class RunningServer:
    issuer: str
    password: str
    process: subprocess.Popen[str]
    #: The demo configuration's confidential client, and its secret (the third line).
    service_client: str = ""
    service_secret: str = ""
    #: The lines serve printed on stdout before it was ready.
    printed: tuple[str, ...] = ()


@pytest.fixture
def demo_server(cli: Cli, tmp_path: Path) -> Iterator[RunningServer]:
    process = cli.popen("serve", "--port", "0", "--data-dir", str(tmp_path / "server"))
    watchdog = threading.Timer(30, process.kill)  # a line that never comes fails, not hangs
    watchdog.start()
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        intro = process.stdout.readline()
        service = process.stdout.readline()
        watchdog.cancel()
        found = re.search(r"as user 'demo' with password (\S+)", intro)
        client = re.search(r"confidential client '([^']+)' .* with secret (\S+)$", service)
        assert issuer.startswith("http://127.0.0.1:") and found and client, (issuer, intro, service)
        yield RunningServer(issuer, found.group(1), process, client.group(1), client.group(2),
                            (issuer, intro.rstrip("\n"), service.rstrip("\n")))
    finally:
        watchdog.cancel()
        process.terminate()
        process.communicate(timeout=30)


def _readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n### {title}\n")
    return text[start:text.index("\n### ", start + 1)]


def test_serve_demo_client_credentials_as_the_readme_shows(cli: Cli, demo_server: RunningServer,
                                                           tmp_path: Path) -> None:
    """The README's client-credentials example runs against ``keyturn serve`` as its bash lines
    say: the client it names is the demo's confidential client, the secret the one serve printed."""
    issuer, secret = demo_server.issuer, demo_server.service_secret
    section = _readme_section("Client credentials (a service account)")
    example = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    bash = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert f'client_id="{demo_server.service_client}"' in example
    # What the README says serve prints is what it prints (port 8400, secrets elided).
    port = issuer.rsplit(":", 1)[1]
    shown = [line.removeprefix("# ") for line in bash[0].splitlines() if line.startswith("# ")]
    printed = [line.replace(f":{port}", ":8400").replace(demo_server.password, "...")
               .replace(secret, "...") for line in demo_server.printed]
    assert shown == printed, (shown, printed)
    # The second block, run as it stands with the address and secret it asks for.
    script = tmp_path / "example.py"
    script.write_text(example)
    lines = bash[1].replace("http://127.0.0.1:8400", issuer).replace("'...'", shlex.quote(secret))
    ran = subprocess.run(["bash", "-c", lines.replace("python ", f"{shlex.quote(sys.executable)} ")],
                         cwd=tmp_path, env=cli.env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert secret not in ran.stdout + ran.stderr

    source = ClientCredentials(issuer=issuer, client_id=demo_server.service_client,
                               client_secret=secret, scope="api:read", store=None)
    token = source.get_token()
    assert token.scope == ("api:read",)
    access = jwt.decode(source.get_access_token(), options={"verify_signature": False})
    assert access["sub"] == access["client_id"] == demo_server.service_client
    wrong = ClientCredentials(issuer=issuer, client_id=demo_server.service_client,
                              client_secret=secret + "x", store=None)
    with pytest.raises(InvalidClient) as refused:
        wrong.get_token()
    assert secret not in str(refused.value)
    # The secret went to the terminal once, on stdout, and into no log line.
    demo_server.process.terminate()
    out, err = demo_server.process.communicate(timeout=30)
    assert secret not in out + err
    assert "POST /token" in err  # the access log was written, without the secret


@dataclass
class _Shown:
    """What the person reads off the device prompt: the page and the code."""

    verification_uri: str
    user_code: str


def _login_and_approve(cli: Cli, server: RunningServer, *args: str,
                       line: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    """``keyturn login --issuer ... --client-id demo *args`` (or the command ``line``), approved."""
    login = cli.popen(*(line or ["login", "--issuer", server.issuer, "--client-id", "demo", *args]))
    assert login.stderr is not None
    page = code = None
    seen: list[str] = []
    while (line := login.stderr.readline()) and not (page and code):
        seen.append(line)
        page = page or (re.search(r"^\s+(http://\S+/device)\s*$", line) or [None, None])[1]
        code = code or (re.search(r"enter the code:\s+(\S+)", line) or [None, None])[1]
    assert page and code, "".join(seen)
    approver = threading.Thread(target=approve_in_page, args=(_Shown(page, code), server.password))
    approver.start()
    out, err = login.communicate(timeout=60)
    approver.join(timeout=30)
    return subprocess.CompletedProcess(login.args, login.returncode, out, "".join(seen) + err)


def test_serve_login_token_curl(cli: Cli, demo_server: RunningServer) -> None:
    issuer = demo_server.issuer
    login = _login_and_approve(cli, demo_server, "--flow", "device")
    assert login.returncode == 0, login.stderr
    assert f"Logged in as demo at {issuer} (client demo); access token valid until " in login.stderr
    assert "(ad hoc)" not in login.stderr

    # No --flow and no display here: the device flow's saved login answers, silently.
    token = cli.run("token", "--issuer", issuer, "--client-id", "demo")
    assert token.returncode == 0, token.stderr
    access_token = token.stdout.strip()
    assert access_token.count(".") == 2  # keyturn serve issues JWT access tokens (RFC 9068)

    # Where a browser could be opened the browser flow is picked, yet the device login made
    # elsewhere is as good: no second login is asked for.
    again = cli.run("token", "--issuer", issuer, "--client-id", "demo", env={"BROWSER": "false"})
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == access_token

    curl = cli.shell('curl -sf -H "Authorization: Bearer $($KEYTURN token --issuer "$1" '
                     '--client-id demo)" "$1/userinfo"', [issuer])
    assert curl.returncode == 0, curl.stderr
    assert '"sub":"demo"' in curl.stdout.replace(" ", "")

    # status lists the ad-hoc login once, though login and token were different command lines.
    rows = json.loads(cli.run("status", "--json").stdout)
    assert [(r["issuer"], r["client_id"], r["logged_in"], r["refresh_token"]) for r in rows] == [
        (issuer, "demo", True, True)]

    # logout revokes the refresh token (RFC 7009), and keyturn serve then refuses the whole
    # login's access tokens too.
    logout = cli.run("logout", "--issuer", issuer, "--client-id", "demo", "--flow", "device")
    assert logout.returncode == 0, logout.stderr
    revoked = httpx.get(f"{issuer}/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert revoked.status_code == 401
    after = cli.run("token", "--issuer", issuer, "--client-id", "demo")
    assert after.returncode == 4 and len(after.stderr.strip().splitlines()) == 1, after.stderr

    # Both say which `keyturn login` logs in again, with the ad-hoc login's own settings; run as
    # printed, it logs in (a bare `keyturn login` would exit 3: no profile).
    hints = [re.findall(r"`(keyturn login[^`]*)`", done.stderr) for done in (logout, after)]
    assert len(hints[0]) == len(hints[1]) == 1, (logout.stderr, after.stderr)
    assert hints[0][0] == f"{hints[1][0]} --flow device_code"  # logout was given --flow device
    words = shlex.split(hints[0][0])
    assert words[:2] == ["keyturn", "login"] and "--issuer" in words and "--client-id" in words
    relogin = _login_and_approve(cli, demo_server, line=words[1:])
    assert relogin.returncode == 0, relogin.stderr
    assert cli.run("token", "--issuer", issuer, "--client-id", "demo").returncode == 0


def test_demo_with_nobody_at_a_terminal(cli: Cli) -> None:
    demo = cli.run("demo", timeout=90)  # stdin is /dev/null: keyturn approves in the page itself
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "user name: demo" in out and re.search(r"password:\s+\S{8,}", out)
    assert "keyturn signs in and approves in the page itself" in out
    assert "Step 2 - approved" in out and re.search(r"sub\s+demo", out)
    assert "Step 3 - a silent refresh" in out
    # Times are local times and how far away they are, not epoch seconds.
    assert re.search(r"exp\s+\d\d:\d\d:\d\d \(in \d", out) and "expires " in out, out
    assert not re.search(r"(?<![\w-])\d{10}(?![\w-])", out), out


def test_demo_at_a_terminal_approves_on_enter(cli: Cli) -> None:
    leader, follower = pty.openpty()  # the demo's stdin is a terminal, as a person's is
    try:
        demo = subprocess.Popen([*cli.command, "demo"], env=cli.env, stdin=follower,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(follower)
        assert demo.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            seen.append(line)
            if "Press Enter" in line or not line:
                break
        assert "Press Enter" in seen[-1], "".join(seen)
        assert not any("approves in the page itself" in s for s in seen)  # it waits for a person
        os.write(leader, b"\n")
        out, err = demo.communicate(timeout=60)
    finally:
        os.close(leader)
    assert demo.returncode == 0, "".join(seen) + out + err
    assert "keyturn is approving in the page for you" in out and "Step 3 - a silent refresh" in out


def test_serve_with_a_bad_configuration_exits_3_with_one_line(cli: Cli, tmp_path: Path) -> None:
    missing = cli.run("serve", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 3, missing.stderr
    assert missing.stderr.count("\n") == 1 and "cannot read the server configuration" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[clients.x]\ngrants = 5\n")
    wrong = cli.run("serve", "--config", str(bad))
    assert wrong.returncode == 3 and wrong.stderr.startswith("keyturn serve: "), wrong.stderr


def test_serve_path_is_what_its_help_says(cli: Cli, tmp_path: Path) -> None:
    shown = cli.run("serve", "--help")
    assert shown.returncode == 0, shown.stderr
    help_text = " ".join(shown.stdout.split())
    assert "http://HOST:PORT/REALM (https with --cert)" in help_text, help_text
    process = cli.popen("serve", "--port", "0", "--path", "/realm", "--data-dir", str(tmp_path / "s"))
    try:
        assert process.stdout is not None
        issuer = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/realm", issuer), issuer  # no TLS: http
        metadata = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        assert metadata["issuer"] == issuer
    finally:
        process.terminate()
        process.communicate(timeout=30)
