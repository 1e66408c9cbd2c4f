"""``keyturn login`` with the browser, as a person at a desk uses it: ``$BROWSER`` names a script
that is the person's browser (Debian's Chromium, driven by playwright), and it signs in on the real
provider's dev login and consent pages while keyturn waits on its loopback address."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.browserfixture import CHROMIUM, JOB_TIMEOUT
from tests.support.clihelper import Cli
from tests.support.providerfixture import DEVICE_CODE_GRANT, Provider, make_client, start_provider

ROOT = Path(__file__).resolve().parents[2]  # where the ``tests`` package is
NATIVE = "native"  # authorization_code + refresh_token, as a CLI registers
DEVICE = "native-device"  # the device flow too, for the SSH case
#: One browser login, Chromium's start included, on a busy 2-core machine.
LOGIN_TIMEOUT = 2 * JOB_TIMEOUT

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: apt-get install chromium")

# webbrowser runs a $BROWSER command like this one and waits for it to exit, while the command
# (through Chromium) waits for keyturn to answer the redirect: keyturn must not wait for it first.
BROWSE = """\
import sys

from tests.support.browserfixture import CHROMIUM, CHROMIUM_ARGS, provider_sign_in
from playwright.sync_api import sync_playwright

url = sys.argv[1]
with open({opened!r}, "a") as log:
    log.write(url + "\\n")
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        visit = provider_sign_in(browser, url)
    finally:
        browser.close()
with open({landed!r}, "a") as log:
    log.write(f"{{visit.status}} {{' '.join(visit.text.split())}}\\n")
"""


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    code = ["authorization_code", "refresh_token"]
    provider = start_provider([make_client(NATIVE, "none", grant_types=code),
                               make_client(DEVICE, "none", grant_types=[*code, DEVICE_CODE_GRANT])],
                              tmp_path_factory.mktemp("idp"))
    try:
        yield provider
    finally:
        provider.stop()


class Browser:
    """The ``$BROWSER`` of the keyturn subprocess, and what it did."""

    def __init__(self, tmp_path: Path) -> None:
        self.opened = tmp_path / "opened.txt"
        self.landed = tmp_path / "landed.txt"
        script = tmp_path / "browse.py"
        script.write_text(BROWSE.format(opened=str(self.opened), landed=str(self.landed)))
        # The script imports tests.support.browserfixture: PYTHONPATH names the repository root
        # (webbrowser runs the command without a shell, hence env(1)).
        self.command = (f"env PYTHONPATH={shlex.quote(str(ROOT))} "
                        f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} %s")

    def lines(self, path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def browser(tmp_path: Path) -> Browser:
    return Browser(tmp_path)


def adhoc(provider: Provider, client_id: str = NATIVE) -> list[str]:
    return ["--issuer", provider.issuer, "--client-id", client_id]


def test_login_opens_the_browser_then_token_is_silent(cli: Cli, idp: Provider, browser: Browser) -> None:
    idp.reset_stats()
    login = cli.run("login", *adhoc(idp), env={"BROWSER": browser.command}, timeout=LOGIN_TIMEOUT)
    assert login.returncode == 0, login.stderr
    assert login.stdout == ""
    # What the person was told: the browser, the URL in case none appeared, then the wait (plain,
    # as stderr is no terminal), and who they are.
    [url] = browser.lines(browser.opened)
    assert f"Opened a browser to sign in; if none appeared, open {url}\n" in login.stderr
    assert "Waiting for the browser sign-in...\n" in login.stderr
    # An ad-hoc login says where it is, not a "(profile (ad hoc))", and until when (no epoch).
    assert f"Logged in as alice at {idp.issuer} (client " in login.stderr
    assert "(ad hoc)" not in login.stderr and re.search(r"valid until \S+ \(in \d", login.stderr)
    assert "enter the code" not in login.stderr
    # What the browser was shown: keyturn's landing page, after the code exchange.
    [landed] = browser.lines(browser.landed)
    assert landed.startswith("200 ") and "Signed in as alice" in landed
    assert idp.token_requests(NATIVE, "authorization_code") == 1

    token = cli.run("token", *adhoc(idp))  # no $BROWSER, no display: never a login
    assert token.returncode == 0, token.stderr
    assert re.fullmatch(r"\S{20,}\n", token.stdout) and token.stderr == ""
    assert idp.token_requests(NATIVE) == 1
    assert len(browser.lines(browser.opened)) == 1


def test_two_logins_at_once_open_one_browser(cli: Cli, idp: Provider, browser: Browser) -> None:
    idp.reset_stats()
    cli.env["BROWSER"] = browser.command
    logins = [cli.popen("login", *adhoc(idp)) for _ in range(2)]
    try:
        outcomes = [login.communicate(timeout=LOGIN_TIMEOUT) for login in logins]
    finally:
        for login in logins:
            if login.poll() is None:
                login.kill()
    for login, (_out, err) in zip(logins, outcomes, strict=True):
        assert login.returncode == 0, err
        assert "Logged in as alice" in err
    # The second waited on the store's lock, then found the first one's tokens.
    assert len(browser.lines(browser.opened)) == 1
    assert sum("Opened a browser" in err for _out, err in outcomes) == 1
    assert idp.token_requests(NATIVE, "authorization_code") == 1
    assert idp.token_requests(NATIVE) == 1


def test_over_ssh_without_a_display_the_device_flow_is_picked(cli: Cli, idp: Provider) -> None:
    # Cli's environment has no DISPLAY and no BROWSER; SSH_CONNECTION says the person is elsewhere.
    cli.env["SSH_CONNECTION"] = "10.0.0.1 50000 10.0.0.2 22"
    login = cli.popen("login", *adhoc(idp, DEVICE))
    try:
        assert login.stderr is not None
        seen = []
        for line in login.stderr:  # the prompt comes first; the login then polls until killed
            seen.append(line)
            if "enter the code:" in line or "keyturn:" in line:
                break
        assert re.search(r"and enter the code:\s+\S+", "".join(seen)), "".join(seen)
        assert not any("Opened a browser" in line for line in seen)
    finally:
        login.kill()
        login.communicate(timeout=30)


def test_a_browser_that_cannot_start_leaves_the_url_to_open_by_hand(
        cli: Cli, idp: Provider) -> None:
    # `false` fails at once, as a browser that is not installed does. Without TERM, webbrowser
    # has no terminal browser (w3m, lynx) to try next.
    cli.env["BROWSER"] = "false %s"
    cli.env.pop("TERM", None)
    login = cli.popen("login", *adhoc(idp))
    try:
        assert login.stderr is not None
        seen = []
        for line in login.stderr:
            seen.append(line)
            if line.startswith(("    http", "keyturn:")):
                break
        text = "".join(seen)
        assert "To sign in, open this page in a browser on this machine:" in text, text
        assert re.search(rf"^    {re.escape(idp.issuer)}/\S+redirect_uri=http%3A%2F%2F127\.0\.0\.1",
                         text, re.MULTILINE), text
        assert "Opened a browser" not in text
    finally:
        login.kill()
        login.communicate(timeout=30)
