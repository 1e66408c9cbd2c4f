"""Interoperability with real clients nobody here wrote, each running the device flow to the end:
the npm openid-client v6 (panva, pinned in tests/server/clients/package-lock.json),
requests-oauth2client, and MSAL Python over TLS (trustme) with an issuer that has a path."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest

from keyturn.server.runner import ServerThread
from tests.support.serverkit import CLI_SECRET, make_config, page_approve

CLIENTS = Path(__file__).resolve().parent / "clients"


@pytest.fixture(scope="module")
def node_clients():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node and npm are needed for the openid-client interop test")
    marker = CLIENTS / "node_modules" / ".package-lock.json"
    if not marker.is_file() or marker.stat().st_mtime < (CLIENTS / "package-lock.json").stat().st_mtime:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENTS,
                       check=True, timeout=300, stdin=subprocess.DEVNULL, capture_output=True)
    return node


@pytest.mark.parametrize(("client_id", "secret"), [("demo", None), ("cli", CLI_SECRET)])
def test_openid_client_device_flow(server, node_clients, client_id, secret):
    command = [node_clients, str(CLIENTS / "openid_client_device.mjs"), server.issuer, client_id]
    if secret:
        command.append(secret)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               stdin=subprocess.DEVNULL)
    try:
        first = process.stdout.readline()
        if not first:
            pytest.fail(f"openid-client failed: {process.stderr.read()[-2000:]}")
        issued = json.loads(first)
        assert issued["verification_uri"] == f"{server.issuer}/device"
        assert page_approve(server.issuer, issued["user_code"]).status_code == 200
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["sub"] == "alice" and result["refreshed_sub"] == "alice"
    assert result["refreshed"] and result["rotated"]


# -- requests-oauth2client (Python) ---------------------------------------------------------------

def test_requests_oauth2client_device_flow(server):
    import requests_oauth2client as roc
    client = roc.OAuth2Client.from_discovery_endpoint(
        issuer=server.issuer, client_id="demo", testing=True,  # testing: allow http on loopback
        # it does not read this one from discovery (interop-notes)
        device_authorization_endpoint=f"{server.issuer}/device_authorization")
    authorization = client.authorize_device(scope="openid offline_access")
    assert page_approve(server.issuer, authorization.user_code).status_code == 200
    job = roc.DeviceAuthorizationPollingJob(client, authorization)
    token = None
    for _ in range(10):  # it waits its interval (1 s) between polls by itself
        token = job()
        if token is not None:
            break
    assert token is not None and token.refresh_token and token.id_token
    rotated = client.refresh_token(token.refresh_token)
    assert rotated.refresh_token != token.refresh_token
    assert client.revoke_refresh_token(rotated.refresh_token)
    with pytest.raises(roc.InvalidGrant):
        client.refresh_token(rotated.refresh_token)


# -- MSAL Python over TLS, issuer with a path -----------------------------------------------------

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    import trustme
    work = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(work / "server.pem"))
    cert.private_key_pem.write_to_path(str(work / "key.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    with ServerThread(make_config(), data_dir=work / "data", path="/realm",
                      cert=str(work / "server.pem"), key=str(work / "key.pem")) as running:
        yield running, str(work / "ca.pem")


def test_msal_device_flow_over_tls(tls_server):
    import msal
    import requests

    running, ca = tls_server
    assert running.issuer.startswith("https://127.0.0.1:") and running.issuer.endswith("/realm")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify= (interop-notes)
    session.verify = ca
    app = msal.PublicClientApplication("demo", oidc_authority=running.issuer, http_client=session)
    flow = app.initiate_device_flow(scopes=["email"])  # MSAL adds openid profile offline_access
    assert "user_code" in flow, flow
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as browser:
        assert page_approve(running.issuer, flow["user_code"], client=browser).status_code == 200
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert result["id_token_claims"]["sub"] == "alice"
    accounts = app.get_accounts()
    assert len(accounts) == 1
    silent = app.acquire_token_silent(["email"], account=accounts[0], force_refresh=True)
    assert silent and "access_token" in silent, silent
    assert silent["access_token"] != result["access_token"]
    session.close()
