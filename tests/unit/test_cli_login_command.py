"""The ``keyturn login`` command line a hint names logs in to the same login again: an ad-hoc
login's settings that it cannot start without are in it."""

from __future__ import annotations

import shlex

from keyturn.cli.common import login_command
from keyturn.config import load_profile

ISSUER = "https://id.example.org/realm"


def test_an_ad_hoc_device_login_names_its_device_endpoint(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no config file: the command line alone
    prof = load_profile(None, overrides={
        "issuer": ISSUER, "client_id": "cli", "grant": "device_code", "account": "ada",
        "device_authorization_endpoint": ISSUER + "/device"})
    assert shlex.split(login_command(prof)) == [
        "keyturn", "login", "--issuer", ISSUER, "--client-id", "cli", "--flow", "device_code",
        "--account", "ada", "--device-authorization-endpoint", ISSUER + "/device"]


def test_a_profile_with_the_endpoint_given_on_the_command_line(tmp_path, monkeypatch) -> None:
    (tmp_path / "keyturn").mkdir()
    (tmp_path / "keyturn" / "config.toml").write_text(
        f'[profiles.hpc]\nissuer = "{ISSUER}"\nclient_id = "cli"\ngrant = "device_code"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    given = {"device_authorization_endpoint": ISSUER + "/device"}
    prof = load_profile("hpc", overrides=given)
    assert shlex.split(login_command(prof, given)) == [
        "keyturn", "login", "--profile", "hpc", "--device-authorization-endpoint", ISSUER + "/device"]
