"""keyturn.protocol.metadata: discovery (OIDC Discovery 1.0, RFC 8414), stepped offline."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyturn.errors import ConfigError, DiscoveryError
from keyturn.protocol.http import HttpResponse, run_offline
from keyturn.protocol.metadata import ServerMetadata, discover, discovery_urls

ISSUER = "https://id.example.org"
OIDC = "https://id.example.org/.well-known/openid-configuration"
RFC8414 = "https://id.example.org/.well-known/oauth-authorization-server"


def _doc(issuer: str = ISSUER, **extra: Any) -> dict[str, Any]:
    base = issuer.rstrip("/")
    return {
        "issuer": issuer,
        "token_endpoint": f"{base}/token",
        "authorization_endpoint": f"{base}/authorize",
        "device_authorization_endpoint": f"{base}/device",
        "revocation_endpoint": f"{base}/revoke",
        "jwks_uri": f"{base}/jwks",
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "grant_types_supported": ["client_credentials", "refresh_token"],
        **extra,
    }


def _ok(url: str, doc: Any) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(doc).encode(), url)


def _status(url: str, status: int, body: bytes = b"not found") -> HttpResponse:
    return HttpResponse(status, {"content-type": "text/plain"}, body, url)


# -- where to look -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("issuer", "oidc", "rfc8414"), [
    (ISSUER, OIDC, RFC8414),
    (ISSUER + "/", OIDC, RFC8414),
    ("https://login.example.com/tenant/v2.0",
     "https://login.example.com/tenant/v2.0/.well-known/openid-configuration",
     "https://login.example.com/.well-known/oauth-authorization-server/tenant/v2.0"),
    ("https://kc.example:8443/realms/hpc/",
     "https://kc.example:8443/realms/hpc/.well-known/openid-configuration",
     "https://kc.example:8443/.well-known/oauth-authorization-server/realms/hpc"),
])
def test_discovery_urls(issuer: str, oidc: str, rfc8414: str) -> None:
    assert discovery_urls(issuer) == [oidc, rfc8414]


# -- stepping the flow --------------------------------------------------------------------------------


def test_oidc_location_first_and_only_when_it_answers() -> None:
    flow = discover(ISSUER)
    request = next(flow)
    assert request.method == "GET"
    assert request.url == OIDC
    assert request.headers["Accept"] == "application/json"
    assert request.purpose == "discovery endpoint"
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok(OIDC, _doc()))
    metadata = stop.value.value
    assert isinstance(metadata, ServerMetadata)
    assert metadata.issuer == ISSUER
    assert metadata.token_endpoint == ISSUER + "/token"
    assert metadata.device_authorization_endpoint == ISSUER + "/device"
    assert metadata.token_endpoint_auth_methods_supported == ("client_secret_basic", "private_key_jwt")
    assert metadata.grant_types_supported == ("client_credentials", "refresh_token")
    assert metadata.introspection_endpoint is None
    assert metadata.raw["jwks_uri"] == ISSUER + "/jwks"


@pytest.mark.parametrize("failure", [
    _status(OIDC, 404),
    _status(OIDC, 500, b"<html>oops</html>"),
    HttpResponse(200, {"content-type": "text/html"}, b"<html>login page</html>", OIDC),
    HttpResponse(200, {"content-type": "application/json"}, b"[1, 2]", OIDC),
])
def test_rfc8414_fallback(failure: HttpResponse) -> None:
    flow = discover(ISSUER)
    assert next(flow).url == OIDC
    fallback = flow.send(failure)
    assert fallback.url == RFC8414
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok(RFC8414, _doc()))
    assert stop.value.value.token_endpoint == ISSUER + "/token"


def test_rfc8414_fallback_with_a_path_inserts_after_the_host() -> None:
    issuer = "https://as.example/tenants/42"
    responses = {
        f"{issuer}/.well-known/openid-configuration": _status("", 404),
        "https://as.example/.well-known/oauth-authorization-server/tenants/42": _ok("", _doc(issuer)),
    }
    metadata = run_offline(discover(issuer), responses)
    assert metadata.issuer == issuer
    assert metadata.token_endpoint == issuer + "/token"


@pytest.mark.parametrize("location", ["oidc", "rfc8414"])
@pytest.mark.parametrize("other", [
    "https://evil.example", "https://id.example.org/other", "http://id.example.org",
    "https://id.example.org:8443",
])
def test_issuer_mismatch(location: str, other: str) -> None:
    flow = discover(ISSUER)
    next(flow)
    with pytest.raises(DiscoveryError, match="issuer") as info:
        if location == "oidc":
            flow.send(_ok(OIDC, _doc(other)))
        else:
            flow.send(_status(OIDC, 404))
            flow.send(_ok(RFC8414, _doc(other)))
    assert other in str(info.value)
    assert ISSUER in str(info.value)


def test_missing_issuer_in_the_document() -> None:
    doc = _doc()
    del doc["issuer"]
    with pytest.raises(DiscoveryError, match="no issuer"):
        run_offline(discover(ISSUER), {OIDC: _ok(OIDC, doc)})


def test_both_locations_failing_names_the_issuer_and_both_urls() -> None:
    flow = discover("https://user:pw@id.example.org/realm?x=secret")
    next(flow)
    flow.send(_status("", 404))
    with pytest.raises(DiscoveryError) as info:
        flow.send(HttpResponse(200, {"content-type": "text/html"}, b"<html>", ""))
    message = str(info.value)
    assert "https://id.example.org/realm" in message
    assert "https://id.example.org/realm/.well-known/openid-configuration" in message
    assert "404" in message
    assert "HTML" in message
    assert info.value.url == "https://id.example.org/realm"
    assert "secret" not in message and "pw" not in message


# -- plain http -------------------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", ["http://id.example.org", "http://10.0.0.5:8080/realm",
                                    "ftp://id.example.org", "id.example.org", "https://"])
def test_non_https_non_loopback_issuer_is_refused(issuer: str) -> None:
    with pytest.raises(ConfigError):
        next(discover(issuer))


def test_http_issuer_allowed_when_opted_in() -> None:
    issuer = "http://id.internal:8080"
    doc = _doc(issuer)
    metadata = run_offline(discover(issuer, allow_http=True),
                           {issuer + "/.well-known/openid-configuration": _ok("", doc)})
    assert metadata.token_endpoint == issuer + "/token"


@pytest.mark.parametrize("issuer", ["http://127.0.0.1:8080", "http://localhost:3000/realm",
                                    "http://[::1]:9000", "http://127.0.0.2"])
def test_http_loopback_issuer_is_allowed(issuer: str) -> None:
    request = next(discover(issuer))
    assert request.url.startswith(issuer)


@pytest.mark.parametrize("name", ["token_endpoint", "authorization_endpoint",
                                  "device_authorization_endpoint", "revocation_endpoint",
                                  "introspection_endpoint", "userinfo_endpoint", "jwks_uri"])
def test_endpoints_in_the_document_are_checked_like_the_issuer(name: str) -> None:
    doc = _doc(**{name: "http://evil.example/steal"})
    with pytest.raises(ConfigError, match=name):
        run_offline(discover(ISSUER), {OIDC: _ok(OIDC, doc)})
    # Opting in to plain http allows it in the document too.
    metadata = run_offline(discover(ISSUER, allow_http=True), {OIDC: _ok(OIDC, doc)})
    assert getattr(metadata, name) == "http://evil.example/steal"


@pytest.mark.parametrize("value", ["https://id.example.org/token#frag", "javascript:alert(1)",
                                   "/relative/token"])
def test_malformed_endpoints_in_the_document(value: str) -> None:
    with pytest.raises(ConfigError):
        run_offline(discover(ISSUER), {OIDC: _ok(OIDC, _doc(token_endpoint=value))})


def test_endpoint_that_is_not_a_string() -> None:
    with pytest.raises(DiscoveryError, match="token_endpoint"):
        run_offline(discover(ISSUER), {OIDC: _ok(OIDC, _doc(token_endpoint=["https://x"]))})


def test_loopback_endpoints_in_a_https_document_are_allowed() -> None:
    metadata = run_offline(discover(ISSUER), {
        OIDC: _ok(OIDC, _doc(token_endpoint="http://127.0.0.1:9999/token")),
    })
    assert metadata.token_endpoint == "http://127.0.0.1:9999/token"


def test_lists_of_the_wrong_shape_are_ignored() -> None:
    doc = _doc(token_endpoint_auth_methods_supported="client_secret_basic",
               grant_types_supported=["a", 1], mtls_endpoint_aliases={"token_endpoint": "https://m/t",
                                                                       "bad": 5})
    metadata = run_offline(discover(ISSUER), {OIDC: _ok(OIDC, doc)})
    assert metadata.token_endpoint_auth_methods_supported is None
    assert metadata.grant_types_supported is None
    assert metadata.mtls_endpoint_aliases == {"token_endpoint": "https://m/t"}
