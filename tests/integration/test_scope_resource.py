"""scope, resource (RFC 8707) and the cache key that keeps configurations apart."""

from __future__ import annotations

import base64
import json

from keyturn import ClientCredentials, MemoryStore


def claims_of(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def make(provider, **kwargs):
    client = provider.clients["basic"]
    return ClientCredentials(issuer=provider.issuer, client_id=client.client_id,
                             client_secret=client.client_secret, **kwargs)


def test_scope_as_string_or_list(fresh_stats):
    as_str = make(fresh_stats, scope="api:read api:write").get_token()
    as_list = make(fresh_stats, scope=["api:write", "api:read"]).get_token()
    assert set(as_str.scope) == {"api:read", "api:write"}
    assert set(as_list.scope) == {"api:read", "api:write"}


def test_resource_gives_an_audience_restricted_jwt(fresh_stats):
    resource = "https://api.example.org/v1"
    token = make(fresh_stats, scope="api:read", resource=resource).get_token()
    claims = claims_of(token.access_token)
    assert claims["aud"] == resource
    assert claims["client_id"] == "basic"
    assert "api:read" in claims["scope"].split()


def test_configurations_never_share_a_token(fresh_stats):
    store = MemoryStore()
    read = make(fresh_stats, scope="api:read", store=store)
    write = make(fresh_stats, scope="api:write", store=store)
    api = make(fresh_stats, scope="api:read", resource="https://api.example.org/v1", store=store)
    same_as_read = make(fresh_stats, scope=["api:read"], store=store)
    tokens = {read.get_access_token(), write.get_access_token(), api.get_access_token()}
    assert len(tokens) == 3
    # The same configuration (scope order and form do not matter) shares the stored token.
    assert same_as_read.get_access_token() == read.get_access_token()
    assert fresh_stats.token_requests("basic") == 3
    assert len({read.cache.key, write.cache.key, api.cache.key}) == 3
    assert same_as_read.cache.key == read.cache.key
