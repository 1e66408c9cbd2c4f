"""userinfo releases the claims the token's scope asks for (OIDC Core §5.4), as the id_token
does: profile -> name, email -> email, sub always. Real tokens from the server's device flow."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from keyturn.server.claims import released_claims
from tests.support.serverkit import page_approve, poll, start_device

ALICE = {"name": "Alice Example", "email": "alice@example.invalid"}


def _tokens(issuer: str, scope: str) -> dict:
    started = start_device(issuer, scope=scope)
    assert page_approve(issuer, started["user_code"]).status_code == 200
    response = poll(issuer, started["device_code"])
    assert response.status_code == 200, response.text
    return response.json()


def _payload(jwt: str) -> dict:
    part = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@pytest.mark.parametrize(("scope", "expected"), [
    ("openid", {}),
    ("openid email", {"email": ALICE["email"]}),
    ("openid profile", {"name": ALICE["name"]}),
    ("openid profile email", ALICE),
])
def test_userinfo_holds_what_the_scope_asks_for(server, scope, expected):
    tokens = _tokens(server.issuer, scope)
    response = httpx.get(f"{server.issuer}/userinfo",
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "alice", **expected}
    # The id_token of the same login carries the same person claims (one mapping for both).
    id_claims = _payload(tokens["id_token"])
    assert {k: id_claims[k] for k in ("name", "email") if k in id_claims} == expected


def test_a_refresh_narrowed_to_openid_narrows_userinfo(server):
    tokens = _tokens(server.issuer, "openid profile email offline_access")
    refreshed = httpx.post(f"{server.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
        "client_id": "demo", "scope": "openid"})
    assert refreshed.status_code == 200, refreshed.text
    response = httpx.get(f"{server.issuer}/userinfo",
                         headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"})
    assert response.json() == {"sub": "alice"}


def test_the_mapping_is_oidc_core_5_4():
    claims = {"name": "A", "preferred_username": "a", "email": "a@x", "email_verified": "true",
              "phone_number": "1", "address": "street", "groups": "admins"}
    assert released_claims(claims, ["openid"]) == {}
    assert released_claims(claims, ["profile"]) == {"name": "A", "preferred_username": "a"}
    assert released_claims(claims, ["email"]) == {"email": "a@x", "email_verified": "true"}
    assert released_claims(claims, ["phone", "address"]) == {"phone_number": "1",
                                                             "address": "street"}
