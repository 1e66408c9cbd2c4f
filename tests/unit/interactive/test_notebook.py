"""kernel_is_remote(): where a notebook kernel runs decides whether a loopback redirect can work."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyturn.interactive.notebook import kernel_is_remote, refuse_loopback_redirect, remote_reason

DESKTOP = {"DISPLAY": ":0"}


def test_linux_desktop_kernel_is_local() -> None:
    assert kernel_is_remote(DESKTOP, platform="linux", markers=()) is False
    assert kernel_is_remote({"WAYLAND_DISPLAY": "wayland-0"}, platform="linux", markers=()) is False


def test_linux_without_display_is_remote() -> None:
    assert kernel_is_remote({}, platform="linux", markers=()) is True
    assert kernel_is_remote({"DISPLAY": ""}, platform="freebsd14", markers=()) is True


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_desktop_platforms_without_display_variable_are_local(platform: str) -> None:
    assert kernel_is_remote({}, platform=platform, markers=()) is False


@pytest.mark.parametrize("name", ["JUPYTERHUB_API_URL", "JUPYTERHUB_USER"])
def test_jupyterhub_is_remote_even_with_a_display(name: str) -> None:
    env = {**DESKTOP, name: "http://hub:8081/hub/api" if name.endswith("URL") else "ada"}
    assert kernel_is_remote(env, platform="linux", markers=()) is True
    assert kernel_is_remote({name: "x"}, platform="darwin", markers=()) is True


@pytest.mark.parametrize("name", ["SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY"])
def test_ssh_session_is_remote(name: str) -> None:
    assert kernel_is_remote({**DESKTOP, name: "10.0.0.2 51234 10.0.0.1 22"},
                            platform="linux", markers=()) is True
    assert kernel_is_remote({name: "x"}, platform="darwin", markers=()) is True


@pytest.mark.parametrize("env", [{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, {"container": "podman"}])
def test_container_variables_are_remote(env: dict[str, str]) -> None:
    assert kernel_is_remote({**DESKTOP, **env}, platform="linux", markers=()) is True


def test_container_marker_file_is_remote(tmp_path: Path) -> None:
    marker = tmp_path / ".dockerenv"
    assert kernel_is_remote(DESKTOP, platform="linux", markers=(str(marker),)) is False
    marker.touch()
    assert kernel_is_remote(DESKTOP, platform="linux", markers=(str(marker),)) is True


def test_empty_values_do_not_count() -> None:
    env = {**DESKTOP, "JUPYTERHUB_USER": "", "SSH_CONNECTION": "", "container": ""}
    assert kernel_is_remote(env, platform="linux", markers=()) is False


def test_defaults_read_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    assert kernel_is_remote() is True


@pytest.mark.parametrize(("env", "platform", "reason"), [
    ({"JUPYTERHUB_USER": "ada", "SSH_TTY": "/dev/pts/1"}, "linux", "JupyterHub runs it"),
    ({**DESKTOP, "SSH_CONNECTION": "x"}, "linux", "it runs in an SSH session"),
    ({**DESKTOP, "container": "podman"}, "linux", "it runs in a container"),
    ({}, "linux", "its machine has no display"),
    (DESKTOP, "linux", None),
    ({}, "darwin", None),
])
def test_the_reason_names_what_made_the_kernel_remote(
        env: dict[str, str], platform: str, reason: str | None) -> None:
    assert remote_reason(env, platform=platform, markers=()) == reason


def test_outside_a_kernel_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A program (not a kernel) on a JupyterHub node: keyturn login's own rule decides there.
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    assert refuse_loopback_redirect("https://id.example", "cli") is None
