"""Every client authentication method against the real provider, which enforces the registered one."""

from __future__ import annotations

import pickle

import pytest

from keyturn import ClientCredentials, ConfigError, InvalidClient, MemoryStore

METHODS = ["basic", "post", "secret-jwt", "pk-rs256", "pk-es256", "pk-eddsa"]


def source_for(provider, name, **overrides):
    client = provider.clients[name]
    kwargs = dict(
        issuer=provider.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        private_key=client.private_key,
        auth_method=client.auth_method,
        scope="api:read",
        store=MemoryStore(),
    )
    kwargs.update(overrides)
    return ClientCredentials(**kwargs)


@pytest.mark.parametrize("name", METHODS)
def test_each_method_gets_a_token(fresh_stats, name, mode):
    provider = fresh_stats
    source = source_for(provider, name)
    token = mode.token(source)
    assert token.access_token
    assert token.token_type.lower() == "bearer"
    assert token.expires_at is not None and token.expires_at > token.issued_at
    # Cached: a second call makes no request.
    assert mode.access_token(source) == token.access_token
    assert provider.token_requests(name, "client_credentials") == 1


@pytest.mark.parametrize("name", ["pk-es256", "secret-jwt"])
def test_every_assertion_is_unique(fresh_stats, name):
    """The provider refuses a replayed jti: three fetches in a row succeed only with fresh ones."""
    provider = fresh_stats
    for _ in range(3):
        source = source_for(provider, name)
        assert source.get_access_token()
    assert provider.token_requests(name, "client_credentials") == 3


@pytest.mark.parametrize(
    ("name", "wrong_method"),
    [("basic", "client_secret_post"), ("post", "client_secret_basic")],
)
def test_registered_method_is_enforced(fresh_stats, name, wrong_method, mode):
    source = source_for(fresh_stats, name, auth_method=wrong_method)
    with pytest.raises(InvalidClient) as info:
        mode.access_token(source)
    assert info.value.error == "invalid_client"
    assert info.value.status == 401


@pytest.mark.parametrize("name", ["basic", "post", "secret-jwt"])
def test_wrong_secret_is_invalid_client_without_the_secret(fresh_stats, name, mode):
    wrong = "not-the-secret-" + "x" * 40
    source = source_for(fresh_stats, name, client_secret=wrong)
    with pytest.raises(InvalidClient) as info:
        mode.access_token(source)
    error = info.value
    text = str(error) + repr(error) + repr(error.args) + repr(pickle.loads(pickle.dumps(error)).__dict__)
    assert "invalid_client" in str(error)
    assert "client_id" in str(error)  # the message says what to check
    assert fresh_stats.token_endpoint.split("//")[1] in str(error)  # and where
    real = fresh_stats.clients[name].client_secret
    assert wrong not in text and real not in text
    # Nothing is cached after a failure: the next call asks again.
    with pytest.raises(InvalidClient):
        mode.access_token(source)


def test_wrong_private_key_is_invalid_client(fresh_stats, mode):
    other_key = fresh_stats.clients["pk-rs256"].private_key
    source = source_for(fresh_stats, "pk-es256", private_key=other_key)
    with pytest.raises(InvalidClient):
        mode.access_token(source)


def test_secrets_absent_from_repr_and_pickle(provider):
    client = provider.clients["basic"]
    source = source_for(provider, "basic")
    token = source.get_token()
    assert client.client_secret not in repr(source)
    assert token.access_token not in repr(token)
    for obj in (source, token):
        with pytest.raises(TypeError):
            pickle.dumps(obj)


def test_missing_secret_is_a_config_error(provider):
    with pytest.raises(ConfigError, match="client_secret"):
        ClientCredentials(issuer=provider.issuer, client_id="basic", auth_method="client_secret_post")
