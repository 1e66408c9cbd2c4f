"""An honest logout (issue 11.4): ``logout()`` says whether the server revoked the tokens, and
``revocation_endpoint=`` names where when the metadata does not. The real provider revokes (RFC
7009) and its introspection endpoint tells; the discovery server stands in for a server without
revocation, or whose revocation fails."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from keyturn import ClientCredentials, Logout
from tests.support.discoveryserver import DiscoveryServer
from tests.support.mode import Mode
from tests.support.providerfixture import Provider

SECRET = "s3cret-client-value"


def _introspect(provider: Provider, token: str) -> bool:
    response = httpx.post(provider.introspection_endpoint, data={"token": token},
                          auth=provider.clients["basic"].basic_auth, trust_env=False)
    return bool(response.json()["active"])


def _logout(mode: Mode, source: ClientCredentials) -> Logout:
    return mode.call(source.logout, source.alogout)


@pytest.fixture
def server() -> Iterator[DiscoveryServer]:
    with DiscoveryServer() as running:
        running.documents[running.oidc_path] = running.document(revocation=False)
        yield running


def _source(server: DiscoveryServer, **kwargs: str) -> ClientCredentials:
    return ClientCredentials(issuer=server.issuer, client_id="svc", client_secret=SECRET,
                             store=None, **kwargs)


def test_the_provider_revokes_and_logout_says_so(provider: Provider, mode: Mode) -> None:
    info = provider.clients["basic"]
    source = ClientCredentials(issuer=provider.issuer, client_id="basic",
                               client_secret=info.client_secret, store=None)
    token = mode.call(source.get_access_token, source.aget_access_token)
    assert _introspect(provider, token)
    outcome = _logout(mode, source)
    assert outcome == Logout(forgotten=True, revoked=True, endpoint=provider.revocation_endpoint)
    assert outcome.message == "forgot the login here and revoked its tokens at the server"
    assert not _introspect(provider, token)  # the token no longer works at the provider


def test_nothing_saved_is_nothing_revoked(provider: Provider, mode: Mode) -> None:
    source = ClientCredentials(issuer=provider.issuer, client_id="basic",
                               client_secret=provider.clients["basic"].client_secret, store=None)
    outcome = _logout(mode, source)
    assert outcome == Logout(forgotten=False, revoked=False, reason="nothing_saved")


def test_a_server_without_revocation_is_reported(server: DiscoveryServer, mode: Mode,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    source = _source(server)
    mode.call(source.get_access_token, source.aget_access_token)
    with caplog.at_level(logging.INFO, logger="keyturn"):
        outcome = _logout(mode, source)
    assert outcome == Logout(forgotten=True, revoked=False, reason="no_revocation_endpoint")
    assert "the server names no revocation endpoint, so its tokens stay valid until they expire" \
        in outcome.message
    assert "no revocation endpoint" in caplog.text
    assert server.revocations() == []


def test_revocation_endpoint_given_wins_over_discovery(server: DiscoveryServer, mode: Mode) -> None:
    # The document names an endpoint that is not one (this server answers 404 there): only the
    # one given is asked.
    server.documents[server.oidc_path] = {**server.document(),
                                          "revocation_endpoint": server.issuer + "/not-revoke"}
    source = _source(server, revocation_endpoint=server.issuer + "/revoke")
    token = mode.call(source.get_access_token, source.aget_access_token)
    outcome = _logout(mode, source)
    assert outcome.revoked is True and outcome.endpoint == server.issuer + "/revoke"
    [revocation] = server.revocations()
    assert revocation.form["token"] == [token]


def test_revocation_endpoint_without_an_issuer(server: DiscoveryServer, mode: Mode) -> None:
    source = ClientCredentials(token_endpoint=server.issuer + "/token", client_id="svc",
                               client_secret=SECRET, store=None,
                               revocation_endpoint=server.issuer + "/revoke")
    mode.call(source.get_access_token, source.aget_access_token)
    assert _logout(mode, source).revoked is True
    assert server.gets() == []  # no discovery: nothing to discover without an issuer
    assert len(server.revocations()) == 1


def test_a_failed_revocation_says_why_without_a_secret(server: DiscoveryServer, mode: Mode,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    server.documents[server.oidc_path] = server.document()
    server.revocation_status = 503
    source = _source(server)
    token = mode.call(source.get_access_token, source.aget_access_token)
    with caplog.at_level(logging.DEBUG, logger="keyturn"):
        outcome = _logout(mode, source)
    assert outcome.forgotten is True and outcome.revoked is False
    assert outcome.reason == "revocation_failed"
    assert outcome.detail is not None and "temporarily_unavailable" in outcome.detail
    assert "stay valid until they expire" in outcome.message
    assert source.saved_token() is None  # forgotten here all the same
    for text in (outcome.detail, outcome.message, repr(outcome), caplog.text):
        assert token not in text and SECRET not in text


def test_a_bad_revocation_endpoint_is_a_config_error() -> None:
    from keyturn import ConfigError

    with pytest.raises(ConfigError, match="revocation_endpoint"):
        ClientCredentials(issuer="https://id.example.org", client_id="svc", client_secret=SECRET,
                          revocation_endpoint="http://id.example.org/revoke")
