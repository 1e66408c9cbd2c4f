"""Bad input at every endpoint: never a 500, never a stack trace in a response."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from keyturn.protocol.grants import GRANT_CLIENT_CREDENTIALS, GRANT_DEVICE_CODE
from keyturn.server.app import MAX_BODY, read_form
from keyturn.server.errors import BadForm
from keyturn.server.runner import ServerThread
from tests.support.serverkit import make_config

ENDPOINTS = ["/token", "/device_authorization", "/revoke", "/introspect", "/device",
             "/device/decision", "/userinfo"]
NAMES = ["grant_type", "client_id", "client_secret", "device_code", "refresh_token", "scope",
         "token", "token_type_hint", "user_code", "username", "password", "csrf", "ticket",
         "decision", "x"]
VALUES = st.one_of(
    st.sampled_from(["demo", "cli", "service", "rs", GRANT_DEVICE_CODE, "refresh_token",
                     GRANT_CLIENT_CREDENTIALS, "openid", "BCDF-GHJK", "approve", "a.b.c", ""]),
    st.text(max_size=60),
)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A real server (uvicorn, SQLite) with an issuer path, and one HTTP client for all examples."""
    with ServerThread(make_config(), data_dir=tmp_path_factory.mktemp("fuzz"), path="/realm") as running:
        origin = running.issuer.rsplit("/realm", 1)[0]
        with httpx.Client(base_url=origin, timeout=10) as http:
            yield http


def check(response):
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text and 'File "' not in response.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), form=st.dictionaries(st.sampled_from(NAMES), VALUES,
                                                                  max_size=6),
       # A header value cannot begin or end with whitespace (RFC 9110 §5.5): the client refuses it.
       auth=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126),
                                         max_size=40).filter(lambda v: v == v.strip()),
                      st.tuples(st.sampled_from(["demo", "cli", "x:y", ""]), st.text(max_size=20))))
def test_forms(client, endpoint, form, auth):
    headers = {}
    if isinstance(auth, str):
        headers["Authorization"] = auth
    elif auth is not None:
        raw = f"{auth[0]}:{auth[1]}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    check(client.post("/realm" + endpoint, data=form, headers=headers))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=st.binary(max_size=300),
       content_type=st.sampled_from(["application/x-www-form-urlencoded", "application/json",
                                     "multipart/form-data; boundary=x", "text/plain", ""]))
def test_raw_bodies(client, endpoint, body, content_type):
    check(client.post("/realm" + endpoint, content=body, headers={"Content-Type": content_type}))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from([*ENDPOINTS, "/.well-known/openid-configuration", "/jwks", "/health"]),
       query=st.text(max_size=40), method=st.sampled_from(["GET", "PUT", "DELETE", "OPTIONS"]))
def test_other_methods_and_queries(client, path, query, method):
    check(client.request(method, "/realm" + path, params={"user_code": query}))


def test_huge_body_is_refused(client):
    response = client.post("/realm/token", content=b"a=" + b"x" * 100_000,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413


def test_huge_chunked_body_is_refused_before_it_is_all_read():
    """No Content-Length (chunked transfer): reading stops past MAX_BODY, rather than holding the
    whole body in memory and refusing it afterwards."""
    chunk, chunks = 16 * 1024, 300
    received = []

    async def receive():
        received.append(chunk)
        return {"type": "http.request", "body": b"a" * chunk, "more_body": len(received) < chunks}

    scope = {"type": "http", "method": "POST", "path": "/token", "query_string": b"",
             "headers": [(b"content-type", b"application/x-www-form-urlencoded")]}
    with pytest.raises(BadForm) as refused:
        asyncio.run(read_form(Request(scope, receive)))
    assert refused.value.status == 413
    assert sum(received) <= MAX_BODY + chunk
