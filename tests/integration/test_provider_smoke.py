"""Smoke tests for the test identity provider fixture (plain httpx, no keyturn code)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.providerfixture import (
    DEVICE_CODE_GRANT,
    Provider,
    approve_device_code,
    complete_authorization,
    make_client,
    start_provider,
)


@pytest.fixture(scope="module")
def http() -> Any:
    with httpx.Client(trust_env=False, timeout=30) as client:
        yield client


def _jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_discovery(provider: Provider, http: httpx.Client) -> None:
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        r = http.get(provider.issuer + path)
        assert r.status_code == 200, r.text
        meta = r.json()
        assert meta["issuer"] == provider.issuer
        assert meta["token_endpoint"] == provider.token_endpoint
        assert meta["device_authorization_endpoint"] == provider.device_authorization_endpoint
        assert meta["introspection_endpoint"] == provider.introspection_endpoint
        assert meta["revocation_endpoint"] == provider.revocation_endpoint
        assert "client_credentials" in meta["grant_types_supported"]
        assert DEVICE_CODE_GRANT in meta["grant_types_supported"]
        assert {"openid", "offline_access", "api:read", "api:write"} <= set(meta["scopes_supported"])
    assert http.get(provider.jwks_uri).json()["keys"]


def test_html_pages_have_no_font_import(provider: Provider, http: httpx.Client) -> None:
    r = http.get(provider.issuer + "/device")
    assert r.status_code == 200
    assert "<form" in r.text
    assert "@import" not in r.text and "fonts.googleapis" not in r.text


def test_client_credentials_basic_is_counted(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "client_credentials", "scope": "api:read"},
        auth=p.clients["basic"].basic_auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert "." not in body["access_token"]  # opaque without a resource indicator
    assert p.token_requests("basic", "client_credentials") == 1
    assert p.stats() == {"token_requests": {"basic": {"client_credentials": 1}}, "total": 1}


def test_basic_client_sending_secret_in_body_is_rejected(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    c = p.clients["basic"]
    r = http.post(
        p.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": c.client_id,
            "client_secret": c.client_secret,
        },
    )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "invalid_client"
    assert "mismatch" in r.json()["error_description"]
    assert p.token_requests("basic") == 1  # rejected requests are counted too


def test_post_client(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    c = p.clients["post"]
    r = http.post(
        p.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": c.client_id,
            "client_secret": c.client_secret,
        },
    )
    assert r.status_code == 200, r.text
    r = http.post(p.token_endpoint, data={"grant_type": "client_credentials"}, auth=c.basic_auth)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert p.token_requests("post", "client_credentials") == 2


@pytest.mark.parametrize("client_id", ["pk-es256", "pk-rs256", "pk-eddsa", "secret-jwt"])
def test_jwt_client_auth_and_replay(fresh_stats: Provider, http: httpx.Client, client_id: str) -> None:
    p = fresh_stats
    c = p.clients[client_id]
    assertion = c.client_assertion(p.token_endpoint)
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    r = http.post(p.token_endpoint, data=data)
    assert r.status_code == 200, r.text
    r = http.post(p.token_endpoint, data=data)  # same jti
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert p.token_requests(client_id, "client_credentials") == 2  # client_id from assertion iss


def test_resource_indicator_gives_jwt_access_token(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    resource = "https://api.example.com/v1"
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "client_credentials", "scope": "api:read", "resource": resource},
        auth=p.clients["basic"].basic_auth,
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256"
    claims = _jwt_payload(token)
    assert claims["aud"] == resource
    assert claims["iss"] == p.issuer
    assert claims["client_id"] == "basic"
    assert claims["scope"] == "api:read"
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "client_credentials", "resource": "https://evil.invalid/"},
        auth=p.clients["basic"].basic_auth,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_target"


def test_short_lived_client(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=p.clients["short"].basic_auth,
    )
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == 2


def test_minted_refresh_token_rotates_for_public_client(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    rt0 = p.mint_refresh_token("public", scope="openid offline_access api:read", account_id="alice")
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt0, "client_id": "public"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == 3
    assert body["refresh_token"] and body["refresh_token"] != rt0
    assert _jwt_payload(body["id_token"])["sub"] == "alice"
    rt1 = body["refresh_token"]
    # Reusing the rotated-out token fails and (reuse detection) revokes the whole grant.
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt0, "client_id": "public"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt1, "client_id": "public"},
    )
    assert r.json()["error"] == "invalid_grant"
    assert p.token_requests("public", "refresh_token") == 3


def test_minted_refresh_token_confidential_client_does_not_rotate(
    fresh_stats: Provider, http: httpx.Client
) -> None:
    p = fresh_stats
    rt = p.mint_refresh_token("basic", scope="offline_access api:read")
    for _ in range(2):
        r = http.post(
            p.token_endpoint,
            data={"grant_type": "refresh_token", "refresh_token": rt},
            auth=p.clients["basic"].basic_auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["refresh_token"] == rt


def test_fail_next(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    p.fail_next(503, count=2, retry_after=1)
    auth = p.clients["basic"].basic_auth
    statuses = [
        http.post(p.token_endpoint, data={"grant_type": "client_credentials"}, auth=auth) for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json()["error"] == "temporarily_unavailable"
    assert statuses[0].headers["retry-after"] == "1"
    assert p.token_requests("basic", "client_credentials") == 3
    assert [e["status"] for e in p.stats(log=True)["log"]] == [503, 503, 200]


@pytest.mark.parametrize("client_id", ["public", "confidential-device"])
def test_device_flow_approved_over_http(fresh_stats: Provider, http: httpx.Client, client_id: str) -> None:
    p = fresh_stats
    c = p.clients[client_id]
    p.set_device_knobs(interval=1, slow_down_times=1)
    try:
        auth = c.basic_auth if c.client_secret else None
        data = {"scope": "openid offline_access api:read"}
        if auth is None:
            data["client_id"] = c.client_id
        r = http.post(p.device_authorization_endpoint, data=data, auth=auth)
        assert r.status_code == 200, r.text
        da = r.json()
        assert da["interval"] == 1
        assert da["verification_uri_complete"].startswith(p.issuer)
        poll = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": da["device_code"],
            **({} if auth else {"client_id": c.client_id}),
        }
        r = http.post(p.token_endpoint, data=poll, auth=auth)
        assert (r.status_code, r.json()["error"]) == (400, "slow_down")
        r = http.post(p.token_endpoint, data=poll, auth=auth)
        assert (r.status_code, r.json()["error"]) == (400, "authorization_pending")

        requests_made = approve_device_code(p, da["verification_uri_complete"], login="bob")
        assert requests_made <= 12

        r = http.post(p.token_endpoint, data=poll, auth=auth)
        assert r.status_code == 200, r.text
        tokens = r.json()
        assert tokens["refresh_token"]
        assert _jwt_payload(tokens["id_token"])["sub"] == "bob"
        assert p.token_requests(client_id, DEVICE_CODE_GRANT) == 3
    finally:
        p.reset_all()


def test_device_flow_approved_with_user_code(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    r = http.post(p.device_authorization_endpoint, data={"client_id": "public", "scope": "openid api:read"})
    da = r.json()
    assert "interval" not in da  # stock behaviour without knobs
    approve_device_code(p, da["user_code"])
    r = http.post(
        p.token_endpoint,
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": da["device_code"],
            "client_id": "public",
        },
    )
    assert r.status_code == 200, r.text
    assert "refresh_token" not in r.json()  # no offline_access


def test_access_token_expiry_is_real(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    c = p.clients["short"]
    token = http.post(p.token_endpoint, data={"grant_type": "client_credentials"}, auth=c.basic_auth).json()[
        "access_token"
    ]

    def active() -> bool:
        r = http.post(p.introspection_endpoint, data={"token": token}, auth=c.basic_auth)
        return bool(r.json()["active"])

    assert active()
    deadline = time.monotonic() + 10
    while active():
        assert time.monotonic() < deadline, "token still active after 10 s"
        time.sleep(0.2)


def test_device_flow_denied(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    da = http.post(p.device_authorization_endpoint, data={"client_id": "public", "scope": "openid"}).json()
    approve_device_code(p, da["verification_uri_complete"], abort=True)
    r = http.post(
        p.token_endpoint,
        data={
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": da["device_code"],
            "client_id": "public",
        },
    )
    assert (r.status_code, r.json()["error"]) == (400, "access_denied")


def test_authorization_code_pkce_loopback_any_port(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = "http://127.0.0.1:51234/callback"  # registered without a port (RFC 8252 7.3)
    state = secrets.token_urlsafe(8)
    query = {
        "client_id": "public",
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": "openid offline_access api:read",
        "prompt": "consent",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    final = complete_authorization(p, f"{p.issuer}/auth?{urlencode(query)}", login="carol")
    assert final.startswith(redirect_uri + "?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(final).query).items()}
    assert params["state"] == state
    assert params["iss"] == p.issuer
    r = http.post(
        p.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": "public",
        },
    )
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["refresh_token"]
    assert _jwt_payload(tokens["id_token"])["sub"] == "carol"
    # PKCE is mandatory for the public client.
    del query["code_challenge"], query["code_challenge_method"]
    final = complete_authorization(p, f"{p.issuer}/auth?{urlencode(query)}")
    assert "error=invalid_request" in final


def test_minted_refresh_token_with_resource_gives_jwt(fresh_stats: Provider, http: httpx.Client) -> None:
    p = fresh_stats
    resource = "https://api.example.org"
    rt = p.mint_refresh_token("basic", scope="offline_access api:read api:write", resource=resource)
    r = http.post(
        p.token_endpoint,
        data={"grant_type": "refresh_token", "refresh_token": rt},
        auth=p.clients["basic"].basic_auth,
    )
    assert r.status_code == 200, r.text
    claims = _jwt_payload(r.json()["access_token"])
    assert claims["aud"] == resource
    assert set(claims["scope"].split()) == {"api:read", "api:write"}


def test_custom_provider_forced_rotation_and_short_refresh_ttl(tmp_path: Path, http: httpx.Client) -> None:
    clients = [
        make_client("rot", grant_types=["client_credentials", "refresh_token"], force_refresh_rotation=True),
        make_client("rt-short", grant_types=["client_credentials", "refresh_token"], refresh_token_ttl=3),
    ]
    p = start_provider(clients, tmp_path)
    try:
        assert set(p.clients) == {"rot", "rt-short"}
        rt = p.mint_refresh_token("rot", scope="offline_access api:read")
        r = http.post(
            p.token_endpoint,
            data={"grant_type": "refresh_token", "refresh_token": rt},
            auth=p.clients["rot"].basic_auth,
        )
        assert r.status_code == 200, r.text
        assert r.json()["refresh_token"] != rt

        rt = p.mint_refresh_token("rt-short", scope="offline_access api:read")
        auth = p.clients["rt-short"].basic_auth

        def active() -> bool:
            r = http.post(p.introspection_endpoint, data={"token": rt}, auth=auth)
            return bool(r.json()["active"])

        assert active()
        deadline = time.monotonic() + 10
        while active():
            assert time.monotonic() < deadline, "refresh token still active after 10 s"
            time.sleep(0.2)
        r = http.post(p.token_endpoint, data={"grant_type": "refresh_token", "refresh_token": rt}, auth=auth)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
    finally:
        p.stop()
    assert not p.alive
