"""A misbehaving network and provider, injected by a loopback proxy in front of the REAL provider:
retries with backoff where asking again can help, typed errors naming the endpoint where it cannot,
nothing stored from a bad answer, and a still-valid token served while the provider is down."""

from __future__ import annotations

import time

import pytest

import keyturn.transport
from keyturn import (
    ClientCredentials,
    InvalidResponse,
    MemoryStore,
    RefreshToken,
    TransportError,
)
from keyturn.transport import HttpSettings, RetryPolicy, Transport
from tests.support.faultproxy import FaultProxy


@pytest.fixture
def proxy(provider):
    with FaultProxy(provider.issuer) as running:
        yield running


def through(proxy, provider, name="basic", **kwargs):
    client = provider.clients[name]
    kwargs.setdefault("store", MemoryStore())
    source = ClientCredentials(token_endpoint=proxy.url + "/token", client_id=client.client_id,
                               client_secret=client.client_secret, **kwargs)
    # Keep the test quick: the policy is the default's, with millisecond backoffs.
    source._transport = Transport(HttpSettings(timeout=kwargs.get("timeout", 5.0),
                                               retry=RetryPolicy(total=2, backoff=0.01)))
    return source


@pytest.mark.parametrize("fault", ["drop", "reset", ("status", 503, "text/html", b"<h1>down</h1>"),
                                   ("status", 429, "application/json", b"{}")])
def test_transient_faults_are_retried(fresh_stats, proxy, fault):
    proxy.then(fault, fault)
    source = through(proxy, fresh_stats)
    assert source.get_access_token()
    assert proxy.seen == [fault if isinstance(fault, str) else fault[0]] * 2 + ["pass"]
    assert fresh_stats.token_requests("basic") == 1


def test_a_provider_that_stays_down_is_a_transport_error(fresh_stats, proxy):
    proxy.always("drop")
    source = through(proxy, fresh_stats)
    with pytest.raises(TransportError) as info:
        source.get_access_token()
    assert proxy.url + "/token" in str(info.value)
    assert len(proxy.seen) == 3  # one try and two retries, then it gives up
    assert source.cache.store.load(source.cache.key) is None


def test_retry_after_is_honoured(fresh_stats, proxy, monkeypatch):
    fresh_stats.fail_next(503, count=1, retry_after=2)  # the provider itself answers 503
    source = through(proxy, fresh_stats)
    slept: list[float] = []
    run = keyturn.transport.run
    monkeypatch.setattr(keyturn.transport, "run",
                        lambda flow, client, policy, keeper=None: run(flow, client, policy,
                                                                      sleep=slept.append,
                                                                      keeper=keeper))
    assert source.get_access_token()
    assert slept == [2.0]
    assert fresh_stats.token_requests("basic") == 2  # the 503 and the retry


def test_timeouts(fresh_stats, proxy):
    proxy.then("hold", "hold", "hold")
    source = through(proxy, fresh_stats, timeout=0.3)
    with pytest.raises(TransportError, match="timed out"):
        source.get_access_token()
    assert proxy.seen == ["hold"] * 3
    assert fresh_stats.token_requests("basic") == 0


def test_a_refresh_is_not_resent_after_a_read_timeout(fresh_stats, proxy):
    """A rotating refresh token may already be spent when the answer is lost: sending it again
    would be refused and revoke the grant, so a timed-out refresh is reported, not retried."""
    provider = fresh_stats
    proxy.then("hold")
    source = RefreshToken(token_endpoint=proxy.url + "/token", client_id="public",
                          refresh_token=provider.mint_refresh_token("public"), store=MemoryStore(),
                          timeout=0.3)
    with pytest.raises(TransportError, match="timed out"):
        source.get_access_token()
    assert proxy.seen == ["hold"]
    # The refresh token was never used (the proxy held the request): the next call works.
    assert source.get_access_token()


@pytest.mark.parametrize("fault", [
    "corrupt",
    ("status", 200, "text/html", b"<html><body>Login</body></html>"),
    ("status", 200, "application/json", b'{"token_type": "Bearer"}'),
    ("status", 200, "application/json", b'{"access_token": "x", "expires_in": "soon"}'),
    ("status", 200, "application/json", b'{"access_token": "x", "expires_in": -5}'),
    ("status", 200, "application/json", b"[1, 2]"),
    ("status", 200, "application/json", b"{" * 5000),
    ("status", 200, "application/json", b" " * (2 << 20)),
    ("status", 400, "text/plain", b"Bad Request"),
])
def test_garbage_is_a_typed_error_and_nothing_is_stored(fresh_stats, proxy, fault):
    proxy.then(fault)
    source = through(proxy, fresh_stats)
    with pytest.raises(InvalidResponse) as info:
        source.get_access_token()
    assert "token endpoint" in str(info.value)
    assert info.value.url == proxy.url + "/token"
    assert source.cache.store.load(source.cache.key) is None
    assert source.cache.current is None
    assert source.get_access_token()  # and the next, sane answer is used


def test_a_valid_token_is_served_while_the_provider_is_down(fresh_stats, proxy, caplog):
    source = through(proxy, fresh_stats, name="short")  # 2 s tokens, refreshed after ~1 s
    first = source.get_token()
    time.sleep(1.15)  # inside the refresh window, still valid
    proxy.always("drop")
    assert source.get_access_token() == first.access_token
    assert "serving the cached token" in caplog.text
    assert first.access_token not in caplog.text
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.05)
    with pytest.raises(TransportError):
        source.get_access_token()
    proxy.clear()
    assert source.get_access_token() != first.access_token
