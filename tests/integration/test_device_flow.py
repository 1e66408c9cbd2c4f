"""DeviceCode (RFC 8628) against the real provider: the person's approval is played by driving the
provider's own verification, login and consent pages over HTTP from the prompt callback."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from keyturn import (
    AccessDenied,
    DeviceCode,
    DeviceVerification,
    ExpiredToken,
    FileStore,
    LoginRequired,
    MemoryStore,
)
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.device import (
    DeviceAuthorization,
    DeviceState,
    device_authorization_flow,
    device_poll_flow,
)
from keyturn.protocol.http import HttpRequest, HttpResponse, Received, Wait
from tests.support.mode import Mode
from tests.support.providerfixture import DEVICE_CODE_GRANT, Provider, approve_device_code, start_provider


@pytest.fixture
def knobs(fresh_stats: Provider) -> Iterator[Provider]:
    """The session provider answering device requests with interval=1 (not the stock 5 s)."""
    fresh_stats.set_device_knobs(interval=1)
    yield fresh_stats
    fresh_stats.set_device_knobs(interval=None, slow_down_times=0)


class Approver:
    """A prompt that approves (or denies) in a background thread, as a person on a phone would."""

    def __init__(self, provider: Provider, *, abort: bool = False, approve: bool = True,
                 via: str | None = None) -> None:
        self.provider = provider
        self.via = via  # the provider's pages name the host they were reached through
        self.abort = abort
        self.approve = approve
        self.shown: list[DeviceVerification] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def __call__(self, verification: DeviceVerification) -> None:
        self.shown.append(verification)
        if not self.approve:
            return

        def run() -> None:
            try:
                url = verification.verification_uri_complete
                assert url is not None
                if self.via:
                    url = url.replace(self.via, self.provider.issuer)
                approve_device_code(self.provider, url, abort=self.abort)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
        assert not self.errors, self.errors


def device_source(provider: Provider, prompt: Any = None, **kwargs: Any) -> DeviceCode:
    kwargs.setdefault("store", MemoryStore())
    return DeviceCode(issuer=provider.issuer, client_id="public", prompt=prompt, **kwargs)


def polls(provider: Provider, client_id: str = "public") -> list[int]:
    """The HTTP status of each device-code poll, in order."""
    log = provider.stats(log=True)["log"]
    return [e["status"] for e in log if e["grant_type"] == DEVICE_CODE_GRANT
            and e["client_id"] == client_id]


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# -- approval ---------------------------------------------------------------------------------------


def test_approved_login_gives_tokens_with_claims_and_stops_polling(knobs: Provider, mode: Mode) -> None:
    provider = knobs
    approver = Approver(provider)
    source = device_source(provider, approver)
    token = mode.token(source)
    approver.join()
    assert len(approver.shown) == 1
    shown = approver.shown[0]
    assert shown.verification_uri == f"{provider.issuer}/device"
    assert shown.verification_uri_complete.endswith(shown.user_code)
    assert shown.interval == 1 and shown.expires_in > 0
    assert token.refresh_token and token.id_token
    assert token.scope == ("openid", "offline_access")
    assert token.claims["sub"] == "alice" and token.claims["aud"] == "public"
    assert token.claims["iss"] == provider.issuer
    assert mode.access_token(source) == token.access_token
    assert mode.userinfo(source) == {"sub": "alice"}
    # Polls until the first success, and never after it (a second use revokes the grant).
    statuses = polls(provider)
    assert statuses[-1] == 200 and statuses.count(200) == 1
    assert set(statuses[:-1]) <= {400}


def test_without_a_prompt_and_a_terminal_the_source_is_silent(
        provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO())  # as under cron, CI, or `$(keyturn token)`
    source = DeviceCode(issuer=provider.issuer, client_id="public", store=MemoryStore())
    assert source.interactive is False
    with pytest.raises(LoginRequired):
        source.get_access_token()


def test_nothing_secret_is_logged(knobs: Provider, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    approver = Approver(knobs)
    source = device_source(knobs, approver)
    token = source.get_token()
    approver.join()
    source.invalidate()
    refreshed = source.get_token()
    assert caplog.records  # the login and the refresh were logged, without their secrets
    for secret in (token.access_token, token.refresh_token, token.id_token,
                   refreshed.access_token, refreshed.refresh_token):
        assert secret and secret not in caplog.text
        assert secret not in repr(token) and secret not in repr(refreshed)


def test_confidential_client_authenticates_at_the_device_endpoint(knobs: Provider) -> None:
    provider = knobs
    info = provider.clients["confidential-device"]
    approver = Approver(provider)
    source = DeviceCode(issuer=provider.issuer, client_id=info.client_id,
                        client_secret=info.client_secret, prompt=approver, store=MemoryStore())
    assert source.get_token().refresh_token
    approver.join()
    assert polls(provider, "confidential-device")[-1] == 200


def test_denied_login_raises_access_denied(knobs: Provider) -> None:
    approver = Approver(knobs, abort=True)
    source = device_source(knobs, approver)
    with pytest.raises(AccessDenied):
        source.get_token()
    approver.join()


def test_non_interactive_caller_gets_login_required_and_no_prompt(knobs: Provider) -> None:
    approver = Approver(knobs)
    source = device_source(knobs, approver, interactive=False)
    with pytest.raises(LoginRequired, match="log in"):
        source.get_access_token()
    assert approver.shown == []
    assert knobs.token_requests("public") == 0


# -- expiry and slow_down -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """A provider whose device codes live 1 second."""
    provider = start_provider(None, tmp_path_factory.mktemp("short-device"), device_code_ttl=1)
    provider.set_device_knobs(interval=1)
    yield provider
    provider.stop()


def test_unapproved_code_expires_client_side(short_lived: Provider) -> None:
    approver = Approver(short_lived, approve=False)
    source = device_source(short_lived, approver)
    with pytest.raises(ExpiredToken):
        source.get_token()
    assert approver.shown[0].expires_in == 1


def _send(client: httpx.Client, request: HttpRequest) -> HttpResponse:
    response = client.request(request.method, request.url, headers=dict(request.headers),
                              data=dict(request.form_items()))
    return HttpResponse(response.status_code, dict(response.headers), response.content,
                        request.url)


def test_server_side_expired_token_is_expired_token(short_lived: Provider) -> None:
    machine = DeviceAuthorization(
        device_authorization_endpoint=short_lived.device_authorization_endpoint,
        token_endpoint=short_lived.token_endpoint,
        client_auth=ClientAuth.create(client_id="public"), params={"scope": "openid"},
    )
    with httpx.Client(trust_env=False) as client:
        request = machine.authorization_request(0.0)
        machine.receive_authorization(_send(client, request), 0.0)
        expires = time.monotonic() + 1.0
        # The code dies at the provider; our (fake) clock still says it is young, so we do poll.
        wait_for(lambda: time.monotonic() > expires + 0.2)
        with pytest.raises(ExpiredToken) as caught:
            machine.receive_poll(_send(client, machine.poll_request(0.5)), 0.5)
    assert caught.value.error == "expired_token"  # the server's own answer
    assert machine.state is DeviceState.FAILED


class FakeClockDriver:
    """Answers requests over real HTTP and waits with a fake clock that jumps to each deadline."""

    def __init__(self, client: httpx.Client, now: float = 1000.0) -> None:
        self.client = client
        self.now = now
        self.gaps: list[float] = []

    def run(self, flow: Any, before_request: Any = None) -> Any:
        try:
            step = next(flow)
            while True:
                if isinstance(step, Wait):
                    self.gaps.append(step.until - self.now)
                    self.now = step.until
                    step = flow.send(self.now)
                elif isinstance(step, Received):
                    step = flow.send(None)
                else:
                    if before_request is not None:
                        before_request()
                    step = flow.send(_send(self.client, step))
        except StopIteration as stop:
            return stop.value


def test_slow_down_adds_5_seconds_each_time(knobs: Provider) -> None:
    """The real provider answers slow_down twice; a fake clock stands in for the 1+6+11 s."""
    provider = knobs
    provider.set_device_knobs(interval=1, slow_down_times=2)
    machine = DeviceAuthorization(
        device_authorization_endpoint=provider.device_authorization_endpoint,
        token_endpoint=provider.token_endpoint,
        client_auth=ClientAuth.create(client_id="public"),
        params={"scope": "openid offline_access"},
    )
    with httpx.Client(trust_env=False) as client:
        driver = FakeClockDriver(client)
        verification = driver.run(device_authorization_flow(machine, now=driver.now))

        def approve_after_two_slow_downs() -> None:
            if machine.polls == 3:  # the third poll is about to go out
                approve_device_code(provider, verification.verification_uri_complete)

        token = driver.run(device_poll_flow(machine), approve_after_two_slow_downs)
    assert token.access_token and token.refresh_token
    assert driver.gaps == [1, 6, 11]
    assert polls(provider) == [400, 400, 200]
    assert machine.state is DeviceState.APPROVED


# -- after the login ---------------------------------------------------------------------------------


def test_expired_access_token_is_refreshed_silently(knobs: Provider, tmp_path: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    provider = knobs
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    approver = Approver(provider)
    source = DeviceCode(issuer=provider.issuer, client_id="public", prompt=approver)
    assert isinstance(source.cache.store, FileStore)  # interactive sources keep their logins
    first = source.get_access_token()
    approver.join()
    # The public client's access tokens live 3 s: wait for the silent refresh.
    wait_for(lambda: source.get_access_token() != first)
    assert len(approver.shown) == 1
    assert provider.token_requests("public", "refresh_token") == 1
    assert provider.token_requests("public", DEVICE_CODE_GRANT) == len(polls(provider))
    assert source.get_token().claims["sub"] == "alice"
    # Another process (another source on the same store) needs no login either.
    other = DeviceCode(issuer=provider.issuer, client_id="public", interactive=False)
    assert other.get_access_token() == source.get_access_token()


def _revoke(provider: Provider, refresh_token: str) -> None:
    response = httpx.post(provider.revocation_endpoint, trust_env=False,
                          data={"token": refresh_token, "client_id": "public",
                                "token_type_hint": "refresh_token"})
    assert response.status_code == 200


def test_refused_refresh_token_means_a_new_login_or_login_required(knobs: Provider) -> None:
    provider = knobs
    store = MemoryStore()
    approver = Approver(provider)
    source = device_source(provider, approver, store=store)
    token = source.get_token()
    approver.join()
    _revoke(provider, token.refresh_token)
    silent = device_source(provider, interactive=False, store=store)
    silent.invalidate()
    with pytest.raises(LoginRequired):
        silent.get_access_token()
    # The refused refresh token was dropped: the next silent call asks nobody and sends nothing.
    assert store.load(silent.cache.key).refresh_token is None
    refreshes = provider.token_requests("public", "refresh_token")
    with pytest.raises(LoginRequired):
        silent.get_access_token()
    assert provider.token_requests("public", "refresh_token") == refreshes == 1
    # An interactive caller logs in again.
    source.invalidate()
    again = source.get_token()
    approver.join()
    assert len(approver.shown) == 2
    assert again.refresh_token and again.refresh_token != token.refresh_token


def test_refused_refresh_token_interactive_logs_in_again(knobs: Provider) -> None:
    provider = knobs
    approver = Approver(provider)
    source = device_source(provider, approver)
    token = source.get_token()
    approver.join()
    _revoke(provider, token.refresh_token)
    source.invalidate()
    again = source.get_token()
    approver.join()
    assert len(approver.shown) == 2
    assert provider.token_requests("public", "refresh_token") == 1  # tried once, refused
    assert again.access_token != token.access_token and again.claims["sub"] == "alice"


def test_ctrl_c_while_polling_leaves_no_cache(knobs: Provider, tmp_path: Any) -> None:
    provider = knobs
    shown: list[DeviceVerification] = []

    def prompt(verification: DeviceVerification) -> None:
        shown.append(verification)

        def press_ctrl_c() -> None:
            wait_for(lambda: provider.token_requests("public", DEVICE_CODE_GRANT) >= 1)
            _thread.interrupt_main()

        threading.Thread(target=press_ctrl_c, daemon=True).start()

    store = FileStore(tmp_path)
    source = device_source(provider, prompt, store=store)
    with pytest.raises(KeyboardInterrupt):
        source.get_token()
    assert len(shown) == 1
    assert store.load(source.cache.key) is None
    assert sorted(p.suffix for p in tmp_path.iterdir()) in ([], [".lock"])
    # The lock was released and no refresh is left in flight: the next call runs normally.
    silent = device_source(provider, interactive=False, store=store)
    with pytest.raises(LoginRequired):
        silent.get_token()


def test_a_poll_without_answer_doubles_the_interval_and_polling_goes_on(knobs: Provider) -> None:
    from tests.support.faultproxy import FaultProxy

    provider = knobs
    with FaultProxy(provider.issuer) as proxy:
        approver = Approver(provider, via=proxy.url)
        proxy.then("pass", "hold")  # the device request passes; the first poll never gets an answer
        source = DeviceCode(token_endpoint=proxy.url + "/token",
                            device_authorization_endpoint=proxy.url + "/device/auth",
                            client_id="public", prompt=approver, store=MemoryStore(), timeout=0.3)
        token = source.get_token()
        approver.join()
    assert token.refresh_token
    assert proxy.seen == ["pass", "hold", "pass"]
    assert polls(provider) == [200]  # the held poll never reached the provider
