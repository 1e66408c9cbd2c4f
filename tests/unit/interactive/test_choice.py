"""The rule that picks a person's login (keyturn.interactive.choice): its table, row by row, and the
profiles and UserLogin asking it rather than a rule of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.config import Profile
from keyturn.interactive.choice import BROWSER_LOGIN, DEVICE_LOGIN, browser_reaches_loopback, choose_login
from keyturn.registry import LOGIN_PAIR

DESKTOP = {"DISPLAY": ":0"}
SSH = {"SSH_CONNECTION": "10.0.0.1 50000 10.0.0.2 22", "SSH_TTY": "/dev/pts/1"}
HUB = {"JUPYTERHUB_API_URL": "http://hub:8081/hub/api", "JUPYTERHUB_USER": "ada"}

#: (what the row is, environment, platform, in a kernel, the login chosen)
TABLE = [
    ("Linux desktop (X11)", DESKTOP, "linux", False, BROWSER_LOGIN),
    ("Linux desktop (Wayland)", {"WAYLAND_DISPLAY": "wayland-0"}, "linux", False, BROWSER_LOGIN),
    ("Linux without a display", {}, "linux", False, DEVICE_LOGIN),
    ("an empty DISPLAY", {"DISPLAY": ""}, "linux", False, DEVICE_LOGIN),
    ("FreeBSD without a display", {}, "freebsd14", False, DEVICE_LOGIN),
    ("macOS", {}, "darwin", False, BROWSER_LOGIN),
    ("Windows", {}, "win32", False, BROWSER_LOGIN),
    ("SSH session (display forwarded or not)", {**SSH, **DESKTOP}, "linux", False, DEVICE_LOGIN),
    ("SSH into a Mac", SSH, "darwin", False, DEVICE_LOGIN),
    ("$BROWSER named over SSH: the person's explicit choice", {**SSH, "BROWSER": "w3m"}, "linux",
     False, BROWSER_LOGIN),
    ("$BROWSER without a display", {"BROWSER": "lynx %s"}, "linux", False, BROWSER_LOGIN),
    ("a container without a display", {"container": "podman"}, "linux", False, DEVICE_LOGIN),
    ("a kernel on the person's desktop", DESKTOP, "linux", True, BROWSER_LOGIN),
    ("a kernel on the person's Mac", {}, "darwin", True, BROWSER_LOGIN),
    ("a JupyterHub kernel", {**HUB, **DESKTOP}, "linux", True, DEVICE_LOGIN),
    ("a JupyterHub kernel, $BROWSER set in the image", {**HUB, "BROWSER": "firefox"}, "linux",
     True, DEVICE_LOGIN),
    ("a kernel reached over SSH", {**SSH, **DESKTOP}, "linux", True, DEVICE_LOGIN),
    ("a kernel in a Kubernetes pod", {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "linux", True,
     DEVICE_LOGIN),
    ("a kernel on a Linux node without a display", {}, "linux", True, DEVICE_LOGIN),
]


@pytest.mark.parametrize(("row", "environ", "platform", "kernel", "expected"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_the_rule(row: str, environ: dict[str, str], platform: str, kernel: bool,
                  expected: str) -> None:
    assert choose_login(environ, platform, kernel=kernel, container_markers=()) == expected
    assert browser_reaches_loopback(environ, platform, kernel=kernel, container_markers=()) is (
        expected == BROWSER_LOGIN)


def test_a_kernel_in_a_container_uses_the_device_flow(tmp_path: Path) -> None:
    marker = tmp_path / ".dockerenv"
    marker.write_text("")
    assert choose_login(DESKTOP, "linux", kernel=True, container_markers=(str(marker),)) == DEVICE_LOGIN
    # Outside a kernel the browser keyturn starts runs beside it, in the container (a display
    # given to the container): its loopback is the listener's.
    assert choose_login(DESKTOP, "linux", kernel=False, container_markers=(str(marker),)) == BROWSER_LOGIN


@pytest.mark.parametrize(("environ", "platform"), [(DESKTOP, "linux"), ({}, "darwin"), (SSH, "linux")])
def test_what_is_offered_bounds_the_choice(environ: dict[str, str], platform: str) -> None:
    # A provider (or a configuration) without an authorization endpoint: the device flow only.
    assert choose_login(environ, platform, offered=[DEVICE_LOGIN], kernel=False) == DEVICE_LOGIN
    # Without the device flow the browser login is the only one that may work anywhere.
    assert choose_login(environ, platform, offered=[BROWSER_LOGIN], kernel=False) == BROWSER_LOGIN


def test_the_default_environment_is_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "BROWSER", "WAYLAND_DISPLAY",
                 "JUPYTERHUB_API_URL", "JUPYTERHUB_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert choose_login(platform="linux", kernel=False) == BROWSER_LOGIN
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 50000 10.0.0.2 22")
    assert choose_login(platform="linux", kernel=False) == DEVICE_LOGIN


def test_the_pair_is_the_registrys() -> None:
    assert (BROWSER_LOGIN, DEVICE_LOGIN) == LOGIN_PAIR


@pytest.mark.parametrize(("environ", "expected"), [(DESKTOP, BROWSER_LOGIN), (SSH, DEVICE_LOGIN),
                                                    ({}, DEVICE_LOGIN)])
def test_a_profile_without_a_grant_and_user_login_ask_the_rule(
        monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], expected: str) -> None:
    from keyturn.sources.user_login import UserLogin

    for name in ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY",
                 "JUPYTERHUB_API_URL", "JUPYTERHUB_USER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = {"issuer": "https://id.example.org", "client_id": "cli"}
    prof = Profile("p", settings)
    assert prof.chosen and prof.grant == expected
    login = UserLogin(**settings, store=None)  # type: ignore[arg-type]
    assert login.chosen == expected == login.grant_name
    assert login.cache_key == prof.cache_key()  # the same login as the profile's
