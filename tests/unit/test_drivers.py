"""keyturn._drivers: the effects added for retries and the userinfo call — Pause, a source's current
Token (CurrentToken), and forgetting one — carried out by both drivers (and run_offline) alike; the
async one awaits ``ainvalidate``, so no thread waits on the store's lock, and forgets the token of a
source without one (an adapter's foreign TokenSource) in a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

import pytest

from keyturn._drivers import acarry_out, adrive, carry_out, drive
from keyturn.protocol.http import (
    Answer,
    CurrentToken,
    Effect,
    Flow,
    HttpRequest,
    HttpResponse,
    TokenOf,
    current_token,
    invalidate,
    pause,
    run_offline,
)
from keyturn.secret import Secret
from keyturn.token import Token

OLD = Token(access_token="at-old", token_type="Bearer")
NEW = Token(access_token="at-new", token_type="Bearer")


class Source:
    """A token source that renews its token once it is told to forget the current one."""

    def __init__(self) -> None:
        self.current = OLD
        self.calls: list[str] = []

    def get_access_token(self) -> str:
        return self.get_token().access_token

    async def aget_access_token(self) -> str:
        return (await self.aget_token()).access_token

    def get_token(self) -> Token:
        self.calls.append("get_token")
        return self.current

    async def aget_token(self) -> Token:
        self.calls.append("aget_token")
        return self.current

    def invalidate(self, access_token: str | None = None) -> None:
        self.calls.append(f"invalidate {access_token}")
        self._forget(access_token)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        self.calls.append(f"ainvalidate {access_token}")
        self._forget(access_token)

    def _forget(self, access_token: str | None) -> None:
        if access_token in (None, self.current.access_token):
            self.current = NEW


def renewed(source: Source) -> Flow[tuple[str, str]]:
    first = yield from current_token(source)
    yield from invalidate(source, first)
    yield from invalidate(source, first)  # no longer current: nothing is forgotten
    fresh = yield from current_token(source)
    return first.access_token, fresh.access_token


def never_sent(request: HttpRequest) -> HttpResponse:
    raise AssertionError(f"nothing is sent in this test, yet {request.url} was")


async def never_sent_async(request: HttpRequest) -> HttpResponse:
    return never_sent(request)


def _sync(flow: Flow[tuple[str, str]]) -> tuple[str, str]:
    return drive(flow, never_sent)


def _async(flow: Flow[tuple[str, str]]) -> tuple[str, str]:
    return asyncio.run(adrive(flow, never_sent_async))


def _offline(flow: Flow[tuple[str, str]]) -> tuple[str, str]:
    return run_offline(flow, {})


@pytest.mark.parametrize(("run", "asked", "told"), [
    (_sync, "get_token", "invalidate"), (_async, "aget_token", "ainvalidate"),
    (_offline, "get_token", "invalidate")], ids=["sync", "async", "offline"])
def test_the_current_token_and_forgetting_it(run: Callable[[Flow[tuple[str, str]]],
                                                           tuple[str, str]],
                                             asked: str, told: str) -> None:
    source = Source()
    assert run(renewed(source)) == ("at-old", "at-new")
    assert source.calls == [asked, f"{told} at-old", f"{told} at-old", asked]


def _asked(effect: Effect) -> Flow[Answer]:
    """What the driver answered to ``effect``, as it is (no typed helper checks it here)."""
    answer = yield effect
    return answer


def _sync_answer(effect: Effect) -> Answer:
    return drive(_asked(effect), never_sent)


def _async_answer(effect: Effect) -> Answer:
    return asyncio.run(adrive(_asked(effect), never_sent_async))


@pytest.mark.parametrize(("answer", "asked"), [(_sync_answer, "get_token"),
                                               (_async_answer, "aget_token")], ids=["sync", "async"])
def test_both_drivers_answer_current_token_with_the_token_and_token_of_with_a_secret(
        answer: Callable[[Effect], Answer], asked: str) -> None:
    source = Source()
    assert answer(CurrentToken(source)) is OLD  # the Token itself, not a Secret of it
    assert answer(TokenOf(source)) == Secret("at-old")  # the access token only, as a Secret
    assert source.calls == [asked, asked]  # (Source's aget_access_token asks aget_token)


def test_carry_out_answers_current_token_with_the_token_in_both_modes() -> None:
    # What the adapters' 401 retry (keyturn.integrations.retry.resume/aresume) calls.
    source = Source()
    assert carry_out(CurrentToken(source)) is OLD
    assert asyncio.run(acarry_out(CurrentToken(source))) is OLD
    assert source.calls == ["get_token", "aget_token"]


def _paused() -> Flow[str]:
    yield from pause(2.5)
    yield from pause(0.0)
    return "resumed"


def test_the_sync_driver_sleeps_exactly_the_pause() -> None:
    slept: list[float] = []
    assert drive(_paused(), never_sent, slept.append) == "resumed"
    assert slept == [2.5, 0.0]


def test_the_async_driver_sleeps_exactly_the_pause() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    recorder: Callable[[float], Awaitable[None]] = sleep
    assert asyncio.run(adrive(_paused(), never_sent_async, recorder)) == "resumed"
    assert slept == [2.5, 0.0]


class Foreign:
    """A token source that is not keyturn's (``keyturn.integrations.TokenSource``): no
    ``ainvalidate``. It records the thread each call ran in."""

    def __init__(self) -> None:
        self.current = OLD
        self.threads: list[tuple[str, threading.Thread]] = []

    def get_token(self) -> Token:
        self.threads.append(("get_token", threading.current_thread()))
        return self.current

    async def aget_token(self) -> Token:
        self.threads.append(("aget_token", threading.current_thread()))
        return self.current

    def invalidate(self, access_token: str | None = None) -> None:
        self.threads.append((f"invalidate {access_token}", threading.current_thread()))
        if access_token in (None, self.current.access_token):
            self.current = NEW


def test_the_async_driver_forgets_a_foreign_token_in_a_thread_of_its_own() -> None:
    # Not on the loop (invalidate writes a store under its lock), and not in the loop's default
    # executor (keyturn._uninterrupted.thread_future: its workers could all wait on that lock).
    source = Foreign()

    def flow() -> Flow[str]:
        first = yield from current_token(source)
        yield from invalidate(source, first)
        return (yield from current_token(source)).access_token

    async def main() -> tuple[str, threading.Thread]:
        return await adrive(flow(), never_sent_async), threading.current_thread()

    fresh, loop_thread = asyncio.run(main())
    assert fresh == "at-new"
    assert [call for call, _ in source.threads] == ["aget_token", "invalidate at-old", "aget_token"]
    assert [thread is loop_thread for _, thread in source.threads] == [True, False, True]
    assert source.threads[1][1].name == "keyturn-worker"


def test_a_request_is_not_carried_out_without_a_transport() -> None:
    request = HttpRequest("GET", "https://api.example/")
    with pytest.raises(TypeError, match=r"keyturn\.transport\.run/arun"):
        carry_out(request)
    with pytest.raises(TypeError, match=r"keyturn\.transport\.run/arun"):
        asyncio.run(acarry_out(request))
