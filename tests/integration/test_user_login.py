"""UserLogin against the real provider: the browser (a real Chromium) where one can reach the
loopback redirect, the device flow (approved on the provider's own pages) over SSH, the device flow
when the browser cannot be opened or the provider refuses the loopback redirect, and a login saved
by either flow used by the other, silently, its refresh included; sync and async."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jupyter_client.manager
import pytest

from keyturn import AuthorizationCode, DeviceCode, DeviceVerification, FileStore, LoginRequired, UserLogin
from tests.support.browserfixture import JOB_TIMEOUT, BrowserThread, Visit, chromium_thread, provider_sign_in
from tests.support.providerfixture import (
    DEVICE_CODE_GRANT,
    Provider,
    approve_device_code,
    make_client,
    start_provider,
)
from tests.support.serverkit import ServerThread, make_config, page_approve

#: Public native clients with both logins (loopback redirects with any port, PKCE).
BOTH = "both"  # 1 h access tokens
SHORT = "both-3s"  # 3 s access tokens: the silent refresh
#: A public client whose only redirect URI is a web app's: the provider refuses the loopback one.
WEB = "web-only"
AUTHCODE = "authorization_code"

SSH = {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22"}
DESKTOP = {"DISPLAY": ":0"}


@pytest.fixture(scope="module")
def chromium() -> Iterator[BrowserThread]:
    with chromium_thread() as browser:
        yield browser


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    grants = [AUTHCODE, "refresh_token", DEVICE_CODE_GRANT]
    provider = start_provider([
        make_client(BOTH, "none", grant_types=grants),
        make_client(SHORT, "none", grant_types=grants, access_token_ttl=3),
        make_client(WEB, "none", grant_types=grants, application_type="web",
                    redirect_uris=["https://app.example.org/callback"]),
    ], tmp_path_factory.mktemp("idp"))
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def fresh(idp: Provider) -> Iterator[Provider]:
    """The provider with its counters cleared, polled every second (not the stock 5 s)."""
    idp.reset_stats()
    idp.set_device_knobs(interval=1)
    yield idp
    idp.set_device_knobs(interval=None, slow_down_times=0)


def where(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    """Run as if in ``environ``: a desk with a display, or an SSH session."""
    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER",
                 "JUPYTERHUB_API_URL", "JUPYTERHUB_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


class Approver:
    """The device prompt: the person approves on the provider's pages, from another thread."""

    def __init__(self, provider: Provider, login: str = "alice") -> None:
        self.provider, self.login = provider, login
        self.shown: list[DeviceVerification] = []
        self.errors: list[BaseException] = []

    def __call__(self, verification: DeviceVerification) -> None:
        self.shown.append(verification)
        url = verification.verification_uri_complete
        assert url is not None

        def run() -> None:
            try:
                approve_device_code(self.provider, url, self.login)
            except BaseException as exc:
                self.errors.append(exc)

        threading.Thread(target=run, daemon=True).start()


class Person:
    """``open_browser``: returns at once, as webbrowser.open does, while Chromium signs in."""

    def __init__(self, chromium: BrowserThread, login: str = "alice") -> None:
        self.chromium, self.login = chromium, login
        self.urls: list[str] = []
        self.visits: list[Future[Visit]] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        self.visits.append(self.chromium.submit(
            lambda browser: provider_sign_in(browser, url, login=self.login)))
        return True


class NoBrowser:
    """``open_browser`` of a machine where none starts: returns False, or raises."""

    def __init__(self, raises: bool = False) -> None:
        self.raises = raises
        self.urls: list[str] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        if self.raises:
            raise OSError("no such file or directory: 'xdg-open'")
        return False


def never(*args: Any) -> Any:
    raise AssertionError(f"no new login was to be started: {args}")


def user_login(provider: Provider, tmp_path: Path, client_id: str = BOTH, **kwargs: Any) -> UserLogin:
    args: dict[str, Any] = {"issuer": provider.issuer, "client_id": client_id,
                            "store": FileStore(tmp_path / "tokens"), "leeway": 1.0,
                            "login_timeout": JOB_TIMEOUT}
    args.update(kwargs)
    return UserLogin(**args)


def port_is_closed(url: str) -> bool:
    port = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0]).port
    assert port
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def wait_past(expires_at: float | None) -> None:
    assert expires_at is not None
    deadline = time.monotonic() + 30
    while time.time() < expires_at:
        assert time.monotonic() < deadline
        time.sleep(0.05)


# -- the login chosen where it runs ---------------------------------------------------------------


def test_at_a_desk_the_browser_login(fresh: Provider, chromium: BrowserThread, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, DESKTOP)
    person = Person(chromium)
    source = user_login(fresh, tmp_path, open_browser=person, prompt=never)
    assert source.chosen == AUTHCODE
    token = source.get_token()
    assert token.claims["sub"] == "alice" and token.refresh_token
    assert "Signed in as alice" in person.visits[0].result(JOB_TIMEOUT).text
    assert fresh.token_requests(BOTH, AUTHCODE) == 1
    assert fresh.token_requests(BOTH, DEVICE_CODE_GRANT) == 0
    assert source.grant_name == AUTHCODE
    # Saved as AuthorizationCode saves it: the same login for that source, and for keyturn login.
    browser = AuthorizationCode(issuer=fresh.issuer, client_id=BOTH, interactive=False,
                                store=FileStore(tmp_path / "tokens"))
    assert browser.get_token().access_token == token.access_token
    assert source.cache_key == browser.cache_key
    assert len(person.urls) == 1


def test_over_ssh_the_device_flow(fresh: Provider, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, {**SSH, **DESKTOP})  # a forwarded display changes nothing: the person is elsewhere
    approver = Approver(fresh, "bob")
    source = user_login(fresh, tmp_path, open_browser=never, prompt=approver)
    assert source.chosen == "device_code"
    token = source.get_token()
    assert token.claims["sub"] == "bob" and not approver.errors
    assert len(approver.shown) == 1
    assert fresh.token_requests(BOTH, AUTHCODE) == 0
    device = DeviceCode(issuer=fresh.issuer, client_id=BOTH, interactive=False,
                        store=FileStore(tmp_path / "tokens"))
    assert device.get_token().access_token == token.access_token


def test_async_over_ssh(fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, SSH)
    approver = Approver(fresh, "carol")
    source = user_login(fresh, tmp_path, open_browser=never, prompt=approver)

    async def three_tasks() -> list[str]:
        return list(await asyncio.gather(*(source.aget_access_token() for _ in range(3))))

    tokens = asyncio.run(three_tasks())  # three tasks at once: one login, one code shown
    assert len(set(tokens)) == 1 and len(approver.shown) == 1 and not approver.errors
    token = asyncio.run(source.aget_token())
    assert token.claims["sub"] == "carol" and token.access_token == tokens[0]
    assert fresh.token_requests(BOTH, "refresh_token") == 0


# -- the browser login gives way to the device flow -----------------------------------------------


@pytest.mark.parametrize("raises", [False, True], ids=["returns False", "raises"])
def test_a_browser_that_cannot_be_opened_gives_way_to_the_device_flow(
        fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raises: bool) -> None:
    where(monkeypatch, DESKTOP)
    no_browser, approver = NoBrowser(raises), Approver(fresh)
    source = user_login(fresh, tmp_path, open_browser=no_browser, prompt=approver)
    assert source.chosen == AUTHCODE
    token = source.get_token()
    assert token.claims["sub"] == "alice" and not approver.errors
    assert len(no_browser.urls) == 1 and len(approver.shown) == 1  # each tried once
    assert source.grant_name == "device_code"
    assert port_is_closed(no_browser.urls[0])  # the redirect listener did not stay behind
    assert fresh.token_requests(BOTH, AUTHCODE) == 0
    assert fresh.token_requests(BOTH, "refresh_token") == 0
    # The next call, and the next program, use this login without trying the browser again.
    assert source.get_access_token() == token.access_token
    later = user_login(fresh, tmp_path, open_browser=never, prompt=never)
    assert later.get_access_token() == token.access_token
    assert len(no_browser.urls) == 1


def test_a_refused_loopback_redirect_gives_way_to_the_device_flow(
        fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, DESKTOP)
    person, approver = NoBrowser(), Approver(fresh)
    source = user_login(fresh, tmp_path, WEB, open_browser=person, prompt=approver)
    token = source.get_token()
    assert token.claims["sub"] == "alice" and not approver.errors
    assert person.urls == []  # no browser was sent to the provider's error page
    assert len(approver.shown) == 1 and source.grant_name == "device_code"
    assert fresh.token_requests(WEB, AUTHCODE) == 0


def test_a_refused_redirect_is_told_apart_from_a_login_page(
        fresh: Provider, chromium: BrowserThread, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The probe goes out for the client that allows the loopback too: there it finds the login
    # page (a 303 to the provider's interaction), and the browser login goes on.
    where(monkeypatch, DESKTOP)
    person = Person(chromium, "dave")
    token = asyncio.run(user_login(fresh, tmp_path, open_browser=person, prompt=never).aget_token())
    assert token.claims["sub"] == "dave" and len(person.urls) == 1
    assert fresh.token_requests(BOTH, AUTHCODE) == 1


def test_a_device_only_server_gives_the_device_flow_at_a_desk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # keyturn's own server has no browser login: its /authorize only explains that, with a 400
    # page (RFC 6749 §4.1.2.1), which the probe finds before a browser is opened.
    where(monkeypatch, DESKTOP)
    server = ServerThread(make_config(), data_dir=tmp_path / "server")
    try:
        codes: list[str] = []

        def person(verification: DeviceVerification) -> None:
            codes.append(verification.user_code)
            threading.Thread(target=page_approve, args=(server.issuer, verification.user_code),
                             daemon=True).start()

        browser = NoBrowser()
        source = UserLogin(issuer=server.issuer, client_id="demo", open_browser=browser,
                           prompt=person, store=FileStore(tmp_path / "tokens"))
        assert source.chosen == AUTHCODE
        token = source.get_token()
        assert token.claims["sub"] == "alice" and len(codes) == 1
        assert browser.urls == [] and source.grant_name == "device_code"
    finally:
        server.stop()


# -- one saved login for both flows ---------------------------------------------------------------


def test_a_device_login_answers_at_a_desk_and_refreshes(
        fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    approver = Approver(fresh, "erin")
    device = DeviceCode(issuer=fresh.issuer, client_id=SHORT, prompt=approver, leeway=1.0,
                        store=FileStore(tmp_path / "tokens"))
    first = device.get_token()
    assert first.refresh_token
    where(monkeypatch, DESKTOP)
    source = user_login(fresh, tmp_path, SHORT, open_browser=never, prompt=never)
    assert source.chosen == AUTHCODE
    assert source.get_token().access_token == first.access_token  # no new login
    assert source.grant_name == "device_code" and source.cache_key == device.cache_key
    wait_past(first.expires_at)
    fresh_token = source.get_access_token()
    assert fresh_token != first.access_token
    assert fresh.token_requests(SHORT, "refresh_token") == 1
    assert fresh.token_requests(SHORT, AUTHCODE) == 0
    assert fresh.token_requests(SHORT, DEVICE_CODE_GRANT) == 1
    # Saved where the device login lives: DeviceCode and keyturn login see the refreshed token.
    silent = DeviceCode(issuer=fresh.issuer, client_id=SHORT, interactive=False,
                        store=FileStore(tmp_path / "tokens"))
    assert silent.get_access_token() == fresh_token
    assert source.userinfo()["sub"] == "erin"
    # A source like the others: an httpx auth= (and requests').
    userinfo = httpx.get(fresh.discovery()["userinfo_endpoint"], auth=source, timeout=30)
    assert userinfo.status_code == 200 and userinfo.json()["sub"] == "erin"


def test_when_the_other_flows_login_ends_a_new_login_uses_the_flow_chosen_here(
        fresh: Provider, chromium: BrowserThread, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = DeviceCode(issuer=fresh.issuer, client_id=SHORT, prompt=Approver(fresh, "gina"),
                       leeway=1.0, store=FileStore(tmp_path / "tokens")).get_token()
    where(monkeypatch, DESKTOP)
    person = Person(chromium, "hank")
    source = user_login(fresh, tmp_path, SHORT, open_browser=person, prompt=never)
    assert source.get_token().claims["sub"] == "gina" and source.grant_name == "device_code"
    # The provider ends the device login (RFC 7009): its refresh token is refused from now on.
    assert first.refresh_token
    revoked = httpx.post(fresh.revocation_endpoint, data={
        "token": first.refresh_token, "token_type_hint": "refresh_token", "client_id": SHORT})
    assert revoked.status_code == 200
    wait_past(first.expires_at)
    token = source.get_token()  # the refresh is refused: a browser login, as chosen at a desk
    assert token.claims["sub"] == "hank" and source.grant_name == AUTHCODE
    assert len(person.urls) == 1 and fresh.token_requests(SHORT, AUTHCODE) == 1
    assert fresh.token_requests(SHORT, "refresh_token") == 1  # the refused one, sent once


def test_a_browser_login_answers_over_ssh_async(
        fresh: Provider, chromium: BrowserThread, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    person = Person(chromium, "frank")
    browser = AuthorizationCode(issuer=fresh.issuer, client_id=BOTH, open_browser=person,
                                store=FileStore(tmp_path / "tokens"), login_timeout=JOB_TIMEOUT)
    first = browser.get_token()
    where(monkeypatch, SSH)
    source = user_login(fresh, tmp_path, open_browser=never, prompt=never)
    assert source.chosen == "device_code"
    token = asyncio.run(source.aget_token())
    assert token.access_token == first.access_token and token.claims["sub"] == "frank"
    assert source.grant_name == AUTHCODE
    assert fresh.token_requests(BOTH) == 1 and len(person.urls) == 1


def test_without_a_saved_login_a_silent_call_is_told_to_log_in(
        fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, DESKTOP)
    source = user_login(fresh, tmp_path, open_browser=never, prompt=never, interactive=False)
    with pytest.raises(LoginRequired, match=r"no saved login \(browser or device\) for this "
                                            r"UserLogin and this call is not interactive"):
        source.get_token()
    assert fresh.stats()["total"] == 0


def test_logout_forgets_the_login_of_either_flow(
        fresh: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where(monkeypatch, SSH)
    source = user_login(fresh, tmp_path, prompt=Approver(fresh))
    source.get_token()
    where(monkeypatch, DESKTOP)
    # At the desk the device login answers; logging out there must end it, or the next call
    # would find it again.
    desk = user_login(fresh, tmp_path, open_browser=never, prompt=never)
    assert desk.get_token().claims["sub"] == "alice"
    outcome = desk.logout()
    assert outcome.forgotten and outcome.revoked, outcome  # the device login, revoked at the provider
    after = user_login(fresh, tmp_path, open_browser=never, prompt=never, interactive=False)
    with pytest.raises(LoginRequired):
        after.get_token()
    assert not list((tmp_path / "tokens").glob("*.json")) or all(
        FileStore(tmp_path / "tokens").load(key) is None
        for key in (desk.cache_key, source.cache_key))


def test_the_documented_example_runs(fresh: Provider, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """docs/browser-login.md's UserLogin example, as it stands: at a desk, the device login
    saved before (over SSH, say) answers it without a login."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "browser-login.md").read_text()
    section = doc.split("## Either login, picked where it runs: `UserLogin`", 1)[1]
    [example] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    DeviceCode(issuer=fresh.issuer, client_id=BOTH, prompt=Approver(fresh),
               store=FileStore(tmp_path / "tokens")).get_token()
    where(monkeypatch, DESKTOP)
    monkeypatch.setenv("KEYTURN_ISSUER", fresh.issuer)
    monkeypatch.setenv("TOKEN_DIR", str(tmp_path / "tokens"))
    example = example.replace('client_id="cli"', f'client_id="{BOTH}"')
    exec(compile(example, "docs/browser-login.md", "exec"), {"__name__": "doc_example"})
    assert capsys.readouterr().out == "authorization_code\n"
    assert fresh.token_requests(BOTH) == 1  # the device login's: the example made no new one


# -- in a real Jupyter kernel ---------------------------------------------------------------------

KERNEL_CELL = """
from keyturn import UserLogin
print(UserLogin(issuer={issuer!r}, client_id="both", store=None).chosen)
"""


@pytest.mark.parametrize(("environ", "expected"), [
    ({**DESKTOP, "JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_USER": "ada"},
     "device_code"),
    ({**DESKTOP, **SSH}, "device_code"),
], ids=["JupyterHub", "over SSH"])
def test_a_remote_kernel_picks_the_device_flow(
        idp: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        environ: dict[str, str], expected: str) -> None:
    """In a kernel the notebook's browser is the person's, not one beside the kernel: with a
    display (as a hub's image may set) the rule still says the device flow there, while the same
    environment outside a kernel says the browser. (This machine is a container, which alone
    makes a kernel remote: a kernel on a desktop is the rule's unit table's.)"""
    specs = tmp_path / "jupyter"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(specs),
                    "--name", "keyturn-user-login"], check=True, capture_output=True, timeout=60)
    env = {k: v for k, v in os.environ.items()
           if k not in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "BROWSER")} | environ
    env["JUPYTER_PATH"] = str(specs / "share" / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", env["JUPYTER_PATH"])
    manager, client = jupyter_client.manager.start_new_kernel(kernel_name="keyturn-user-login", env=env,
                                                      cwd=str(tmp_path))
    try:
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = client.execute_interactive(KERNEL_CELL.format(issuer=idp.issuer), timeout=60,
                                           output_hook=hook)
        assert reply["content"]["status"] == "ok", out
        assert "".join(out) == f"{expected}\n"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    # Outside a kernel a display means a browser here, unless the session is SSH's.
    where(monkeypatch, environ)
    outside = user_login(idp, tmp_path, store=None).chosen
    assert outside == ("device_code" if "SSH_CONNECTION" in environ else AUTHCODE)
