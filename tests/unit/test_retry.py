"""keyturn._retry.retrying: retries as a wrapper flow, stepped offline (no driver, no socket): it
passes every effect through, and after a retryable answer or error yields a Pause and the same
request again; the driver only sleeps what it is told, outside the critical step."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from keyturn._drivers import drive
from keyturn._retry import RetryPolicy, retrying
from keyturn.errors import TransportError
from keyturn.protocol.http import (
    Answer,
    Blocking,
    Flow,
    HttpRequest,
    HttpResponse,
    Pause,
    Received,
    Wait,
    call,
    send,
    sleep_until,
)
from keyturn.token import Token

URL = "https://as.example/token"
POLICY = RetryPolicy(total=2, backoff=0.5)


def request(*, idempotent: bool) -> HttpRequest:
    return HttpRequest("POST", URL, idempotent=idempotent, purpose="token endpoint")


def answer(status: int, **headers: str) -> HttpResponse:
    return HttpResponse(status, {k.replace("_", "-").lower(): v for k, v in headers.items()},
                        b"{}", URL)


def status_of(*, idempotent: bool) -> Flow[int]:
    """A flow of one request; the status of its final answer."""
    response = yield from send(request(idempotent=idempotent))
    return response.status


def error_of(*, idempotent: bool) -> Flow[str]:
    """A flow of one request that catches the error its driver throws in."""
    try:
        yield from send(request(idempotent=idempotent))
    except TransportError as exc:
        return f"handled: {exc}"
    return "answered"


def lost(*, reached_server: bool, answered: bool = False) -> TransportError:
    return TransportError("timed out waiting for the token endpoint", url=URL,
                          reached_server=reached_server, answered=answered)


def result(flow: Flow[Any], value: Answer) -> object:
    with pytest.raises(StopIteration) as stop:
        flow.send(value)
    return stop.value.value


# -- answers ----------------------------------------------------------------------------------------


def test_a_final_answer_goes_to_the_flow_without_a_pause() -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    assert next(flow) == request(idempotent=True)
    assert result(flow, answer(200)) == 200


def test_retry_after_is_honoured_and_the_same_request_is_sent_again() -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    first = next(flow)
    assert flow.send(answer(503, retry_after="2")) == Pause(2.0)
    assert flow.send(None) is first
    assert result(flow, answer(200)) == 200


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_an_idempotent_request_is_retried_after_a_retryable_status(code: int) -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    next(flow)
    pause = flow.send(answer(code))
    assert isinstance(pause, Pause) and 0 <= pause.seconds <= POLICY.backoff
    assert isinstance(flow.send(None), HttpRequest)
    assert result(flow, answer(200)) == 200


@pytest.mark.parametrize("code", [500, 502, 504])
def test_a_non_idempotent_request_is_not_retried_after_a_server_error(code: int) -> None:
    # The server may have acted on it: a rotating refresh token sent twice is spent twice.
    flow = retrying(status_of(idempotent=False), POLICY)
    next(flow)
    assert result(flow, answer(code)) == code


@pytest.mark.parametrize("code", [429, 503])
def test_a_non_idempotent_request_is_retried_after_a_not_processed_status(code: int) -> None:
    flow = retrying(status_of(idempotent=False), POLICY)
    next(flow)
    assert flow.send(answer(code, retry_after="1")) == Pause(1.0)
    assert flow.send(None) == request(idempotent=False)
    assert result(flow, answer(200)) == 200


@pytest.mark.parametrize("code", [400, 401, 404])
def test_a_client_error_is_never_retried(code: int) -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    next(flow)
    assert result(flow, answer(code)) == code


def test_the_last_answer_reaches_the_flow_once_the_policy_is_spent() -> None:
    flow = retrying(status_of(idempotent=True), RetryPolicy(total=2, backoff=1.0))
    next(flow)
    ceilings = [1.0, 2.0]  # the backoff doubles
    for ceiling in ceilings:
        pause = flow.send(answer(503))
        assert isinstance(pause, Pause) and 0 <= pause.seconds <= ceiling
        assert isinstance(flow.send(None), HttpRequest)
    assert result(flow, answer(503)) == 503


def test_a_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    next(flow)
    with caplog.at_level(logging.INFO, logger="keyturn.transport"):
        flow.send(answer(503, retry_after="0"))
    assert f"token endpoint {URL} answered 503; retrying" in caplog.text


# -- errors -----------------------------------------------------------------------------------------


def test_a_connect_error_is_retried_even_for_a_non_idempotent_request() -> None:
    flow = retrying(status_of(idempotent=False), POLICY)
    next(flow)
    pause = flow.throw(lost(reached_server=False))
    assert isinstance(pause, Pause) and 0 <= pause.seconds <= POLICY.backoff
    assert flow.send(None) == request(idempotent=False)
    assert result(flow, answer(200)) == 200


def test_a_read_timeout_of_a_non_idempotent_request_reaches_the_flow() -> None:
    flow = retrying(error_of(idempotent=False), POLICY)
    next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.throw(lost(reached_server=True))
    assert stop.value.value == "handled: timed out waiting for the token endpoint"


def test_a_read_timeout_of_an_idempotent_request_is_retried() -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    next(flow)
    assert isinstance(flow.throw(lost(reached_server=True)), Pause)


def test_an_answer_that_could_not_be_read_is_not_asked_for_again() -> None:
    flow = retrying(status_of(idempotent=True), POLICY)
    next(flow)
    error = lost(reached_server=True, answered=True)
    with pytest.raises(TransportError) as info:
        flow.throw(error)
    assert info.value is error


def test_the_last_error_reaches_the_flow_once_the_policy_is_spent() -> None:
    flow = retrying(error_of(idempotent=True), RetryPolicy(total=1))
    next(flow)
    assert isinstance(flow.throw(lost(reached_server=False)), Pause)
    flow.send(None)
    last = TransportError("could not connect to the token endpoint", url=URL, reached_server=False)
    with pytest.raises(StopIteration) as stop:
        flow.throw(last)
    assert stop.value.value == "handled: could not connect to the token endpoint"


def test_a_flow_that_does_not_catch_the_last_error_ends_with_it_as_it_is() -> None:
    flow = retrying(status_of(idempotent=True), RetryPolicy(total=0))
    next(flow)
    error = lost(reached_server=False)
    with pytest.raises(TransportError) as info:
        flow.throw(error)
    assert info.value is error


def test_a_zero_policy_never_pauses() -> None:
    flow = retrying(status_of(idempotent=True), RetryPolicy(total=0))
    next(flow)
    assert result(flow, answer(503)) == 503


# -- every other effect passes through ------------------------------------------------------------------


def test_other_effects_and_their_answers_pass_through_unchanged() -> None:
    token = Token(access_token="AT", token_type="Bearer")
    received = Received(token, refresh=True)
    blocking = Blocking(lambda: None, "wait for the browser")

    def flow() -> Flow[tuple[float, object]]:
        now = yield from sleep_until(Wait(5.0))
        kept = yield received
        yield from call(blocking)
        return now, kept

    wrapped = retrying(flow(), POLICY)
    assert next(wrapped) == Wait(5.0)
    assert wrapped.send(7.0) is received
    assert wrapped.send(None) is blocking
    assert result(wrapped, None) == (7.0, None)


def test_an_error_thrown_at_another_effect_goes_into_the_flow() -> None:
    def flow() -> Flow[str]:
        try:
            yield from call(Blocking(lambda: None, "prompt"))
        except KeyboardInterrupt:
            return "cleaned up"
        return "never"

    wrapped = retrying(flow(), POLICY)
    next(wrapped)
    with pytest.raises(StopIteration) as stop:
        wrapped.throw(KeyboardInterrupt())
    assert stop.value.value == "cleaned up"


def test_an_interrupt_during_a_pause_goes_into_the_flow_at_its_request() -> None:
    wrapped = retrying(error_of(idempotent=True), POLICY)
    next(wrapped)
    assert isinstance(wrapped.send(answer(503)), Pause)
    with pytest.raises(KeyboardInterrupt):
        wrapped.throw(KeyboardInterrupt())  # error_of catches only a TransportError


def test_closing_the_wrapper_closes_the_flow() -> None:
    closed: list[str] = []

    def flow() -> Flow[int]:
        try:
            response = yield from send(request(idempotent=True))
        finally:
            closed.append("closed")
        return response.status

    wrapped = retrying(flow(), POLICY)
    next(wrapped)
    wrapped.send(answer(503))
    wrapped.close()
    assert closed == ["closed"]


# -- with the driver ----------------------------------------------------------------------------------------


class Keeper:
    def __init__(self) -> None:
        self.events: list[str] = []

    def confirm(self) -> None:
        self.events.append(f"confirm in {threading.current_thread().name}")

    def keep(self, received: Received) -> None:
        self.events.append("keep")


def test_a_retried_critical_step_pauses_outside_it_and_confirms_the_lock_again() -> None:
    """A 503 to a refresh comes out of the critical step as a Pause, which the driver sleeps in
    the caller's thread; the request sent again is a critical step of its own."""
    keeper = Keeper()
    answers: Iterator[HttpResponse] = iter([
        answer(503, retry_after="2"),
        HttpResponse(200, {"content-type": "application/json"},
                     b'{"access_token": "AT", "token_type": "Bearer"}', URL),
    ])

    def scripted(sent: HttpRequest) -> HttpResponse:
        keeper.events.append(f"send in {threading.current_thread().name}")
        return next(answers)

    def slept(seconds: float) -> None:
        keeper.events.append(f"sleep {seconds} in {threading.current_thread().name}")

    def refresh() -> Flow[str]:
        response = yield from send(request(idempotent=False))
        yield Received(Token(access_token="AT", token_type="Bearer"), refresh=True)
        return response.json_object("token endpoint")["access_token"]  # type: ignore[no-any-return]

    caller = threading.current_thread().name
    assert drive(retrying(refresh(), POLICY), scripted, slept, keeper=keeper) == "AT"
    critical = "keyturn-to-the-end"
    assert keeper.events == [
        f"confirm in {critical}", f"send in {critical}",
        f"sleep 2.0 in {caller}",
        f"confirm in {critical}", f"send in {critical}", "keep",
    ]
