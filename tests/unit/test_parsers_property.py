"""Property tests of every response parser: whatever a server sends, the parser returns a value or
raises a KeyturnError that names the endpoint — never another exception, never a secret."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from keyturn.errors import KeyturnError
from keyturn.protocol.grants import parse_token_response
from keyturn.protocol.http import HttpResponse
from keyturn.protocol.metadata import ServerMetadata, discover
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
        if isinstance(secret, str) and len(secret) > 8:
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
