"""The providers people run, with their documented answers replayed byte for byte on 127.0.0.1.

Keycloak, Entra ID, Google, GitHub, Okta, Auth0, Globus and Slack cannot be reached from here:
each test runs a real grant of keyturn's (ClientCredentials, RefreshToken, DeviceCode with a
scripted approval sequence) over real HTTP against ``tests/support/replayserver.py``, which serves
the files of ``tests/integration/replays/`` (their README names each one's documentation), and
checks the Token, or the exact error class and message, and what keyturn sent.

The device logins wait for real the intervals the answers name, as a real login would; they run
once, synchronously, and the others run sync and async (``mode``). None of them is about the
interval (``test_github_slow_down_takes_the_interval_it_names`` is, offline, on the replayed
bytes), so their device answers name ``interval`` :data:`FAST` instead of the providers' 5 s
(``ReplayServer.reply(interval=)``, the only other change to a replayed body besides its origin):
the suite does not wait 5 s per poll.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keyturn import (
    AccessDenied,
    ClientCredentials,
    ConfigError,
    DeviceCode,
    DeviceVerification,
    InvalidClient,
    InvalidGrant,
    MemoryStore,
    OAuthError,
    RefreshToken,
)
from keyturn.errors import UnauthorizedClient
from tests.support.mode import Mode
from tests.support.replayserver import FORM, ReplayServer, replay_server

pytestmark = pytest.mark.timeout(90)

#: The device answers' interval in the device logins below (the providers' documents say 5).
FAST = 1


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with replay_server() as server:
        yield server


def _store() -> MemoryStore:
    return MemoryStore()


# -- Keycloak ----------------------------------------------------------------------------------------

KEYCLOAK = "https://keycloak.example.org"
KC_TOKEN = "/realms/demo/protocol/openid-connect/token"


def _keycloak(replay: ReplayServer) -> str:
    replay.script("GET", "/realms/demo/.well-known/openid-configuration",
                  replay.reply("keycloak", "openid-configuration.json", origin=KEYCLOAK))
    return f"{replay.url}/realms/demo"


def test_keycloak_wrong_secret_is_a_client_authentication_problem(replay: ReplayServer,
                                                                  mode: Mode) -> None:
    issuer = _keycloak(replay)
    replay.script("POST", KC_TOKEN, replay.reply("keycloak", "wrong-secret.json", 401))
    source = ClientCredentials(issuer=issuer, client_id="reports", client_secret="not-the-secret",
                               allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidClient) as info:
        mode.token(source)
    error = info.value
    # The server's own code and words are kept; the class and the hint are client authentication's.
    assert error.error == "unauthorized_client"
    assert error.error_description == "Invalid client or Invalid client credentials"
    assert error.status == 401
    assert str(error) == (
        f"unauthorized_client from {replay.url}{KC_TOKEN}: Invalid client or Invalid client "
        "credentials. The server refused the client's credentials (HTTP 401): check client_id, "
        "the client secret or private key, and that auth_method matches the method registered "
        "for this client."
    )
    assert "Allow this grant type" not in str(error)
    assert "not-the-secret" not in str(error) and "not-the-secret" not in repr(error)
    # The realm's discovery document named the token endpoint; the secret went in Basic.
    sent = replay.requests_to(KC_TOKEN)[-1]
    assert sent.headers["authorization"].startswith("Basic ")
    assert sent.form["grant_type"] == "client_credentials"


def test_keycloak_unknown_client(replay: ReplayServer, mode: Mode) -> None:
    issuer = _keycloak(replay)
    replay.script("POST", KC_TOKEN, replay.reply("keycloak", "unknown-client.json", 401))
    source = ClientCredentials(issuer=issuer, client_id="no-such-client", client_secret="s",
                               allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidClient) as info:
        mode.token(source)
    assert info.value.error == "invalid_client"
    assert str(info.value).startswith(
        f"invalid_client from {replay.url}{KC_TOKEN}: Invalid client or Invalid client "
        "credentials. The server refused the client's credentials (HTTP 401): check client_id")


def test_keycloak_device_grant_disabled(replay: ReplayServer) -> None:
    issuer = _keycloak(replay)
    device = "/realms/demo/protocol/openid-connect/auth/device"
    replay.script("POST", device, replay.reply("keycloak", "device-disabled.json", 400))
    shown: list[DeviceVerification] = []
    source = DeviceCode(issuer=issuer, client_id="cli", prompt=shown.append,
                        allow_insecure_http=True, store=_store())
    with pytest.raises(UnauthorizedClient) as info:
        source.get_token()
    # One full stop between the server's sentence and keyturn's hint, not "client.. Allow".
    assert str(info.value) == (
        f"unauthorized_client from {replay.url}{device}: Client is not allowed to initiate OAuth "
        "2.0 Device Authorization Grant. The flow is disabled for the client. Allow this grant "
        "type for the client at the authorization server."
    )
    assert ".." not in str(info.value)
    assert shown == []


def test_keycloak_offline_token_never_expires_its_refresh_token(replay: ReplayServer,
                                                                mode: Mode) -> None:
    issuer = _keycloak(replay)
    replay.script("POST", KC_TOKEN, replay.reply("keycloak", "token-offline.json"),
                  replay.reply("keycloak", "token-refresh.json"))
    source = RefreshToken(issuer=issuer, client_id="cli", refresh_token="offline-seed",
                          scope="offline_access", allow_insecure_http=True, store=_store())
    before = time.time()
    offline = mode.token(source)
    # refresh_expires_in: 0 is Keycloak's "this offline token does not expire": no relogin date.
    assert offline.refresh_expires_at is None
    assert offline.refresh_token is not None and offline.refresh_token.endswith(".b2ZmbGluZQ")
    assert offline.scope == ("profile", "email", "offline_access")
    assert offline.expires_at is not None and before + 300 <= offline.expires_at <= time.time() + 300
    assert offline.extra["session_state"] == "5d8a4c5e-2c2b-4a57-9d4d-0c1f2a3b4c5d"
    # An online session's refresh token does expire: 1800 s after the answer.
    mode.invalidate(source, offline.access_token)
    online = mode.token(source)
    assert online.refresh_expires_at is not None
    assert before + 1800 <= online.refresh_expires_at <= time.time() + 1800
    (first, second) = replay.requests_to(KC_TOKEN)[-2:]
    assert first.form["refresh_token"] == "offline-seed"
    assert second.form["refresh_token"] == offline.refresh_token


# -- Microsoft Entra ID --------------------------------------------------------------------------

ENTRA = "https://login.microsoftonline.com"


def test_entra_v1_expires_in_as_a_string(replay: ReplayServer, mode: Mode) -> None:
    path = "/contoso.onmicrosoft.com/oauth2/token"
    replay.script("POST", path, replay.reply("entra", "token-v1-client-credentials.json"))
    source = ClientCredentials(token_endpoint=replay.url + path, client_id="00001111-aaaa",
                               client_secret="s", auth_method="client_secret_post",
                               extra_params={"resource": "https://graph.microsoft.com"},
                               allow_insecure_http=True, store=_store())
    before = time.time()
    token = mode.token(source)
    assert token.expires_at is not None and before + 3599 <= token.expires_at <= time.time() + 3599
    assert token.extra["ext_expires_in"] == "3599"
    assert token.extra["resource"] == "https://graph.microsoft.com"
    assert replay.requests_to(path)[-1].form["resource"] == "https://graph.microsoft.com"


def test_entra_invalid_secret_reads_as_one_message(replay: ReplayServer, mode: Mode) -> None:
    path = "/contoso.onmicrosoft.com/oauth2/v2.0/token"
    replay.script("POST", path, replay.reply("entra", "invalid-client-secret.json", 401))
    source = ClientCredentials(token_endpoint=replay.url + path, client_id="00001111-aaaa",
                               client_secret="wrong", auth_method="client_secret_post",
                               scope="https://graph.microsoft.com/.default",
                               allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidClient) as info:
        mode.token(source)
    error = info.value
    assert error.error_description is not None and error.error_description.startswith(
        "AADSTS7000215: Invalid client secret provided.")
    assert "\r\n" in error.error_description  # the server's field as it came
    text = str(error)
    assert "\r" not in text and "\n" not in text  # the message on one line
    assert "for a secret added to app '00001111-aaaa-2222-bbbb-3333cccc4444'. Trace ID: " in text
    assert text.endswith("Timestamp: 2024-04-08 17:13:03Z. The server refused the client's "
                         "credentials (HTTP 401): check client_id, the client secret or private "
                         "key, and that auth_method matches the method registered for this client.")
    assert error.error_uri == "https://login.microsoftonline.com/error?code=7000215"


def test_entra_invalid_credentials_is_invalid_grant(replay: ReplayServer) -> None:
    path = "/contoso.onmicrosoft.com/oauth2/v2.0/token"
    replay.script("POST", path, replay.reply("entra", "invalid-credentials.json", 400))
    source = RefreshToken(token_endpoint=replay.url + path, client_id="00001111-aaaa",
                          refresh_token="rt", allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidGrant) as info:
        source.get_token()
    assert "AADSTS50126: Error validating credentials due to invalid username or password. " \
           "Trace ID:" in str(info.value)


def test_entra_multi_tenant_device_login(replay: ReplayServer) -> None:
    """/common's document has the {tenantid} issuer; the device answer's ``message`` is kept;
    AADSTS70016 (authorization_pending, HTTP 400) is polled through."""
    replay.script("GET", "/common/v2.0/.well-known/openid-configuration",
                  replay.reply("entra", "openid-configuration-common.json", origin=ENTRA))
    replay.script("POST", "/common/oauth2/v2.0/devicecode", replay.reply("entra", "devicecode.json",
                                                                            interval=FAST))
    replay.script("POST", "/common/oauth2/v2.0/token",
                  replay.reply("entra", "authorization-pending.json", 400),
                  replay.reply("entra", "token-device.json"))
    shown: list[DeviceVerification] = []
    source = DeviceCode(issuer=f"{replay.url}/common/v2.0", client_id="00001111-aaaa",
                        scope="User.Read offline_access", prompt=shown.append,
                        allow_insecure_http=True, store=_store())
    token = source.get_token()
    (verification,) = shown
    assert verification.verification_uri == "https://microsoft.com/devicelogin"
    assert verification.user_code == "FHRKZ7NXD"
    assert verification.message == ("To sign in, use a web browser to open the page "
                                    "https://microsoft.com/devicelogin and enter the code "
                                    "FHRKZ7NXD to authenticate.")
    assert token.scope == ("User.Read", "profile", "openid", "email")
    assert token.refresh_token is not None and token.refresh_token.startswith("AwABAAAAvPM1KaPl")
    assert token.extra["ext_expires_in"] == 3599
    polls = replay.requests_to("/common/oauth2/v2.0/token")
    assert len(polls) == 2
    assert polls[0].form["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"


# -- Google ------------------------------------------------------------------------------------------


def test_google_device_login_with_verification_url(replay: ReplayServer) -> None:
    replay.script("POST", "/device/code", replay.reply("google", "device-code.json",
                                                      interval=FAST))
    # Google answers a pending login with HTTP 428.
    replay.script("POST", "/token", replay.reply("google", "authorization-pending.json", 428),
                  replay.reply("google", "token.json"))
    shown: list[DeviceVerification] = []
    source = DeviceCode(token_endpoint=f"{replay.url}/token",
                        device_authorization_endpoint=f"{replay.url}/device/code",
                        client_id="1234.apps.googleusercontent.com", client_secret="GOCSPX-x",
                        auth_method="client_secret_post",
                        scope="https://www.googleapis.com/auth/drive.file", prompt=shown.append,
                        allow_insecure_http=True, store=_store())
    token = source.get_token()
    (verification,) = shown
    assert verification.verification_uri == "https://www.google.com/device"  # verification_url
    assert verification.user_code == "GQVQ-JKEC"
    assert token.access_token == "1/fFAGRNJru1FTz70BzhT3Zg"
    assert token.refresh_token == "1/xEoDL4iW3cxlI7yDbSRFYNG01kVKM2C-259HOF2aQbI"
    assert len(replay.requests_to("/token")) == 2


def test_google_refresh_keeps_the_refresh_token(replay: ReplayServer, mode: Mode) -> None:
    """Google does not rotate: its refresh answer has no refresh_token, and the old one stays."""
    replay.script("POST", "/token", replay.reply("google", "refresh.json"))
    seed = "1/xEoDL4iW3cxlI7yDbSRFYNG01kVKM2C-259HOF2aQbI"
    source = RefreshToken(token_endpoint=f"{replay.url}/token", client_id="1234.apps",
                          client_secret="GOCSPX-x", refresh_token=seed,
                          allow_insecure_http=True, store=_store())
    first = mode.token(source)
    assert first.access_token == "1/fFAGRNJru1FTz70BzhT3Zg"
    assert first.refresh_token == seed
    mode.invalidate(source, first.access_token)
    second = mode.token(source)
    assert second.refresh_token == seed
    assert [r.form["refresh_token"] for r in replay.requests_to("/token")][-2:] == [seed, seed]


def test_google_revoked_refresh_token(replay: ReplayServer) -> None:
    replay.script("POST", "/token", replay.reply("google", "invalid-grant.json", 400))
    source = RefreshToken(token_endpoint=f"{replay.url}/token", client_id="1234.apps",
                          refresh_token="1/old", allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidGrant) as info:
        source.get_token()
    # Google's sentence ends with a full stop: keyturn's hint follows after one space.
    assert str(info.value) == (f"invalid_grant from {replay.url}/token: Token has been expired or "
                               "revoked. The grant or refresh token is no longer valid: log in "
                               "again to get a new one.")


# -- GitHub ------------------------------------------------------------------------------------------


def test_github_device_login_form_answers_errors_with_200_and_slow_down(
        replay: ReplayServer) -> None:
    replay.script("POST", "/login/device/code", replay.reply("github", "device-code.json",
                                                            interval=FAST))
    # slow_down names the old interval plus RFC 8628's 5 s, as GitHub's documented 10 does after 5.
    replay.script("POST", "/login/oauth/access_token",
                  replay.reply("github", "authorization-pending.txt", content_type=FORM),
                  replay.reply("github", "slow-down.json", interval=FAST + 5),
                  replay.reply("github", "token.txt", content_type=FORM))
    shown: list[DeviceVerification] = []
    source = DeviceCode(token_endpoint=f"{replay.url}/login/oauth/access_token",
                        device_authorization_endpoint=f"{replay.url}/login/device/code",
                        client_id="Iv1.b507a08c87ecfe98", scope="repo gist", prompt=shown.append,
                        allow_insecure_http=True, store=_store())
    token = source.get_token()
    assert shown[0].verification_uri == "https://github.com/login/device"
    assert token.access_token == "gho_16C7e42F292c6912E7710c838347Ae178B4a"
    assert token.scope == ("repo", "gist")  # "repo,gist"
    assert token.authorization() == "Bearer gho_16C7e42F292c6912E7710c838347Ae178B4a"
    polls = replay.requests_to("/login/oauth/access_token")
    assert len(polls) == 3  # pending (HTTP 200) and slow_down (HTTP 200) were polled through
    for request in [*replay.requests_to("/login/device/code"), *polls]:
        assert request.headers["accept"] == "application/json"
    # The token is kept: asking again sends nothing more.
    assert source.get_token().access_token == token.access_token
    assert len(replay.requests_to("/login/oauth/access_token")) == 3


def test_github_slow_down_takes_the_interval_it_names() -> None:
    """GitHub's slow_down names the new interval: the poller takes it when it is longer than
    RFC 8628's 5 more seconds (stepped offline, on the replayed bytes)."""
    from keyturn.protocol.client_auth import ClientAuth
    from keyturn.protocol.device import DeviceAuthorization
    from keyturn.protocol.http import HttpResponse
    from tests.support.replayserver import REPLAYS

    machine = DeviceAuthorization(device_authorization_endpoint="https://github.com/login/device/code",
                                  token_endpoint="https://github.com/login/oauth/access_token",
                                  client_auth=ClientAuth.create(client_id="Iv1.b507a08c87ecfe98"))
    machine.authorization_request(0.0)
    machine.receive_authorization(HttpResponse(200, {"content-type": "application/json"},
                                               (REPLAYS / "github" / "device-code.json").read_bytes()),
                                  0.0)
    assert machine.interval == 5
    machine.poll_request(5.0)
    slow = (REPLAYS / "github" / "slow-down.json").read_bytes().replace(b'"interval":10',
                                                                         b'"interval":30')
    assert machine.receive_poll(HttpResponse(200, {"content-type": "application/json"}, slow),
                                5.0) is None
    assert machine.interval == 30
    assert machine.next_poll_at == 35.0
    # Its documented 10 is what RFC 8628's step gives anyway: 5 + 5.
    machine.poll_request(35.0)
    machine.receive_poll(HttpResponse(200, {"content-type": "application/json"},
                                      (REPLAYS / "github" / "slow-down.json").read_bytes()), 35.0)
    assert machine.interval == 35


def test_github_incorrect_client_credentials_with_http_200(replay: ReplayServer) -> None:
    replay.script("POST", "/login/oauth/access_token",
                  replay.reply("github", "incorrect-client-credentials.json"))
    source = RefreshToken(token_endpoint=f"{replay.url}/login/oauth/access_token",
                          client_id="Iv1.b507a08c87ecfe98", client_secret="wrong",
                          refresh_token="ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
                          allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidClient) as info:
        source.get_token()
    assert info.value.error == "incorrect_client_credentials"
    assert info.value.status == 200
    assert "The client_id and/or client_secret passed are incorrect. Check client_id" in str(info.value)


# -- Okta and Auth0 ------------------------------------------------------------------------------------


def test_okta_default_authorization_server(replay: ReplayServer, mode: Mode) -> None:
    replay.script("GET", "/oauth2/default/.well-known/openid-configuration",
                  replay.reply("okta", "openid-configuration.json",
                               origin="https://dev-133337.okta.com"))
    replay.script("POST", "/oauth2/default/v1/token", replay.reply("okta", "token.json"))
    source = ClientCredentials(issuer=f"{replay.url}/oauth2/default", client_id="0oa1b2c3",
                               client_secret="s", scope="customScope", allow_insecure_http=True,
                               store=_store())
    token = mode.token(source)
    assert token.scope == ("customScope",)
    sent = replay.requests_to("/oauth2/default/v1/token")[-1]
    assert sent.form["scope"] == "customScope"


def test_okta_invalid_client(replay: ReplayServer) -> None:
    replay.script("POST", "/oauth2/default/v1/token", replay.reply("okta", "invalid-client.json", 401))
    source = ClientCredentials(token_endpoint=f"{replay.url}/oauth2/default/v1/token",
                               client_id="0oa1b2c3", client_secret="s", allow_insecure_http=True,
                               store=_store())
    with pytest.raises(InvalidClient, match=r"is invalid\. The server refused the client's "):
        source.get_token()


def _auth0(replay: ReplayServer) -> str:
    replay.script("GET", "/.well-known/openid-configuration",
                  replay.reply("auth0", "openid-configuration.json",
                               origin="https://dev-example.us.auth0.com"))
    return f"{replay.url}/"  # Auth0's issuer ends with a slash


def test_auth0_sends_the_audience(replay: ReplayServer, mode: Mode) -> None:
    issuer = _auth0(replay)
    replay.script("POST", "/oauth/token", replay.reply("auth0", "token.json"))
    source = ClientCredentials(issuer=issuer, client_id="YOUR_CLIENT_ID", client_secret="s",
                               audience="https://api.example.com", allow_insecure_http=True,
                               store=_store())
    token = mode.token(source)
    assert token.access_token == "eyJz93a...k4laUWw"
    sent = replay.requests_to("/oauth/token")[-1]
    assert sent.form["audience"] == "https://api.example.com"


def test_auth0_client_without_a_grant_for_the_api(replay: ReplayServer) -> None:
    issuer = _auth0(replay)
    replay.script("POST", "/oauth/token", replay.reply("auth0", "access-denied.json", 403))
    source = ClientCredentials(issuer=issuer, client_id="YOUR_CLIENT_ID", client_secret="s",
                               audience="https://api.example.com", allow_insecure_http=True,
                               store=_store())
    with pytest.raises(AccessDenied) as info:
        source.get_token()
    assert str(info.value) == (
        f'access_denied from {replay.url}/oauth/token: Client is not authorized to access '
        '"https://api.example.com". You need to create a "client-grant" associated to this API. '
        "See: https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants. The request was "
        "refused: the person declined the login, or the client is not allowed this access "
        "(scope, audience) at the authorization server."
    )


def test_auth0_invalid_refresh_token(replay: ReplayServer) -> None:
    issuer = _auth0(replay)
    replay.script("POST", "/oauth/token", replay.reply("auth0", "invalid-refresh-token.json", 403))
    source = RefreshToken(issuer=issuer, client_id="YOUR_CLIENT_ID", refresh_token="v1.old",
                          allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidGrant) as info:
        source.get_token()
    assert info.value.status == 403
    assert str(info.value) == (f"invalid_grant from {replay.url}/oauth/token: Unknown or invalid "
                               "refresh token. The grant or refresh token is no longer valid: log "
                               "in again to get a new one.")


# -- Globus Auth -------------------------------------------------------------------------------------


def test_globus_other_tokens(replay: ReplayServer, mode: Mode) -> None:
    replay.script("POST", "/v2/oauth2/token", replay.reply("globus", "token.json"),
                  replay.reply("globus", "refresh.json"))
    store = _store()
    source = RefreshToken(token_endpoint=f"{replay.url}/v2/oauth2/token", client_id="ddb59aef",
                          refresh_token="AgDk-seed", allow_insecure_http=True, store=store)
    before = time.time()
    token = mode.token(source)
    assert token.extra["resource_server"] == "auth.globus.org"
    (transfer,) = token.other_tokens
    assert transfer.extra["resource_server"] == "transfer.api.globus.org"
    assert transfer.scope == ("urn:globus:auth:scope:transfer.api.globus.org:all",)
    assert transfer.access_token.startswith("AgmQdD0gyzgV3bO7")
    assert transfer.refresh_token is not None and transfer.refresh_token.startswith("AgNvYwzb")
    assert transfer.expires_at is not None and transfer.expires_at >= before + 172800
    assert transfer.issued_at == token.issued_at
    # Kept as the answer gave it, so a store keeps it and a saved login still has it.
    again = type(token).from_record(token.to_record())
    assert [t.access_token for t in again.other_tokens] == [transfer.access_token]
    assert "AgmQdD0gyzgV3bO7" not in repr(token) and "AgmQdD0gyzgV3bO7" not in repr(transfer)

    # The refresh: Globus answers with the one resource server's token and "other_tokens": [].
    mode.invalidate(source, token.access_token)
    refreshed = mode.token(source)
    sent = replay.requests_to("/v2/oauth2/token")
    assert [r.form["grant_type"] for r in sent] == ["refresh_token", "refresh_token"]
    assert sent[1].form["refresh_token"] == token.refresh_token
    assert refreshed.access_token.startswith("AgJ0m6wQbO1N8vXk")
    assert refreshed.refresh_token == token.refresh_token  # not rotated: the one before is kept
    assert refreshed.other_tokens == (transfer,)
    # In the store too: another process (another source on the same store) has them.
    saved = source.saved_token()
    assert saved is not None and saved.other_tokens == (transfer,)
    other = RefreshToken(token_endpoint=f"{replay.url}/v2/oauth2/token", client_id="ddb59aef",
                         refresh_token="AgDk-seed", allow_insecure_http=True, store=store)
    assert mode.token(other).other_tokens == (transfer,)
    assert len(replay.requests_to("/v2/oauth2/token")) == 2  # from the store, no third request


def test_a_token_without_other_tokens_has_none(replay: ReplayServer) -> None:
    replay.script("POST", "/oauth/token", replay.reply("auth0", "token.json"))
    source = ClientCredentials(token_endpoint=f"{replay.url}/oauth/token", client_id="c",
                               client_secret="s", allow_insecure_http=True, store=_store())
    assert source.get_token().other_tokens == ()


# -- Slack, through token_response_hook ----------------------------------------------------------------


def slack_user_token(answer: dict[str, Any]) -> dict[str, Any]:
    """Slack's oauth.v2.access nests the user token in ``authed_user`` (docs/providers.md)."""
    user = answer.get("authed_user")
    if not isinstance(user, dict) or "access_token" not in user:
        return answer  # an error ({"ok": false, ...}) or a bot-only answer: as it is
    # Slack's token_type "user" is no HTTP scheme: its Web API takes the token as Bearer.
    return {**user, "token_type": "Bearer"}


def test_slack_hook_lifts_the_user_token(replay: ReplayServer, mode: Mode) -> None:
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "oauth-v2-access.json"))
    source = RefreshToken(token_endpoint=f"{replay.url}/api/oauth.v2.access",
                          client_id="2141029472.691202649728", client_secret="s", refresh_token="xoxe-1-seed",
                          token_response_hook=slack_user_token, allow_insecure_http=True,
                          store=_store())
    token = mode.token(source)
    assert token.access_token == "xoxp-1234"
    assert token.authorization() == "Bearer xoxp-1234"
    assert token.scope == ("chat:write",)
    assert token.extra["id"] == "U1234"
    assert "xoxb" not in str(token.extra)  # the bot token was not what the hook returned


def test_without_the_hook_slack_gives_the_bot_token(replay: ReplayServer) -> None:
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "oauth-v2-access.json"))
    source = RefreshToken(token_endpoint=f"{replay.url}/api/oauth.v2.access", client_id="2141",
                          refresh_token="xoxe-1-seed", allow_insecure_http=True, store=_store())
    token = source.get_token()
    assert token.access_token.startswith("xoxb-")
    assert token.scope == ("commands", "incoming-webhook")


def test_slack_error_answer_passes_the_hook_unchanged(replay: ReplayServer) -> None:
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "invalid-code.json"))
    source = RefreshToken(token_endpoint=f"{replay.url}/api/oauth.v2.access", client_id="2141",
                          refresh_token="xoxe-1-seed", token_response_hook=slack_user_token,
                          allow_insecure_http=True, store=_store())
    with pytest.raises(OAuthError) as info:
        source.get_token()
    assert info.value.error == "invalid_code"
    assert info.value.status == 200


def test_a_hook_that_raises_is_named(replay: ReplayServer, mode: Mode) -> None:
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "oauth-v2-access.json"))

    def lift(answer: dict[str, Any]) -> dict[str, Any]:
        return dict(answer["user"])

    source = RefreshToken(token_endpoint=f"{replay.url}/api/oauth.v2.access", client_id="2141",
                          refresh_token="xoxe-1-seed", token_response_hook=lift,
                          allow_insecure_http=True, store=_store())
    with pytest.raises(ConfigError) as info:
        mode.token(source)
    text = str(info.value)
    assert text.startswith("token_response_hook test_a_hook_that_raises_is_named.<locals>.lift "
                           "(tests.integration.test_provider_replays) raised KeyError('user') on "
                           "the token endpoint's answer")
    assert "xoxp-1234" not in text and "xoxb-" not in text
    # Not chained to the hook's KeyError: the hook's frame holds the answer, tokens and all.
    assert info.value.__cause__ is None and info.value.__context__ is None


def _rotated_by_keycloak(replay: ReplayServer) -> str:
    replay.script("POST", KC_TOKEN, replay.reply("keycloak", "token-refresh.json"))
    return str(json.loads(replay.body("keycloak", "token-refresh.json"))["refresh_token"])


def test_a_hook_that_raises_on_a_rotating_refresh_keeps_the_new_refresh_token(
        replay: ReplayServer, mode: Mode) -> None:
    """The server has spent the refresh token and answered a new one: a hook that fails on the
    answer ends the call, and the new refresh token is in the store all the same."""
    rotated = _rotated_by_keycloak(replay)
    store = _store()

    def lift(answer: dict[str, Any]) -> dict[str, Any]:
        return dict(answer["authed_user"])

    endpoint = f"{replay.url}{KC_TOKEN}"
    source = RefreshToken(token_endpoint=endpoint, client_id="cli", refresh_token="kc-seed",
                          token_response_hook=lift, allow_insecure_http=True, store=store)
    with pytest.raises(ConfigError, match=r"^token_response_hook test_a_hook_that_raises_on_a_"
                                          r"rotating_refresh_keeps_the_new_refresh_token\.<locals>"
                                          r"\.lift \(tests\.integration\.test_provider_replays\) "
                                          r"raised KeyError\('authed_user'\)"):
        mode.token(source)
    saved = source.saved_token()
    assert saved is not None and saved.refresh_token == rotated
    assert saved.access_token == ""  # the answer's access token was never checked: not served
    # With the hook fixed, the next call refreshes with the rotated token, not the spent seed.
    fixed = RefreshToken(token_endpoint=endpoint, client_id="cli", refresh_token="kc-seed",
                         allow_insecure_http=True, store=store)
    assert mode.token(fixed).access_token.endswith(".b25saW5l")
    assert [r.form["refresh_token"] for r in replay.requests_to(KC_TOKEN)] == ["kc-seed", rotated]


def test_a_hook_that_raises_on_the_approved_device_poll_keeps_the_login(
        replay: ReplayServer) -> None:
    """The device code is spent once the poll is answered with the tokens: their refresh token
    is kept though the hook fails, and the next call refreshes instead of a new login."""
    replay.script("POST", "/common/oauth2/v2.0/devicecode", replay.reply("entra", "devicecode.json",
                                                                            interval=FAST))
    replay.script("POST", "/common/oauth2/v2.0/token", replay.reply("entra", "token-device.json"))
    refresh = json.loads(replay.body("entra", "token-device.json"))["refresh_token"]
    shown: list[DeviceVerification] = []

    def lift(answer: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("authed_user")

    source = DeviceCode(token_endpoint=f"{replay.url}/common/oauth2/v2.0/token",
                        device_authorization_endpoint=f"{replay.url}/common/oauth2/v2.0/devicecode",
                        client_id="00001111-aaaa", prompt=shown.append, token_response_hook=lift,
                        allow_insecure_http=True, store=_store())
    with pytest.raises(ConfigError, match=r"token_response_hook .*lift .* raised "
                                          r"KeyError\('authed_user'\) on the token endpoint's"):
        source.get_token()
    assert len(shown) == 1  # the login was shown and approved (the poll's answer is the tokens)
    saved = source.saved_token()
    assert saved is not None and saved.refresh_token == refresh and saved.access_token == ""


def test_a_hook_that_returns_no_dict(replay: ReplayServer) -> None:
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "oauth-v2-access.json"))
    def token_only(answer: dict[str, Any]) -> dict[str, Any]:
        return answer["authed_user"]["access_token"]  # type: ignore[no-any-return]

    source = RefreshToken(token_endpoint=f"{replay.url}/api/oauth.v2.access", client_id="2141",
                          refresh_token="xoxe-1-seed", token_response_hook=token_only,
                          allow_insecure_http=True, store=_store())
    with pytest.raises(ConfigError, match=r"token_response_hook test_a_hook_that_returns_no_dict\."
                                          r"<locals>\.token_only \(tests\.integration\."
                                          r"test_provider_replays\) returned str, not a dict"):
        source.get_token()


def test_device_response_hook_errors_are_named(replay: ReplayServer) -> None:
    replay.script("POST", "/common/oauth2/v2.0/devicecode", replay.reply("entra", "devicecode.json"))
    shown: list[DeviceVerification] = []

    def broken(answer: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"cannot use {answer['device_code']}")

    source = DeviceCode(token_endpoint=f"{replay.url}/common/oauth2/v2.0/token",
                        device_authorization_endpoint=f"{replay.url}/common/oauth2/v2.0/devicecode",
                        client_id="00001111-aaaa", prompt=shown.append, device_response_hook=broken,
                        allow_insecure_http=True, store=_store())
    with pytest.raises(ConfigError) as info:
        source.get_token()
    assert str(info.value) == (
        "device_response_hook test_device_response_hook_errors_are_named.<locals>.broken "
        "(tests.integration.test_provider_replays) raised ValueError on the device authorization "
        "endpoint's answer: fix the hook (it is given the answer as a dict and must return a dict)")
    assert "FAQABAAEAAAAm" not in str(info.value)  # the device code the hook put in its message
    assert shown == []


def test_device_response_hook_rewrites_the_answer(replay: ReplayServer) -> None:
    """The hook's result is what is checked: here it shows Entra ID's own instructions as the
    complete URI would be (a caller's choice, to show that the hook's answer is the one used)."""
    replay.script("POST", "/common/oauth2/v2.0/devicecode", replay.reply("entra", "devicecode.json",
                                                                            interval=FAST))
    replay.script("POST", "/common/oauth2/v2.0/token",
                  replay.reply("entra", "invalid-client-secret.json", 401))
    shown: list[DeviceVerification] = []
    seen: list[dict[str, Any]] = []

    def complete(answer: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(answer))
        return {**answer, "verification_uri_complete":
                f"{answer['verification_uri']}?otc={answer['user_code']}"}

    source = DeviceCode(token_endpoint=f"{replay.url}/common/oauth2/v2.0/token",
                        device_authorization_endpoint=f"{replay.url}/common/oauth2/v2.0/devicecode",
                        client_id="00001111-aaaa", prompt=shown.append, device_response_hook=complete,
                        allow_insecure_http=True, store=_store())
    with pytest.raises(InvalidClient):
        source.get_token()  # the first poll (after FAST s) is refused: enough to see the prompt
    assert seen[0]["message"].startswith("To sign in")
    assert shown[0].verification_uri_complete == "https://microsoft.com/devicelogin?otc=FHRKZ7NXD"


def test_a_hook_that_is_not_callable_is_refused() -> None:
    with pytest.raises(ConfigError, match="token_response_hook= must be a callable"):
        ClientCredentials(token_endpoint="https://as.example/token", client_id="c",
                          client_secret="s", token_response_hook="slack")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="device_response_hook= must be a callable"):
        DeviceCode(token_endpoint="https://as.example/token", client_id="c",
                   device_authorization_endpoint="https://as.example/device",
                   device_response_hook=42)  # type: ignore[arg-type]


def test_the_providers_doc_example_runs(replay: ReplayServer, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "providers.md"
    (block,) = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    replay.script("POST", "/api/oauth.v2.access", replay.reply("slack", "oauth-v2-access.json"))
    monkeypatch.setenv("SLACK_TOKEN_ENDPOINT", f"{replay.url}/api/oauth.v2.access")
    monkeypatch.setenv("SLACK_CLIENT_ID", "2141029472.691202649728")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "3ee99c71a4f2e4d3b0d2bd1e2bde8a43")
    monkeypatch.setenv("SLACK_REFRESH_TOKEN", "xoxe-1-seed")
    namespace: dict[str, Any] = {"__name__": "providers_doc"}
    exec(compile(block, "docs/providers.md", "exec"), namespace)
    assert capsys.readouterr().out == "('chat:write',) U1234\n"
    sent = replay.requests_to("/api/oauth.v2.access")[-1]
    assert sent.headers["authorization"].startswith("Basic ")  # the secret, not in the body
    namespace["source"].close()
