"""Hostile JSON sent to the server, and found in its own storage.

A client can put deeply nested JSON where the server reads JSON: a JWT's header or payload (a
client assertion, a bearer token at /userinfo, a token at /introspect and /revoke), or a JSON
body. Each answer is a clean 4xx OAuth error (or RFC 7009 / RFC 7662's 200), never a 500 and never
a stack trace. A record of the server's own storage that is damaged that way raises StoreError.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

import keyturn.server.tokens as tokens_module
from keyturn.errors import ConfigError, StoreError
from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS
from keyturn.server.config import load_config
from keyturn.server.storage.base import grant_from_json, refresh_from_json
from keyturn.server.storage.sqlite import SQLiteStorage
from keyturn.server.tokens import load_signer
from tests.support.serverkit import RS_SECRET, SERVICE_SECRET

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


CLAIMS = b64(json.dumps({"iss": "service", "sub": "service", "aud": "x", "exp": 2**31}).encode())
#: JWTs a client can make up. The server's limit on a token is 8192 characters, joserfc's on a
#: header 512 bytes: nested JWTs under those limits and far past them.
def jwt_of(header: bytes, payload: str = CLAIMS) -> str:
    return f"{b64(header)}.{payload}.c2ln"


HOSTILE_JWTS = {
    "header-nested-under-512-bytes": jwt_of(b'{"alg":"RS256","x":' + nested(200) + b"}"),
    "header-array-380-deep": jwt_of(b"[" * 380),
    "header-nested-2500-deep": jwt_of(nested(2500)),
    "header-nested-40000-deep": jwt_of(b"[" * 40_000),
    "payload-nested": jwt_of(b'{"alg":"RS256","typ":"at+jwt"}', b64(nested(3000))),
    "header-nan": jwt_of(b'{"alg":"RS256","typ":"at+jwt","x":NaN}'),
}
JWTS = pytest.mark.parametrize("token", HOSTILE_JWTS.values(), ids=HOSTILE_JWTS.keys())


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def clean(response: httpx.Response, *statuses: int) -> dict[str, object]:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert "Traceback" not in response.text and "RecursionError" not in response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


@JWTS
def test_a_nested_client_assertion_is_an_oauth_error(server, token: str) -> None:
    # This server authenticates clients by secret only: an assertion, nested or not, never
    # authenticates anyone, and the answer says so as an OAuth error.
    for form in ({"client_id": "service"}, {}):
        response = httpx.post(f"{server.issuer}/token", data={
            "grant_type": GRANT_CLIENT_CREDENTIALS, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": token, **form})
        body = clean(response, 400, 401)
        assert body["error"] == "invalid_client"


@JWTS
def test_a_nested_bearer_token_at_userinfo_is_invalid_token(server, token: str) -> None:
    response = httpx.get(f"{server.issuer}/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text[:300]
    assert "invalid_token" in response.headers["www-authenticate"]


@JWTS
def test_a_nested_token_at_introspection_is_inactive(server, token: str) -> None:
    response = httpx.post(f"{server.issuer}/introspect", data={"token": token},
                          headers=basic("rs", RS_SECRET))
    assert clean(response, 200) == {"active": False}


@JWTS
def test_a_nested_token_at_revocation_is_revoked_as_unknown(server, token: str) -> None:
    # RFC 7009 §2.2: "invalid tokens do not cause an error response".
    response = httpx.post(f"{server.issuer}/revoke", data={"token": token, "client_id": "demo"})
    assert response.status_code == 200, response.text[:300]


@JWTS
def test_a_nested_refresh_token_is_invalid_grant(server, token: str) -> None:
    response = httpx.post(f"{server.issuer}/token", data={
        "grant_type": "refresh_token", "refresh_token": token, "client_id": "demo"})
    assert clean(response, 400)["error"] == "invalid_grant"


@pytest.mark.parametrize("path", ["/token", "/device_authorization", "/introspect", "/revoke"])
def test_a_nested_json_body_is_invalid_request(server, path: str) -> None:
    body = b'{"grant_type":' + nested(40_000) + b"}"
    response = httpx.post(f"{server.issuer}{path}", content=body,
                          headers={"Content-Type": "application/json",
                                   **basic("service", SERVICE_SECRET)})
    assert clean(response, 400)["error"] == "invalid_request"


def test_a_recursion_error_inside_joserfc_is_no_valid_token(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    # Fault injection: joserfc's header limit keeps today's RecursionError out of reach, but the
    # token is the caller's input either way, and a newer joserfc (or a deep stack) may not.
    signer = load_signer(SQLiteStorage(tmp_path / "server.db"), "https://as.example")
    good = signer._sign("at+jwt", {"iss": "https://as.example", "exp": 2**31})

    def recursing(*args: object, **kwargs: object) -> object:
        raise RecursionError("maximum recursion depth exceeded while decoding a JSON array")

    monkeypatch.setattr(tokens_module.jwt, "decode", recursing)
    assert signer.check_access_token(good, 1000.0) is None


# -- the server's own records ----------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 40_000, '{"a":' * 40_000, "{damaged", "[]"],
                         ids=["arrays", "objects", "truncated", "not-an-object"])
def test_a_damaged_stored_record_is_a_store_error(text: str) -> None:
    for parse, what in ((grant_from_json, "device grant"), (refresh_from_json, "refresh token")):
        with pytest.raises(StoreError, match=f"a {what} record in the server's storage is damaged"):
            parse(text)


def test_a_damaged_signing_key_is_a_store_error(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "server.db")
    assert storage.setting("signing_key", lambda: "[" * 40_000).startswith("[")
    with pytest.raises(StoreError, match="signing key in the server's storage is damaged"):
        load_signer(storage, "https://as.example")


@pytest.mark.parametrize("text,words", [
    (b"data_dir = " + b"[" * 40_000, "nests arrays or inline tables too deeply"),
    (b"data_dir = " + b"{a=" * 40_000, "nests arrays or inline tables too deeply"),
    (b'data_dir = "\xff"\n', "is not UTF-8 text"),
], ids=["arrays", "inline-tables", "not-utf-8"])
def test_a_hostile_server_config_is_a_config_error(tmp_path: Path, text: bytes, words: str) -> None:
    path = tmp_path / "server.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=words):
        load_config(path)
