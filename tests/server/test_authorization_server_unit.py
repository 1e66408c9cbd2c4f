"""The sans-I/O AuthorizationServer driven directly: memory storage, a fake clock, no sockets.

One login goes the whole way (device authorization, pending poll, approval, token, refresh
rotation, reuse revoking the family, revocation, introspection), every refusal raised as the
client's own error class and rendered once, by ``error_reply``, to the bytes the HTTP tests see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from keyturn.errors import (
    AccessDenied,
    AuthorizationPending,
    ExpiredToken,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    SlowDown,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from keyturn.protocol import device as client_device
from keyturn.protocol import rfc8628
from keyturn.protocol.grants import GRANT_DEVICE_CODE, GRANT_REFRESH_TOKEN
from keyturn.server import device_flow
from keyturn.server.config import ServerConfig
from keyturn.server.device_flow import DeviceGrant, DeviceStatus, hash_code
from keyturn.server.errors import BadForm, InvalidToken, error_reply, refusal
from keyturn.server.passwords import User
from keyturn.server.reply import NO_STORE, Reply
from keyturn.server.service import AuthorizationServer
from keyturn.server.storage.memory import MemoryStorage
from keyturn.server.tokens import load_signer
from tests.support.serverkit import make_config

ISSUER = "https://login.example.test/realm"
ALICE = User(subject="alice", claims={"name": "Alice Example", "email": "alice@example.invalid"})
ADDRESS = "192.0.2.7"


class FakeClock:
    """The time the test says it is; the server reads no clock of its own."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture(scope="module")
def signing_storage() -> MemoryStorage:
    """One storage whose signing key is made once (RSA 2048 takes a while), copied per test."""
    storage = MemoryStorage()
    load_signer(storage, ISSUER)
    return storage


def _server(signing_storage: MemoryStorage, config: ServerConfig | None = None
            ) -> AuthorizationServer:
    storage = MemoryStorage()
    key = signing_storage.setting("signing_key", lambda: pytest.fail("no key made"))
    storage.setting("signing_key", lambda: key)
    return AuthorizationServer(config or make_config(), storage, load_signer(storage, ISSUER),
                               ISSUER)


@pytest.fixture
def server(signing_storage: MemoryStorage) -> AuthorizationServer:
    return _server(signing_storage)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def refused(kind: type[OAuthError], call: Any, *args: Any, **kwargs: Any) -> OAuthError:
    """The refusal ``call(...)`` raises, which must be exactly ``kind`` with its wire code."""
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is kind and caught.value.error == kind.code
    return caught.value


def start(server: AuthorizationServer, clock: FakeClock, scope: str = "openid profile offline_access"
          ) -> Mapping[str, Any]:
    reply = server.device_authorization(server.config.clients["demo"], {"scope": scope}, clock.now)
    assert reply.status == 200 and reply.headers == NO_STORE
    return reply.body


def poll(server: AuthorizationServer, device_code: str, clock: FakeClock,
         client: str = "demo") -> Reply:
    return server.token(server.config.clients[client],
                        {"grant_type": GRANT_DEVICE_CODE, "device_code": device_code}, clock.now)


def refresh(server: AuthorizationServer, refresh_token: str, clock: FakeClock,
            **extra: str) -> Reply:
    return server.token(server.config.clients["demo"],
                        {"grant_type": GRANT_REFRESH_TOKEN, "refresh_token": refresh_token, **extra},
                        clock.now)


def approve(server: AuthorizationServer, user_code: str, clock: FakeClock,
            user: User | None = ALICE) -> DeviceStatus | None:
    lookup = server.lookup_user_code(user_code.lower(), ADDRESS, clock.now)
    assert lookup.grant is not None and not lookup.limited
    server.signed_in(ADDRESS, clock.now)
    return server.settle(lookup.grant.device_code_hash, user, clock.now)


def introspect(server: AuthorizationServer, token: str, clock: FakeClock) -> Mapping[str, Any]:
    reply = server.introspect(server.config.clients["rs"], {"token": token}, clock.now)
    assert reply.status == 200
    return reply.body


def login(server: AuthorizationServer, clock: FakeClock) -> Mapping[str, Any]:
    started = start(server, clock)
    assert approve(server, started["user_code"], clock) is DeviceStatus.APPROVED
    clock.advance(server.lifetimes.interval)
    reply = poll(server, started["device_code"], clock)
    assert reply.status == 200
    return reply.body


# -- the whole login ---------------------------------------------------------------------------------

def test_one_login_from_device_authorization_to_revocation(server, clock):
    started = start(server, clock)
    # RFC 8628 §3.2: the four REQUIRED members, and the two OPTIONAL ones this server sends.
    assert started["verification_uri"] == f"{ISSUER}/device"
    assert started["verification_uri_complete"] == f"{ISSUER}/device?user_code={started['user_code']}"
    assert started["expires_in"] == server.lifetimes.device_code
    assert started["interval"] == server.lifetimes.interval == 1
    assert len(started["device_code"]) >= 42

    # Nobody has approved yet: pending, then slow_down for a poll inside the interval.
    clock.advance(1)
    pending = refused(AuthorizationPending, poll, server, started["device_code"], clock)
    assert error_reply(pending) == Reply(400, {"error": "authorization_pending",
                                               "error_description": "waiting for the user to "
                                               "approve"}, NO_STORE)
    clock.advance(0.1)
    refused(SlowDown, poll, server, started["device_code"], clock)

    # The person types the code (in lower case, as people do) and approves.
    clock.advance(5)
    assert approve(server, started["user_code"], clock) is DeviceStatus.APPROVED
    issued = poll(server, started["device_code"], clock).body
    assert issued["token_type"] == "Bearer" and issued["scope"] == "openid profile offline_access"
    assert {"access_token", "refresh_token", "id_token"} <= set(issued)
    active = introspect(server, issued["access_token"], clock)
    assert active["active"] is True and active["sub"] == "alice" and active["client_id"] == "demo"
    # OIDC Core §5.4: the scope has profile, not email: the name only.
    assert server.userinfo(issued["access_token"], clock.now).body == {
        "name": ALICE.claims["name"], "sub": "alice"}

    # Refresh rotation: a new refresh token each time; the old one is spent.
    clock.advance(60)
    rotated = refresh(server, issued["refresh_token"], clock).body
    assert rotated["refresh_token"] != issued["refresh_token"]
    assert introspect(server, issued["refresh_token"], clock) == {"active": False}
    assert introspect(server, rotated["refresh_token"], clock)["active"] is True

    # The spent token comes back (someone copied it) after the retry grace: the whole family dies.
    clock.advance(server.lifetimes.retry_grace)
    reused = refused(InvalidGrant, refresh, server, issued["refresh_token"], clock)
    assert reused.error_description == "the refresh token was already used"
    refused(InvalidGrant, refresh, server, rotated["refresh_token"], clock)
    for token in (issued["access_token"], rotated["access_token"], rotated["refresh_token"]):
        assert introspect(server, token, clock) == {"active": False}
    refused(InvalidToken, server.userinfo, rotated["access_token"], clock.now)

    # A fresh login, revoked by its client (RFC 7009): refresh token, and with it the login.
    second = login(server, clock)
    assert server.revoke(server.config.clients["demo"], {"token": second["refresh_token"]},
                         clock.now) == Reply(200, {}, NO_STORE)
    assert introspect(server, second["access_token"], clock) == {"active": False}
    refused(InvalidGrant, refresh, server, second["refresh_token"], clock)


def test_a_device_code_redeemed_twice_ends_the_login(server, clock):
    started = start(server, clock)
    approve(server, started["user_code"], clock)
    clock.advance(1)
    issued = poll(server, started["device_code"], clock).body
    # Past the retry grace: a second redemption, not the retry of a lost answer.
    clock.advance(server.config.lifetimes.retry_grace + 1)
    again = refused(InvalidGrant, poll, server, started["device_code"], clock)
    assert again.error_description == "the device_code was already used"
    assert introspect(server, issued["access_token"], clock) == {"active": False}
    refused(InvalidGrant, refresh, server, issued["refresh_token"], clock)


def test_revoking_an_access_token_leaves_the_refresh_token(server, clock):
    issued = login(server, clock)
    server.revoke(server.config.clients["demo"], {"token": issued["access_token"]}, clock.now)
    assert introspect(server, issued["access_token"], clock) == {"active": False}
    assert refresh(server, issued["refresh_token"], clock).status == 200


def test_another_clients_token_is_not_revoked(server, clock):
    issued = login(server, clock)
    server.revoke(server.config.clients["cli"], {"token": issued["refresh_token"]}, clock.now)
    assert introspect(server, issued["refresh_token"], clock)["active"] is True


# -- the device grant's ends, with the fake clock -------------------------------------------------

def test_an_unapproved_code_expires(server, clock):
    started = start(server, clock)
    clock.advance(server.lifetimes.device_code)
    refused(ExpiredToken, poll, server, started["device_code"], clock)
    # Past its lifetime the code is not waiting on the page either.
    assert server.lookup_user_code(started["user_code"], ADDRESS, clock.now).grant is None


def test_a_denied_code_is_access_denied(server, clock):
    started = start(server, clock)
    assert approve(server, started["user_code"], clock, user=None) is DeviceStatus.DENIED
    clock.advance(1)
    refused(AccessDenied, poll, server, started["device_code"], clock)


def test_a_code_is_only_for_its_client(server, clock):
    started = start(server, clock)
    refused(InvalidGrant, poll, server, started["device_code"], clock, "cli")
    refused(InvalidGrant, poll, server, "not-a-code", clock)


def test_wrong_user_codes_are_rate_limited_before_the_look_up(signing_storage, clock):
    limits = replace(make_config().rate_limits, per_address=2, window=60)
    server = _server(signing_storage, make_config(rate_limits=limits))
    started = start(server, clock)
    assert server.lookup_user_code("BBBB-BBBB", ADDRESS, clock.now).grant is None
    assert server.lookup_user_code("BBBB-BBBB", ADDRESS, clock.now).grant is None
    # The right code, but the limit is used up: not even looked up.
    assert server.lookup_user_code(started["user_code"], ADDRESS, clock.now).limited
    assert server.lookup_user_code(started["user_code"], "192.0.2.8", clock.now).grant is not None
    clock.advance(limits.window)
    assert server.lookup_user_code(started["user_code"], ADDRESS, clock.now).grant is not None


# -- refusals: the client's classes, rendered once ------------------------------------------------

def test_token_endpoint_refusals(server, clock):
    demo, service = server.config.clients["demo"], server.config.clients["service"]
    refused(InvalidRequest, server.token, demo, {}, clock.now)
    refused(UnsupportedGrantType, server.token, demo, {"grant_type": "password"}, clock.now)
    refused(UnauthorizedClient, server.token, demo, {"grant_type": "client_credentials"},
            clock.now)
    refused(UnauthorizedClient, server.device_authorization, server.config.clients["nogrant"], {},
            clock.now)
    refused(InvalidRequest, server.token, demo, {"grant_type": GRANT_DEVICE_CODE}, clock.now)
    refused(InvalidRequest, server.token, demo, {"grant_type": GRANT_REFRESH_TOKEN}, clock.now)
    refused(InvalidScope, server.device_authorization, demo, {"scope": "openid admin"}, clock.now)
    refused(InvalidScope, server.token, service,
            {"grant_type": "client_credentials", "scope": "api:delete"}, clock.now)
    issued = server.token(service, {"grant_type": "client_credentials", "scope": "api:read"},
                          clock.now).body
    # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included."
    assert "refresh_token" not in issued and issued["scope"] == "api:read"


def test_a_refresh_cannot_widen_the_scope(server, clock):
    issued = login(server, clock)
    refused(InvalidScope, refresh, server, issued["refresh_token"], clock, scope="openid email")
    narrower = refresh(server, issued["refresh_token"], clock, scope="openid").body
    assert narrower["scope"] == "openid"
    # The family keeps the scope first granted: the next refresh may ask for all of it again.
    assert refresh(server, narrower["refresh_token"], clock).body["scope"] == \
        "openid profile offline_access"


def test_introspection_is_for_confidential_clients(server, clock):
    error = refused(InvalidClient, server.introspect, server.config.clients["demo"],
                    {"token": "x"}, clock.now)
    assert error_reply(error) == Reply(
        401, {"error": "invalid_client", "error_description": "introspection is for "
              "confidential clients"},
        {**NO_STORE, "WWW-Authenticate": 'Basic realm="keyturn"'})
    assert introspect(server, "not a token", clock) == {"active": False}


def test_error_reply_is_rfc6749_section_5_2(clock):
    assert error_reply(refusal(InvalidGrant, "unknown refresh token")) == Reply(
        400, {"error": "invalid_grant", "error_description": "unknown refresh token"}, NO_STORE)
    assert list(error_reply(refusal(InvalidGrant, "x")).body) == ["error", "error_description"]
    # RFC 6750 §3: the resource's answer carries only the code, and its challenge.
    assert error_reply(refusal(InvalidToken, None)) == Reply(
        401, {"error": "invalid_token"},
        {"WWW-Authenticate": 'Bearer error="invalid_token"', **NO_STORE})
    assert error_reply(BadForm("the request body is too large", 413)).status == 413
    # The message a server log would show says what happened, without the client's hint.
    assert str(refusal(SlowDown, "polling too fast")) == "slow_down: polling too fast"


# -- the RFC 8628 numbers are defined once -----------------------------------------------------------

def test_rfc8628_constants_have_one_home():
    assert device_flow.DEFAULT_INTERVAL is rfc8628.DEFAULT_INTERVAL == 5
    assert device_flow.DEFAULT_LIFETIME is rfc8628.DEFAULT_LIFETIME == 1800
    assert device_flow.USER_CODE_ALPHABET is rfc8628.USER_CODE_ALPHABET
    assert client_device.DEFAULT_INTERVAL == rfc8628.DEFAULT_INTERVAL
    assert client_device.SLOW_DOWN_STEP == rfc8628.SLOW_DOWN_STEP


# -- the memory storage keeps the interface's promises ---------------------------------------------

def _grant(user_code: str = "BCDFGHJK", now: float = 1000.0) -> DeviceGrant:
    return DeviceGrant(device_code_hash=hash_code(user_code + str(now)), user_code=user_code,
                       client_id="demo", scope=("openid",), created_at=now, expires_at=now + 60,
                       interval=5)


def test_memory_storage_compare_and_set():
    storage = MemoryStorage()
    grant = _grant()
    assert storage.create_device_grant(grant)
    assert not storage.create_device_grant(_grant(now=1001.0))  # its user code is live
    first = grant.approve("alice", 1001.0)
    assert storage.swap_device_grant(first)
    assert not storage.swap_device_grant(grant.deny(1001.0))  # read before the approval: lost
    assert storage.device_grant_by_user_code("BCDFGHJK") == first
    # Past its expiry and the grace hour, the user code may be drawn again.
    later = _grant(now=1000.0 + 60 + 3600 + 1)
    assert storage.create_device_grant(later)
    assert storage.device_grant(grant.device_code_hash) is None
    storage.purge(later.expires_at + 3601)
    assert storage.device_grant_by_user_code("BCDFGHJK") is None


def test_memory_storage_counters_and_settings():
    storage = MemoryStorage()
    assert [storage.hit("k", 60, 10.0) for _ in range(3)] == [1, 2, 3]
    assert storage.hit("k", 60, 10.0, -1) == 2 and storage.hit("k", 60, 10.0, 0) == 2
    assert storage.hit("k", 60, 61.0) == 1  # a new window
    assert storage.setting("s", lambda: "first") == "first"
    assert storage.setting("s", lambda: "second") == "first"
    assert not storage.use_refresh_token("unknown", 1.0)
