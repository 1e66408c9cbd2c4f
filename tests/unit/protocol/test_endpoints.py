"""keyturn.protocol.endpoints: which URLs may be endpoints."""

from __future__ import annotations

import pytest

from keyturn.errors import ConfigError
from keyturn.protocol.endpoints import check_endpoint_url, is_loopback_host


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("example.org", False), ("10.0.0.1", False), ("localhost.example.org", False), ("0.0.0.0", False),
    ("::", False), ("", False),
])
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("url", [
    "https://as.example/token", "https://as.example:8443/t?x=1", "http://127.0.0.1:9000/token",
    "http://localhost/token", "http://[::1]:8080/token",
])
def test_accepted(url: str) -> None:
    check_endpoint_url(url, "token_endpoint")


@pytest.mark.parametrize("url", [
    "http://as.example/token", "http://10.1.2.3/token", "ftp://as.example/token", "as.example/token",
    "https:///token", "https://as.example/token#frag", "https://as.example:99999/token",
    "https://as.example:port/token", "http://as.example:port/token", "https://[::1/token",
])
def test_refused_with_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="token_endpoint"):
        check_endpoint_url(url, "token_endpoint")


def test_plain_http_when_allowed() -> None:
    check_endpoint_url("http://as.internal/token", "token_endpoint", allow_http=True)
    with pytest.raises(ConfigError):
        check_endpoint_url("ftp://as.internal/token", "token_endpoint", allow_http=True)


def test_message_hides_credentials_and_query() -> None:
    with pytest.raises(ConfigError) as info:
        check_endpoint_url("http://user:SECRET@as.example/token?key=SECRET", "token_endpoint")
    assert "SECRET" not in str(info.value)
    assert "http://as.example/token" in str(info.value)
