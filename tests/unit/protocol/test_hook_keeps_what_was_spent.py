"""What a server gave is kept when a response hook fails on it, and Globus Auth's other tokens
outlive a refresh: the wrapper flow of keyturn.protocol.hooks stepped offline, and the keeping
rules of keyturn._keeping (successor, pending) on the tokens those flows yield."""

from __future__ import annotations

import json
from typing import Any

import pytest

from keyturn._keeping import pending, successor
from keyturn.errors import ConfigError
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.grants import (
    GRANT_CLIENT_CREDENTIALS,
    GRANT_DEVICE_CODE,
    GRANT_REFRESH_TOKEN,
    TOKEN_ENDPOINT,
    parse_token_response,
    token_flow,
)
from keyturn.protocol.hooks import with_response_hooks
from keyturn.protocol.http import Effect, Flow, HttpRequest, HttpResponse, Received
from keyturn.token import Token

URL = "https://as.example/token"
ROTATED = {"access_token": "AT-2", "token_type": "Bearer", "expires_in": 300,
           "refresh_token": "RT-2-ROTATED"}


def _answer(body: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(body).encode(), URL)


def _broken(answer: dict[str, Any]) -> dict[str, Any]:
    return {"access_token": answer["authed_user"]["access_token"]}  # not this answer's shape


def _hooked(grant_type: str, *, idempotent: bool) -> Flow[Token]:
    params = {"refresh_token": "RT-1"} if grant_type == GRANT_REFRESH_TOKEN else {}
    flow = token_flow(endpoint=URL, grant_type=grant_type, params=params,
                      client_auth=ClientAuth.create(client_id="c"), now=100.0,
                      idempotent=idempotent)
    return with_response_hooks(flow, {TOKEN_ENDPOINT: ("token_response_hook", _broken)})


def _steps(flow: Flow[Token], answer: HttpResponse) -> tuple[list[Effect], ConfigError]:
    """The effects the flow yields after the token endpoint's ``answer``, and how it ends."""
    request = next(flow)
    assert isinstance(request, HttpRequest) and request.purpose == TOKEN_ENDPOINT
    effects: list[Effect] = []
    with pytest.raises(ConfigError) as info:
        effects.append(flow.send(answer))
        while True:
            effects.append(flow.send(None))
    return effects, info.value


def test_a_failing_hook_on_a_rotating_refresh_hands_the_new_refresh_token_over_first() -> None:
    effects, error = _steps(_hooked(GRANT_REFRESH_TOKEN, idempotent=False), _answer(ROTATED))
    (received,) = effects
    assert isinstance(received, Received) and received.refresh is True
    assert received.token.refresh_token == "RT-2-ROTATED"
    # Nothing of the answer but its refresh token: the access token was never checked.
    assert received.token.access_token == "" and received.token.expires_at == 0.0
    assert str(error).startswith("token_response_hook _broken (tests.unit.protocol."
                                 "test_hook_keeps_what_was_spent) raised KeyError('authed_user')")
    assert "RT-2-ROTATED" not in str(error) and "AT-2" not in str(error)


def test_a_new_logins_answer_is_handed_over_as_a_new_login() -> None:
    """A device poll or a code exchange: what is kept continues nothing of a login before."""
    effects, _ = _steps(_hooked(GRANT_DEVICE_CODE, idempotent=False), _answer(ROTATED))
    (received,) = effects
    assert isinstance(received, Received) and received.refresh is False
    assert received.token.refresh_token == "RT-2-ROTATED"


@pytest.mark.parametrize("body", [
    {"access_token": "AT-2"},  # no refresh token: nothing that cannot be had again
    {"error": "authorization_pending", "refresh_token": "RT-X"},  # an error, with HTTP 200
    {"access_token": "AT-2", "refresh_token": "RT 2\n"},  # not a refresh token (RFC 6749 A.17)
])
def test_nothing_is_handed_over_without_a_well_formed_refresh_token(body: dict[str, Any]) -> None:
    effects, _ = _steps(_hooked(GRANT_REFRESH_TOKEN, idempotent=False), _answer(body))
    assert effects == []


def test_an_idempotent_request_is_not_kept_from() -> None:
    """Sent again at will (client credentials): the next call asks again, nothing was spent."""
    effects, _ = _steps(_hooked(GRANT_CLIENT_CREDENTIALS, idempotent=True), _answer(ROTATED))
    assert effects == []


# -- Globus Auth's other tokens through a refresh ------------------------------------------------------


def _globus(access: str, *, others: list[dict[str, Any]] | None, refresh: str | None) -> Token:
    body: dict[str, Any] = {"access_token": access, "expires_in": 172800,
                            "resource_server": "auth.globus.org", "token_type": "Bearer"}
    if refresh is not None:
        body["refresh_token"] = refresh
    if others is not None:
        body["other_tokens"] = others
    return parse_token_response(_answer(body), now=100.0)


TRANSFER = [{"access_token": "AT-TRANSFER", "expires_in": 172800, "token_type": "Bearer",
             "resource_server": "transfer.api.globus.org", "refresh_token": "RT-TRANSFER"}]


@pytest.mark.parametrize("others", [[], None])
def test_a_refresh_without_other_tokens_carries_the_ones_before(
        others: list[dict[str, Any]] | None) -> None:
    login = _globus("AT-1", others=TRANSFER, refresh="RT-1")
    refreshed = successor(_globus("AT-2", others=others, refresh=None), login)
    assert refreshed.access_token == "AT-2" and refreshed.refresh_token == "RT-1"
    (transfer,) = refreshed.other_tokens
    assert transfer.access_token == "AT-TRANSFER" and transfer.refresh_token == "RT-TRANSFER"
    assert Token.from_record(refreshed.to_record()).other_tokens == (transfer,)


def test_a_refresh_with_other_tokens_of_its_own_keeps_those() -> None:
    login = _globus("AT-1", others=TRANSFER, refresh="RT-1")
    newer = [{**TRANSFER[0], "access_token": "AT-TRANSFER-2", "refresh_token": "RT-TRANSFER-2"}]
    (transfer,) = successor(_globus("AT-2", others=newer, refresh=None), login).other_tokens
    assert transfer.access_token == "AT-TRANSFER-2"


def test_what_is_kept_while_a_refresh_is_checked_has_the_other_tokens() -> None:
    login = _globus("AT-1", others=TRANSFER, refresh="RT-1")
    # A rotating refresh whose answer failed its checks (or its hook): only the refresh token.
    salvaged = Token(access_token="", expires_at=0.0, refresh_token="RT-2")
    kept = pending(Received(salvaged, refresh=True), login)
    assert kept.refresh_token == "RT-2" and kept.access_token == ""
    assert [t.refresh_token for t in kept.other_tokens] == ["RT-TRANSFER"]
    # A new login (a code or a device code exchanged) carries on nothing of another login's...
    assert pending(Received(salvaged, refresh=False), login).other_tokens == ()
    # ...but keeps the other tokens of its own answer: their refresh tokens exist nowhere else.
    own = pending(Received(_globus("AT-3", others=TRANSFER, refresh="RT-3")), None)
    assert [t.refresh_token for t in own.other_tokens] == ["RT-TRANSFER"]
