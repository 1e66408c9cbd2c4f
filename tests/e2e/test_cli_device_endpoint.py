"""``keyturn login --device-authorization-endpoint URL`` (issue 11.4): an ad-hoc device login at a
server whose discovery documents do not name its device endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.clihelper import Cli
from tests.support.discoveryserver import DiscoveryServer


@pytest.fixture
def server() -> Iterator[DiscoveryServer]:
    with DiscoveryServer(path="/realm") as running:
        running.documents[running.oidc_path] = running.document(device=False)
        yield running


def test_login_names_the_device_endpoint_discovery_lacks(cli: Cli, server: DiscoveryServer) -> None:
    adhoc = ["--issuer", server.issuer, "--client-id", "cli", "--flow", "device"]
    without = cli.run("login", *adhoc)
    assert without.returncode != 0
    assert "device_authorization_endpoint" in without.stderr
    assert "--device-authorization-endpoint" in without.stderr  # the CLI's way to give it

    done = cli.run("login", *adhoc, "--device-authorization-endpoint", server.issuer + "/device")
    assert done.returncode == 0, done.stderr
    [device] = [r for r in server.requests if r.path == "/realm/device"]
    assert device.form["client_id"] == ["cli"]
    token = cli.run("token", *adhoc)  # the login is the ad-hoc one's: the endpoint is not its key
    assert token.returncode == 0 and token.stdout.strip() == server.issued[-1], token.stderr
