"""DeviceCode's grant as one flow, stepped offline with next()/send()/throw(): no network, no
clock, no prompt — the test answers every effect (a request, a wait, the prompt, a lost poll)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from keyturn import DeviceCode
from keyturn.errors import AccessDenied, LoginRequired, TransportError
from keyturn.protocol.device import DeviceVerification
from keyturn.protocol.grants import GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from keyturn.protocol.http import Blocking, Flow, HttpRequest, HttpResponse, Received, Wait
from keyturn.sources.oidc import RefreshRefused
from keyturn.token import Token

TOKEN = "https://as.example/token"
DEVICE = "https://as.example/device/auth"
JSON = {"content-type": "application/json"}
TOKENS = {"access_token": "at-new", "token_type": "Bearer", "expires_in": 300,
          "refresh_token": "rt-new"}
AUTHORIZATION = {"device_code": "dc-secret", "user_code": "WDJB-MJHT",
                 "verification_uri": "https://as.example/device", "expires_in": 600,
                 "interval": 5}
SAVED = Token(access_token="at-old", expires_at=0.0, refresh_token="rt-old")


def _answer(request: HttpRequest, body: dict[str, Any], status: int = 200) -> HttpResponse:
    return HttpResponse(status, JSON, json.dumps(body).encode(), request.url)


def _source(**kwargs: Any) -> tuple[DeviceCode, list[DeviceVerification]]:
    shown: list[DeviceVerification] = []
    options: dict[str, Any] = {"prompt": shown.append, **kwargs}
    source = DeviceCode(token_endpoint=TOKEN, device_authorization_endpoint=DEVICE,
                        client_id="cli", store=None, **options)
    return source, shown


def _result(flow: Flow[Token], answer: Any) -> Token:
    with pytest.raises(StopIteration) as stop:
        flow.send(answer)
    token: Token = stop.value.value
    return token


def _form(step: object) -> dict[str, str]:
    assert isinstance(step, HttpRequest)
    return dict(step.form_items())


def _to_first_poll(flow: Flow[Token], shown: list[DeviceVerification]) -> tuple[float, HttpRequest]:
    """Step a login from the device request to its first poll; the time of that poll and it."""
    request = next(flow)
    assert isinstance(request, HttpRequest) and request.url == DEVICE
    show = flow.send(_answer(request, AUTHORIZATION))
    # Showing the code is a blocking call (the async driver runs it in a thread): it is the
    # test's to carry out, like a driver would.
    assert isinstance(show, Blocking) and not shown
    assert show.call() is None
    assert [v.user_code for v in shown] == ["WDJB-MJHT"]
    wait = flow.send(None)
    # RFC 8628 §3.5: the first poll waits the interval too.
    assert isinstance(wait, Wait) and wait.until == pytest.approx(time.time() + 5, abs=2)
    poll = flow.send(wait.until)
    assert isinstance(poll, HttpRequest) and poll.url == TOKEN and poll.idempotent is False
    assert _form(poll) == {"grant_type": GRANT_DEVICE_CODE, "device_code": "dc-secret",
                           "client_id": "cli"}
    return wait.until, poll


def test_a_saved_login_is_refreshed_without_a_prompt() -> None:
    source, shown = _source()
    flow = source._flow(SAVED)
    request = next(flow)
    assert _form(request) == {"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": "rt-old",
                              "client_id": "cli"}
    assert isinstance(request, HttpRequest) and request.idempotent is False  # it may rotate
    kept = flow.send(_answer(request, TOKENS))
    assert isinstance(kept, Received) and kept.refresh is True
    assert kept.token.refresh_token == "rt-new"
    token = _result(flow, None)
    assert token.access_token == "at-new" and not shown


def test_a_login_shows_the_code_polls_until_approved_and_keeps_the_answer() -> None:
    source, shown = _source()
    flow = source._flow(None)
    when, poll = _to_first_poll(flow, shown)
    wait = flow.send(_answer(poll, {"error": "authorization_pending"}, 400))
    assert isinstance(wait, Wait) and wait.until == pytest.approx(when + 5)
    poll = flow.send(wait.until)
    kept = flow.send(_answer(poll, TOKENS))
    # The device code is spent: the answer is kept before anything else can fail.
    assert isinstance(kept, Received) and kept.refresh is False
    token = _result(flow, None)
    assert token.refresh_token == "rt-new" and len(shown) == 1


def test_a_poll_without_answer_backs_off_and_polling_goes_on() -> None:
    """RFC 8628 §3.5, in the flow itself: the driver throws the lost poll in."""
    source, shown = _source()
    flow = source._flow(None)
    _, poll = _to_first_poll(flow, shown)
    lost = TransportError("timed out waiting for the token endpoint", url=TOKEN)
    clock = flow.throw(lost)
    assert clock == Wait(0.0)  # the flow asks the time (it reads no clock itself)
    failed_at = time.time() + 30.0  # the transport gave up after its timeout
    wait = flow.send(failed_at)
    # "doubling the polling interval on each such connection timeout": 5 s became 10 s.
    assert isinstance(wait, Wait) and wait.until == pytest.approx(failed_at + 10)
    poll = flow.send(wait.until)
    assert _form(poll)["device_code"] == "dc-secret"  # the same login goes on
    kept = flow.send(_answer(poll, TOKENS))
    assert isinstance(kept, Received)
    assert _result(flow, None).access_token == "at-new"


def test_a_failure_other_than_a_lost_poll_ends_the_login() -> None:
    source, shown = _source()
    flow = source._flow(None)
    _to_first_poll(flow, shown)
    with pytest.raises(KeyboardInterrupt):
        flow.throw(KeyboardInterrupt())


def test_a_denied_login_is_access_denied() -> None:
    source, shown = _source()
    flow = source._flow(None)
    _, poll = _to_first_poll(flow, shown)
    with pytest.raises(AccessDenied):
        flow.send(_answer(poll, {"error": "access_denied"}, 400))


def test_a_refused_refresh_starts_a_login_for_an_interactive_caller() -> None:
    source, shown = _source()
    flow = source._flow(SAVED)
    refresh = next(flow)
    request = flow.send(_answer(refresh, {"error": "invalid_grant"}, 400))
    assert isinstance(request, HttpRequest) and request.url == DEVICE
    assert not shown


def test_a_refused_refresh_is_refresh_refused_for_a_silent_caller() -> None:
    source, shown = _source(interactive=False)
    flow = source._flow(SAVED)
    refresh = next(flow)
    with pytest.raises(RefreshRefused) as info:
        flow.send(_answer(refresh, {"error": "invalid_grant"}, 400))
    # Both what to do (log in) and what happened (the cache then drops the dead refresh token).
    assert isinstance(info.value, LoginRequired) and info.value.error == "invalid_grant"
    assert not shown


def test_no_saved_login_and_a_silent_caller_is_login_required_before_any_request() -> None:
    source, shown = _source(interactive=False)
    with pytest.raises(LoginRequired, match="not interactive"):
        next(source._flow(None))
    assert not shown
