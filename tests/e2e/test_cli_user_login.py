"""``keyturn login`` (a subprocess) and ``UserLogin`` (in this process) ask one rule and share one
saved login: the device flow the command picks over SSH answers UserLogin at a desk, and the
browser login UserLogin makes at a desk answers ``keyturn token`` over SSH."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyturn import FileStore, UserLogin
from tests.support.browserfixture import JOB_TIMEOUT, chromium_thread, provider_sign_in
from tests.support.clihelper import Cli
from tests.support.providerfixture import (
    DEVICE_CODE_GRANT,
    Provider,
    approve_device_code,
    make_client,
    start_provider,
)

CLIENT = "both"  # a public native client with both logins
SSH = {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22"}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    provider = start_provider([make_client(CLIENT, "none", grant_types=[
        "authorization_code", "refresh_token", DEVICE_CODE_GRANT])], tmp_path_factory.mktemp("idp"))
    provider.set_device_knobs(interval=1)
    try:
        yield provider
    finally:
        provider.stop()


def at(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER",
                 "JUPYTERHUB_API_URL", "JUPYTERHUB_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


def never(*args: Any) -> Any:
    raise AssertionError(f"no new login was to be started: {args}")


def adhoc(provider: Provider) -> list[str]:
    return ["--issuer", provider.issuer, "--client-id", CLIENT]


def user_login(cli: Cli, provider: Provider, **kwargs: Any) -> UserLogin:
    # The command's FileStore: $XDG_CACHE_HOME/keyturn.
    return UserLogin(issuer=provider.issuer, client_id=CLIENT,
                     store=FileStore(cli.cache_home / "keyturn"), **kwargs)


def device_login(cli: Cli, provider: Provider, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``keyturn login`` in ``env``, its device code approved at the provider as alice."""
    cli.env.update(env)
    login = cli.popen("login", *adhoc(provider))
    try:
        assert login.stderr is not None
        seen = []
        for line in login.stderr:
            seen.append(line)
            if "enter the code:" in line or "keyturn:" in line:
                break
        found = re.search(r"enter the code:\s+(\S+)", "".join(seen))
        assert found, "".join(seen)
        approve_device_code(provider, found.group(1))
        out, err = login.communicate(timeout=60)
    finally:
        if login.poll() is None:
            login.kill()
            login.communicate(timeout=30)
    return subprocess.CompletedProcess(login.args, login.returncode, out, "".join(seen) + err)


def test_the_device_login_of_keyturn_login_answers_user_login_at_a_desk(
        cli: Cli, idp: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    idp.reset_stats()
    login = device_login(cli, idp, SSH)  # over SSH the command picks the device flow
    assert login.returncode == 0, login.stderr
    assert "Opened a browser" not in login.stderr and "Logged in as alice" in login.stderr
    at(monkeypatch, {"DISPLAY": ":0"})
    source = user_login(cli, idp, open_browser=never, prompt=never)
    assert source.chosen == "authorization_code"  # the rule says browser here ...
    assert source.get_token().claims["sub"] == "alice"  # ... and the saved device login answers
    assert source.grant_name == "device_code"
    assert idp.token_requests(CLIENT) == 1  # the device login's, nothing since


def test_the_browser_login_of_user_login_answers_keyturn_token_over_ssh(
        cli: Cli, idp: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    idp.reset_stats()
    at(monkeypatch, {"DISPLAY": ":0"})
    with chromium_thread() as chromium:
        visits = []

        def person(url: str) -> bool:
            visits.append(chromium.submit(lambda browser: provider_sign_in(browser, url)))
            return True

        token = user_login(cli, idp, open_browser=person, prompt=never,
                           login_timeout=JOB_TIMEOUT).get_token()
        assert "Signed in as alice" in visits[0].result(JOB_TIMEOUT).text
    assert idp.token_requests(CLIENT, "authorization_code") == 1
    # Over SSH the command picks the device flow, finds no device login, and uses the browser one.
    printed = cli.run("token", *adhoc(idp), env=SSH)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == token.access_token + "\n"
    assert idp.token_requests(CLIENT) == 1
    # whoami, status and logout over SSH find the browser login the same way as token.
    who = cli.run("whoami", *adhoc(idp), "--json", env=SSH)
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["claims"]["sub"] == "alice"
    [row] = json.loads(cli.run("status", "--json", env=SSH).stdout)
    assert row["logged_in"] is True and row["grant"] == "authorization_code", row
    gone = cli.run("logout", *adhoc(idp), "--json", env=SSH)
    assert gone.returncode == 0, gone.stderr
    report = json.loads(gone.stdout)
    assert report["forgotten"] is True and report["grant"] == "authorization_code", report
    assert report["revoked"] is True and report["others"] == []
    assert cli.run("token", *adhoc(idp), env=SSH).returncode == 4  # nothing left to answer


def test_keyturn_login_takes_the_device_flow_when_no_browser_starts(
        cli: Cli, idp: Provider, tmp_path: Path) -> None:
    # At a desk (a display) the rule picks the browser; `false` fails at once, as a browser that is
    # not installed does: without TERM, and with a PATH holding no browser (this machine has
    # chromium, which webbrowser would try next under a display), nothing else is tried. The
    # client may use the device flow: keyturn login, as UserLogin, logs in with it instead.
    idp.reset_stats()
    desk = {"DISPLAY": ":0", "BROWSER": "/bin/false %s", "PATH": str(tmp_path)}
    cli.env.pop("TERM", None)
    login = device_login(cli, idp, desk)
    assert login.returncode == 0, login.stderr
    assert "Logged in as alice" in login.stderr
    assert "in a browser on this machine" not in login.stderr  # no URL left to open by hand
    assert "on any device:" in login.stderr  # the device prompt
    assert idp.token_requests(CLIENT, DEVICE_CODE_GRANT) == 1
    # The device login answers `keyturn token` at the same desk, from the fast path's index too.
    printed = cli.run("token", *adhoc(idp), env=desk)
    assert printed.returncode == 0, printed.stderr
    assert idp.token_requests(CLIENT) == 1
