"""keyturn.protocol.pkce and keyturn.protocol.authcode, stepped offline; the landing page and the
browser check, which need no network either."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import re
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import pytest

from keyturn import AuthorizationCode
from keyturn.errors import (
    AccessDenied,
    ConfigError,
    InvalidGrant,
    InvalidResponse,
    InvalidScope,
    OAuthError,
)
from keyturn.interactive.browser import can_open_browser
from keyturn.interactive.landing import LoginOutcome, render
from keyturn.protocol.authcode import (
    GRANT_AUTHORIZATION_CODE,
    AuthorizationRequest,
    code_exchange_flow,
    default_prompt,
    iss_required,
)
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.http import HttpRequest, HttpResponse, Received
from keyturn.protocol.metadata import ServerMetadata
from keyturn.protocol.pkce import Pkce, code_challenge, make_verifier

ISSUER = "https://id.example.org"
AUTHORIZE = f"{ISSUER}/authorize"
TOKEN = f"{ISSUER}/token"
REDIRECT = "http://127.0.0.1:49152/callback"
UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]+")


# -- PKCE (RFC 7636) -----------------------------------------------------------------------------


def test_rfc7636_appendix_b_example() -> None:
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_challenge_is_unpadded_base64url_of_sha256() -> None:
    verifier = "a" * 43 + "-._~"
    digest = hashlib.sha256(verifier.encode()).digest()
    assert code_challenge(verifier) == base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert "=" not in code_challenge(verifier)


@pytest.mark.parametrize("entropy", [32, 64, 96])
def test_generated_verifiers_are_43_to_128_unreserved_characters(entropy: int) -> None:
    verifiers = {make_verifier(entropy) for _ in range(50)}
    assert len(verifiers) == 50  # random, never repeated
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        assert UNRESERVED.fullmatch(verifier)


@pytest.mark.parametrize("entropy", [16, 31, 97])
def test_verifier_entropy_out_of_range_is_refused(entropy: int) -> None:
    with pytest.raises(ConfigError):
        make_verifier(entropy)


@pytest.mark.parametrize("verifier", ["a" * 42, "a" * 129, "a" * 42 + "/", "a" * 42 + "=", "a" * 42 + " ",
                                      "a" * 42 + "é"])
def test_invalid_verifiers_are_refused(verifier: str) -> None:
    with pytest.raises(ConfigError, match="43 to 128"):
        code_challenge(verifier)


def test_pkce_is_s256_and_hides_the_verifier() -> None:
    pkce = Pkce.create()
    assert pkce.authorization_params() == {"code_challenge": pkce.challenge,
                                          "code_challenge_method": "S256"}
    assert pkce.challenge == code_challenge(pkce.verifier)
    assert pkce.verifier not in repr(pkce)


# -- the authorization request ------------------------------------------------------------------


def make_request(**kwargs: Any) -> AuthorizationRequest:
    args: dict[str, Any] = {
        "authorization_endpoint": AUTHORIZE, "client_id": "cli", "redirect_uri": REDIRECT,
        "scope": ("openid", "offline_access", "profile"), "issuer": ISSUER, "require_iss": True,
    }
    args.update(kwargs)
    return AuthorizationRequest.create(**args)


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


def test_authorization_url_carries_every_parameter() -> None:
    request = make_request(params={"resource": ["https://api.example.org/a", "https://api.example.org/b"],
                                   "audience": "api", "ui_locales": "de"})
    assert request.url.startswith(AUTHORIZE + "?")
    query = query_of(request.url)
    assert query.pop("resource") == ["https://api.example.org/a", "https://api.example.org/b"]
    assert {k: v[0] for k, v in query.items()} == {
        "response_type": "code", "client_id": "cli", "redirect_uri": REDIRECT,
        "scope": "openid offline_access profile", "state": request.state, "nonce": request.nonce,
        "code_challenge": request.pkce.challenge, "code_challenge_method": "S256",
        "prompt": "consent", "audience": "api", "ui_locales": "de",
    }
    assert all(len(v) == 1 for v in query.values())


def test_secrets_are_fresh_long_and_not_in_the_repr() -> None:
    first, second = make_request(), make_request()
    assert first.state != second.state and first.nonce != second.nonce
    assert first.pkce.verifier != second.pkce.verifier
    assert first.nonce is not None and len(first.state) >= 43 and len(first.nonce) >= 43
    text = repr(first)
    for secret in (first.state, first.nonce, first.pkce.verifier):
        assert secret not in text
    assert "cli" in text


def test_requests_and_pkce_pairs_cannot_be_pickled() -> None:
    request = make_request()
    for value in (request, request.pkce):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(value)


def test_endpoint_query_is_kept() -> None:
    # RFC 6749 §3.1: the endpoint's own query "MUST be retained".
    request = make_request(authorization_endpoint=f"{AUTHORIZE}?tenant=physics")
    assert query_of(request.url)["tenant"] == ["physics"]
    assert urlsplit(request.url).path == "/authorize"


def test_no_nonce_without_openid_and_no_prompt_without_offline_access() -> None:
    request = make_request(scope=("api:read",))
    query = query_of(request.url)
    assert request.nonce is None and "nonce" not in query and "prompt" not in query


@pytest.mark.parametrize(("scope", "prompt", "expected"), [
    (("openid", "offline_access"), None, "consent"),
    (("openid",), None, None),
    (("offline_access",), None, None),       # not an OpenID request: §11 does not apply
    (("openid", "offline_access"), "login", "login"),
    (("openid", "offline_access"), "", None),  # explicitly none
])
def test_default_prompt(scope: tuple[str, ...], prompt: str | None, expected: str | None) -> None:
    assert default_prompt(scope, prompt) == expected


@pytest.mark.parametrize("name", ["state", "redirect_uri", "code_challenge_method", "client_id", "prompt"])
def test_extra_params_cannot_override_what_keyturn_sets(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        make_request(params={name: "x"})


def test_plain_http_endpoint_off_loopback_is_refused() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        make_request(authorization_endpoint="http://id.example.org/authorize")
    assert make_request(authorization_endpoint="http://127.0.0.1:8080/authorize").url


def test_iss_required_follows_the_metadata() -> None:
    def meta(value: Any) -> ServerMetadata:
        return ServerMetadata(issuer=ISSUER, raw={} if value is None else
                              {"authorization_response_iss_parameter_supported": value})

    assert iss_required(meta(True))
    assert not iss_required(meta(None)) and not iss_required(meta(False))
    assert not iss_required(meta("true"))  # a boolean in the document, not a string


# -- the redirect back --------------------------------------------------------------------------


def redirect(request: AuthorizationRequest, **params: str | None) -> str:
    values: dict[str, str | None] = {"code": "the-code", "state": request.state, "iss": ISSUER}
    values.update(params)
    return urlencode({k: v for k, v in values.items() if v is not None})


def test_a_good_redirect_gives_the_code() -> None:
    request = make_request()
    assert request.parse_response(redirect(request)) == "the-code"


@pytest.mark.parametrize("state", ["forged", "", None])
def test_wrong_or_missing_state_is_refused(state: str | None) -> None:
    request = make_request()
    with pytest.raises(InvalidResponse, match="state that does not belong to this login") as info:
        request.parse_response(redirect(request, state=state))
    assert request.state not in str(info.value)


def test_error_with_a_wrong_state_is_a_state_error_not_the_error() -> None:
    request = make_request()
    with pytest.raises(InvalidResponse, match="state"):
        request.parse_response(redirect(request, code=None, state="forged", error="access_denied"))


@pytest.mark.parametrize(("error", "cls"), [
    ("access_denied", AccessDenied), ("invalid_scope", InvalidScope), ("login_required", OAuthError),
])
def test_error_redirects_are_typed(error: str, cls: type[OAuthError]) -> None:
    request = make_request()
    query = redirect(request, code=None, error=error, error_description="no <b>way</b>",
                     error_uri="https://id.example.org/help")
    with pytest.raises(cls) as info:
        request.parse_response(query)
    assert type(info.value) is cls
    assert info.value.error == error
    assert info.value.error_description == "no <b>way</b>"
    assert info.value.error_uri == "https://id.example.org/help"
    assert info.value.url == AUTHORIZE


def test_missing_iss_is_refused_when_the_server_promised_it() -> None:
    # RFC 9207 §2.4: reject responses without iss from servers that advertise it.
    request = make_request()
    with pytest.raises(InvalidResponse, match="no iss"):
        request.parse_response(redirect(request, iss=None))
    # ... also an error response: the iss check comes before believing the error.
    with pytest.raises(InvalidResponse, match="no iss"):
        request.parse_response(redirect(request, iss=None, code=None, error="access_denied"))


def test_missing_iss_is_accepted_when_the_server_never_promised_it() -> None:
    request = make_request(require_iss=False)
    assert request.parse_response(redirect(request, iss=None)) == "the-code"


@pytest.mark.parametrize("iss", ["https://evil.example", ISSUER + "/", "https://ID.example.org", ""])
def test_another_iss_is_refused(iss: str) -> None:
    # Simple string comparison: a trailing slash or another case is another issuer.
    for require in (True, False):
        request = make_request(require_iss=require)
        with pytest.raises(InvalidResponse, match="mix-up"):
            request.parse_response(redirect(request, iss=iss))


def test_repeated_parameters_are_refused() -> None:
    request = make_request()
    query = redirect(request) + "&code=another"
    with pytest.raises(InvalidResponse, match="repeats the parameter 'code'"):
        request.parse_response(query)


def test_neither_code_nor_error() -> None:
    request = make_request()
    with pytest.raises(InvalidResponse, match="neither a code nor an error"):
        request.parse_response(redirect(request, code=None))


# -- the code exchange --------------------------------------------------------------------------


def token_response(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode(), url=TOKEN)


def test_code_exchange_sends_code_verifier_and_redirect_uri_once() -> None:
    request = make_request()
    flow = code_exchange_flow(request, "the-code", token_endpoint=TOKEN,
                              client_auth=ClientAuth.create(client_id="cli"), now=1000.0,
                              resource=["https://api.example.org"])
    sent = next(flow)
    assert isinstance(sent, HttpRequest)
    assert sent.method == "POST" and sent.url == TOKEN
    assert sent.idempotent is False  # a code sent twice revokes the grant
    assert dict(parse_qsl("&".join(f"{k}={v}" for k, v in sent.form_items()))) == {
        "grant_type": GRANT_AUTHORIZATION_CODE, "code": "the-code", "redirect_uri": REDIRECT,
        "code_verifier": request.pkce.verifier, "client_id": "cli",
        "resource": "https://api.example.org",
    }
    kept = flow.send(token_response(200, {"access_token": "at", "token_type": "Bearer",
                                          "expires_in": 60, "refresh_token": "rt"}))
    # The code is spent: the answer goes to the driver to keep before anything else happens.
    assert isinstance(kept, Received)
    with pytest.raises(StopIteration) as done:
        flow.send(None)
    token = done.value.value
    assert token is kept.token
    assert (token.access_token, token.refresh_token, token.expires_at) == ("at", "rt", 1060.0)
    assert token.scope == ("openid", "offline_access", "profile")


def test_confidential_client_authenticates_the_exchange() -> None:
    request = make_request()
    flow = code_exchange_flow(request, "c", token_endpoint=TOKEN, now=0.0,
                              client_auth=ClientAuth.create(client_id="cli", client_secret="s3cret"))
    sent = next(flow)
    assert sent.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in dict(sent.form_items())


def test_refused_code_is_invalid_grant() -> None:
    request = make_request()
    flow = code_exchange_flow(request, "c", token_endpoint=TOKEN, now=0.0,
                              client_auth=ClientAuth.create(client_id="cli"))
    next(flow)
    with pytest.raises(InvalidGrant):
        flow.send(token_response(400, {"error": "invalid_grant",
                                       "error_description": "grant request is invalid"}))


# -- the landing page ---------------------------------------------------------------------------


def test_default_success_page_is_self_contained_and_not_cached() -> None:
    status, headers, body = render(LoginOutcome.success("alice"))
    page = body.decode()
    assert status == 200 and "Signed in as alice" in page
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    # No external resource of any kind: nothing with a URL in it.
    assert "http" not in page and "<script" not in page and "@import" not in page and "src=" not in page


def test_error_page_shows_the_error_escaped() -> None:
    error = AccessDenied("access_denied", "<script>alert(1)</script>", url=AUTHORIZE)
    status, _headers, body = render(LoginOutcome.failure(error))
    page = body.decode()
    assert status == 400
    assert "access_denied" in page and "Sign-in failed" in page
    assert "<script>alert" not in page and "&lt;script&gt;" in page


def test_unexpected_exception_shows_no_details() -> None:
    outcome = LoginOutcome.failure(RuntimeError("internal state with secret-ish things"))
    assert "secret-ish" not in outcome.message and "RuntimeError" in outcome.message


def test_landing_page_template_and_callable() -> None:
    template = "<h1>$title</h1><p class=$outcome>$message [$error]</p>"
    _, headers, body = render(LoginOutcome.failure(AccessDenied("access_denied")), template)
    assert body.decode().startswith("<h1>Sign-in failed</h1><p class=error>")
    assert "[access_denied]" in body.decode()
    assert headers["Cache-Control"] == "no-store" and "Content-Security-Policy" not in headers
    status, _, body = render(LoginOutcome.success(), lambda o: f"ok={o.ok}")
    assert (status, body) == (200, b"ok=True")


# -- can a browser be opened here? --------------------------------------------------------------


@pytest.mark.parametrize(("env", "platform", "expected"), [
    ({"DISPLAY": ":0"}, "linux", True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({}, "linux", False),
    ({"BROWSER": "w3m"}, "linux", True),          # a terminal browser needs no display
    ({"DISPLAY": ":0", "SSH_CONNECTION": "10.0.0.1 5 10.0.0.2 22"}, "linux", False),
    ({"SSH_TTY": "/dev/pts/1", "BROWSER": "w3m"}, "linux", True),  # an explicit $BROWSER wins
    ({}, "darwin", True),
    ({"SSH_CONNECTION": "1 2 3 4"}, "darwin", False),
    ({"SSH_CLIENT": "10.0.0.1 50000 22", "DISPLAY": ":0"}, "linux", False),  # as the kernel rule
    ({}, "win32", True),
])
def test_can_open_browser(env: dict[str, str], platform: str, expected: bool) -> None:
    assert can_open_browser(env, platform) is expected


# -- AuthorizationCode's arguments (checked before any network) ---------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"prompt": print}, "prompt= is OpenID's prompt parameter"),
    ({"open_browser": "firefox"}, "open_browser= must be a callable"),
    ({"landing_page": 42}, "landing_page= must be"),
    ({"login_timeout": 0}, "login_timeout="),
    ({"redirect_port": 70000}, "redirect_port="),
    ({"issuer": None, "token_endpoint": TOKEN}, "authorization_endpoint="),
    ({"authorization_endpoint": "http://id.example.org/authorize"}, "plain http"),
])
def test_authorization_code_arguments(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {"issuer": ISSUER, "client_id": "cli", "store": None}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        AuthorizationCode(**args)


def test_authorization_code_defaults() -> None:
    source = AuthorizationCode(issuer=ISSUER, client_id="cli", store=None, interactive=False)
    assert source.scope == ("openid", "offline_access")
    assert source.grant_type == "authorization_code"
    assert not source.interactive
    assert AuthorizationCode(issuer=ISSUER, client_id="cli", store=None,
                             open_browser=lambda url: True).interactive
    assert type(AuthorizationCode.default_store()).__name__ == "FileStore"
