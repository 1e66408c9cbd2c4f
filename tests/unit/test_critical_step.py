"""The critical step: once a non-idempotent token request went out, its answer is kept before the
caller can be interrupted — by Ctrl-C (KeyboardInterrupt in the main thread), by a task
cancellation, or by ``asyncio.run`` shutting down — and nothing is sent by a caller whose lock
check fails.

A real HTTP server on 127.0.0.1 (the standard library's) answers the token request only when the
test says so, so each interrupt provably lands while the answer is on its way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import keyturn.transport as transport
from keyturn.errors import InvalidResponse, StoreError
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.grants import GRANT_REFRESH_TOKEN, token_flow
from keyturn.protocol.http import Flow, HttpResponse, Received
from keyturn.token import Token
from tests.support import SERVE_POLL

WAIT = 10.0  # a guard against a hang; a passing test never waits this long


class HeldAnswers:
    """A token endpoint that counts requests and answers each only once ``release()`` is called."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.released = threading.Event()
        self.requests = 0
        self.answered = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                held.requests += 1
                held.received.set()
                assert held.released.wait(WAIT), "the test never released the answer"
                body = json.dumps({"access_token": f"AT-{held.requests}", "token_type": "Bearer",
                                   "expires_in": 300,
                                   "refresh_token": f"RT-{held.requests}"}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                held.answered.set()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": SERVE_POLL},
                         daemon=True).start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class RecordingKeeper:
    """A keeper that records what it was asked, in order; ``confirm`` may be made to fail."""

    def __init__(self, fail_confirm: BaseException | None = None) -> None:
        self.events: list[str] = []
        self.kept: list[Token] = []
        self.fail_confirm = fail_confirm

    def confirm(self) -> None:
        self.events.append("confirm")
        if self.fail_confirm is not None:
            raise self.fail_confirm

    def keep(self, received: Received) -> None:
        self.events.append("keep")
        self.kept.append(received.token)
        assert received.refresh  # the answer to a refresh_token grant


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.Client]]:
    with httpx.Client(trust_env=False) as sync_client:
        async with httpx.AsyncClient(trust_env=False) as client:
            yield client, sync_client


@pytest.fixture
def endpoint() -> Iterator[HeldAnswers]:
    held = HeldAnswers()
    yield held
    held.close()


def refresh_flow(url: str) -> Flow[Token]:
    return token_flow(endpoint=url, grant_type=GRANT_REFRESH_TOKEN, params={"refresh_token": "RT-0"},
                      client_auth=ClientAuth.create(client_id="cli"), now=1000.0, idempotent=False)


def interrupt_main_when(event: threading.Event, then: threading.Event | None = None) -> None:
    """SIGINT this process once ``event`` is set (the main thread gets KeyboardInterrupt), then
    set ``then``."""

    def run() -> None:
        assert event.wait(WAIT)
        os.kill(os.getpid(), signal.SIGINT)
        if then is not None:
            then.set()

    threading.Thread(target=run, daemon=True).start()


def test_ctrl_c_while_the_answer_is_on_its_way_lands_after_it_was_kept(endpoint: HeldAnswers) -> None:
    assert threading.current_thread() is threading.main_thread()
    keeper = RecordingKeeper()
    # SIGINT once the server has the request; answer only after the signal was delivered.
    delivered = threading.Event()
    interrupt_main_when(endpoint.received, delivered)
    threading.Thread(target=lambda: delivered.wait(WAIT) and endpoint.release(), daemon=True).start()
    with httpx.Client(trust_env=False) as client, pytest.raises(KeyboardInterrupt):
        transport.run(refresh_flow(endpoint.url), client, keeper=keeper)
    assert keeper.events == ["confirm", "keep"]
    assert keeper.kept[0].refresh_token == "RT-1"
    assert endpoint.requests == 1


def test_without_an_interrupt_the_flow_returns_the_kept_token(endpoint: HeldAnswers) -> None:
    endpoint.release()
    keeper = RecordingKeeper()
    with httpx.Client(trust_env=False) as client:
        token = transport.run(refresh_flow(endpoint.url), client, keeper=keeper)
    assert keeper.kept == [token] and token.refresh_token == "RT-1"


def test_a_failed_lock_check_sends_nothing(endpoint: HeldAnswers) -> None:
    endpoint.release()
    keeper = RecordingKeeper(fail_confirm=StoreError("the lock was taken over"))
    with httpx.Client(trust_env=False) as client, pytest.raises(StoreError, match="taken over"):
        transport.run(refresh_flow(endpoint.url), client, keeper=keeper)
    assert keeper.events == ["confirm"]
    assert endpoint.requests == 0


def test_a_cancelled_task_is_cancelled_only_after_the_answer_was_kept(endpoint: HeldAnswers) -> None:
    keeper = RecordingKeeper()

    async def main() -> None:
        async with clients() as (client, sync_client):
            task = asyncio.create_task(transport.arun(refresh_flow(endpoint.url), client,
                                                      keeper=keeper, sync_client=sync_client))
            assert await asyncio.to_thread(endpoint.received.wait, WAIT)
            task.cancel()
            await asyncio.sleep(0.05)  # the cancellation has been delivered to the task...
            assert not task.done()  # ...which still waits for the answer
            endpoint.release()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert keeper.events == ["confirm", "keep"]


def test_wait_for_timing_out_still_keeps_the_answer(endpoint: HeldAnswers) -> None:
    keeper = RecordingKeeper()

    def answer_late() -> None:  # well after wait_for's 0.01 s ran out
        assert endpoint.received.wait(WAIT)
        threading.Timer(0.3, endpoint.release).start()

    threading.Thread(target=answer_late, daemon=True).start()

    async def main() -> None:
        async with clients() as (client, sync_client):
            await asyncio.wait_for(transport.arun(refresh_flow(endpoint.url), client,
                                                  keeper=keeper, sync_client=sync_client), 0.01)

    with pytest.raises(TimeoutError):
        asyncio.run(main())
    assert keeper.events == ["confirm", "keep"]


def test_asyncio_run_shutdown_waits_for_the_answer_to_be_kept(endpoint: HeldAnswers) -> None:
    """The main coroutine ends while a refresh task is still waiting for its answer: asyncio.run
    cancels that task at shutdown; the answer is kept all the same before asyncio.run returns."""
    keeper = RecordingKeeper()

    async def main() -> None:
        client = httpx.AsyncClient(trust_env=False)
        sync_client = httpx.Client(trust_env=False)
        asyncio.get_running_loop().create_task(transport.arun(
            refresh_flow(endpoint.url), client, keeper=keeper, sync_client=sync_client))
        assert await asyncio.to_thread(endpoint.received.wait, WAIT)
        # Answer a moment after the shutdown began.
        threading.Timer(0.1, endpoint.release).start()

    asyncio.run(main())
    assert keeper.events == ["confirm", "keep"]
    assert endpoint.answered.is_set()


def test_the_async_driver_refuses_a_keeper_without_a_sync_client(endpoint: HeldAnswers) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            await transport.arun(refresh_flow(endpoint.url), client, keeper=RecordingKeeper())

    with pytest.raises(TypeError, match="sync_client"):
        asyncio.run(main())


def test_a_refused_answer_still_gives_up_its_new_refresh_token() -> None:
    """A 200 whose checks fail (here a malformed expires_in) came after the server spent the old
    refresh token: its well-formed new refresh token is handed over to keep, then the error."""
    flow = refresh_flow("https://as.example/token")
    next(flow)
    body = {"access_token": "AT", "token_type": "Bearer", "expires_in": "soon",
            "refresh_token": "RT-new"}
    step = flow.send(HttpResponse(200, {"content-type": "application/json"},
                                  json.dumps(body).encode(), "https://as.example/token"))
    assert isinstance(step, Received) and step.refresh
    assert step.token.refresh_token == "RT-new" and step.token.access_token == ""
    with pytest.raises(InvalidResponse, match="expires_in"):
        flow.send(None)


CHILD = r"""
import json, sys, threading
import httpx
import keyturn.transport as transport
from tests.unit.test_critical_step import HeldAnswers, refresh_flow

held = HeldAnswers()
threading.Timer(0.5, held.release).start()  # the answer comes after the main thread has ended

class FileKeeper:
    def confirm(self): pass
    def keep(self, received):
        with open(sys.argv[1], "w") as out:
            out.write(received.token.refresh_token)

def background_refresh():
    with httpx.Client(trust_env=False) as client:
        transport.run(refresh_flow(held.url), client, keeper=FileKeeper())

threading.Thread(target=background_refresh, daemon=True).start()
assert held.received.wait(10)
# The main thread ends here, while a daemon thread's refresh waits for its answer.
"""


def test_an_exiting_interpreter_waits_for_a_daemon_threads_answer_to_be_kept(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    kept = tmp_path / "kept"
    # ``python -c`` puts the working directory on sys.path: the repository root, where ``tests`` is.
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", CHILD, str(kept)], check=True, timeout=30, cwd=root)
    assert kept.read_text() == "RT-1"
