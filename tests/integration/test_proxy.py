"""Through real proxies to real servers: Debian's tinyproxy (HTTP forwarding, CONNECT, Basic proxy
credentials) and microsocks (SOCKS5), in front of the real test provider over http and of
keyturn's own server over https (a CA made here with trustme). What went through a proxy is read
from the proxy's own log; "direct" means the token came and the proxy saw nothing."""

from __future__ import annotations

import logging
import os
import re
import socket
import traceback
from pathlib import Path

import pytest
import trustme

from keyturn import ClientCredentials, ConfigError, MemoryStore, RefreshToken, TransportError
from keyturn.server.runner import ServerThread
from tests.support.clihelper import Cli
from tests.support.providerfixture import make_client, start_provider
from tests.support.proxyfixture import RunningProxy, start_microsocks, start_tinyproxy
from tests.support.serverkit import SERVICE_SECRET, make_config
from tests.support.tracebackcheck import leaks, renderings, with_context

pytestmark = pytest.mark.timeout(120)

PROXY_PASSWORD = "tiny-proxy-pa55"
SOCKS_PASSWORD = "socks-pa55word"
VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_proxy_variables(monkeypatch):
    """Each test sets the variables it is about; none leak in from the machine."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("REQUEST_METHOD", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    work = tmp_path_factory.mktemp("proxy-pki")
    ca, stranger = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(work / "server.key")
    cert.cert_chain_pems[0].write_to_path(work / "server.crt")
    ca.cert_pem.write_to_path(work / "ca.pem")
    stranger.cert_pem.write_to_path(work / "stranger.pem")
    return {name: str(work / name) for name in ("server.key", "server.crt", "ca.pem", "stranger.pem")}


@pytest.fixture(scope="module")
def tls_server(pki):
    """keyturn's own server over https (its ``service`` client: client_credentials)."""
    running = ServerThread(make_config(), cert=pki["server.crt"], key=pki["server.key"])
    yield running
    running.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def _tinyproxy(tls_server, tmp_path_factory):
    running = start_tinyproxy(tmp_path_factory.mktemp("tinyproxy"),
                              connect_ports=(_port(tls_server.issuer),))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def _authproxy(tls_server, tmp_path_factory):
    running = start_tinyproxy(tmp_path_factory.mktemp("authproxy"),
                              connect_ports=(_port(tls_server.issuer),),
                              auth=("alice", PROXY_PASSWORD))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def _socks(tmp_path_factory):
    running = start_microsocks(tmp_path_factory.mktemp("microsocks"),
                               auth=("bob", SOCKS_PASSWORD))
    yield running
    running.stop()


@pytest.fixture
def proxy(_tinyproxy) -> RunningProxy:
    _tinyproxy.reset()
    return _tinyproxy


@pytest.fixture
def authproxy(_authproxy) -> RunningProxy:
    _authproxy.reset()
    return _authproxy


@pytest.fixture
def socks(_socks) -> RunningProxy:
    _socks.reset()
    return _socks


def cc(provider, **kwargs) -> ClientCredentials:
    kwargs.setdefault("store", MemoryStore())
    kwargs.setdefault("issuer", provider.issuer)
    return ClientCredentials(client_id="basic", client_secret=provider.clients["basic"].client_secret,
                             **kwargs)


def service(server, **kwargs) -> ClientCredentials:
    return ClientCredentials(issuer=server.issuer, client_id="service", client_secret=SERVICE_SECRET,
                             scope="api:read", store=MemoryStore(), **kwargs)


# -- over http: the proxy forwards -------------------------------------------------------------------


def test_discovery_and_client_credentials_go_through_the_proxy(provider, proxy, mode, monkeypatch):
    # The metadata is kept per process: forget what other tests discovered, so this one asks.
    monkeypatch.setattr("keyturn.sources.base._METADATA", {})
    assert mode.access_token(cc(provider, proxy=proxy.url))
    seen = proxy.seen()
    assert any(line.startswith(f"GET {provider.issuer}/.well-known/") for line in seen), seen
    assert f"POST {provider.token_endpoint}" in seen


def test_a_refresh_goes_through_the_proxy(provider, proxy, mode):
    refresh_token = provider.mint_refresh_token("public")
    source = RefreshToken(issuer=provider.issuer, client_id="public", refresh_token=refresh_token,
                          store=MemoryStore(), proxy=proxy.url)
    token = mode.token(source)
    assert token.access_token and token.refresh_token != refresh_token  # the provider rotated it
    assert f"POST {provider.token_endpoint}" in proxy.seen()


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"])
def test_the_proxy_variables_are_honoured(provider, proxy, monkeypatch, variable, mode):
    monkeypatch.setenv(variable, proxy.url)
    assert mode.access_token(cc(provider, token_endpoint=provider.token_endpoint, issuer=None))
    assert proxy.seen() == [f"POST {provider.token_endpoint}"]


def test_the_lower_case_variable_wins(provider, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("http_proxy", proxy.url)
    assert cc(provider).get_access_token()
    assert f"POST {provider.token_endpoint}" in proxy.seen()


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8", "localhost,127.0.0.1", "*",
                                      "PORT"])
def test_no_proxy_goes_direct(provider, proxy, monkeypatch, no_proxy, mode):
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.replace("PORT", f"127.0.0.1:{_port(provider.issuer)}"))
    assert mode.access_token(cc(provider))
    assert proxy.seen() == []


def test_no_proxy_for_another_port_still_goes_through(provider, proxy, monkeypatch):
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("no_proxy", f"127.0.0.1:{_free_port()}")
    assert cc(provider).get_access_token()
    assert f"POST {provider.token_endpoint}" in proxy.seen()


def test_proxy_none_goes_direct_whatever_the_environment(provider, proxy, monkeypatch, mode):
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("ALL_PROXY", proxy.url)
    assert mode.access_token(cc(provider, proxy="none"))
    assert proxy.seen() == []


def test_proxy_wins_over_no_proxy(provider, proxy, monkeypatch):
    monkeypatch.setenv("no_proxy", "*")
    assert cc(provider, proxy=proxy.url).get_access_token()
    assert f"POST {provider.token_endpoint}" in proxy.seen()


# -- over https: CONNECT, the server's certificate verified through the tunnel -------------------------


def test_https_through_connect_verifies_the_server(tls_server, proxy, pki, mode):
    assert tls_server.issuer.startswith("https://127.0.0.1:")
    assert mode.access_token(service(tls_server, verify=pki["ca.pem"], proxy=proxy.url))
    seen = proxy.seen()
    assert seen and set(seen) == {f"CONNECT 127.0.0.1:{_port(tls_server.issuer)}"}


def test_https_proxy_variable(tls_server, proxy, pki, monkeypatch, mode):
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_free_port()}")  # not for https URLs
    assert mode.access_token(service(tls_server, verify=pki["ca.pem"]))
    assert f"CONNECT 127.0.0.1:{_port(tls_server.issuer)}" in proxy.seen()


def test_a_wrong_ca_fails_through_the_tunnel(tls_server, proxy, pki, mode):
    with pytest.raises(TransportError) as info:
        mode.access_token(service(tls_server, verify=pki["stranger.pem"], proxy=proxy.url))
    message = str(info.value)
    assert "could not verify the TLS certificate" in message
    assert "give verify= the CA file" in message and proxy.address in message
    assert f"CONNECT 127.0.0.1:{_port(tls_server.issuer)}" in proxy.seen()  # it was the tunnel


def test_a_connect_the_proxy_refuses_names_the_proxy(proxy):
    port = _free_port()  # not among the proxy's ConnectPort lines
    source = ClientCredentials(token_endpoint=f"https://127.0.0.1:{port}/token", client_id="c",
                               client_secret="s", store=MemoryStore(), proxy=proxy.url)
    with pytest.raises(TransportError) as info:
        source.get_access_token()
    message = str(info.value)
    assert f"the proxy http://{proxy.address} (from proxy=) would not carry" in message
    assert f"https://127.0.0.1:{port}/token" in message and "403" in message
    assert info.value.reached_server is False
    assert f"CONNECT 127.0.0.1:{port}" in proxy.seen()


# -- proxy credentials: sent, never shown --------------------------------------------------------------


def test_proxy_credentials_are_sent_and_never_shown(provider, tls_server, authproxy, pki, caplog,
                                                    mode):
    assert PROXY_PASSWORD in authproxy.url
    with caplog.at_level(logging.DEBUG):
        assert mode.access_token(cc(provider, proxy=authproxy.url))  # forwarded
        assert mode.access_token(service(tls_server, verify=pki["ca.pem"], proxy=authproxy.url))
    seen = authproxy.seen()
    assert f"POST {provider.token_endpoint}" in seen
    assert f"CONNECT 127.0.0.1:{_port(tls_server.issuer)}" in seen
    assert "keyturn goes through" in caplog.text and f"***@{authproxy.address}" in caplog.text
    assert PROXY_PASSWORD not in caplog.text
    assert PROXY_PASSWORD not in authproxy.log()


@pytest.mark.parametrize("over", ["http", "https"])
def test_a_proxy_that_wants_credentials_says_so(provider, tls_server, authproxy, pki, over, mode):
    without = f"http://{authproxy.address}"
    source = (cc(provider, proxy=without) if over == "http"
              else service(tls_server, verify=pki["ca.pem"], proxy=without))
    with pytest.raises(TransportError) as info:
        mode.access_token(source)
    message = str(info.value)
    assert f"the proxy {without} (from proxy=) would not carry" in message
    assert "407" in message and "credentials" in message
    assert info.value.reached_server is False


def test_a_dead_proxy_with_credentials_never_shows_the_password(provider, caplog, mode,
                                                               monkeypatch):
    port = _free_port()
    monkeypatch.setenv("DEAD_PROXY", f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{port}")
    # Made in a frame of its own and read from the environment: the password is no local of the
    # frames the traceback below shows (the caller's own variables are the caller's business).
    source = _source_from_environment(provider)
    with caplog.at_level(logging.DEBUG), pytest.raises(TransportError) as info:
        mode.access_token(source)
    for name, text in renderings(with_context(info.value)).items():
        assert not leaks(text, [PROXY_PASSWORD]), name
    message = str(info.value)
    assert message.startswith(f"could not connect to the proxy http://***@127.0.0.1:{port} "
                              "(from proxy=) on the way to the token endpoint "
                              f"{provider.token_endpoint}")
    assert info.value.reached_server is False
    shown = [message, repr(info.value), repr(source), repr(source._transport), caplog.text,
             "".join(traceback.format_exception(info.value))]
    for text in shown:
        assert PROXY_PASSWORD not in text


def _source_from_environment(provider) -> ClientCredentials:
    return cc(provider, proxy=os.environ["DEAD_PROXY"], token_endpoint=provider.token_endpoint,
              issuer=None)


def test_a_dead_proxy_from_the_environment_is_named_with_its_variable(provider, monkeypatch):
    port = _free_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://alice:{PROXY_PASSWORD}@127.0.0.1:{port}")
    with pytest.raises(TransportError) as info:
        cc(provider).get_access_token()
    assert f"http://***@127.0.0.1:{port} (from HTTP_PROXY)" in str(info.value)
    assert PROXY_PASSWORD not in str(info.value)


# -- a variable keyturn cannot use (all_proxy=socks://, as desktop settings may export) -----------------


def test_an_unusable_all_proxy_beside_both_scheme_variables_changes_nothing(provider, proxy, mode,
                                                                            monkeypatch):
    monkeypatch.setenv("http_proxy", proxy.url)
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("all_proxy", "socks://127.0.0.1:1080/")
    assert mode.access_token(cc(provider, token_endpoint=provider.token_endpoint, issuer=None))
    assert proxy.seen() == [f"POST {provider.token_endpoint}"]


def test_an_unusable_variable_fails_the_request_that_would_use_it(provider, mode, monkeypatch):
    listener = socket.socket()  # where the variable points: nothing may connect to it
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    monkeypatch.setenv("ALL_PROXY", f"socks://alice:{PROXY_PASSWORD}@127.0.0.1:{port}")
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{_free_port()}")  # not for http URLs
    before = provider.token_requests("basic")
    source = cc(provider, token_endpoint=provider.token_endpoint, issuer=None)  # made: no error
    with pytest.raises(ConfigError) as info:
        mode.access_token(source)
    message = str(info.value)
    assert message.startswith(f"ALL_PROXY='socks://***@127.0.0.1:{port}': ")
    assert f"set it to socks5://***@127.0.0.1:{port} if the proxy speaks SOCKS5, or unset it" \
        in message
    for name, text in renderings(with_context(info.value)).items():
        assert not leaks(text, [PROXY_PASSWORD, str(provider.clients["basic"].client_secret)]), name
    assert provider.token_requests("basic") == before
    with listener, pytest.raises(BlockingIOError):
        listener.accept()  # nothing was sent to the proxy either
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # the same variable, for a host it does not serve
    assert mode.access_token(cc(provider, token_endpoint=provider.token_endpoint, issuer=None))


def test_a_refresh_an_unusable_variable_stops_spends_nothing(provider, mode, monkeypatch):
    refresh_token = provider.mint_refresh_token("public")
    store = MemoryStore()

    def source() -> RefreshToken:
        # No discovery first: the refresh is the first request, the one refused.
        return RefreshToken(token_endpoint=provider.token_endpoint, client_id="public",
                            refresh_token=refresh_token, store=store)

    monkeypatch.setenv("all_proxy", "socks://127.0.0.1:1080/")
    with pytest.raises(ConfigError, match=re.escape("all_proxy='socks://127.0.0.1:1080'")):
        mode.token(source())  # the refresh is the critical step: refused before it is sent
    monkeypatch.delenv("all_proxy")
    token = mode.token(source())  # the same refresh token still works: it was never spent
    assert token.access_token and token.refresh_token != refresh_token


# -- SOCKS5 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_through_microsocks(provider, socks, scheme, mode):
    url = socks.url.replace("socks5://", f"{scheme}://")
    assert mode.access_token(cc(provider, proxy=url))
    assert f"127.0.0.1:{_port(provider.issuer)}" in socks.seen()


def test_socks5_to_https_verifies_the_server(tls_server, socks, pki):
    assert service(tls_server, verify=pki["ca.pem"], proxy=socks.url).get_access_token()
    assert f"127.0.0.1:{_port(tls_server.issuer)}" in socks.seen()


def test_socks5_with_a_wrong_password_is_a_clear_error(provider, socks):
    wrong = f"socks5://bob:not-{SOCKS_PASSWORD}@{socks.address}"
    with pytest.raises(TransportError) as info:
        cc(provider, proxy=wrong).get_access_token()
    message = str(info.value)
    assert f"the proxy socks5://***@{socks.address} (from proxy=) would not carry" in message
    assert SOCKS_PASSWORD not in message and socks.seen() == []


# -- the command line: profiles with proxy = "..." -----------------------------------------------------


def test_cli_profiles_with_a_proxy_and_with_none(provider, proxy, tmp_path):
    cli = Cli(tmp_path)
    dead = f"http://127.0.0.1:{_free_port()}"
    cli.env.update(CC_SECRET=str(provider.clients["basic"].client_secret), http_proxy=dead)
    common = f'grant = "client_credentials"\nissuer = "{provider.issuer}"\nclient_id = "basic"\n' \
             'client_secret_env = "CC_SECRET"\n'
    cli.write_config(f'[profiles.proxied]\n{common}proxy = "{proxy.url}"\n\n'
                     f'[profiles.direct]\n{common}proxy = "none"\nscope = "api:read"\n\n'
                     f'[profiles.environment]\n{common}scope = "api:write"\n')
    login = cli.run("login", "--profile", "proxied")
    assert login.returncode == 0, login.stderr
    assert f"POST {provider.token_endpoint}" in proxy.seen()
    proxy.reset()
    direct = cli.run("token", "--profile", "direct")
    assert direct.returncode == 0 and direct.stdout.strip(), direct.stderr
    assert proxy.seen() == []  # and not through the dead one of http_proxy either
    failed = cli.run("token", "--profile", "environment")
    assert failed.returncode != 0
    assert f"{dead} (from http_proxy)" in failed.stderr


# -- docs/proxies.md ---------------------------------------------------------------------------------


def test_the_docs_example_runs(proxy, monkeypatch, tmp_path):
    docs = Path(__file__).resolve().parents[2] / "docs" / "proxies.md"
    blocks = re.findall(r"```python\n(.*?)```", docs.read_text(), flags=re.S)
    assert len(blocks) == 1
    provider = start_provider([make_client("batch-job", "client_secret_basic",
                                           grant_types=["client_credentials"])], tmp_path)
    try:
        monkeypatch.setenv("KEYTURN_ISSUER", provider.issuer)
        monkeypatch.setenv("BATCH_JOB_SECRET", str(provider.clients["batch-job"].client_secret))
        monkeypatch.setenv("HTTP_PROXY", proxy.url)  # the provider is http: HTTP_PROXY applies
        monkeypatch.setenv("SITE_PROXY", proxy.url)
        exec(compile(blocks[0], str(docs), "exec"), {})
        # from_environment and through_proxy went through; direct did not.
        assert proxy.seen().count(f"POST {provider.token_endpoint}") == 2
        assert provider.token_requests("batch-job") == 3
    finally:
        provider.stop()
