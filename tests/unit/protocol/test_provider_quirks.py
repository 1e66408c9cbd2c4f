"""Providers' quirks in the protocol core, stepped offline: errors by status, message joining,
comma-separated scopes, Entra ID's tenant template, and the response hooks' wrapper flow."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyturn.errors import (
    AccessDenied,
    AuthorizationPending,
    ConfigError,
    DiscoveryError,
    InvalidClient,
    InvalidGrant,
    InvalidIdToken,
    InvalidResponse,
    OAuthError,
    SlowDown,
    TransportError,
    UnauthorizedClient,
    oauth_error,
)
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.device import DEVICE_ENDPOINT, DeviceAuthorization, device_authorization_flow
from keyturn.protocol.grants import (
    GRANT_CLIENT_CREDENTIALS,
    TOKEN_ENDPOINT,
    parse_error_response,
    parse_token_response,
    token_flow,
)
from keyturn.protocol.hooks import ResponseHook, with_response_hooks
from keyturn.protocol.http import Flow, HttpRequest, HttpResponse, run_offline, send
from keyturn.protocol.idtoken import check_claims
from keyturn.protocol.metadata import ServerMetadata
from keyturn.protocol.tenants import document_names_issuer, iss_matches
from keyturn.token import Token

URL = "https://as.example/token"
JSON = {"content-type": "application/json"}
TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"
TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"


def _json(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, JSON, json.dumps(body).encode(), URL)


# -- errors by status -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["unauthorized_client", "invalid_client", "invalid_request",
                                  "server_error"])
def test_a_401_is_a_client_authentication_problem_whatever_the_code(code: str) -> None:
    error = parse_error_response(_json({"error": code, "error_description": "No."}, 401),
                                 "token endpoint")
    assert type(error) is InvalidClient
    assert error.error == code  # the server's own code is kept
    assert str(error) == (f"{code} from {URL}: No. The server refused the client's credentials "
                          "(HTTP 401): check client_id, the client secret or private key, and "
                          "that auth_method matches the method registered for this client.")


@pytest.mark.parametrize(("code", "cls"), [("invalid_grant", InvalidGrant),
                                           ("access_denied", AccessDenied),
                                           ("authorization_pending", AuthorizationPending),
                                           ("slow_down", SlowDown)])
def test_a_401_with_a_grant_code_keeps_its_class(code: str, cls: type[OAuthError]) -> None:
    assert type(parse_error_response(_json({"error": code}, 401), "token endpoint")) is cls


@pytest.mark.parametrize("body", [b"", b"<html>Unauthorized</html>", b'{"message": "nope"}'])
def test_a_401_without_an_oauth_body_is_invalid_client(body: bytes) -> None:
    error = parse_error_response(HttpResponse(401, {"content-type": "text/html"}, body, URL),
                                 "token endpoint")
    assert type(error) is InvalidClient
    assert error.error == "invalid_client" and error.error_description is None
    assert str(error).startswith(f"invalid_client from {URL}. The server refused the client's "
                                 "credentials (HTTP 401)")


def test_unauthorized_client_without_a_401_is_about_the_grant() -> None:
    error = parse_error_response(_json({"error": "unauthorized_client"}, 400), "token endpoint")
    assert type(error) is UnauthorizedClient
    assert str(error).endswith("Allow this grant type for the client at the authorization server.")


@pytest.mark.parametrize(("code", "cls"), [("incorrect_client_credentials", InvalidClient),
                                           ("device_flow_disabled", UnauthorizedClient),
                                           ("authorization_declined", AccessDenied),
                                           ("bad_verification_code", InvalidGrant),
                                           ("incorrect_device_code", InvalidGrant)])
def test_providers_own_codes_get_the_standard_class(code: str, cls: type[OAuthError]) -> None:
    with pytest.raises(cls) as info:
        parse_token_response(_json({"error": code}), now=0.0)
    assert info.value.error == code


# -- message joining --------------------------------------------------------------------------------


@pytest.mark.parametrize(("description", "joined"), [
    ("The flow is disabled for the client.", "The flow is disabled for the client. Allow"),
    ("Invalid client credentials", "Invalid client credentials. Allow"),
    ("Really?", "Really? Allow"),
    ("Stop!", "Stop! Allow"),
])
def test_one_full_stop_between_the_description_and_the_hint(description: str, joined: str) -> None:
    text = str(oauth_error("unauthorized_client", description, status=400))
    assert joined in text
    assert ".." not in text


def test_a_description_over_several_lines_is_one_line() -> None:
    text = str(oauth_error("invalid_client", "AADSTS7000215: Invalid client secret provided.\r\n"
                                             "Trace ID: x\r\nTimestamp: 2024-04-08 17:13:03Z"))
    assert "AADSTS7000215: Invalid client secret provided. Trace ID: x Timestamp: 2024-04-08 " \
           "17:13:03Z. Check client_id" in text


# -- scopes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("scope", "parsed"), [("repo,gist", ("repo", "gist")),
                                               ("repo, gist", ("repo", "gist")),
                                               ("openid profile", ("openid", "profile")),
                                               ("a a,b", ("a", "b"))])
def test_granted_scope_may_be_comma_separated(scope: str, parsed: tuple[str, ...]) -> None:
    assert parse_token_response(_json({"access_token": "t", "scope": scope}), now=0.0).scope == parsed


# -- Entra ID's tenant template -------------------------------------------------------------------


@pytest.mark.parametrize(("expected", "ok"), [
    ("https://login.microsoftonline.com/common/v2.0", True),
    ("https://login.microsoftonline.com/organizations/v2.0/", True),
    ("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", False),
    ("https://login.microsoftonline.com/consumers/v2.0", False),
    ("https://evil.example/common/v2.0", False),
    ("https://login.microsoftonline.com/common/v1.0", False),
])
def test_the_template_names_the_multi_tenant_issuers(expected: str, ok: bool) -> None:
    assert document_names_issuer(TEMPLATE, expected) is ok


def test_a_template_document_is_accepted_only_for_a_multi_tenant_issuer() -> None:
    doc = {"issuer": TEMPLATE, "token_endpoint": "https://login.microsoftonline.com/common/oauth2/v2.0/token"}
    metadata = ServerMetadata.from_document(
        doc, expected_issuer="https://login.microsoftonline.com/common/v2.0", url="https://x/")
    assert metadata.issuer == TEMPLATE
    with pytest.raises(DiscoveryError, match="is for issuer"):
        ServerMetadata.from_document(doc, expected_issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
                                     url="https://x/")


@pytest.mark.parametrize(("iss", "ok"), [
    (f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
    (f"https://login.microsoftonline.com/{TENANT.upper()}/v2.0", True),
    ("https://login.microsoftonline.com/contoso/v2.0", False),
    (f"https://login.microsoftonline.com/{TENANT}/v2.0/x", False),
    (f"https://login.microsoftonline.com/{TENANT}x/v2.0", False),
    (TEMPLATE, False),
    (None, False),
])
def test_iss_matches_the_template_with_a_guid_tenant(iss: object, ok: bool) -> None:
    assert iss_matches(TEMPLATE, iss) is ok


def test_id_token_claims_of_a_tenant_pass_the_template_issuer() -> None:
    claims = {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "aud": "app",
              "exp": 2000.0, "iat": 1000.0, "tid": TENANT,
              "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"}
    check_claims(claims, issuer=TEMPLATE, client_id="app", nonce=None, now=1500.0)
    with pytest.raises(InvalidIdToken, match="another issuer"):
        check_claims({**claims, "iss": "https://login.microsoftonline.com/contoso/v2.0"},
                     issuer=TEMPLATE, client_id="app", nonce=None, now=1500.0)
    # Any other issuer is matched exactly, as before.
    with pytest.raises(InvalidIdToken, match="another issuer"):
        check_claims({**claims, "iss": "https://as.example/"}, issuer="https://as.example",
                     client_id="app", nonce=None, now=1500.0)


# -- response hooks -----------------------------------------------------------------------------------


def _client_credentials(hook: ResponseHook | None) -> Flow[Token]:
    flow = token_flow(endpoint=URL, grant_type=GRANT_CLIENT_CREDENTIALS, params={},
                      client_auth=ClientAuth.create(client_id="c", client_secret="s"), now=0.0)
    return with_response_hooks(flow, {TOKEN_ENDPOINT: ("token_response_hook", hook)} if hook else {})


def test_the_hook_sees_the_answer_and_its_result_is_parsed() -> None:
    seen: list[dict[str, Any]] = []

    def hook(answer: dict[str, Any]) -> dict[str, Any]:
        seen.append(answer)
        return {"access_token": answer["data"]["token"], "expires_in": "60"}

    token = run_offline(_client_credentials(hook), {URL: _json({"data": {"token": "T"}})})
    assert seen == [{"data": {"token": "T"}}] and type(seen[0]) is dict
    assert token.access_token == "T" and token.expires_at == 60.0


def test_the_hook_sees_a_form_answer_as_a_dict() -> None:
    form = HttpResponse(200, {"content-type": "application/x-www-form-urlencoded"},
                        b"access_token=gho_1&scope=repo%2Cgist&token_type=bearer", URL)
    seen: list[dict[str, Any]] = []
    token = run_offline(_client_credentials(lambda a: seen.append(a) or a), {URL: form})
    assert seen == [{"access_token": "gho_1", "scope": "repo,gist", "token_type": "bearer"}]
    assert token.scope == ("repo", "gist")


def test_the_hook_is_not_given_error_statuses() -> None:
    def hook(answer: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not called")

    with pytest.raises(InvalidClient):
        run_offline(_client_credentials(hook), {URL: _json({"error": "invalid_client"}, 401)})


def test_without_a_hook_nothing_changes() -> None:
    token = run_offline(_client_credentials(None), {URL: _json({"access_token": "T"})})
    assert token.access_token == "T"


@pytest.mark.parametrize(("returned", "words"), [
    (["T"], "returned list, not a dict"),
    (None, "returned NoneType, not a dict"),
    ({"access_token": "T", "when": object()}, "returned a dict that is not JSON (TypeError"),
    ({"access_token": "T", "n": float("nan")}, "returned a dict that is not JSON (ValueError"),
])
def test_a_hook_returning_what_cannot_be_parsed_is_a_config_error(returned: Any, words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        run_offline(_client_credentials(lambda a: returned), {URL: _json({"access_token": "T"})})


def test_a_raising_hook_names_the_type_only() -> None:
    def hook(answer: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError(f"leaked {answer['access_token']}")

    with pytest.raises(ConfigError) as info:
        run_offline(_client_credentials(hook), {URL: _json({"access_token": "SECRET-AT"})})
    assert "raised RuntimeError on the token endpoint's answer" in str(info.value)
    assert "SECRET-AT" not in str(info.value)
    assert info.value.__context__ is None


def test_the_error_is_thrown_into_the_flow_which_may_clean_up() -> None:
    cleaned: list[str] = []

    def flow() -> Flow[str]:
        try:
            yield from send(HttpRequest("POST", URL, purpose=TOKEN_ENDPOINT))
        finally:
            cleaned.append("closed")
        return "never"

    hooked = with_response_hooks(flow(), {TOKEN_ENDPOINT: ("token_response_hook", lambda a: 1)})  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError):
        run_offline(hooked, {URL: _json({"access_token": "T"})})
    assert cleaned == ["closed"]


def test_what_the_driver_throws_in_reaches_the_flow() -> None:
    def flow() -> Flow[str]:
        try:
            yield from send(HttpRequest("POST", URL, purpose=TOKEN_ENDPOINT))
        except TransportError:
            return "handled"
        return "answered"

    hooked = with_response_hooks(flow(), {TOKEN_ENDPOINT: ("token_response_hook", lambda a: a)})
    assert next(hooked).url == URL  # type: ignore[union-attr]
    with pytest.raises(StopIteration) as stop:
        hooked.throw(TransportError("timed out"))
    assert stop.value.value == "handled"


def test_the_device_hook_applies_to_the_device_authorization_answer_only() -> None:
    machine = DeviceAuthorization(device_authorization_endpoint="https://as.example/device",
                                  token_endpoint=URL, client_auth=ClientAuth.create(client_id="c"))
    answer = HttpResponse(200, JSON, json.dumps({"result": {
        "device_code": "D", "user_code": "U", "verification_uri": "https://as.example/go",
        "expires_in": 60}}).encode(), "https://as.example/device")

    def lift(body: dict[str, Any]) -> dict[str, Any]:
        return dict(body["result"])

    flow = with_response_hooks(device_authorization_flow(machine, now=0.0),
                               {DEVICE_ENDPOINT: ("device_response_hook", lift)})
    verification = run_offline(flow, {"https://as.example/device": answer})
    assert verification.user_code == "U" and verification.verification_uri == "https://as.example/go"
    # Without the hook the same answer lacks the required members.
    machine = DeviceAuthorization(device_authorization_endpoint="https://as.example/device",
                                  token_endpoint=URL, client_auth=ClientAuth.create(client_id="c"))
    with pytest.raises(InvalidResponse, match="sent no device_code"):
        run_offline(device_authorization_flow(machine, now=0.0), {"https://as.example/device": answer})


# -- Globus other_tokens --------------------------------------------------------------------------------


def test_other_tokens_are_tokens() -> None:
    token = parse_token_response(_json({
        "access_token": "A", "resource_server": "auth.globus.org", "expires_in": 10,
        "other_tokens": [{"access_token": "B", "resource_server": "transfer.api.globus.org",
                          "expires_in": 20, "refresh_token": "RB", "scope": "s:all"}]}), now=100.0)
    (other,) = token.other_tokens
    assert other.access_token == "B" and other.refresh_token == "RB"
    assert other.expires_at == 120.0 and other.issued_at == 100.0 and other.scope == ("s:all",)
    assert other.extra["resource_server"] == "transfer.api.globus.org"


@pytest.mark.parametrize("value", ["x", [1], [{"access_token": ""}], {"access_token": "B"}])
def test_broken_other_tokens_fail_the_answer(value: Any) -> None:
    with pytest.raises(InvalidResponse):
        parse_token_response(_json({"access_token": "A", "other_tokens": value}), now=0.0)


# -- no token in a traceback with locals ------------------------------------------------------------


def test_a_raising_hook_leaves_no_token_in_the_traceback() -> None:
    from tests.support.tracebackcheck import assert_hidden, capture

    def hook(answer: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("authed_user")

    # Built, not written out: rich shows the source lines around each frame, this one's too.
    answer = {"access_token": "xoxb-" + "17653672481" * 4, "refresh_token": "xoxe-1-" + "My0xLT" * 8}
    # Only the response in the closure (its repr shows no body): the lambda's frame is rendered too.
    responses = {URL: _json(answer)}
    error = capture(lambda: run_offline(_client_credentials(hook), responses))
    assert isinstance(error, ConfigError)
    assert_hidden(error, list(answer.values()), frames="keyturn")


def test_broken_other_tokens_leave_no_token_in_the_traceback() -> None:
    from tests.support.tracebackcheck import assert_hidden, capture

    hidden = [f"Ag{name}" * 6 for name in ("Main", "Transfer", "Refresh")]  # built, as above
    body = {"access_token": hidden[0], "other_tokens": [
        {"access_token": hidden[1], "refresh_token": hidden[2], "expires_in": "soon"}]}
    response = _json(body)
    error = capture(lambda: parse_token_response(response, now=0.0))
    assert isinstance(error, InvalidResponse) and "expires_in='soon'" in str(error)
    assert_hidden(error, hidden, frames="keyturn")
