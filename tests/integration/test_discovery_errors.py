"""Discovery against the real provider, and the errors a wrong or unreachable issuer gives."""

from __future__ import annotations

import socket

import pytest

from keyturn import ClientCredentials, ConfigError, DiscoveryError, TransportError


def make(issuer, provider, **kwargs):
    client = provider.clients["basic"]
    return ClientCredentials(issuer=issuer, client_id=client.client_id,
                             client_secret=client.client_secret, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_discovery_finds_the_token_endpoint(provider):
    source = make(provider.issuer, provider)
    assert source.get_access_token()
    assert source._metadata.token_endpoint == provider.discovery()["token_endpoint"]
    assert source._metadata.revocation_endpoint == provider.revocation_endpoint


def test_explicit_token_endpoint_needs_no_discovery(provider):
    client = provider.clients["basic"]
    source = ClientCredentials(token_endpoint=provider.token_endpoint, client_id=client.client_id,
                               client_secret=client.client_secret)
    assert source.get_access_token()


def test_unreachable_issuer_is_a_transport_error_naming_the_url():
    issuer = f"http://127.0.0.1:{free_port()}"
    source = ClientCredentials(issuer=issuer, client_id="x", client_secret="s3cret-value")
    with pytest.raises(TransportError) as info:
        source.get_access_token()
    assert issuer in str(info.value)
    assert "s3cret-value" not in str(info.value)


def test_issuer_without_metadata_is_a_discovery_error(provider):
    issuer = provider.issuer + "/no-such-realm"
    with pytest.raises(DiscoveryError) as info:
        make(issuer, provider).get_access_token()
    message = str(info.value)
    assert issuer in message and "404" in message
    assert "token_endpoint=" in message  # says what to do


def test_metadata_for_another_issuer_is_refused(provider):
    # Same server, other name: its metadata names 127.0.0.1, not localhost.
    issuer = provider.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(DiscoveryError) as info:
        make(issuer, provider).get_access_token()
    assert "localhost" in str(info.value) and "127.0.0.1" in str(info.value)


def test_plain_http_off_loopback_is_refused():
    with pytest.raises(ConfigError, match="https"):
        ClientCredentials(issuer="http://id.example.org", client_id="x", client_secret="y")
