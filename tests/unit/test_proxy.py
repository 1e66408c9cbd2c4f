"""The proxy rules of keyturn._proxy: which proxy a URL goes through, from ``proxy=`` or the
environment (curl's rules, measured with curl 7.88.1 on this machine; where urllib's
``proxy_bypass_environment`` agrees, it is asked too), the checks of ``proxy=``, and that a proxy
password shows nowhere."""

from __future__ import annotations

import logging
import urllib.request

import pytest

from keyturn import ClientCredentials, ConfigError, MemoryStore
from keyturn._proxy import check_proxy_url, proxy_rules, redact, shown
from keyturn.secret import Secret
from keyturn.transport import HttpSettings, Transport

PROXY = "http://proxy.example.org:3128"
OTHER = "http://other.example.org:8080"
PASSWORD = "pr0xy-pa55word"


def route(url: str, **environ: str) -> str | None:
    found = proxy_rules(None, environ).route_for(url)
    return None if found is None else found.url


# -- which variable ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("environ", "url", "expected"), [
    ({"https_proxy": PROXY}, "https://idp.example.com/token", PROXY),
    ({"HTTPS_PROXY": PROXY}, "https://idp.example.com/token", PROXY),
    ({"https_proxy": PROXY}, "http://idp.example.com/token", None),  # per scheme
    ({"http_proxy": PROXY}, "http://idp.example.com/token", PROXY),
    ({"http_proxy": PROXY}, "https://idp.example.com/token", None),
    # requests and urllib honour upper-case HTTP_PROXY (curl does not): so does keyturn...
    ({"HTTP_PROXY": PROXY}, "http://idp.example.com/token", PROXY),
    # ...but not under CGI, where HTTP_PROXY is a request header (httpoxy), as urllib
    ({"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"}, "http://idp.example.com/token", None),
    ({"all_proxy": PROXY}, "https://idp.example.com/token", PROXY),
    ({"ALL_PROXY": PROXY}, "http://idp.example.com/token", PROXY),
    ({"all_proxy": OTHER, "https_proxy": PROXY}, "https://idp.example.com/token", PROXY),
    ({"all_proxy": OTHER, "https_proxy": PROXY}, "http://idp.example.com/token", OTHER),
    # the lower-case variable wins (curl, urllib)
    ({"https_proxy": PROXY, "HTTPS_PROXY": OTHER}, "https://idp.example.com/token", PROXY),
    ({"all_proxy": PROXY, "ALL_PROXY": OTHER}, "https://idp.example.com/token", PROXY),
    # an empty variable is unset: the next one applies (curl: `http_proxy= all_proxy=...`)
    ({"http_proxy": "", "all_proxy": PROXY}, "http://idp.example.com/token", PROXY),
    ({"all_proxy": "", "ALL_PROXY": PROXY}, "http://idp.example.com/token", PROXY),
    # no scheme: http:// (curl)
    ({"https_proxy": "proxy.example.org:3128"}, "https://idp.example.com/token", PROXY),
    ({}, "https://idp.example.com/token", None),
])
def test_which_variable(environ, url, expected):
    assert route(url, **environ) == expected


def test_the_upper_case_http_proxy_agrees_with_urllib(monkeypatch):
    for name in list(urllib.request.getproxies_environment()):
        monkeypatch.delenv(f"{name}_proxy", raising=False)
        monkeypatch.delenv(f"{name.upper()}_PROXY", raising=False)
    monkeypatch.setenv("HTTP_PROXY", PROXY)
    assert urllib.request.getproxies_environment()["http"] == PROXY
    assert route("http://idp.example.com/", HTTP_PROXY=PROXY) == PROXY
    monkeypatch.setenv("REQUEST_METHOD", "GET")
    assert "http" not in urllib.request.getproxies_environment()
    assert route("http://idp.example.com/", HTTP_PROXY=PROXY, REQUEST_METHOD="GET") is None


# -- NO_PROXY ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("no_proxy", "url", "direct"), [
    ("*", "https://idp.example.com/", True),
    (" * ", "https://idp.example.com/", True),
    ("foo.org,*", "https://idp.example.com/", False),  # curl: "*" only as the whole value
    ("example.com", "https://example.com/", True),
    ("example.com", "https://www.example.com/", True),  # a domain covers its subdomains
    (".example.com", "https://www.example.com/", True),
    (".example.com", "https://example.com/", True),  # curl: the leading dot changes nothing
    ("example.com", "https://notexample.com/", False),  # a label boundary, not a string suffix
    ("ample.com", "https://www.example.com/", False),
    ("*.example.com", "https://www.example.com/", False),  # no wildcards (curl)
    ("EXAMPLE.COM", "https://www.Example.com/", True),
    ("example.com.", "https://www.example.com/", True),
    ("example.com", "https://www.example.com./", True),
    ("foo.org example.com", "https://example.com/", True),  # spaces separate too (curl)
    ("foo.org, example.com", "https://example.com/", True),
    ("127.0.0.1", "http://127.0.0.1:8080/", True),
    ("127.0.0.1", "http://localhost:8080/", False),  # addresses match addresses, names names
    ("localhost", "http://127.0.0.1:8080/", False),
    ("localhost", "http://localhost:8080/", True),
    ("127.0.0.0/8", "http://127.1.2.3/", True),
    ("10.0.0.0/8", "http://127.0.0.1/", False),
    ("192.168.0.0/16", "http://192.168.40.2/", True),
    ("::1", "http://[::1]:8080/", True),
    ("[::1]", "http://[::1]:8080/", True),
    ("fd00::/8", "http://[fd12:3456::1]/", True),
    ("fd00::/8", "http://[fe80::1]/", False),
    ("::/0", "http://127.0.0.1/", False),  # an IPv6 network holds no IPv4 address
    ("example.com:8443", "https://example.com:8443/", True),  # a port: that port only
    ("example.com:8443", "https://example.com/", False),
    ("example.com:443", "https://example.com/", True),  # the scheme's default port
    ("127.0.0.1:8080", "http://127.0.0.1:8080/", True),
    ("127.0.0.1:8080", "http://127.0.0.1:9090/", False),
    ("[::1]:8080", "http://[::1]:8080/", True),
    ("[::1]:8080", "http://[::1]:9090/", False),
    ("", "https://idp.example.com/", False),
    (",,", "https://idp.example.com/", False),
])
def test_no_proxy_forms(no_proxy, url, direct):
    expected = None if direct else PROXY
    assert route(url, all_proxy=PROXY, no_proxy=no_proxy) == expected
    assert route(url, ALL_PROXY=PROXY, NO_PROXY=no_proxy) == expected


@pytest.mark.parametrize(("no_proxy", "host"), [
    ("example.com", "example.com"), ("example.com", "www.example.com"),
    (".example.com", "www.example.com"), ("example.com", "notexample.com"),
    ("foo.org,example.com", "example.com"), ("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost"),
    ("example.com:8443", "example.com:8443"), ("example.com:8443", "example.com:9000"),
    ("*", "anything.example"),
])
def test_no_proxy_agrees_with_urllib_where_curl_does(no_proxy, host):
    name, _, port = host.partition(":")
    url = f"https://{host}/" if port else f"https://{name}/"
    ours = route(url, all_proxy=PROXY, no_proxy=no_proxy) is None
    theirs = bool(urllib.request.proxy_bypass_environment(host, {"all": PROXY, "no": no_proxy}))
    assert ours == theirs


def test_loopback_is_not_bypassed_implicitly():
    # curl 7.88.1: `all_proxy=http://127.0.0.1:9 curl http://127.0.0.1:PORT/` fails at the proxy.
    assert route("http://127.0.0.1:8080/token", all_proxy=PROXY) == PROXY
    assert route("http://localhost:8080/token", all_proxy=PROXY) == PROXY
    assert route("http://[::1]:8080/token", all_proxy=PROXY) == PROXY


def test_lower_case_no_proxy_wins():
    environ = {"all_proxy": PROXY, "no_proxy": "example.com", "NO_PROXY": "127.0.0.1"}
    assert route("http://127.0.0.1/", **environ) == PROXY
    assert route("http://example.com/", **environ) is None


# -- proxy= ------------------------------------------------------------------------------------------


def test_proxy_argument_wins_over_the_environment():
    rules = proxy_rules(OTHER, {"https_proxy": PROXY, "no_proxy": "*"})
    assert rules.route_for("https://idp.example.com/").url == OTHER
    assert rules.route_for("http://127.0.0.1/").url == OTHER


@pytest.mark.parametrize("direct", ["none", "NONE", " none "])
def test_proxy_none_goes_direct_whatever_the_environment(direct):
    rules = proxy_rules(direct, {"https_proxy": PROXY, "all_proxy": PROXY})
    assert rules.route_for("https://idp.example.com/") is None
    assert rules.route_for("http://idp.example.com/") is None


def test_the_environment_is_read_when_the_clients_are_built(monkeypatch):
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", PROXY)
    settings = HttpSettings()
    assert settings.proxy_rules().route_for("https://idp.example.com/").url == PROXY
    monkeypatch.setenv("HTTPS_PROXY", OTHER)
    assert settings.proxy_rules().route_for("https://idp.example.com/").url == OTHER


@pytest.mark.parametrize(("url", "words"), [
    ("proxy.example.org:3128", "no scheme"),
    ("ftp://proxy.example.org:21", "socks5h://"),
    ("socks4://proxy.example.org:1080", "SOCKS4 is not supported"),
    ("socks4a://proxy.example.org:1080", "SOCKS4 is not supported"),
    ("http://", "names no host"),
    ("http://proxy.example.org:99999", "not a valid URL"),
    ("http://proxy.example.org:3128/path", "scheme://host:port only"),
    ("", "must be a proxy URL"),
])
def test_a_bad_proxy_is_a_config_error_saying_what_to_write(url, words):
    with pytest.raises(ConfigError, match="proxy") as info:
        ClientCredentials(token_endpoint="https://idp.example.com/token", client_id="c",
                          client_secret="s", proxy=url, store=MemoryStore())
    assert words in str(info.value)
    assert 'proxy="http://proxy.example.org:3128"' in str(info.value) or "pip" in str(info.value) \
        or "scheme://host:port" in str(info.value) \
        or "proxy='socks5://proxy.example.org:1080' if the proxy speaks SOCKS5" in str(info.value)


@pytest.mark.parametrize("value", [3128, ["http://proxy.example.org:3128"], True])
def test_a_proxy_that_is_no_string_is_a_config_error(value):
    # A profile's `proxy = 3128` arrives as an int.
    with pytest.raises(ConfigError, match='proxy must be a proxy URL such as proxy="http://'):
        HttpSettings(proxy=value)


@pytest.mark.parametrize("scheme", ["http", "https", "socks5", "socks5h", "HTTP"])
def test_the_schemes_httpx_can_go_through(scheme):
    assert check_proxy_url(f"{scheme}://proxy.example.org:1080") == f"{scheme}://proxy.example.org:1080"


def test_a_bad_proxy_variable_is_named_at_the_url_that_picks_it():
    rules = proxy_rules(None, {"ALL_PROXY": f"socks4://user:{PASSWORD}@proxy.example.org:1080"})
    with pytest.raises(ConfigError, match="ALL_PROXY") as info:
        rules.route_for("https://idp.example.com/token")
    message = str(info.value)
    assert PASSWORD not in message and "user" not in message
    assert "set it to socks5://***@proxy.example.org:1080 if the proxy speaks SOCKS5, or unset it" \
        in message
    assert "write it as proxy=" not in message  # the variable is what to fix


# -- a variable keyturn would not use changes nothing (review #4) -----------------------------------

DESKTOP_SOCKS = "socks://proxy.example.org:1080/"  # what desktop proxy settings may export


def test_all_proxy_is_not_read_beside_both_scheme_variables():
    environ = {"https_proxy": PROXY, "http_proxy": OTHER, "all_proxy": DESKTOP_SOCKS,
               "no_proxy": "localhost"}
    rules = proxy_rules(None, environ)
    assert set(rules.routes) == {"http", "https"}
    assert rules.route_for("https://idp.example.com/token").url == PROXY
    assert rules.route_for("http://idp.example.com/token").url == OTHER


def test_a_bad_variable_only_fails_the_urls_that_would_go_through_it():
    rules = proxy_rules(None, {"https_proxy": PROXY, "all_proxy": DESKTOP_SOCKS,
                               "no_proxy": "127.0.0.1"})
    assert rules.route_for("https://idp.example.com/token").url == PROXY
    assert rules.route_for("http://127.0.0.1:8080/token") is None  # bypassed: never picked
    assert rules.distinct() == (rules.routes["https"],)  # no pool for a proxy keyturn cannot use
    with pytest.raises(ConfigError) as info:
        rules.route_for("http://idp.example.com/token")
    assert str(info.value) == (
        "all_proxy='socks://proxy.example.org:1080': keyturn goes through http://, https://, "
        "socks5:// or socks5h:// proxies; socks:// means SOCKS4 (as curl reads it), which is not "
        "supported; set it to socks5://proxy.example.org:1080 if the proxy speaks SOCKS5, or "
        "unset it")


@pytest.mark.parametrize("no_proxy", ["*", "idp.example.com"])
def test_a_bad_variable_of_a_bypassed_host_changes_nothing(no_proxy):
    rules = proxy_rules(None, {"all_proxy": DESKTOP_SOCKS, "no_proxy": no_proxy})
    assert rules.route_for("https://idp.example.com/token") is None


def test_a_bad_variable_makes_no_client_fail(monkeypatch):
    monkeypatch.setenv("all_proxy", DESKTOP_SOCKS)
    monkeypatch.setenv("https_proxy", PROXY)
    HttpSettings().client().close()  # built: only a request that picks all_proxy fails


@pytest.mark.parametrize(("value", "words"), [
    ("ftp://proxy.example.org:21", "set it to a URL such as http://proxy.example.org:3128, or "
                                   "unset it"),
    ("http://proxy.example.org:3128/path", "a proxy URL is scheme://host:port only"),
    ("http://proxy.example.org:99999", "is not a valid URL: set it to a URL such as"),
])
def test_a_bad_variable_says_to_set_or_unset_it(value, words):
    with pytest.raises(ConfigError, match="https_proxy") as info:
        proxy_rules(None, {"https_proxy": value}).route_for("https://idp.example.com/")
    assert words in str(info.value) and "write it as proxy=" not in str(info.value)


def test_socks_without_socksio_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    # Fault injection: this machine has socksio; a user's may not.
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "socksio" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'keyturn\[socks\]'"):
        HttpSettings(proxy="socks5://127.0.0.1:1080")
    with pytest.raises(ConfigError, match=r"pip install 'keyturn\[socks\]'"):
        proxy_rules(None, {"all_proxy": "socks5h://127.0.0.1:1080"}).route_for("http://x.example/")


# -- the password shows nowhere ----------------------------------------------------------------------


SECRET_PROXY = f"http://alice:{PASSWORD}@proxy.example.org:3128"


@pytest.mark.parametrize(("url", "shown"), [
    (SECRET_PROXY, "http://***@proxy.example.org:3128"),
    (f"socks5://alice:{PASSWORD}@[::1]:1080", "socks5://***@[::1]:1080"),
    ("http://proxy.example.org:3128", "http://proxy.example.org:3128"),
    (f"http://{PASSWORD}@proxy.example.org", "http://***@proxy.example.org"),
    (f"http://alice:{PASSWORD}@proxy.example.org:bad", "<unparseable proxy URL>"),
])
def test_redact(url, shown):
    assert redact(url) == shown


def test_no_password_in_reprs():
    settings = HttpSettings(proxy=SECRET_PROXY)
    source = ClientCredentials(token_endpoint="https://idp.example.com/token", client_id="c",
                               client_secret="s", proxy=SECRET_PROXY, store=MemoryStore())
    texts = [repr(settings), repr(Transport(settings)), repr(source), repr(source._transport),
             repr(proxy_rules(SECRET_PROXY)), repr(proxy_rules(None, {"https_proxy": SECRET_PROXY}))]
    assert "http://***@proxy.example.org:3128" in repr(settings)
    for text in texts:
        assert PASSWORD not in text and "alice" not in text


@pytest.mark.parametrize("given", [SECRET_PROXY, Secret(SECRET_PROXY)])
def test_shown_redacts_a_str_and_a_secret_alike(given):
    assert shown(given) == "http://***@proxy.example.org:3128"


def test_the_settings_keep_a_given_str_as_a_secret():
    settings = HttpSettings(proxy=SECRET_PROXY)
    assert isinstance(settings.proxy, Secret) and settings.proxy.reveal() == SECRET_PROXY
    assert settings == HttpSettings(proxy=Secret(SECRET_PROXY))
    assert HttpSettings().proxy is None


def test_no_password_in_a_config_error():
    with pytest.raises(ConfigError) as info:
        HttpSettings(proxy=f"http://alice:{PASSWORD}@proxy.example.org:3128/path")
    assert PASSWORD not in str(info.value) and "***@proxy.example.org:3128" in str(info.value)


def test_no_password_in_the_log(caplog, monkeypatch):
    monkeypatch.setenv("https_proxy", SECRET_PROXY)
    with caplog.at_level(logging.DEBUG):
        HttpSettings().client().close()
    records = [r for r in caplog.records if r.name == "keyturn.transport"]
    assert records and "***@proxy.example.org:3128" in records[0].getMessage()
    assert PASSWORD not in caplog.text


# -- the async client reads no file on the event loop (review #7) ------------------------------------


def test_the_async_client_builds_both_tls_contexts_off_the_loop(tmp_path, monkeypatch):
    import asyncio
    import threading

    import trustme

    from keyturn import transport

    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")  # a fresh path: no context of it is shared yet
    ca.issue_cert("client.example").private_key_and_cert_chain_pem.write_to_path(
        tmp_path / "client.pem")
    built: list[tuple[object, bool]] = []
    real = transport.shared_tls_context

    def recording(verify, cert):  # the real one, noting the thread each context is built on
        built.append((cert, threading.current_thread() is loop_thread))
        return real(verify, cert)

    monkeypatch.setattr(transport, "shared_tls_context", recording)
    monkeypatch.setenv("https_proxy", "https://127.0.0.1:3129")  # keyturn talks TLS to it
    settings = HttpSettings(verify=str(tmp_path / "ca.pem"), cert=str(tmp_path / "client.pem"))

    async def make() -> None:
        await (await settings.async_client()).aclose()

    loop_thread = threading.current_thread()  # asyncio.run runs the loop on this thread
    asyncio.run(make())
    expected = [(None, False), (str(tmp_path / "client.pem"), False)]
    assert sorted(built, key=repr) == sorted(expected, key=repr)
    assert settings.proxy_tls_context() is not settings.tls_context()  # no client cert to the proxy
