"""The adapters' two shared pieces, offline: the ``Authorization`` value a token renders, and the
401-retry flow, stepped with ``next()``/``send()`` as httpx's ``tests/test_auth.py`` steps its flows
(it yields the protocol's effects, ``CurrentToken`` and ``Invalidate``, and the Token to present); then
each adapter driving that flow for a token source that is not keyturn's (any object with
``get_token``/``aget_token``/``invalidate`` will do), against in-process servers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests

from keyturn import ClientCredentials, KeyturnError, MemoryStore, StaticToken, Token
from keyturn._tokenformat import render  # keyturn token --header: the CLI's stdlib-only rendering
from keyturn.integrations import HttpxAuth, RequestsAuth, SdkAuth
from keyturn.integrations.retry import aresume, authorize, presented, resume
from keyturn.protocol.http import CurrentToken, Invalidate
from tests.support import SERVE_POLL

T1 = Token(access_token="first-token", expires_at=2e9)
T2 = Token(access_token="second-token", expires_at=2e9)


# -- Token.authorization() -------------------------------------------------------------------------

@pytest.mark.parametrize(("token_type", "scheme"), [
    ("Bearer", "Bearer"), ("bearer", "Bearer"), ("BEARER", "Bearer"), ("", "Bearer"),
    ("DPoP", "DPoP"), ("dpop", "dpop"), ("MAC", "MAC"), ("N_A", "N_A"),
])
def test_the_token_renders_its_authorization_value(token_type, scheme):
    token = Token(access_token="abc.def", token_type=token_type)
    assert token.authorization() == f"{scheme} abc.def"


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BeArEr", "", "DPoP", "dpop", "MAC"])
def test_the_cli_renders_the_same_header(token_type):
    token = Token(access_token="abc.def", token_type=token_type, expires_at=2e9)
    assert render(token.to_record(), "header", 1e9) == f"Authorization: {token.authorization()}"


def test_a_source_given_no_type_sends_bearer():
    assert StaticToken("abc").get_token().authorization() == "Bearer abc"


# -- the flow, stepped -----------------------------------------------------------------------------

SOURCE = StaticToken("unused")  # the source the effects name (stepping asks it nothing)
FETCH = CurrentToken(SOURCE)  # "send me the source's current token"


def test_a_request_that_is_not_refused_is_sent_once():
    flow = authorize(SOURCE)
    assert next(flow) == FETCH
    assert flow.send(T1) is T1  # present T1
    with pytest.raises(StopIteration):
        flow.send(200)


def test_a_401_invalidates_the_refused_token_and_retries_once_with_a_fresh_one():
    flow = authorize(SOURCE)
    assert next(flow) == FETCH
    assert flow.send(T1) is T1
    step = flow.send(401)
    assert isinstance(step, Invalidate) and step.token is T1 and step.source is SOURCE
    assert flow.send(None) == FETCH
    assert flow.send(T2) is T2  # the retry
    with pytest.raises(StopIteration):
        flow.send(401)  # once: a second 401 is the answer


def test_a_401_with_nothing_fresher_is_passed_back():
    flow = authorize(SOURCE)
    next(flow)
    flow.send(T1)
    flow.send(401)
    assert flow.send(None) == FETCH
    with pytest.raises(StopIteration):
        flow.send(Token(access_token=T1.access_token))  # the same token again: StaticToken


@pytest.mark.parametrize("status", [200, 204, 302, 403, 500])
def test_only_a_401_is_retried(status):
    flow = authorize(SOURCE)
    next(flow)
    flow.send(T1)
    with pytest.raises(StopIteration):
        flow.send(status)


def test_a_driver_that_answers_fetch_wrongly_is_told():
    flow = authorize(SOURCE)
    next(flow)
    with pytest.raises(TypeError, match="answered int to CurrentToken, which is answered with a Token"):
        flow.send(401)


def test_steps_show_no_token():
    assert "first-token" not in repr(Invalidate(SOURCE, T1)) + repr(FETCH)


# -- a token source that is not keyturn's ----------------------------------------------------------

class Rotating:
    """Hands out ``tokens`` in turn: ``invalidate(refused)`` moves on only if ``refused`` is the
    current one, as keyturn's cache does."""

    def __init__(self, *tokens: Token) -> None:
        self.tokens = list(tokens)
        self.invalidated: list[str | None] = []

    def get_token(self) -> Token:
        return self.tokens[0]

    async def aget_token(self) -> Token:
        return self.tokens[0]

    def invalidate(self, access_token: str | None = None) -> None:
        self.invalidated.append(access_token)
        if len(self.tokens) > 1 and access_token in (None, self.tokens[0].access_token):
            self.tokens.pop(0)


def test_resume_carries_out_the_steps_with_the_source():
    source = Rotating(T1, T2)
    flow = authorize(source)
    assert resume(flow, None) is T1
    assert resume(flow, 401) is T2
    assert source.invalidated == ["first-token"]
    assert resume(flow, 200) is None


def test_resume_leaves_a_token_that_was_already_replaced():
    source = Rotating(T1, T2)
    stale, current = authorize(source), authorize(source)
    assert resume(stale, None) is T1
    source.tokens.pop(0)  # another request's 401 already got T2
    assert resume(current, None) is T2
    assert resume(stale, 401) is T2  # retried with T2; T2 stays
    assert source.tokens == [T2]


def test_a_flow_presented_waits_for_the_status_of_the_request_sent_with_its_token():
    source = Rotating(T1, T2)
    assert resume(presented(source, T1), 200) is None
    assert resume(presented(source, T1), 401) is T2
    assert source.invalidated == ["first-token"]


def test_aresume_is_the_same_for_async_callers():
    source = Rotating(T1, T2)

    async def main() -> list[Token | None]:
        flow = authorize(source)
        return [await aresume(flow, None), await aresume(flow, 401),
                await aresume(flow, 401)]

    assert asyncio.run(main()) == [T1, T2, None]
    assert source.invalidated == ["first-token"]


class BlockingRotating(Rotating):
    """A foreign source (no ``ainvalidate``) whose ``invalidate`` blocks until ``released`` is set,
    as one writing its store under a lock does: it records the thread it ran in."""

    def __init__(self, *tokens: Token) -> None:
        super().__init__(*tokens)
        self.released = threading.Event()
        self.threads: list[threading.Thread] = []

    def invalidate(self, access_token: str | None = None) -> None:
        self.threads.append(threading.current_thread())
        if not self.released.wait(5):
            raise AssertionError("invalidate was never released: it blocked the event loop")
        super().invalidate(access_token)


def test_a_foreign_source_is_invalidated_in_a_thread_of_its_own_through_the_async_adapter():
    # No ainvalidate: its invalidate runs off the loop (the loop releases it meanwhile), and in a
    # thread of keyturn's own, not the loop's default executor (keyturn._uninterrupted).
    source = BlockingRotating(T1, T2)
    assert not hasattr(source, "ainvalidate")
    handler, seen = accepts("second-token")

    async def main() -> tuple[httpx.Response, threading.Thread]:
        loop_thread = threading.current_thread()

        async def release_soon() -> None:
            while not source.threads:
                await asyncio.sleep(0.001)  # runs only while the loop is free
            source.released.set()

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler),
                                     auth=HttpxAuth(source)) as client:
            response, _ = await asyncio.gather(client.get("https://api.example/"), release_soon())
        return response, loop_thread

    response, loop_thread = asyncio.run(main())
    assert response.status_code == 200
    assert seen == ["Bearer first-token", "Bearer second-token"]
    assert source.invalidated == ["first-token"]
    [thread] = source.threads
    assert thread is not loop_thread and thread.name == "keyturn-worker"


def test_aresume_runs_a_foreign_invalidate_that_fails_in_its_thread_and_raises_it_here():
    class Broken(Rotating):
        def invalidate(self, access_token: str | None = None) -> None:
            raise KeyturnError("the store is read-only")

    async def main() -> None:
        await aresume(presented(Broken(T1, T2), T1), 401)

    with pytest.raises(KeyturnError, match="read-only"):
        asyncio.run(main())


# -- the adapters ----------------------------------------------------------------------------------

def accepts(token: str):
    """An httpx handler: 200 for ``Authorization`` ending in ``token``, else 401; records headers."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        ok = seen[-1].endswith(" " + token)
        return httpx.Response(200 if ok else 401, content=request.content if ok else b"")

    return handler, seen


def test_httpx_adapter_retries_once_with_the_fresh_token():
    handler, seen = accepts("second-token")
    source = Rotating(T1, T2)
    with httpx.Client(transport=httpx.MockTransport(handler), auth=HttpxAuth(source)) as client:
        response = client.post("https://api.example/", content=b"body")
    assert (response.status_code, response.content) == (200, b"body")  # the body was sent again
    assert seen == ["Bearer first-token", "Bearer second-token"]
    assert [r.status_code for r in response.history] == [401]


def test_httpx_async_adapter_retries_once_and_passes_the_second_401_back():
    handler, seen = accepts("nothing-works")
    source = Rotating(T1, T2, Token(access_token="third-token"))

    async def main() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler),
                                     auth=HttpxAuth(source)) as client:
            return await client.get("https://api.example/")

    assert asyncio.run(main()).status_code == 401
    assert seen == ["Bearer first-token", "Bearer second-token"]


def test_httpx_adapter_sends_the_token_type_as_the_scheme():
    handler, seen = accepts("proof-bound")
    source = Rotating(Token(access_token="proof-bound", token_type="DPoP"))
    with httpx.Client(transport=httpx.MockTransport(handler), auth=HttpxAuth(source)) as client:
        assert client.get("https://api.example/").status_code == 200
    assert seen == ["DPoP proof-bound"]


def test_a_static_token_passes_the_401_back_without_a_retry():
    handler, seen = accepts("other")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=StaticToken("made-up")) as client:
        assert client.get("https://api.example/").status_code == 401
    assert seen == ["Bearer made-up"]


@contextmanager
def api_accepting(token: str) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP API for requests: 200 (echoing the body) for ``token``, else 401; ``/moved``
    redirects to ``/api``."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/moved":
                self.send_response(307)
                self.send_header("Location", "/api")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.append(self.headers.get("Authorization", ""))
            ok = seen[-1].endswith(" " + token)
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", str(len(body) if ok else 0))
            self.end_headers()
            if ok:
                self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_requests_adapter_retries_once_with_the_fresh_token():
    source = Rotating(T1, T2)
    with api_accepting("second-token") as (url, seen), requests.Session() as session:
        session.trust_env = False
        response = session.post(url + "/api", data=b"body", auth=RequestsAuth(source))
    assert (response.status_code, response.content) == (200, b"body")
    assert seen == ["Bearer first-token", "Bearer second-token"]
    assert [r.status_code for r in response.history] == [401]


def test_requests_adapter_retries_once_only():
    source = Rotating(T1, T2, Token(access_token="third-token"))
    with api_accepting("nothing-works") as (url, seen), requests.Session() as session:
        session.trust_env = False
        assert session.post(url + "/api", auth=RequestsAuth(source)).status_code == 401
    assert seen == ["Bearer first-token", "Bearer second-token"]


def test_requests_adapter_answers_the_401_at_the_end_of_a_redirect():
    source = Rotating(T1, T2)
    with api_accepting("second-token") as (url, seen), requests.Session() as session:
        session.trust_env = False
        response = session.post(url + "/moved", data=b"body", auth=RequestsAuth(source))
    assert response.status_code == 200
    assert seen == ["Bearer first-token", "Bearer second-token"]


def test_globus_protocol_drives_the_flow_across_its_two_calls():
    source = Rotating(T1, T2)
    authorizer = SdkAuth(source)
    assert authorizer.get_authorization_header() == "Bearer first-token"
    assert authorizer.handle_missing_authorization() is True  # globus-sdk retries
    assert source.invalidated == ["first-token"]
    assert authorizer.get_authorization_header() == "Bearer second-token"


def test_globus_protocol_reports_a_token_that_cannot_be_renewed():
    authorizer = StaticToken("made-up")
    assert authorizer.get_authorization_header() == "Bearer made-up"
    assert authorizer.handle_missing_authorization() is False  # globus-sdk reports the 401


def test_globus_flows_of_two_threads_stay_apart():
    source = Rotating(T1, T2)
    authorizer = SdkAuth(source)
    authorizer.get_authorization_header()
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(authorizer.handle_missing_authorization()))
    thread.start()
    thread.join()
    # The other thread had sent nothing: it took the current token as the refused one.
    assert other == [True] and source.tokens == [T2]
    # This thread's flow had sent T1: it refuses T1 only (already gone) and retries with T2.
    assert authorizer.handle_missing_authorization() is True
    assert source.invalidated == ["first-token", "first-token"] and source.tokens == [T2]


def test_globus_replays_what_each_thread_presented_after_another_refreshed():
    # A thread sends T1; another, after a refresh, T2; both get a 401. Each refuses the token it
    # sent, not the current one: the first's 401 must not refuse T3, which it never sent.
    source = Rotating(T1, T2, Token(access_token="third-token", expires_at=2e9))
    authorizer = SdkAuth(source)
    assert authorizer.get_authorization_header() == "Bearer first-token"
    source.tokens.pop(0)  # another process refreshed: T2 is current
    second: list[object] = []

    def other_thread() -> None:
        second.append(authorizer.get_authorization_header())
        second.append(authorizer.handle_missing_authorization())
        second.append(authorizer.get_authorization_header())

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert second == ["Bearer second-token", True, "Bearer third-token"]
    assert source.invalidated == ["second-token"]
    assert authorizer.handle_missing_authorization() is True  # this thread: T1 refused, T3 fresh
    assert source.invalidated == ["second-token", "first-token"]
    assert source.tokens[0].access_token == "third-token"


def test_every_source_records_what_it_presented_per_thread_without_an_adapter_init():
    source = StaticToken("made-up")
    assert source.get_authorization_header() == "Bearer made-up"
    assert source._presented.token is source.get_token()
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(getattr(source._presented, "token", None)))
    thread.start()
    thread.join()
    assert seen == [None]


def test_firecrest_protocol_renders_the_header():
    source = Rotating(Token(access_token="abc", token_type="bearer"))
    assert SdkAuth(source).auth_headers() == {"Authorization": "Bearer abc"}

    async def main() -> dict[str, str]:
        return await SdkAuth(source).aauth_headers()

    assert asyncio.run(main()) == {"Authorization": "Bearer abc"}


def test_every_source_is_each_adapter_over_itself():
    source = ClientCredentials(token_endpoint="https://id.example/token", client_id="c",
                               client_secret="s", store=MemoryStore())
    assert isinstance(source, HttpxAuth) and isinstance(source, RequestsAuth)
    assert isinstance(source, SdkAuth)
    assert source.token_source is source
    assert "Rotating" in repr(HttpxAuth(Rotating(T1)))


class FailsToRenew(Rotating):
    """Refuses to get a second token, as a source whose refresh fails does."""

    def get_token(self) -> Token:
        if self.invalidated:
            raise KeyturnError("the refresh failed")
        return super().get_token()


def test_a_refresh_that_fails_after_a_401_shows_no_token_in_the_traceback():
    from tests.support.tracebackcheck import assert_hidden, capture

    secret = Token(access_token="first-token-0123456789abcdef")
    handler, _ = accepts("nothing-works")
    client = httpx.Client(transport=httpx.MockTransport(handler), auth=HttpxAuth(FailsToRenew(secret)))
    with client:
        exc = capture(lambda: client.get("https://api.example/"))
    assert isinstance(exc, KeyturnError)
    assert_hidden(exc, [secret.access_token, secret.authorization()])
