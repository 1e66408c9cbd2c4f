"""Property tests of every response parser: whatever a server sends, the parser returns a value or
raises a KeyturnError that names the endpoint — never another exception, never a secret."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.errors import KeyturnError
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.device import (
    DeviceAuthorization,
    device_authorization_flow,
    device_poll_flow,
)
from keyturn.protocol.grants import parse_token_response
from keyturn.protocol.http import HttpResponse, Received, Wait
from keyturn.protocol.idtoken import fetch_jwks_flow, validate_id_token_flow
from keyturn.protocol.metadata import ServerMetadata, discover
from keyturn.protocol.revocation import revocation_flow
from keyturn.protocol.userinfo import userinfo_flow
from keyturn.token import Token

URL = "https://id.example.org/token"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10),
                                                                       children, max_size=4),
    max_leaves=12,
)
token_fields = st.fixed_dictionaries({}, optional={
    "access_token": json_values | st.text(min_size=1, max_size=30),
    "token_type": json_values,
    "expires_in": json_values | st.integers(-10, 10**6) | st.text(alphabet="0123456789", max_size=6),
    "refresh_token": json_values,
    "scope": json_values,
    "id_token": json_values,
    "error": json_values | st.sampled_from(["invalid_grant", "invalid_client", "slow_down"]),
    "refresh_expires_in": json_values,
})
content_types = st.sampled_from(["application/json", "text/html", "text/plain", "",
                                 "application/x-www-form-urlencoded", "application/json; charset=x"])


def response(status: int, body: bytes, content_type: str) -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body, URL)


@settings(max_examples=400, deadline=None)
@given(status=st.sampled_from([200, 201, 400, 401, 403, 429, 500, 503]), body=st.binary(max_size=300),
       content_type=content_types)
def test_token_parser_on_arbitrary_bytes(status, body, content_type):
    try:
        token = parse_token_response(response(status, body, content_type), now=1000.0)
    except KeyturnError as exc:
        assert "token endpoint" in str(exc) or URL in str(exc)
    else:
        assert isinstance(token, Token) and token.access_token


@settings(max_examples=400, deadline=None)
@given(status=st.sampled_from([200, 400, 401, 500]), fields=token_fields, content_type=content_types)
def test_token_parser_on_arbitrary_json(status, fields, content_type):
    body = json.dumps(fields).encode()
    try:
        token = parse_token_response(response(status, body, content_type), now=1000.0,
                                     requested_scope=("a",))
    except KeyturnError as exc:
        text = str(exc)
        secret = fields.get("access_token")
        # The message quotes the server's error, error_description and error_uri: a secret that
        # the generated body also put there is quoted from them, not leaked.
        quoted = " ".join(str(fields.get(k)) for k in ("error", "error_description", "error_uri"))
        if isinstance(secret, str) and len(secret) > 8 and secret not in quoted:
            assert secret not in text
    else:
        assert status == 200
        assert isinstance(token.access_token, str) and token.access_token
        assert token.expires_at is None or token.expires_at >= 1000.0
        assert token.scope is None or all(isinstance(s, str) for s in token.scope)


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["issuer", "token_endpoint", "jwks_uri",
                                            "device_authorization_endpoint",
                                            "token_endpoint_auth_methods_supported",
                                            "mtls_endpoint_aliases"]), json_values, max_size=6))
def test_metadata_parser_on_arbitrary_documents(doc):
    try:
        metadata = ServerMetadata.from_document(doc, expected_issuer="https://id.example.org",
                                                url="https://id.example.org/.well-known/x")
    except KeyturnError:
        return
    assert metadata.issuer.rstrip("/") == "https://id.example.org"
    assert metadata.token_endpoint is None or metadata.token_endpoint.startswith("https://")


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from([200, 404, 500]), body=st.binary(max_size=200))
def test_discovery_on_arbitrary_answers(status, body):
    flow = discover("https://id.example.org")
    try:
        request = next(flow)
        while True:
            request = flow.send(HttpResponse(status, {"content-type": "application/json"}, body,
                                             request.url))
    except StopIteration:
        pass
    except KeyturnError as exc:
        assert "id.example.org" in str(exc)


# -- the parsers of the device flow, userinfo, JWKS, id_tokens and revocation -------------------

def drive(flow, status, body, content_type="application/json", headers=None):
    """Answer every request of ``flow`` with the same response; return its result."""
    step = next(flow)
    while True:
        if isinstance(step, Wait):
            step = flow.send(step.until)
            continue
        all_headers = {"content-type": content_type, **(headers or {})}
        step = flow.send(HttpResponse(status, all_headers, body, step.url))


def outcome(flow, *args, **kwargs):
    try:
        drive(flow, *args, **kwargs)
    except StopIteration as stop:
        return stop.value
    except KeyturnError as exc:
        return exc
    raise AssertionError("unreachable")


device_fields = st.fixed_dictionaries({}, optional={
    "device_code": json_values | st.text(min_size=1, max_size=50),
    "user_code": json_values | st.text(min_size=1, max_size=12),
    "verification_uri": json_values | st.sampled_from(["https://id.example.org/device", "x"]),
    "verification_uri_complete": json_values,
    "expires_in": json_values | st.integers(-5, 5000),
    "interval": json_values | st.integers(-5, 60),
    "error": json_values | st.sampled_from(["authorization_pending", "slow_down",
                                            "access_denied", "expired_token"]),
})


def machine():
    return DeviceAuthorization(
        device_authorization_endpoint="https://id.example.org/device/auth",
        token_endpoint=URL, client_auth=ClientAuth.create(client_id="cli"))


@settings(max_examples=300, deadline=None)
@given(status=st.sampled_from([200, 400, 401, 500]), fields=device_fields,
       raw=st.none() | st.binary(max_size=100))
def test_device_authorization_parser(status, fields, raw):
    body = raw if raw is not None else json.dumps(fields).encode()
    result = outcome(device_authorization_flow(machine(), now=1000.0), status, body)
    if isinstance(result, KeyturnError):
        return
    assert status == 200
    assert result.user_code and isinstance(result.user_code, str)
    assert result.expires_in > 0 and result.interval >= 0


@settings(max_examples=300, deadline=None)
@given(status=st.sampled_from([200, 400, 401, 429, 500]), fields=token_fields,
       raw=st.none() | st.binary(max_size=100))
def test_device_poll_parser(status, fields, raw):
    device = machine()
    ok = json.dumps({"device_code": "d" * 43, "user_code": "BCDF-GHJK", "expires_in": 600,
                     "verification_uri": "https://id.example.org/device", "interval": 1}).encode()
    outcome(device_authorization_flow(device, now=1000.0), 200, ok)
    body = raw if raw is not None else json.dumps(fields).encode()
    flow = device_poll_flow(device)
    try:
        step = next(flow)
        for _ in range(5):  # a bounded number of polls, then stop looking
            if isinstance(step, Wait):
                step = flow.send(step.until)
            elif isinstance(step, Received):
                assert step.token.access_token  # only a parsed success is handed over to keep
                step = flow.send(None)
            else:
                step = flow.send(HttpResponse(status, {"content-type": "application/json"}, body,
                                              step.url))
    except StopIteration as stop:
        assert isinstance(stop.value, Token) and stop.value.access_token
    except KeyturnError:
        pass


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from([200, 401, 403, 500]), body=st.binary(max_size=200) | json_values.map(
    lambda v: json.dumps(v).encode()), challenge=st.text(max_size=60),
    content_type=st.sampled_from(["application/json", "application/jwt", "text/html"]))
def test_userinfo_parser(status, body, challenge, content_type):
    flow = userinfo_flow(endpoint="https://id.example.org/me", access_token="secret-access-token")
    result = outcome(flow, status, body, content_type, {"www-authenticate": challenge})
    if isinstance(result, KeyturnError):
        assert "secret-access-token" not in str(result)
    else:
        assert status == 200 and isinstance(result, dict)


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from([200, 404, 500]), body=st.binary(max_size=200) | json_values.map(
    lambda v: json.dumps({"keys": v}).encode()))
def test_jwks_parser(status, body):
    result = outcome(fetch_jwks_flow("https://id.example.org/jwks"), status, body)
    assert isinstance(result, (KeyturnError, list))


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=120) | st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABC-_=",
                                                      max_size=40), min_size=3, max_size=3)
       .map(".".join))
def test_id_token_validation_on_garbage(token):
    metadata = ServerMetadata(issuer="https://id.example.org", jwks_uri="https://id.example.org/jwks")
    flow = validate_id_token_flow(token, metadata=metadata, client_id="cli", now=1000.0)
    result = outcome(flow, 200, b'{"keys": []}')
    assert isinstance(result, KeyturnError)


@settings(max_examples=200, deadline=None)
@given(status=st.sampled_from([200, 400, 401, 503]), body=st.binary(max_size=100))
def test_revocation_parser(status, body):
    flow = revocation_flow(endpoint="https://id.example.org/revoke", token="secret-refresh-token",
                           token_type_hint="refresh_token", client_auth=ClientAuth.create(
                               client_id="cli"), audience=URL, now=1000.0)
    result = outcome(flow, status, body)
    if status == 200:
        assert result is None
    else:
        assert isinstance(result, KeyturnError) and "secret-refresh-token" not in str(result)
