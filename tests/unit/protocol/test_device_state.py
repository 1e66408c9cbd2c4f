"""keyturn.protocol.device: the RFC 8628 polling state machine, stepped offline (no I/O, no clock)."""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

import pytest

from keyturn.errors import AccessDenied, ExpiredToken, InvalidClient, InvalidResponse, OAuthError
from keyturn.interactive.prompt import default_prompt, qr_text
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.device import (
    DEFAULT_INTERVAL,
    TRANSITIONS,
    DeviceAuthorization,
    DeviceState,
    DeviceStateError,
    DeviceVerification,
    device_authorization_flow,
    device_poll_flow,
)
from keyturn.protocol.grants import GRANT_DEVICE_CODE
from keyturn.protocol.http import HttpRequest, HttpResponse, Received, Wait

DEVICE = "https://as.example/device/auth"
TOKEN = "https://as.example/token"
NOW = 1_700_000_000.0
DEVICE_CODE = "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS"
JSON = {"content-type": "application/json"}


def _json(body: dict[str, Any], status: int = 200, url: str = TOKEN) -> HttpResponse:
    return HttpResponse(status, JSON, json.dumps(body).encode(), url)


def _authorization(**overrides: Any) -> HttpResponse:
    body = {"device_code": DEVICE_CODE, "user_code": "WDJB-MJHT",
            "verification_uri": "https://as.example/device",
            "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
            "expires_in": 1800, "interval": 5}
    body.update(overrides)
    return _json({k: v for k, v in body.items() if v is not None}, url=DEVICE)


PENDING = _json({"error": "authorization_pending"}, 400)
SLOW_DOWN = _json({"error": "slow_down"}, 400)
SUCCESS = _json({"access_token": "at-1", "token_type": "Bearer", "expires_in": 300,
                 "refresh_token": "rt-1"})


def _machine(auth: ClientAuth | None = None, **kwargs: Any) -> DeviceAuthorization:
    return DeviceAuthorization(
        device_authorization_endpoint=DEVICE, token_endpoint=TOKEN,
        client_auth=auth or ClientAuth.create(client_id="cli"), **kwargs,
    )


def _waiting(**overrides: Any) -> DeviceAuthorization:
    machine = _machine()
    machine.authorization_request(NOW)
    machine.receive_authorization(_authorization(**overrides), NOW)
    return machine


def _form(request: HttpRequest) -> dict[str, str]:
    return dict(request.form_items())


# -- the table -------------------------------------------------------------------------------------


def test_every_state_has_a_row_and_the_ends_allow_nothing() -> None:
    assert set(TRANSITIONS) == set(DeviceState)
    assert TRANSITIONS[DeviceState.APPROVED] == {}
    assert TRANSITIONS[DeviceState.FAILED] == {}
    for row in TRANSITIONS.values():
        assert set(row.values()) <= set(DeviceState)


def test_an_illegal_event_names_the_state() -> None:
    machine = _machine()
    with pytest.raises(DeviceStateError, match="in state IDLE") as caught:
        machine.poll_request(NOW)
    assert caught.value.state is DeviceState.IDLE
    with pytest.raises(DeviceStateError, match="IDLE"):
        machine.receive_authorization(_authorization(), NOW)


# -- the device authorization request and response ------------------------------------------------


def test_public_client_names_itself_and_sends_the_scope() -> None:
    machine = _machine(params={"scope": "openid offline_access"})
    request = machine.authorization_request(NOW)
    assert (request.method, request.url) == ("POST", DEVICE)
    assert _form(request) == {"client_id": "cli", "scope": "openid offline_access"}
    assert machine.state is DeviceState.AUTHORIZING


def test_confidential_client_authenticates_at_the_device_endpoint() -> None:
    auth = ClientAuth.create(client_id="svc", client_secret="s3cret")
    request = _machine(auth).authorization_request(NOW)
    assert request.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in _form(request)


def test_response_is_parsed_and_the_device_code_stays_private() -> None:
    machine = _machine()
    machine.authorization_request(NOW)
    verification = machine.receive_authorization(_authorization(), NOW)
    assert verification == DeviceVerification(
        verification_uri="https://as.example/device", user_code="WDJB-MJHT", expires_in=1800.0,
        interval=5.0, verification_uri_complete="https://as.example/device?user_code=WDJB-MJHT",
        expires_at=NOW + 1800,
    )
    assert not hasattr(verification, "device_code")
    for text in (repr(verification), repr(machine), str(vars(verification))):
        assert DEVICE_CODE not in text
    with pytest.raises(TypeError):
        pickle.dumps(machine)
    assert machine.state is DeviceState.WAITING


def test_interval_defaults_to_5_and_complete_uri_to_none() -> None:
    machine = _waiting(interval=None, verification_uri_complete=None)
    assert machine.verification is not None
    assert machine.verification.interval == DEFAULT_INTERVAL == 5.0
    assert machine.verification.verification_uri_complete is None
    assert machine.wait() == Wait(NOW + 5)


@pytest.mark.parametrize("overrides", [
    {"device_code": None}, {"user_code": None}, {"verification_uri": None}, {"expires_in": None},
    {"expires_in": "soon"}, {"interval": -1}, {"expires_in": True},
])
def test_incomplete_authorization_response_fails(overrides: dict[str, Any]) -> None:
    machine = _machine()
    machine.authorization_request(NOW)
    with pytest.raises(InvalidResponse):
        machine.receive_authorization(_authorization(**overrides), NOW)
    assert machine.state is DeviceState.FAILED


def test_error_at_the_device_endpoint_is_typed() -> None:
    machine = _machine()
    machine.authorization_request(NOW)
    with pytest.raises(InvalidClient):
        machine.receive_authorization(_json({"error": "invalid_client"}, 401, DEVICE), NOW)
    assert machine.state is DeviceState.FAILED


# -- polling ----------------------------------------------------------------------------------------


def test_poll_request_carries_the_device_code_and_is_not_resent_blindly() -> None:
    machine = _waiting()
    request = machine.poll_request(NOW + 5)
    assert _form(request) == {"grant_type": GRANT_DEVICE_CODE, "device_code": DEVICE_CODE,
                              "client_id": "cli"}
    assert request.url == TOKEN
    assert request.idempotent is False
    assert DEVICE_CODE not in repr(request)


def test_pending_keeps_the_interval_and_slow_down_adds_5_each_time() -> None:
    machine = _waiting(interval=2)
    assert machine.wait() == Wait(NOW + 2)
    now = NOW + 2
    waits = []
    for answer in (PENDING, SLOW_DOWN, PENDING, SLOW_DOWN, PENDING):
        machine.poll_request(now)
        assert machine.receive_poll(answer, now) is None
        wait = machine.wait()
        waits.append(wait.until - now)
        now = wait.until
    assert waits == [2, 7, 7, 12, 12]
    assert machine.interval == 12


def test_success_ends_polling_for_good() -> None:
    machine = _waiting()
    machine.poll_request(NOW + 5)
    token = machine.receive_poll(SUCCESS, NOW + 5)
    assert token is not None and token.access_token == "at-1" and token.refresh_token == "rt-1"
    assert machine.state is DeviceState.APPROVED
    # RFC 8628 §3.5 / oidc-provider: polling again after success would revoke the grant.
    with pytest.raises(DeviceStateError, match="APPROVED"):
        machine.poll_request(NOW + 10)
    with pytest.raises(DeviceStateError, match="APPROVED"):
        machine.wait()
    with pytest.raises(DeviceStateError, match="APPROVED"):
        machine.receive_poll(SUCCESS, NOW + 10)


@pytest.mark.parametrize(("error", "cls"), [("access_denied", AccessDenied),
                                             ("expired_token", ExpiredToken),
                                             ("invalid_grant", OAuthError)])
def test_terminal_errors(error: str, cls: type[Exception]) -> None:
    machine = _waiting()
    machine.poll_request(NOW + 5)
    with pytest.raises(cls):
        machine.receive_poll(_json({"error": error}, 400), NOW + 5)
    assert machine.state is DeviceState.FAILED
    with pytest.raises(DeviceStateError, match="FAILED"):
        machine.poll_request(NOW + 10)


def test_waits_stop_at_the_deadline_and_expiry_needs_no_request() -> None:
    machine = _waiting(expires_in=12, interval=5)
    now = NOW + 5
    machine.poll_request(now)
    machine.receive_poll(SLOW_DOWN, now)  # next poll would be at +15, past the deadline at +12
    assert machine.wait() == Wait(NOW + 12)
    with pytest.raises(ExpiredToken, match="lifetime"):
        machine.poll_request(NOW + 12)
    assert machine.state is DeviceState.FAILED
    assert machine.polls == 1


# -- the flows, driven by a fake clock ---------------------------------------------------------------


def _drive(flow: Any, answers: list[HttpResponse],
           kept: list[Any] | None = None) -> tuple[Any, list[float], list[HttpRequest]]:
    now, waits, sent = NOW, [], []
    try:
        step = next(flow)
        while True:
            if isinstance(step, Wait):
                waits.append(step.until - now)
                now = step.until
                step = flow.send(now)
            elif isinstance(step, Received):
                if kept is not None:
                    kept.append(step.token)
                step = flow.send(None)
            else:
                sent.append(step)
                step = flow.send(answers.pop(0))
    except StopIteration as stop:
        return stop.value, waits, sent


def test_flows_end_to_end_with_a_fake_clock() -> None:
    machine = _machine()
    verification, waits, sent = _drive(device_authorization_flow(machine, now=NOW),
                                       [_authorization(interval=None)])
    assert verification.user_code == "WDJB-MJHT" and waits == [] and len(sent) == 1
    kept: list[Any] = []
    token, waits, sent = _drive(device_poll_flow(machine),
                                [PENDING, SLOW_DOWN, SLOW_DOWN, PENDING, SUCCESS], kept)
    assert token.access_token == "at-1"
    # The spent device code's answer is handed to the driver to keep before the flow returns.
    assert kept == [token]
    assert waits == [5, 5, 10, 15, 15]
    assert len(sent) == 5 and all(r.url == TOKEN for r in sent)


def test_flow_stops_at_expires_in() -> None:
    machine = _machine()
    _drive(device_authorization_flow(machine, now=NOW), [_authorization(expires_in=11, interval=5)])
    with pytest.raises(ExpiredToken):
        _drive(device_poll_flow(machine), [PENDING, PENDING, PENDING])
    assert machine.polls == 2  # at +5 and +10; the wait then ends at the deadline, +11


# -- the default prompt ------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


VERIFICATION = DeviceVerification(
    verification_uri="https://as.example/device", user_code="WDJB-MJHT", expires_in=600,
    interval=5, verification_uri_complete="https://as.example/device?user_code=WDJB-MJHT",
)


def test_prompt_to_a_pipe_has_no_qr_code() -> None:
    out = io.StringIO()
    default_prompt(VERIFICATION, stream=out)
    text = out.getvalue()
    assert "https://as.example/device" in text and "WDJB-MJHT" in text and "10 minutes" in text
    assert "█" not in text and "▀" not in text


def test_prompt_to_a_terminal_draws_the_complete_uri_as_qr() -> None:
    out = _Tty()
    default_prompt(VERIFICATION, stream=out)
    qr = qr_text("https://as.example/device?user_code=WDJB-MJHT")
    assert qr and qr in out.getvalue()
    bare = DeviceVerification(verification_uri="https://as.example/device", user_code="X",
                              expires_in=60, interval=5)
    out = _Tty()
    default_prompt(bare, stream=out)
    assert "█" not in out.getvalue()


def test_a_poll_without_answer_doubles_the_interval() -> None:
    machine = _waiting(interval=5)
    machine.poll_request(NOW + 5)
    machine.receive_timeout(NOW + 5)
    assert machine.state is DeviceState.WAITING
    assert machine.wait() == Wait(NOW + 15)
    machine.poll_request(NOW + 15)
    machine.receive_timeout(NOW + 15)
    assert machine.wait() == Wait(NOW + 35)
    with pytest.raises(DeviceStateError, match="timeout in state WAITING"):
        machine.receive_timeout(NOW + 35)
