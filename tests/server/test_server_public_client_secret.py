"""A public client that sends a client_secret in the body (cegal-keystoneauth sends a random one
on every refresh) is the public client it is: the body secret is ignored. A non-empty password
in a Basic header stays refused."""

from __future__ import annotations

import secrets

import httpx

from keyturn.protocol.grants import GRANT_REFRESH_TOKEN
from tests.support.serverkit import basic, page_approve, poll, start_device


def _login(issuer: str, scope: str = "openid offline_access") -> dict:
    """A real device login of the public client ``demo``: its token response."""
    started = start_device(issuer, scope=scope)
    assert page_approve(issuer, started["user_code"]).status_code == 200
    response = poll(issuer, started["device_code"])
    assert response.status_code == 200, response.text
    return response.json()


def test_refresh_with_a_random_body_secret_succeeds_every_time(server):
    refresh_token = _login(server.issuer)["refresh_token"]
    for _ in range(3):  # a new random secret on every refresh, as cegal-keystoneauth sends
        response = httpx.post(f"{server.issuer}/token", data={
            "grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token,
            "client_id": "demo", "client_secret": secrets.token_urlsafe(16)})
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"] != refresh_token
        refresh_token = response.json()["refresh_token"]


def test_device_authorization_with_a_body_secret_is_the_public_client(server):
    response = httpx.post(f"{server.issuer}/device_authorization",
                          data={"client_id": "demo", "client_secret": "whatever"})
    assert response.status_code == 200, response.text
    assert response.json()["user_code"]


def test_basic_with_a_password_for_a_public_client_is_refused(server):
    refresh_token = _login(server.issuer)["refresh_token"]
    response = httpx.post(f"{server.issuer}/token", headers=basic("demo", "random-secret"), data={
        "grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "random-secret" not in response.text
    # Refused before the grant was looked at: the refresh token still works.
    again = httpx.post(f"{server.issuer}/token", data={
        "grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token, "client_id": "demo"})
    assert again.status_code == 200, again.text


def test_a_confidential_client_with_a_wrong_body_secret_stays_refused(server):
    response = httpx.post(f"{server.issuer}/device_authorization",
                          data={"client_id": "cli", "client_secret": "not-the-secret"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
