"""The server's endpoints over real HTTP (uvicorn + SQLite), driven by keyturn's own client and by
plain httpx where a test needs to send exactly one thing."""

from __future__ import annotations

import json
import logging
import os
import stat
import time

import httpx
import pytest
from joserfc import jwk, jwt

from keyturn import AccessDenied, ClientCredentials, DeviceCode, MemoryStore
from keyturn.protocol.grants import GRANT_DEVICE_CODE
from keyturn.server.device_flow import LETTERS, new_device_grant
from keyturn.server.runner import DATABASE_NAME, ServerThread
from tests.support.serverkit import (
    ALICE_PASSWORD,
    CLI_SECRET,
    RS_SECRET,
    SERVICE_SECRET,
    basic,
    make_config,
    page_approve,
    poll,
    start_device,
)

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def approved_tokens(issuer: str, scope: str = "openid offline_access") -> dict:
    started = start_device(issuer, scope=scope)
    assert page_approve(issuer, started["user_code"]).status_code == 200
    response = poll(issuer, started["device_code"])
    assert response.status_code == 200, response.text
    return response.json()


def introspect(issuer: str, token: str) -> dict:
    response = httpx.post(f"{issuer}/introspect", data={"token": token}, headers=basic("rs", RS_SECRET))
    assert response.status_code == 200
    return response.json()


def verify_jwt(issuer: str, token: str) -> jwt.Token:
    keys = jwk.KeySet.import_key_set(httpx.get(f"{issuer}/jwks").json())
    return jwt.decode(token, keys, algorithms=["RS256"])


# -- discovery ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/.well-known/openid-configuration",
                                  "/.well-known/oauth-authorization-server"])
def test_discovery_names_every_endpoint(server, path):
    doc = httpx.get(server.issuer + path).json()
    assert doc["issuer"] == server.issuer
    for name in ("token_endpoint", "device_authorization_endpoint", "revocation_endpoint",
                 "introspection_endpoint", "jwks_uri", "userinfo_endpoint"):
        assert doc[name].startswith(server.issuer + "/")
        assert httpx.get(doc[name]).status_code != 404
    assert {"openid", "offline_access", "api"} <= set(doc["scopes_supported"])
    assert GRANT_DEVICE_CODE in doc["grant_types_supported"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "none"}


def test_issuer_with_a_path(tmp_path):
    with ServerThread(make_config(), data_dir=tmp_path, path="/realm") as running:
        assert running.issuer.endswith("/realm")
        origin = running.issuer.rsplit("/realm", 1)[0]
        for url in (f"{running.issuer}/.well-known/openid-configuration",
                    f"{origin}/.well-known/oauth-authorization-server/realm"):
            assert httpx.get(url).json()["token_endpoint"] == f"{running.issuer}/token"
        seen = []
        source = DeviceCode(issuer=running.issuer, client_id="demo", store=MemoryStore(),
                            prompt=lambda v: seen.append(page_approve(running.issuer, v.user_code)))
        token = source.get_token()
        assert seen[0].status_code == 200 and token.claims["iss"] == running.issuer


# -- the device grant with keyturn's own client -----------------------------------------------------

def test_device_login_with_keyturn_client_then_silent_refresh(server):
    shown = []

    def prompt(verification):
        shown.append(verification)
        assert page_approve(server.issuer, verification.user_code).status_code == 200

    source = DeviceCode(issuer=server.issuer, client_id="demo", store=MemoryStore(), prompt=prompt,
                        scope="openid profile email offline_access")
    token = source.get_token()
    assert len(shown) == 1 and shown[0].verification_uri == f"{server.issuer}/device"
    assert shown[0].verification_uri_complete.endswith(shown[0].user_code)
    decoded = verify_jwt(server.issuer, token.access_token)
    # RFC 9068 §2.1 and §2.2: typ at+jwt; iss, exp, aud, sub, client_id, iat, jti.
    assert decoded.header["typ"] == "at+jwt"
    claims = decoded.claims
    assert claims["sub"] == "alice" and claims["client_id"] == "demo"
    assert claims["iss"] == server.issuer and claims["aud"] == server.issuer
    assert {"exp", "iat", "jti"} <= set(claims)
    # the id_token was validated by keyturn: its claims are on the token
    assert token.claims["sub"] == "alice" and token.claims["name"] == "Alice Example"
    assert token.refresh_token
    source.invalidate()
    refreshed = source.get_token()
    assert len(shown) == 1  # silent: no second prompt
    assert refreshed.access_token != token.access_token
    assert refreshed.refresh_token != token.refresh_token  # rotated


def test_denied_login_raises_access_denied(server):
    def prompt(verification):
        result = page_approve(server.issuer, verification.user_code, decision="deny")
        assert "denied" in result.text

    source = DeviceCode(issuer=server.issuer, client_id="demo", store=MemoryStore(), prompt=prompt)
    with pytest.raises(AccessDenied):
        source.get_token()


def test_confidential_client_device_login(server):
    source = DeviceCode(issuer=server.issuer, client_id="cli", client_secret=CLI_SECRET,
                        store=MemoryStore(), scope="openid api",
                        prompt=lambda v: page_approve(server.issuer, v.user_code))
    assert verify_jwt(server.issuer, source.get_access_token()).claims["scope"] == "openid api"


def test_polling_answers_and_headers(server):
    started = start_device(server.issuer, scope="openid", unknown_parameter="ignored")
    assert started["interval"] == 1 and started["expires_in"] == 1800
    first = poll(server.issuer, started["device_code"])
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
    assert NO_STORE.items() <= first.headers.items()
    second = poll(server.issuer, started["device_code"])
    assert second.json()["error"] == "slow_down"
    assert page_approve(server.issuer, started["user_code"]).status_code == 200
    done = poll(server.issuer, started["device_code"], extra="ignored too")
    assert done.status_code == 200
    assert NO_STORE.items() <= done.headers.items()
    body = done.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and "id_token" in body


def test_device_code_is_single_use_and_reuse_revokes_what_it_gave(server):
    started = start_device(server.issuer, scope="openid offline_access")
    page_approve(server.issuer, started["user_code"])
    tokens = poll(server.issuer, started["device_code"]).json()
    assert introspect(server.issuer, tokens["access_token"])["active"] is True
    # The client moved on (used its refresh token): the code coming back is a second redemption,
    # not a retry of a lost answer (test_server_atomic_rotation covers the retry grace).
    rotated = httpx.post(f"{server.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "demo"})
    assert rotated.status_code == 200, rotated.text
    tokens = rotated.json()
    again = poll(server.issuer, started["device_code"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert introspect(server.issuer, tokens["access_token"]) == {"active": False}
    assert introspect(server.issuer, tokens["refresh_token"]) == {"active": False}


def test_expired_code_gives_expired_token(server):
    code, grant = new_device_grant(client_id="demo", scope=("openid",), now=time.time() - 2000,
                                   lifetime=1800, interval=1, user_codes=LETTERS)
    assert server.storage.create_device_grant(grant)
    response = poll(server.issuer, code)
    assert response.status_code == 400 and response.json()["error"] == "expired_token"


def test_code_of_another_client_is_invalid_grant(server):
    started = start_device(server.issuer, scope="openid")
    response = poll(server.issuer, started["device_code"], headers=basic("cli", CLI_SECRET))
    assert response.json()["error"] == "invalid_grant"


# -- client authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["body", "basic-empty-password", "both"])
def test_public_client_id_in_body_in_basic_or_both(server, how):
    headers = basic("demo", "") if how != "body" else {}
    form = {"scope": "openid"}
    if how != "basic-empty-password":
        form["client_id"] = "demo"
    response = httpx.post(f"{server.issuer}/device_authorization", data=form, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("headers", "form"), [
    ({}, {"client_id": "nobody"}),
    ({}, {}),
    ({}, {"client_id": "cli"}),
    (basic("cli", "wrong"), {}),
    ({}, {"client_id": "cli", "client_secret": "wrong"}),
    (basic("demo", "a-secret"), {}),
    ({"Authorization": "Basic !!!"}, {}),
    # a byte >= 0x80 in the header: not valid Basic either (was a 500)
    ({"Authorization": b"Basic Y2xpOnjp\xe9"}, {}),
])
def test_invalid_client_is_401_with_www_authenticate(server, headers, form):
    response = httpx.post(f"{server.issuer}/token", data={"grant_type": "refresh_token",
                                                          "refresh_token": "x", **form},
                          headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")
    assert NO_STORE.items() <= response.headers.items()


def test_basic_and_body_client_ids_must_agree(server):
    response = httpx.post(f"{server.issuer}/device_authorization", data={"client_id": "cli"},
                          headers=basic("demo", ""))
    assert response.json()["error"] == "invalid_request"


def test_client_secret_post_and_basic_both_work(server):
    for headers, form in ((basic("cli", CLI_SECRET), {}),
                          ({}, {"client_id": "cli", "client_secret": CLI_SECRET})):
        response = httpx.post(f"{server.issuer}/device_authorization",
                              data={"scope": "openid", **form}, headers=headers)
        assert response.status_code == 200


@pytest.mark.parametrize(("form", "error"), [
    ({"client_id": "demo"}, "invalid_request"),
    ({"client_id": "demo", "grant_type": "password"}, "unsupported_grant_type"),
    ({"client_id": "demo", "grant_type": "client_credentials"}, "unauthorized_client"),
    ({"client_id": "demo", "grant_type": GRANT_DEVICE_CODE}, "invalid_request"),
    ({"client_id": "demo", "grant_type": GRANT_DEVICE_CODE, "device_code": "nope"}, "invalid_grant"),
])
def test_token_endpoint_errors(server, form, error):
    response = httpx.post(f"{server.issuer}/token", data=form)
    assert response.status_code == 400 and response.json()["error"] == error


def test_request_errors(server):
    nogrant = httpx.post(f"{server.issuer}/device_authorization", data={"client_id": "nogrant"})
    assert nogrant.json()["error"] == "unauthorized_client"
    scope = httpx.post(f"{server.issuer}/device_authorization",
                       data={"client_id": "demo", "scope": "openid admin"})
    assert scope.json()["error"] == "invalid_scope"
    twice = httpx.post(f"{server.issuer}/token",
                       content="client_id=demo&grant_type=a&grant_type=b",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert twice.json()["error"] == "invalid_request"
    as_json = httpx.post(f"{server.issuer}/token", json={"client_id": "demo"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


# -- refresh rotation, client credentials, revocation, introspection -------------------------------

def refresh(issuer: str, token: str, **form: str) -> httpx.Response:
    return httpx.post(f"{issuer}/token", data={"grant_type": "refresh_token", "refresh_token": token,
                                               "client_id": "demo", **form})


def test_refresh_rotates_and_reuse_revokes_the_family(server):
    tokens = approved_tokens(server.issuer)
    first = refresh(server.issuer, tokens["refresh_token"])
    assert first.status_code == 200 and NO_STORE.items() <= first.headers.items()
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert introspect(server.issuer, rotated["access_token"])["active"] is True
    # Not the identical request (the identical retry within the grace gets the same answer again:
    # test_server_atomic_rotation.py).
    reused = refresh(server.issuer, tokens["refresh_token"], scope="openid")
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # the winner's new tokens die with the family
    assert refresh(server.issuer, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(server.issuer, rotated["access_token"]) == {"active": False}


def test_refresh_may_narrow_the_scope_but_not_widen_it(server):
    tokens = approved_tokens(server.issuer, scope="openid profile offline_access")
    narrowed = refresh(server.issuer, tokens["refresh_token"], scope="openid")
    assert narrowed.json()["scope"] == "openid"
    wider = refresh(server.issuer, narrowed.json()["refresh_token"], scope="openid email")
    assert wider.json()["error"] == "invalid_scope"


def test_refresh_token_of_another_client_is_invalid_grant(server):
    tokens = approved_tokens(server.issuer)
    response = httpx.post(f"{server.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic("cli", CLI_SECRET))
    assert response.json()["error"] == "invalid_grant"


def test_client_credentials_with_keyturn_client(server):
    source = ClientCredentials(issuer=server.issuer, client_id="service",
                               client_secret=SERVICE_SECRET, scope="api:read")
    token = source.get_token()
    assert token.refresh_token is None
    claims = verify_jwt(server.issuer, token.access_token).claims
    assert claims["sub"] == "service" and claims["scope"] == "api:read"
    post = ClientCredentials(issuer=server.issuer, client_id="service", client_secret=SERVICE_SECRET,
                             auth_method="client_secret_post", store=None)
    assert post.get_token().scope == ("api:read", "api:write")


def test_revoking_a_refresh_token_ends_the_login(server):
    tokens = approved_tokens(server.issuer)
    revoked = httpx.post(f"{server.issuer}/revoke", data={"token": tokens["refresh_token"],
                                                          "client_id": "demo"})
    assert revoked.status_code == 200
    assert refresh(server.issuer, tokens["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(server.issuer, tokens["access_token"]) == {"active": False}


def test_revoking_an_access_token_and_garbage(server):
    tokens = approved_tokens(server.issuer)
    for token in (tokens["access_token"], "not-a-token", "a.b.c"):
        response = httpx.post(f"{server.issuer}/revoke", data={"token": token, "client_id": "demo",
                                                               "token_type_hint": "access_token"})
        assert response.status_code == 200
    assert introspect(server.issuer, tokens["access_token"]) == {"active": False}
    # the refresh token is another matter
    assert refresh(server.issuer, tokens["refresh_token"]).status_code == 200


def test_keyturn_logout_revokes_at_the_server(server):
    source = DeviceCode(issuer=server.issuer, client_id="demo", store=MemoryStore(),
                        prompt=lambda v: page_approve(server.issuer, v.user_code))
    token = source.get_token()
    source.logout()
    assert introspect(server.issuer, token.access_token)["active"] is False


def test_introspection(server):
    tokens = approved_tokens(server.issuer)
    active = introspect(server.issuer, tokens["access_token"])
    assert active["active"] is True and active["sub"] == "alice" and active["client_id"] == "demo"
    refresh_info = introspect(server.issuer, tokens["refresh_token"])
    assert refresh_info["active"] is True and refresh_info["token_type"] == "refresh_token"
    assert introspect(server.issuer, "garbage") == {"active": False}
    public = httpx.post(f"{server.issuer}/introspect", data={"token": tokens["access_token"],
                                                             "client_id": "demo"})
    assert public.status_code == 401 and "www-authenticate" in public.headers


def test_userinfo(server):
    tokens = approved_tokens(server.issuer, scope="openid email")
    info = httpx.get(f"{server.issuer}/userinfo",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.json()["sub"] == "alice" and info.json()["email"] == "alice@example.invalid"
    assert httpx.get(f"{server.issuer}/userinfo").status_code == 401


def test_health(server):
    assert httpx.get(f"{server.issuer}/health").json() == {"status": "ok"}


# -- persistence and secrets --------------------------------------------------------------------------

def test_signing_key_persists_in_a_private_database(tmp_path):
    with ServerThread(make_config(), data_dir=tmp_path) as first:
        kid = httpx.get(f"{first.issuer}/jwks").json()["keys"][0]["kid"]
    mode = stat.S_IMODE(os.stat(tmp_path / DATABASE_NAME).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path).st_mode) & 0o077 == 0 or tmp_path.exists()
    with ServerThread(make_config(), data_dir=tmp_path) as second:
        jwks = httpx.get(f"{second.issuer}/jwks").json()
        assert jwks["keys"][0]["kid"] == kid
        assert "d" not in jwks["keys"][0] and "p" not in jwks["keys"][0]


def test_a_login_survives_a_restart(tmp_path):
    with ServerThread(make_config(), data_dir=tmp_path) as first:
        tokens = approved_tokens(first.issuer)
    with ServerThread(make_config(), data_dir=tmp_path) as second:
        assert refresh(second.issuer, tokens["refresh_token"]).status_code == 200


def test_logs_hold_no_secrets(server, caplog):
    caplog.set_level(logging.DEBUG)
    started = start_device(server.issuer, scope="openid offline_access")
    page_approve(server.issuer, started["user_code"])
    tokens = poll(server.issuer, started["device_code"]).json()
    refresh(server.issuer, tokens["refresh_token"])
    text = "\n".join(record.getMessage() for record in caplog.records
                     if record.name.startswith(("keyturn", "uvicorn")))
    assert "/token" in text and "/device" in text  # the access log did log
    for secret in (started["device_code"], started["user_code"], tokens["access_token"],
                   tokens["refresh_token"], tokens["id_token"], ALICE_PASSWORD):
        assert secret not in text
    assert json.dumps(tokens)  # (keeps tokens referenced)


def test_userinfo_of_a_client_named_like_a_user_has_no_user_claims(tmp_path):
    from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS
    from keyturn.server.config import ClientConfig
    from tests.support.serverkit import _cheap_hash

    config = make_config()
    clients = {**config.clients, "alice": ClientConfig(
        "alice", "A service named alice", (GRANT_CLIENT_CREDENTIALS,), ("openid",),
        secret_hash=_cheap_hash("alice-client-secret"))}
    with ServerThread(make_config(clients=clients), data_dir=tmp_path) as running:
        token = httpx.post(f"{running.issuer}/token", data={"grant_type": "client_credentials",
                                                            "scope": "openid"},
                           headers=basic("alice", "alice-client-secret")).json()["access_token"]
        info = httpx.get(f"{running.issuer}/userinfo", headers={"Authorization": f"Bearer {token}"})
        assert info.status_code == 200 and info.json() == {"sub": "alice"}  # not the user's email


def test_access_log_cannot_be_given_forged_lines(server, caplog):
    caplog.set_level(logging.INFO, logger="keyturn.server.access")
    httpx.get(f"{server.issuer}/health%0A127.0.0.9%20%22GET%20/forged%22%20200")
    # The access log line is written once the response has gone out: wait for it.
    deadline = time.monotonic() + 10
    while True:
        lines = [r.getMessage() for r in caplog.records if r.name == "keyturn.server.access"]
        if any("forged" in line for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert any("/health%0A127.0.0.9" in line for line in lines), lines
    assert all("\n" not in line for line in lines)
