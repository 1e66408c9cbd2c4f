"""Profile resolution and the flow chosen when none is given; status of a saved login."""

from __future__ import annotations

import json
import time

import pytest

from keyturn.config import can_open_browser, load_profile
from keyturn.stores.file import FileStore
from keyturn.token import Token
from tests.support.clihelper import Cli


@pytest.fixture
def bare_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> pytest.MonkeyPatch:
    for name in ("SSH_CONNECTION", "SSH_TTY", "DISPLAY", "WAYLAND_DISPLAY", "BROWSER",
                 "KEYTURN_PROFILE", "KEYTURN_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return monkeypatch


def test_no_browser_over_ssh_or_without_a_display(bare_env: pytest.MonkeyPatch) -> None:
    assert can_open_browser() is False  # no display on this Linux machine
    bare_env.setenv("DISPLAY", ":0")
    assert can_open_browser() is True
    bare_env.setenv("SSH_CONNECTION", "10.0.0.1 5000 10.0.0.2 22")
    assert can_open_browser() is False
    bare_env.setenv("BROWSER", "firefox")
    assert can_open_browser() is True


def test_flow_defaults(bare_env: pytest.MonkeyPatch) -> None:
    adhoc = {"issuer": "http://127.0.0.1:9", "client_id": "c"}
    assert load_profile(None, overrides=adhoc).grant == "device_code"
    assert load_profile(None, overrides={**adhoc, "grant": "device"}).grant == "device_code"
    bare_env.setenv("CC", "s")
    secret = load_profile(None, overrides={**adhoc, "client_secret_env": "CC"})
    # The secret is held as a Secret (no traceback with locals shows it); the source takes it so.
    assert secret.grant == "client_credentials" and secret.kwargs["client_secret"].reveal() == "s"
    assert "'s'" not in repr(secret)


def test_browser_settings_go_to_the_browser_login_only(bare_env: pytest.MonkeyPatch) -> None:
    settings = {"issuer": "http://127.0.0.1:9", "client_id": "c", "login_timeout": 42,
                "redirect_port": 8765, "landing_page": "<p>$title</p>"}
    device = load_profile(None, overrides=settings)  # no display here: the device flow
    assert device.grant == "device_code" and "login_timeout" not in device.kwargs
    device.build()  # DeviceCode has no such arguments: it must not be given them
    bare_env.setenv("BROWSER", "firefox")
    browser = load_profile(None, overrides=settings)
    assert browser.grant == "authorization_code"
    source = browser.build()
    assert source.login_timeout == 42.0  # type: ignore[attr-defined]


def test_default_profile_resolution(cli: Cli, bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("XDG_CONFIG_HOME", str(cli.config_home))
    cli.write_config('default_profile = "b"\n[profiles.a]\nissuer = "http://127.0.0.1:9"\n'
                     'client_id = "a"\ngrant = "device_code"\n[profiles.b]\n'
                     'issuer = "http://127.0.0.1:9"\nclient_id = "b"\ngrant = "device_code"\n')
    assert load_profile().name == "b"
    bare_env.setenv("KEYTURN_PROFILE", "a")
    assert load_profile().name == "a"


def test_status_shows_when_a_relogin_is_due(cli: Cli, bare_env: pytest.MonkeyPatch) -> None:
    bare_env.setenv("XDG_CONFIG_HOME", str(cli.config_home))
    cli.write_config('[profiles.dev]\ngrant = "device_code"\nissuer = "http://127.0.0.1:9"\n'
                     'client_id = "public"\n')
    profile = load_profile("dev")
    now = time.time()
    FileStore(cli.cache_home / "keyturn").save(profile.cache_key(), Token(
        access_token="a", expires_at=now + 600, issued_at=now, refresh_token="r",
        refresh_expires_at=now + 14 * 86400))
    rows = json.loads(cli.run("status", "--json").stdout)
    assert rows[0]["relogin_due_at"] == pytest.approx(now + 14 * 86400)
    table = cli.run("status", env={"COLUMNS": "200"}).stdout
    assert "(in 14 days)" in table and "valid until" in table
