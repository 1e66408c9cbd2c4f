"""keyturn.protocol.grants: token requests and the parsing of token responses, stepped offline."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

import pytest

from keyturn.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidResponse,
    InvalidScope,
    InvalidTarget,
    LoginRequired,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.grants import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_REFRESH_TOKEN,
    normalize_scope,
    parse_error_response,
    parse_token_response,
    scope_param,
    token_flow,
)
from keyturn.protocol.http import HttpRequest, HttpResponse, run_offline
from keyturn.token import Token

URL = "https://as.example/oauth2/token"
NOW = 1_700_000_000.0
JSON = {"content-type": "application/json; charset=utf-8"}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, headers or JSON, json.dumps(body).encode(), URL)


def _raw(body: bytes, status: int = 200, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(status, {"content-type": content_type}, body, URL)


def _parse(response: HttpResponse, requested: tuple[str, ...] = ()) -> Token:
    return parse_token_response(response, now=NOW, requested_scope=requested)


# -- success ---------------------------------------------------------------------------------------


def test_success_fields() -> None:
    token = _parse(_json({
        "access_token": "AT-1", "token_type": "DPoP", "expires_in": 3600, "scope": "read write",
        "refresh_token": "RT-1", "id_token": "ID-1", "refresh_token_expires_in": 86400,
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "custom": {"a": 1},
    }))
    assert token.access_token == "AT-1"
    assert token.token_type == "DPoP"
    assert token.issued_at == NOW
    assert token.expires_at == NOW + 3600
    assert token.lifetime == 3600
    assert token.scope == ("read", "write")
    assert token.refresh_token == "RT-1"
    assert token.id_token == "ID-1"
    assert token.refresh_expires_at == NOW + 86400
    assert token.extra == {
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "custom": {"a": 1},
    }


def test_secrets_never_land_in_extra() -> None:
    token = _parse(_json({"access_token": "AT", "refresh_token": "RT", "id_token": "ID",
                          "expires_in": 60, "refresh_expires_in": 120}))
    assert token.extra == {}
    assert token.refresh_expires_at == NOW + 120


def test_minimal_success_defaults() -> None:
    token = _parse(_json({"access_token": "AT"}))
    assert token.token_type == "Bearer"
    assert token.expires_at is None
    assert token.scope is None
    assert token.refresh_token is None
    assert token.id_token is None
    assert token.refresh_expires_at is None


@pytest.mark.parametrize("value", ["", None, 0])
def test_empty_optional_fields_are_absent(value: Any) -> None:
    token = _parse(_json({"access_token": "AT", "token_type": value, "refresh_token": value,
                          "id_token": value}))
    assert token.token_type == "Bearer"
    assert token.refresh_token is None
    assert token.id_token is None


def test_scope_missing_means_the_requested_scope() -> None:
    # RFC 6749 §5.1: scope is "OPTIONAL, if identical to the scope requested by the client".
    assert _parse(_json({"access_token": "AT"}), requested=("a", "b")).scope == ("a", "b")
    assert _parse(_json({"access_token": "AT", "scope": "c"}), requested=("a", "b")).scope == ("c",)


@pytest.mark.parametrize(("value", "seconds"), [
    ("3599", 3599.0), (" 120 ", 120.0), (0, 0.0), (59.5, 59.5), (3600, 3600.0),
])
def test_expires_in_numbers_and_numeric_strings(value: Any, seconds: float) -> None:
    token = _parse(_json({"access_token": "AT", "expires_in": value}))
    assert token.expires_at == NOW + seconds


@pytest.mark.parametrize("field", ["expires_in", "refresh_token_expires_in", "refresh_expires_in"])
@pytest.mark.parametrize(
    "value",
    ["soon", "-5", "3599.5s", "", "²", "1" * 5000, -1, -0.5, True, False, [3600], {"s": 1}],
    ids=["word", "neg-str", "suffix", "empty", "superscript", "huge-str", "neg", "neg-float",
         "true", "false", "list", "dict"],
)
def test_bad_expiry_is_an_invalid_response_naming_the_endpoint(field: str, value: Any) -> None:
    with pytest.raises(InvalidResponse) as info:
        _parse(_json({"access_token": "AT", field: value}))
    assert info.value.url == URL
    assert URL in str(info.value)
    assert field in str(info.value)
    assert "AT" not in str(info.value).replace(URL, "")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"1" + b"0" * 400])
def test_non_finite_or_huge_expiry_is_an_invalid_response(literal: bytes) -> None:
    body = b'{"access_token": "AT", "expires_in": ' + literal + b"}"
    with pytest.raises(InvalidResponse) as info:
        _parse(_raw(body))
    assert info.value.url == URL
    assert URL in str(info.value)


# -- not a token response --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"access_token": ""}, {"access_token": 42},
                                  {"access_token": None}, {"token": "AT"}])
def test_missing_access_token(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidResponse, match="access_token") as info:
        _parse(_json(body))
    assert info.value.status == 200
    assert URL in str(info.value)


@pytest.mark.parametrize("status", [200, 404, 502])
def test_html_page(status: int) -> None:
    page = b"<!DOCTYPE html>\n<html><body><h1>Bad gateway</h1></body></html>"
    with pytest.raises(InvalidResponse, match="HTML") as info:
        _parse(_raw(page, status=status, content_type="text/html"))
    assert info.value.status == status
    assert info.value.url == URL
    assert URL in str(info.value)


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe\x00", b"access_token"])
def test_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidResponse, match="not JSON") as info:
        _parse(_raw(body))
    assert info.value.url == URL


@pytest.mark.parametrize("body", [b"[]", b'[{"access_token": "AT"}]', b'"AT"', b"42", b"null"])
def test_json_that_is_not_an_object(body: bytes) -> None:
    with pytest.raises(InvalidResponse, match="not an object"):
        _parse(_raw(body))


def test_form_urlencoded_legacy_body() -> None:
    response = _raw(b"access_token=gho_abc%2B1&token_type=bearer&scope=repo+gist&expires_in=28800"
                    b"&refresh_token=ghr_x", content_type="application/x-www-form-urlencoded")
    token = _parse(response)
    assert token.access_token == "gho_abc+1"
    assert token.token_type == "bearer"
    assert token.scope == ("repo", "gist")
    assert token.expires_at == NOW + 28800
    assert token.refresh_token == "ghr_x"


@pytest.mark.parametrize("status", [200, 400])
def test_form_urlencoded_error_body(status: int) -> None:
    # GitHub answers a bad device or authorization code with a form-encoded error and HTTP 200.
    response = _raw(b"error=invalid_grant&error_description=The+code+is+wrong&error_uri="
                    b"https%3A%2F%2Fdocs.example%2Ferr", status=status,
                    content_type="application/x-www-form-urlencoded")
    with pytest.raises(InvalidGrant) as info:
        _parse(response)
    assert info.value.error == "invalid_grant"
    assert info.value.error_description == "The code is wrong"
    assert info.value.error_uri == "https://docs.example/err"
    assert info.value.status == status


# -- OAuth errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "cls", "status"), [
    ("invalid_request", InvalidRequest, 400),
    ("invalid_client", InvalidClient, 401),
    ("invalid_grant", InvalidGrant, 400),
    ("unauthorized_client", UnauthorizedClient, 400),
    ("unsupported_grant_type", UnsupportedGrantType, 400),
    ("invalid_scope", InvalidScope, 400),
    ("invalid_target", InvalidTarget, 400),
    ("access_denied", AccessDenied, 403),
    ("expired_token", ExpiredToken, 400),
    ("authorization_pending", AuthorizationPending, 400),
    ("slow_down", SlowDown, 400),
    ("server_error", OAuthError, 500),
    ("temporarily_unavailable", OAuthError, 503),
])
def test_oauth_error_bodies_map_to_their_class(code: str, cls: type[OAuthError], status: int) -> None:
    response = _json({"error": code, "error_description": "what went wrong",
                      "error_uri": "https://docs.example/errors#x"}, status=status)
    with pytest.raises(OAuthError) as info:
        _parse(response)
    error = info.value
    assert type(error) is cls
    assert error.error == code
    assert error.error_description == "what went wrong"
    assert error.error_uri == "https://docs.example/errors#x"
    assert error.status == status
    assert error.url == URL
    assert code in str(error) and "what went wrong" in str(error)


def test_error_in_a_200_body_is_an_oauth_error() -> None:
    with pytest.raises(AccessDenied):
        _parse(_json({"error": "access_denied"}))


def test_error_fields_of_the_wrong_type_are_dropped() -> None:
    with pytest.raises(InvalidClient) as info:
        _parse(_json({"error": "invalid_client", "error_description": 5, "error_uri": ["x"]},
                     status=401))
    assert info.value.error_description is None
    assert info.value.error_uri is None


@pytest.mark.parametrize("body", [{}, {"error": ""}, {"error": 400}, {"message": "nope"}])
def test_non_200_without_an_error_code_is_an_invalid_response(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidResponse, match="without an OAuth error code") as info:
        _parse(_json(body, status=400))
    assert info.value.status == 400
    assert URL in str(info.value)


def test_non_200_with_an_access_token_is_still_an_error() -> None:
    with pytest.raises(InvalidResponse):
        _parse(_json({"access_token": "AT"}, status=201))


def test_parse_error_response_returns_the_error() -> None:
    error = parse_error_response(_json({"error": "invalid_scope"}, status=400), "token endpoint")
    assert isinstance(error, InvalidScope)
    error = parse_error_response(_raw(b"<html>", status=500), "device endpoint")
    assert isinstance(error, InvalidResponse) and "device endpoint" in str(error)


# -- scope helpers -----------------------------------------------------------------------------------


def test_normalize_scope() -> None:
    assert normalize_scope(None) == ()
    assert normalize_scope("") == ()
    assert normalize_scope("  openid  profile openid ") == ("openid", "profile")
    assert normalize_scope(["b a", "c", "a"]) == ("b", "a", "c")
    assert normalize_scope(("x",)) == ("x",)


def test_scope_param() -> None:
    assert scope_param(()) == {}
    assert scope_param(("a", "b")) == {"scope": "a b"}


# -- token_flow --------------------------------------------------------------------------------------


def _form(request: HttpRequest) -> list[tuple[str, str]]:
    return request.form_items()


def test_token_flow_request_and_result() -> None:
    flow = token_flow(
        endpoint=URL, grant_type=GRANT_CLIENT_CREDENTIALS,
        params={"scope": "b a", "resource": ["https://r1.example", "https://r2.example"],
                "audience": "", "empty": [], "x": "1"},
        client_auth=ClientAuth.create(client_id="cli", auth_method="none"),
        now=NOW, requested_scope=("b", "a"),
    )
    request = next(flow)
    assert request.method == "POST"
    assert request.url == URL
    assert request.purpose == "token endpoint"
    assert request.idempotent is True
    assert request.headers["Accept"] == "application/json"
    assert _form(request) == [
        ("grant_type", "client_credentials"), ("scope", "b a"),
        ("resource", "https://r1.example"), ("resource", "https://r2.example"), ("x", "1"),
        ("client_id", "cli"),
    ]
    with pytest.raises(StopIteration) as stop:
        flow.send(_json({"access_token": "AT", "expires_in": 10}))
    token = stop.value.value
    assert isinstance(token, Token)
    assert token.scope == ("b", "a")
    assert token.expires_at == NOW + 10


def test_token_flow_with_basic_auth_and_non_idempotent() -> None:
    flow = token_flow(
        endpoint=URL, grant_type=GRANT_REFRESH_TOKEN, params={"refresh_token": "RT"},
        client_auth=ClientAuth.create(client_id="c", client_secret="s"), now=NOW, idempotent=False,
    )
    request = next(flow)
    assert request.idempotent is False
    assert request.headers["Authorization"].startswith("Basic ")
    assert dict(_form(request)) == {"grant_type": "refresh_token", "refresh_token": "RT"}
    # The form holds secrets: it is not part of the request's repr.
    assert "RT" not in repr(request)
    assert "Basic" not in repr(request)


def test_token_flow_raises_the_server_error() -> None:
    flow = token_flow(endpoint=URL, grant_type=GRANT_CLIENT_CREDENTIALS, params={},
                      client_auth=ClientAuth.create(client_id="c", client_secret="s"), now=NOW)
    with pytest.raises(InvalidClient):
        run_offline(flow, {URL: _json({"error": "invalid_client"}, status=401)})


# -- what the sources put into the flow ---------------------------------------------------------------


def test_client_credentials_form() -> None:
    from keyturn.sources.client_credentials import ClientCredentials

    source = ClientCredentials(
        token_endpoint=URL, client_id="svc", client_secret="sec", auth_method="client_secret_post",
        scope=["b a", "c", "a"], resource=["https://r2.example", "https://r1.example"],
        audience="https://api.example", extra_params={"tenant": "t1"}, store=None,
    )
    flow = source._flow(None)
    request = next(flow)
    assert request.idempotent is True
    items = _form(request)
    assert items.count(("resource", "https://r1.example")) == 1
    assert items.count(("resource", "https://r2.example")) == 1
    assert dict(items) | {"resource": None} == {
        "grant_type": "client_credentials", "scope": "b a c", "audience": "https://api.example",
        "resource": None, "tenant": "t1", "client_id": "svc", "client_secret": "sec",
    }
    assert "refresh_token" not in dict(items)
    token = run_offline_from(flow, _json({"access_token": "AT"}))
    assert token.scope == ("b", "a", "c")


def run_offline_from(flow: Any, response: HttpResponse) -> Token:
    with pytest.raises(StopIteration) as stop:
        flow.send(response)
    result: Token = stop.value.value
    return result


def test_refresh_grant_is_not_idempotent_and_sends_the_newest_refresh_token() -> None:
    from keyturn.sources.refresh_token import RefreshToken

    source = RefreshToken(token_endpoint=URL, client_id="cli", refresh_token="RT-initial",
                          scope="openid offline_access", store=None)
    previous = Token(access_token="old", expires_at=0.0, refresh_token="RT-rotated")
    request = next(source._flow(previous))
    assert request.idempotent is False
    form = dict(parse_qsl("&".join(f"{k}={v}" for k, v in _form(request))))
    assert form == {"grant_type": "refresh_token", "refresh_token": "RT-rotated",
                    "scope": "openid offline_access", "client_id": "cli"}
    with pytest.raises(LoginRequired):
        next(source._flow(Token(access_token="old", expires_at=0.0)))


def test_client_credentials_grant_is_idempotent() -> None:
    from keyturn.sources.client_credentials import ClientCredentials

    source = ClientCredentials(token_endpoint=URL, client_id="svc", client_secret="s", store=None)
    request = next(source._flow(None))
    assert request.idempotent is True
    assert dict(_form(request)) == {"grant_type": "client_credentials"}


# -- expiry from a JWT access token when expires_in is absent ---------------------------------------------


def _jwt(payload: bytes) -> str:
    import base64

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(b'{"alg": "RS256"}')
    return f"{header}.{part(payload)}.c2ln"


def test_jwt_access_token_exp_is_used_without_expires_in() -> None:
    token = _parse(_json({"access_token": _jwt(b'{"exp": %d}' % (NOW + 900))}))
    assert token.expires_at == NOW + 900


def test_expires_in_wins_over_the_jwt_exp() -> None:
    token = _parse(_json({"access_token": _jwt(b'{"exp": %d}' % (NOW + 900)), "expires_in": 60}))
    assert token.expires_at == NOW + 60


@pytest.mark.parametrize("payload", [b"not json", b'{"exp": "soon"}', b'{"exp": true}', b"[1]", b"{}"])
def test_unusable_jwt_exp_means_no_expiry(payload: bytes) -> None:
    assert _parse(_json({"access_token": _jwt(payload)})).expires_at is None
    assert _parse(_json({"access_token": "opaque.two-parts"})).expires_at is None
