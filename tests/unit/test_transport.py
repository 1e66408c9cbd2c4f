"""keyturn.transport: run/arun drive protocol flows over httpx; retries and backoff.

Fault injection is the one place where a mock transport stands in for a server: httpx.MockTransport
answers, fails, or times out as each test scripts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import keyturn.transport as transport
from keyturn.errors import InvalidGrant, InvalidResponse, OAuthError, TransportError
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.grants import token_flow
from keyturn.protocol.http import Flow, HttpRequest, Wait
from keyturn.protocol.metadata import discover
from keyturn.token import Token
from keyturn.transport import MAX_BODY, RetryPolicy, arun, run

URL = "https://as.example/oauth2/token"
SECRET = "s3cr3t-value-in-the-form"
TOKEN_BODY = {"access_token": "AT", "token_type": "Bearer", "expires_in": 300}

Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """Answers requests in order from a list of responses or exceptions, and records them."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        request.read()
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, type) and issubclass(step, BaseException):
            raise step("injected", request=request)
        assert isinstance(step, httpx.Response)
        return step

    @property
    def count(self) -> int:
        return len(self.requests)


def ok(body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=TOKEN_BODY if body is None else body, headers=headers)


def status(code: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(code, json=body or {"error": "temporarily_unavailable"}, headers=headers)


def flow(*, idempotent: bool = True, url: str = URL) -> Flow[Token]:
    auth = ClientAuth.create(client_id="c", client_secret=SECRET, auth_method="client_secret_post")
    return token_flow(endpoint=url, grant_type="client_credentials", params={"scope": "a b"},
                      client_auth=auth, now=1000.0, idempotent=idempotent)


def sync_client(script: Script) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(script))


def async_client(script: Script) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(script))


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def async_sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorded = Sleeps()

    async def fake_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(transport.asyncio, "sleep", fake_sleep)
    return recorded


# -- sending --------------------------------------------------------------------------------------------


def test_form_headers_and_result(sleeps: Sleeps) -> None:
    script = Script(ok())
    with sync_client(script) as client:
        token = run(flow(), client, sleep=sleeps)
    assert token.access_token == "AT"
    assert token.expires_at == 1300.0
    (request,) = script.requests
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == (
        f"grant_type=client_credentials&scope=a+b&client_id=c&client_secret={SECRET}".encode()
    )
    assert sleeps == []


def test_repeated_form_values_are_sent_repeated(sleeps: Sleeps) -> None:
    def resource_flow() -> Flow[int]:
        response = yield HttpRequest("POST", URL, form={"resource": ["https://r1", "https://r2"]})
        return response.status

    script = Script(ok())
    with sync_client(script) as client:
        assert run(resource_flow(), client, sleep=sleeps) == 200
    assert script.requests[0].content == b"resource=https%3A%2F%2Fr1&resource=https%3A%2F%2Fr2"


def test_multi_step_flow(sleeps: Sleeps) -> None:
    issuer = "https://id.example"
    doc = {"issuer": issuer, "token_endpoint": issuer + "/token"}
    script = Script(httpx.Response(404), ok(doc))
    with sync_client(script) as client:
        metadata = run(discover(issuer), client, sleep=sleeps)
    assert metadata.token_endpoint == issuer + "/token"
    assert [str(r.url) for r in script.requests] == [
        issuer + "/.well-known/openid-configuration", issuer + "/.well-known/oauth-authorization-server",
    ]
    assert sleeps == []  # a 404 is an answer, not a failure to retry


def test_wait_steps_sleep_until_the_given_time(sleeps: Sleeps) -> None:
    def waiting_flow() -> Flow[float]:
        now = yield Wait(until=0.0)  # long past: no sleeping
        return float(now)

    with sync_client(Script(ok())) as client:
        resumed = run(waiting_flow(), client, sleep=sleeps)
    assert sleeps == [0.0]
    assert resumed > 1e9  # the wall-clock time is sent back


# -- retries --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_retryable_status_then_success(sleeps: Sleeps, code: int) -> None:
    script = Script(status(code), ok())
    with sync_client(script) as client:
        assert run(flow(), client, sleep=sleeps).access_token == "AT"
    assert script.count == 2
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= RetryPolicy().backoff


def test_retries_stop_after_the_policy_total(sleeps: Sleeps) -> None:
    script = Script(status(503))
    with sync_client(script) as client, pytest.raises(OAuthError) as info:
        run(flow(), client, policy=RetryPolicy(total=3), sleep=sleeps)
    assert info.value.status == 503
    assert script.count == 4
    assert len(sleeps) == 3


def test_backoff_grows_and_is_capped(sleeps: Sleeps) -> None:
    policy = RetryPolicy(total=6, backoff=1.0, backoff_max=4.0)
    script = Script(status(503))
    with sync_client(script) as client, pytest.raises(OAuthError):
        run(flow(), client, policy=policy, sleep=sleeps)
    ceilings = [1, 2, 4, 4, 4, 4]
    assert len(sleeps) == len(ceilings)
    assert all(0 <= slept <= ceiling for slept, ceiling in zip(sleeps, ceilings))


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5), ("-3", 0.0),
                                                  ("86400", 30.0), ("inf", 30.0)])
def test_retry_after_is_honoured(sleeps: Sleeps, header: str, expected: float) -> None:
    script = Script(status(503, **{"Retry-After": header}), ok())
    with sync_client(script) as client:
        run(flow(), client, sleep=sleeps)
    assert sleeps == [expected]


@pytest.mark.parametrize("header", ["nan", "soon", "Wed, 99 Foo 2015 07:28:00 GMT"])
def test_unusable_retry_after_falls_back_to_backoff(sleeps: Sleeps, header: str) -> None:
    script = Script(status(429, **{"Retry-After": header}), ok())
    with sync_client(script) as client:
        run(flow(), client, sleep=sleeps)
    assert len(sleeps) == 1
    assert math.isfinite(sleeps[0]) and 0 <= sleeps[0] <= RetryPolicy().retry_after_max


def test_retry_after_as_a_date(sleeps: Sleeps) -> None:
    script = Script(status(503, **{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}), ok())
    with sync_client(script) as client:
        run(flow(), client, sleep=sleeps)
    assert sleeps == [0.0]  # a date in the past: no wait


@pytest.mark.parametrize("code", [400, 401, 403, 404])
def test_client_errors_are_never_retried(sleeps: Sleeps, code: int) -> None:
    script = Script(status(code, {"error": "invalid_grant", "error_description": "expired"}), ok())
    with sync_client(script) as client, pytest.raises(InvalidGrant) as info:
        run(flow(), client, sleep=sleeps)
    assert info.value.status == code
    assert script.count == 1
    assert sleeps == []


# -- network failures -----------------------------------------------------------------------------------


def test_connection_error_names_the_url_and_never_the_secret(sleeps: Sleeps) -> None:
    url = "https://user:pw@as.example/oauth2/token?tenant=t1"
    script = Script(httpx.ConnectError(f"connection refused while sending client_secret={SECRET}"))
    with sync_client(script) as client, pytest.raises(TransportError) as info:
        run(flow(url=url), client, sleep=sleeps)
    message = str(info.value)
    assert "https://as.example/oauth2/token" in message
    assert "could not connect" in message
    assert "token endpoint" in message
    assert SECRET not in message and SECRET not in repr(info.value)
    assert "pw" not in message and "tenant" not in message
    assert info.value.url == "https://as.example/oauth2/token"
    assert info.value.__suppress_context__
    # Connection errors never reached the server: retried, up to the policy's total.
    assert script.count == 3
    assert len(sleeps) == 2


def test_connection_error_then_success(sleeps: Sleeps) -> None:
    script = Script(httpx.ConnectError("refused"), ok())
    with sync_client(script) as client:
        assert run(flow(idempotent=False), client, sleep=sleeps).access_token == "AT"
    assert script.count == 2


def test_read_timeout_on_a_non_idempotent_request_is_not_retried(sleeps: Sleeps) -> None:
    script = Script(httpx.ReadTimeout("timed out"), ok())
    with sync_client(script) as client, pytest.raises(TransportError, match="timed out waiting for"):
        run(flow(idempotent=False), client, sleep=sleeps)
    assert script.count == 1
    assert sleeps == []


def test_read_timeout_on_an_idempotent_request_is_retried(sleeps: Sleeps) -> None:
    script = Script(httpx.ReadTimeout("timed out"), ok())
    with sync_client(script) as client:
        assert run(flow(idempotent=True), client, sleep=sleeps).access_token == "AT"
    assert script.count == 2


@pytest.mark.parametrize("code", [500, 502, 504])
def test_server_error_on_a_non_idempotent_request_is_not_retried(sleeps: Sleeps, code: int) -> None:
    # The request reached a server: sending a rotating refresh token again could spend it twice.
    script = Script(status(code, {"error": "server_error"}), ok())
    with sync_client(script) as client, pytest.raises(OAuthError) as info:
        run(flow(idempotent=False), client, sleep=sleeps)
    assert info.value.status == code
    assert script.count == 1
    assert sleeps == []


@pytest.mark.parametrize("code", [429, 503])
def test_refusals_of_a_non_idempotent_request_are_retried(sleeps: Sleeps, code: int) -> None:
    # 429 and 503 say the request was not processed: sending it again is safe.
    script = Script(status(code, **{"Retry-After": "1"}), ok())
    with sync_client(script) as client:
        assert run(flow(idempotent=False), client, sleep=sleeps).access_token == "AT"
    assert sleeps == [1.0]


def test_no_retries_with_a_zero_policy(sleeps: Sleeps) -> None:
    script = Script(httpx.ConnectError("refused"))
    with sync_client(script) as client, pytest.raises(TransportError):
        run(flow(), client, policy=RetryPolicy(total=0), sleep=sleeps)
    assert script.count == 1


# -- body size -------------------------------------------------------------------------------------------


def test_body_over_one_mebibyte_is_an_invalid_response(sleeps: Sleeps) -> None:
    script = Script(httpx.Response(200, content=b" " * (MAX_BODY + 1),
                                   headers={"content-type": "application/json"}))
    with sync_client(script) as client, pytest.raises(InvalidResponse, match="more than") as info:
        run(flow(), client, sleep=sleeps)
    assert info.value.url == URL
    assert script.count == 1


def test_body_of_exactly_one_mebibyte_is_read(sleeps: Sleeps) -> None:
    body = b'{"access_token": "AT"}'
    script = Script(httpx.Response(200, content=body + b" " * (MAX_BODY - len(body)),
                                   headers={"content-type": "application/json"}))
    with sync_client(script) as client:
        assert run(flow(), client, sleep=sleeps).access_token == "AT"


# -- the policy ------------------------------------------------------------------------------------------


def test_retry_policy_is_immutable() -> None:
    policy = RetryPolicy(total=2)
    later = policy.increment().increment()
    assert policy.attempt == 0 and not policy.exhausted
    assert later.attempt == 2 and later.exhausted
    with pytest.raises(AttributeError):
        policy.attempt = 5  # type: ignore[misc]


def test_retry_policy_delay() -> None:
    policy = RetryPolicy(backoff=0.5, backoff_max=8, retry_after_max=30)
    assert policy.delay(12) == 12
    assert policy.delay(1000) == 30
    assert policy.delay(-1) == 0
    assert all(0 <= policy.delay() <= 0.5 for _ in range(50))
    assert all(0 <= policy.increment().increment().delay() <= 2 for _ in range(50))


# -- async ------------------------------------------------------------------------------------------------


async def test_async_503_then_200(async_sleeps: Sleeps) -> None:
    script = Script(status(503), ok())
    async with async_client(script) as client:
        token = await arun(flow(), client)
    assert token.access_token == "AT"
    assert script.count == 2
    assert len(async_sleeps) == 1


async def test_async_retry_after(async_sleeps: Sleeps) -> None:
    script = Script(status(429, **{"Retry-After": "4"}), status(503, **{"Retry-After": "9"}), ok())
    async with async_client(script) as client:
        await arun(flow(), client)
    assert async_sleeps == [4.0, 9.0]


async def test_async_client_error_not_retried(async_sleeps: Sleeps) -> None:
    script = Script(status(400, {"error": "invalid_grant"}), ok())
    async with async_client(script) as client:
        with pytest.raises(InvalidGrant):
            await arun(flow(), client)
    assert script.count == 1
    assert async_sleeps == []


async def test_async_connection_error(async_sleeps: Sleeps) -> None:
    script = Script(httpx.ConnectError(f"refused {SECRET}"))
    async with async_client(script) as client:
        with pytest.raises(TransportError) as info:
            await arun(flow(), client)
    assert URL in str(info.value) and SECRET not in str(info.value)
    assert script.count == 3


async def test_async_read_timeout_non_idempotent_not_retried(async_sleeps: Sleeps) -> None:
    script = Script(httpx.ReadTimeout("slow"), ok())
    async with async_client(script) as client:
        with pytest.raises(TransportError):
            await arun(flow(idempotent=False), client)
    assert script.count == 1


async def test_async_server_error_non_idempotent_not_retried(async_sleeps: Sleeps) -> None:
    script = Script(status(502, {"error": "server_error"}), ok())
    async with async_client(script) as client:
        with pytest.raises(OAuthError):
            await arun(flow(idempotent=False), client)
    assert script.count == 1


async def test_async_body_too_large() -> None:
    script = Script(httpx.Response(200, content=b"x" * (MAX_BODY + 10)))
    async with async_client(script) as client:
        with pytest.raises(InvalidResponse):
            await arun(flow(), client)


async def test_async_with_tiny_real_backoff() -> None:
    # No patched sleep at all: a tiny policy backoff keeps the real wait negligible.
    script = Script(status(500), status(500), ok())
    async with async_client(script) as client:
        token = await arun(flow(), client, RetryPolicy(total=2, backoff=0.001, backoff_max=0.001))
    assert token.access_token == "AT"
    assert script.count == 3
