"""Discovery merges an issuer's documents (issue 11.4), against a loopback server whose OpenID and
RFC 8414 documents differ: the OpenID one names neither the device nor the revocation endpoint, the
RFC 8414 one at the appended location ``{issuer}/.well-known/oauth-authorization-server`` does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keyturn import ClientCredentials
from keyturn.protocol.metadata import discover
from keyturn.transport import HttpSettings, Transport
from tests.support.discoveryserver import DiscoveryServer


@pytest.fixture
def server() -> Iterator[DiscoveryServer]:
    with DiscoveryServer(path="/o") as running:
        running.documents[running.oidc_path] = running.document(revocation=False, device=False)
        yield running


def _source(server: DiscoveryServer) -> ClientCredentials:
    return ClientCredentials(issuer=server.issuer, client_id="svc", client_secret="s3cret-value",
                             store=None)


def test_the_appended_rfc8414_document_fills_what_the_openid_one_omits(
        server: DiscoveryServer) -> None:
    server.documents[server.appended_path] = server.document()
    transport = Transport(HttpSettings())
    try:
        metadata = transport.run(discover(server.issuer, allow_http=True))
    finally:
        transport.close()
    assert metadata.token_endpoint == server.issuer + "/token"
    assert metadata.revocation_endpoint == server.issuer + "/revoke"
    assert metadata.device_authorization_endpoint == server.issuer + "/device"
    assert server.gets() == [server.oidc_path, server.inserted_path, server.appended_path]
    assert metadata.locations == (server.base + server.oidc_path, server.base + server.appended_path)


def test_logout_revokes_at_the_endpoint_only_the_rfc8414_document_names(
        server: DiscoveryServer) -> None:
    server.documents[server.appended_path] = server.document()
    source = _source(server)
    token = source.get_access_token()
    outcome = source.logout()
    assert outcome.revoked is True and outcome.reason is None
    assert outcome.endpoint == server.issuer + "/revoke"
    [revocation] = server.revocations()
    assert revocation.form["token"] == [token]
    assert revocation.form["token_type_hint"] == ["access_token"]
    assert revocation.headers["authorization"].startswith("Basic ")  # the client authenticated


def test_a_document_for_another_issuer_is_not_merged(server: DiscoveryServer) -> None:
    # RFC 8414 §3.3: the issuer of every document must be the one asked for.
    server.documents[server.appended_path] = server.document(issuer="http://127.0.0.1:1/evil")
    source = _source(server)
    source.get_access_token()
    outcome = source.logout()
    assert outcome.revoked is False and outcome.reason == "no_revocation_endpoint"
    assert server.revocations() == []


def test_a_complete_openid_document_is_the_only_request(server: DiscoveryServer) -> None:
    server.documents[server.oidc_path] = {**server.document(),
                                          "authorization_endpoint": server.issuer + "/authorize",
                                          "userinfo_endpoint": server.issuer + "/userinfo",
                                          "jwks_uri": server.issuer + "/jwks"}
    server.documents[server.appended_path] = server.document()
    source = _source(server)
    source.get_access_token()
    assert source.logout().revoked is True
    assert server.gets() == [server.oidc_path]
