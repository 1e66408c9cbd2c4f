"""The drivers carry out every effect of protocol/http.py, sync and async, and throw a failed one
into the flow (h11's send_failed). Real sockets: a port nobody listens on is a real failure."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import httpx
import pytest

from keyturn import StaticToken, transport
from keyturn.errors import LoginTimeout, TransportError
from keyturn.protocol.http import Blocking, Flow, HttpRequest, call, send, token_of
from keyturn.secret import Secret

NO_RETRY = transport.RetryPolicy(total=0)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _unanswered() -> HttpRequest:
    return HttpRequest("GET", f"http://127.0.0.1:{_closed_port()}/token", purpose="token endpoint")


def _handles_a_lost_request() -> Flow[str]:
    try:
        yield from send(_unanswered())
    except TransportError as exc:
        return f"handled: {type(exc).__name__}"
    return "answered"


def _does_not_catch() -> Flow[str]:
    yield from send(_unanswered())
    return "answered"


def _sync(flow: Flow[str]) -> str:
    with httpx.Client() as client:
        return transport.run(flow, client, NO_RETRY)


def _async(flow: Flow[str]) -> str:
    async def drive() -> str:
        async with httpx.AsyncClient() as client:
            return await transport.arun(flow, client, NO_RETRY)

    return asyncio.run(drive())


@pytest.mark.parametrize("drive", [_sync, _async], ids=["sync", "async"])
def test_a_transport_failure_is_thrown_into_the_flow(drive: Callable[[Flow[str]], str]) -> None:
    assert drive(_handles_a_lost_request()) == "handled: TransportError"


@pytest.mark.parametrize("drive", [_sync, _async], ids=["sync", "async"])
def test_a_flow_that_does_not_catch_it_ends_with_it(drive: Callable[[Flow[str]], str]) -> None:
    with pytest.raises(TransportError, match="could not connect to the token endpoint"):
        drive(_does_not_catch())


def test_a_failed_blocking_call_is_thrown_into_the_flow_which_may_clean_up() -> None:
    cleaned: list[str] = []

    def wait() -> None:
        raise LoginTimeout("the browser did not come back")

    def close() -> None:
        cleaned.append("closed")

    def flow() -> Flow[str]:
        try:
            yield from call(Blocking(wait, "wait for the browser"))
        except LoginTimeout:
            yield from call(Blocking(close, "close"))
            raise
        return "never"

    with pytest.raises(LoginTimeout):
        _sync(flow())
    assert cleaned == ["closed"]
    cleaned.clear()
    with pytest.raises(LoginTimeout):
        _async(flow())
    assert cleaned == ["closed"]


def test_the_async_driver_runs_a_blocking_call_off_the_event_loop() -> None:
    seen: dict[str, int] = {}

    def blocking() -> Secret[str]:
        seen["call"] = threading.get_ident()
        time.sleep(0.3)  # a prompt, a browser, listener.wait
        return Secret("query")

    def flow() -> Flow[str]:
        answer = yield from call(Blocking(blocking, "wait"))
        assert answer is not None
        return answer.reveal()

    async def main() -> tuple[str, int]:
        seen["loop"] = threading.get_ident()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        async with httpx.AsyncClient() as client:
            result = await transport.arun(flow(), client)
        ticker.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == "query"
    assert seen["call"] != seen["loop"]
    assert ticks >= 10  # the loop went on while the call blocked


def test_token_of_asks_the_other_source_in_each_driver() -> None:
    upstream = StaticToken("upstream-token")

    def flow() -> Flow[str]:
        token = yield from token_of(upstream)
        assert isinstance(token, Secret)  # never a plain str in the drivers' frames
        return token.reveal()

    assert _sync(flow()) == "upstream-token"
    assert _async(flow()) == "upstream-token"


def test_a_transport_makes_its_client_once_and_closes_it() -> None:
    owner = transport.Transport(transport.HttpSettings(timeout=5))
    first = owner.client()
    assert owner.client() is first
    assert first.follow_redirects is False and first.trust_env is False
    owner.close()
    assert first.is_closed
    assert owner.client() is not first  # a closed transport makes a new client when used again
    owner.close()
