"""A source as `auth=` of requests and httpx (sync and async), as pyFirecREST's and globus-sdk's
authorization object, against a resource server that checks tokens at the real provider.

The 401 path is real: the token is revoked at the provider (RFC 7009), the resource server's
introspection then says inactive, keyturn invalidates, refreshes once and retries once."""

from __future__ import annotations

import asyncio
import inspect

import httpx
import pytest
import requests

from keyturn import ClientCredentials, MemoryStore, StaticToken
from tests.support.resource_server import ResourceServer


@pytest.fixture
def api(provider):
    client = provider.clients["basic"]
    server = ResourceServer(provider.introspection_endpoint, client.client_id, client.client_secret)
    with server.running():
        yield server


@pytest.fixture
def source(fresh_stats):
    client = fresh_stats.clients["post"]
    return ClientCredentials(issuer=fresh_stats.issuer, client_id=client.client_id,
                             client_secret=client.client_secret, auth_method="client_secret_post",
                             scope="api:read", store=MemoryStore())


def revoke(provider, token: str) -> None:
    client = provider.clients["post"]
    response = httpx.post(provider.revocation_endpoint, trust_env=False, data={
        "token": token, "client_id": client.client_id, "client_secret": client.client_secret})
    assert response.status_code == 200


def test_requests_auth_and_401_retry(fresh_stats, api, source):
    session = requests.Session()
    session.trust_env = False
    first = session.post(api.url, json={"n": 1}, auth=source)
    assert first.status_code == 200 and first.json()["echo"] == '{"n": 1}'
    revoke(fresh_stats, source.get_access_token())
    retried = session.post(api.url, json={"n": 2}, auth=source)
    assert retried.status_code == 200
    assert [r.status_code for r in retried.history] == [401]
    assert retried.json()["echo"] == '{"n": 2}'  # the body was sent again
    assert fresh_stats.token_requests("post") == 2
    assert api.hits == 3


def test_requests_retries_only_once(fresh_stats, api, source):
    api.always_401 = True
    session = requests.Session()
    session.trust_env = False
    response = session.get(api.url, auth=source)
    assert response.status_code == 401
    assert api.hits == 2
    assert fresh_stats.token_requests("post") == 2


def test_httpx_client_auth_and_401_retry(fresh_stats, api, source):
    with httpx.Client(auth=source, trust_env=False) as client:
        assert client.post(api.url, content=b"one").status_code == 200
        revoke(fresh_stats, source.get_access_token())
        response = client.post(api.url, content=b"two")
    assert response.status_code == 200
    assert response.json()["echo"] == "two"
    assert [r.status_code for r in response.history] == [401]
    assert fresh_stats.token_requests("post") == 2


def test_httpx_async_client_auth_and_401_retry(fresh_stats, api, source):
    async def main():
        async with httpx.AsyncClient(auth=source, trust_env=False) as client:
            assert (await client.get(api.url)).status_code == 200
            revoke(fresh_stats, await source.aget_access_token())
            # Fifty requests fail together: one refresh, not fifty.
            return await asyncio.gather(*(client.get(api.url) for _ in range(50)))

    responses = asyncio.run(main())
    assert {r.status_code for r in responses} == {200}
    assert fresh_stats.token_requests("post") == 2


def test_httpx_async_retries_only_once(fresh_stats, api, source):
    api.always_401 = True

    async def main():
        async with httpx.AsyncClient(auth=source, trust_env=False) as client:
            return await client.get(api.url)

    assert asyncio.run(main()).status_code == 401
    assert api.hits == 2


def test_static_token_passes_a_401_back(api):
    with httpx.Client(auth=StaticToken("made-up"), trust_env=False) as client:
        assert client.get(api.url).status_code == 401
    assert api.hits == 1


def test_pyfirecrest_sync_and_async(fresh_stats, api, source):
    import firecrest
    base = api.url.rsplit("/", 1)[0]
    client = firecrest.v2.Firecrest(firecrest_url=base, authorization=source)
    assert client.systems() == []

    async def main():
        fresh = ClientCredentials(issuer=fresh_stats.issuer, client_id="post",
                                  client_secret=fresh_stats.clients["post"].client_secret,
                                  auth_method="client_secret_post", store=MemoryStore())
        # No token yet, on the event loop: the headers come as an awaitable, never a blocking call.
        pending = fresh.auth_headers()
        assert inspect.isawaitable(pending)
        headers = await pending
        assert headers["Authorization"].startswith("Bearer ")
        # With a valid token they are a plain dict.
        assert isinstance(fresh.auth_headers(), dict)
        async_client = firecrest.v2.AsyncFirecrest(firecrest_url=base, authorization=fresh)
        return await async_client.systems()

    assert asyncio.run(main()) == []
    assert api.hits == 2


def test_globus_sdk_authorizer(fresh_stats, api, source):
    import globus_sdk
    base = api.url.rsplit("/", 1)[0] + "/"
    transfer = globus_sdk.TransferClient(authorizer=source, base_url=base)
    assert transfer.get_endpoint("abc")["id"] == "abc"
    revoke(fresh_stats, source.get_access_token())
    # globus-sdk calls handle_missing_authorization() on the 401 and retries once.
    assert transfer.get_endpoint("def")["id"] == "def"
    assert fresh_stats.token_requests("post") == 2
