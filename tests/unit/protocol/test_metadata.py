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
        "userinfo_endpoint": f"{base}/userinfo",
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


@pytest.mark.parametrize(("issuer", "urls"), [
    (ISSUER, [OIDC, RFC8414]),
    (ISSUER + "/", [OIDC, RFC8414]),
    ("https://login.example.com/tenant/v2.0", [
        "https://login.example.com/tenant/v2.0/.well-known/openid-configuration",
        "https://login.example.com/.well-known/oauth-authorization-server/tenant/v2.0",
        "https://login.example.com/tenant/v2.0/.well-known/oauth-authorization-server"]),
    ("https://kc.example:8443/realms/hpc/", [
        "https://kc.example:8443/realms/hpc/.well-known/openid-configuration",
        "https://kc.example:8443/.well-known/oauth-authorization-server/realms/hpc",
        "https://kc.example:8443/realms/hpc/.well-known/oauth-authorization-server"]),
])
def test_discovery_urls(issuer: str, urls: list[str]) -> None:
    # The appended RFC 8414 form only when the issuer has a path (else it is the inserted one).
    assert discovery_urls(issuer) == urls


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
    assert metadata.locations == (OIDC,)


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


def test_every_location_failing_names_the_issuer_and_the_urls() -> None:
    flow = discover("https://user:pw@id.example.org/realm?x=secret")
    next(flow)
    flow.send(_status("", 404))
    flow.send(_status("", 410))
    with pytest.raises(DiscoveryError) as info:
        flow.send(HttpResponse(200, {"content-type": "text/html"}, b"<html>", ""))
    message = str(info.value)
    assert "https://id.example.org/realm" in message
    assert "https://id.example.org/realm/.well-known/openid-configuration" in message
    assert "404" in message and "410" in message
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


# -- merging the documents ----------------------------------------------------------------------------

PATH_ISSUER = "https://as.example/o"
P_OIDC = "https://as.example/o/.well-known/openid-configuration"
P_INSERTED = "https://as.example/.well-known/oauth-authorization-server/o"
P_APPENDED = "https://as.example/o/.well-known/oauth-authorization-server"


def _without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in names}


def _steps(flow: Any, answers: list[HttpResponse]) -> tuple[list[str], ServerMetadata]:
    """Answer the flow's requests in order; the URLs it asked for and its result."""
    urls = [next(flow).url]
    try:
        for answer in answers:
            urls.append(flow.send(answer).url)
    except StopIteration as stop:
        return urls, stop.value
    raise AssertionError(f"the flow asked for more: {urls}")


def test_a_complete_first_document_is_the_only_request() -> None:
    urls, metadata = _steps(discover(PATH_ISSUER), [_ok(P_OIDC, _doc(PATH_ISSUER))])
    assert urls == [P_OIDC]
    assert metadata.locations == (P_OIDC,)


def test_the_appended_rfc8414_document_fills_what_the_openid_one_omits() -> None:
    # The case of issue 11: the OpenID document names neither device nor revocation endpoint,
    # the RFC 8414 document at {issuer}/.well-known/oauth-authorization-server names both.
    oidc = _without(_doc(PATH_ISSUER), "device_authorization_endpoint", "revocation_endpoint")
    urls, metadata = _steps(discover(PATH_ISSUER), [
        _ok(P_OIDC, oidc),
        _status(P_INSERTED, 404),
        _ok(P_APPENDED, _doc(PATH_ISSUER, introspection_endpoint=PATH_ISSUER + "/introspect",
                             authorization_response_iss_parameter_supported=True)),
    ])
    assert urls == [P_OIDC, P_INSERTED, P_APPENDED]
    assert metadata.revocation_endpoint == PATH_ISSUER + "/revoke"
    assert metadata.device_authorization_endpoint == PATH_ISSUER + "/device"
    assert metadata.introspection_endpoint == PATH_ISSUER + "/introspect"
    assert metadata.raw["authorization_response_iss_parameter_supported"] is True
    assert metadata.raw["revocation_endpoint"] == PATH_ISSUER + "/revoke"
    assert metadata.locations == (P_OIDC, P_APPENDED)


def test_stops_as_soon_as_the_merged_metadata_is_complete() -> None:
    oidc = _without(_doc(PATH_ISSUER), "revocation_endpoint")
    urls, metadata = _steps(discover(PATH_ISSUER), [_ok(P_OIDC, oidc), _ok(P_INSERTED, _doc(PATH_ISSUER))])
    assert urls == [P_OIDC, P_INSERTED]
    assert metadata.revocation_endpoint == PATH_ISSUER + "/revoke"


def test_where_documents_disagree_the_first_wins() -> None:
    oidc = _without(_doc(PATH_ISSUER, token_endpoint=PATH_ISSUER + "/oidc-token"), "revocation_endpoint")
    other = _doc(PATH_ISSUER, token_endpoint=PATH_ISSUER + "/other-token",
                 grant_types_supported=["other"])
    metadata = run_offline(discover(PATH_ISSUER), {P_OIDC: _ok(P_OIDC, oidc),
                                                  P_INSERTED: _ok(P_INSERTED, other)})
    assert metadata.token_endpoint == PATH_ISSUER + "/oidc-token"
    assert metadata.raw["token_endpoint"] == PATH_ISSUER + "/oidc-token"
    assert metadata.grant_types_supported == ("client_credentials", "refresh_token")
    assert metadata.revocation_endpoint == PATH_ISSUER + "/revoke"


@pytest.mark.parametrize("other", [
    _doc("https://evil.example", revocation_endpoint="https://evil.example/revoke"),
    _doc(PATH_ISSUER, revocation_endpoint="http://evil.example/revoke"),  # plain http off loopback
    _doc(PATH_ISSUER, revocation_endpoint=["not", "a", "string"]),
    {"no": "issuer"},
])
def test_a_second_document_for_another_issuer_or_broken_is_not_merged(other: dict[str, Any]) -> None:
    oidc = _without(_doc(PATH_ISSUER), "revocation_endpoint")
    metadata = run_offline(discover(PATH_ISSUER), {
        P_OIDC: _ok(P_OIDC, oidc), P_INSERTED: _ok(P_INSERTED, other),
        P_APPENDED: _status(P_APPENDED, 404),
    })
    assert metadata.revocation_endpoint is None
    assert metadata.token_endpoint == PATH_ISSUER + "/token"
    assert metadata.locations == (P_OIDC,)


def test_the_first_document_found_is_the_base_even_when_it_is_an_rfc8414_one() -> None:
    inserted = _without(_doc(PATH_ISSUER), "userinfo_endpoint", "jwks_uri")
    urls, metadata = _steps(discover(PATH_ISSUER), [
        _status(P_OIDC, 404), _ok(P_INSERTED, inserted), _status(P_APPENDED, 404),
    ])
    assert urls == [P_OIDC, P_INSERTED, P_APPENDED]
    assert metadata.token_endpoint == PATH_ISSUER + "/token"
    assert metadata.userinfo_endpoint is None


def test_a_base_document_for_another_issuer_is_still_refused() -> None:
    # Only the documents after the base are skipped when they name another issuer: a base for
    # another issuer means issuer= points at the wrong server.
    with pytest.raises(DiscoveryError, match="evil"):
        run_offline(discover(PATH_ISSUER), {P_OIDC: _status(P_OIDC, 404),
                                           P_INSERTED: _ok(P_INSERTED, _doc("https://evil.example"))})


def test_a_location_that_does_not_answer_after_the_base_fills_nothing_in() -> None:
    from keyturn.errors import TransportError

    oidc = _without(_doc(PATH_ISSUER), "revocation_endpoint")
    flow = discover(PATH_ISSUER)
    assert next(flow).url == P_OIDC
    assert flow.send(_ok(P_OIDC, oidc)).url == P_INSERTED
    # The driver throws a failed request into the flow (after its retries).
    following = flow.throw(TransportError("the discovery endpoint did not answer", url=P_INSERTED))
    assert following.url == P_APPENDED
    with pytest.raises(StopIteration) as stop:
        flow.send(_ok(P_APPENDED, _doc(PATH_ISSUER)))
    assert stop.value.value.revocation_endpoint == PATH_ISSUER + "/revoke"


def test_the_first_location_not_answering_is_still_an_error() -> None:
    from keyturn.errors import TransportError

    flow = discover(PATH_ISSUER)
    next(flow)
    with pytest.raises(TransportError):
        flow.throw(TransportError("the discovery endpoint did not answer", url=P_OIDC))
