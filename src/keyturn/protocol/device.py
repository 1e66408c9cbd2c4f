"""The OAuth 2.0 device authorization grant (RFC 8628), client side, as a state machine.

Rules
-----
* The client asks the device authorization endpoint for a code pair (§3.1), authenticating as it
  does at the token endpoint when it is a confidential client.
* The person is shown ``verification_uri`` and ``user_code`` (or ``verification_uri_complete``).
* The client polls the token endpoint: never more often than ``interval`` seconds (5 when the
  server gives none), 5 seconds less often after every ``slow_down``, until the first success.
  It stops for good at the first token: polling again after success makes some providers revoke
  the whole grant. It stops at ``expires_in`` with :class:`~keyturn.errors.ExpiredToken`, and on
  ``access_denied`` / ``expired_token`` from the server.
* A poll that gets no answer (a timeout, a lost connection) doubles the interval, and polling goes
  on: the driver throws the :class:`~keyturn.errors.TransportError` into
  :func:`device_poll_flow`, which reports it with :meth:`DeviceAuthorization.receive_timeout`.

Theory of operation
-------------------
:class:`DeviceAuthorization` is a small state machine after h11's ``_state.py``: it never does I/O
and never reads a clock. Its methods build the next request or digest the answer, and each is an
*event* that moves it along the table :data:`TRANSITIONS`; an event the table does not allow in the
current state raises :class:`DeviceStateError`, which names the state. So "poll after success" is
not a rule someone has to remember: it is a missing row in the table.

::

    IDLE --send_authorization--> AUTHORIZING --verification--> WAITING <------------+
                                      |                          |  poll              | pending,
                                      +--failure--> FAILED <--+  v                    | slow_down,
                                                              |                       | timeout
                                                              +-- POLLING ------------+
                                                                   | token
                                                                   v
                                                                APPROVED

:func:`device_authorization_flow` and :func:`device_poll_flow` wrap it as flows (see
:mod:`keyturn.protocol.http`), which ``transport.run`` / ``arun`` drive; what happens between
the two (showing the code to the person) is the caller's business.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import (
    AuthorizationPending,
    ExpiredToken,
    InvalidResponse,
    KeyturnError,
    SlowDown,
    TransportError,
)
from ..secret import Secret, SecretFields
from ..token import Token
from . import rfc8628
from .client_auth import ClientAuth
from .grants import (
    GRANT_DEVICE_CODE,
    TOKEN_ENDPOINT,
    parse_error_response,
    parse_token_response,
    response_members,
    salvage_refresh_token,
)
from .http import Flow, HttpRequest, HttpResponse, Received, Wait, send, sleep_until

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_ENDPOINT",
    "SLOW_DOWN_STEP",
    "TRANSITIONS",
    "DeviceAuthorization",
    "DeviceState",
    "DeviceStateError",
    "DeviceVerification",
    "Event",
    "device_authorization_flow",
    "device_poll_flow",
]

log = logging.getLogger("keyturn")

#: RFC 8628 §3.2, interval: "If no value is provided, clients MUST use 5 as the default."; §3.5,
#: slow_down: "the interval MUST be increased by 5 seconds". Defined once, for the server too, in
#: :mod:`.rfc8628`; floats here, as the clock reads.
DEFAULT_INTERVAL: Final = float(rfc8628.DEFAULT_INTERVAL)
SLOW_DOWN_STEP: Final = float(rfc8628.SLOW_DOWN_STEP)
#: The ``purpose`` of the device authorization request: what error messages call the endpoint,
#: and what ``device_response_hook`` is applied to (:mod:`.hooks`).
DEVICE_ENDPOINT: Final = "device authorization endpoint"


class DeviceState(enum.Enum):
    IDLE = "idle"                    # nothing sent yet
    AUTHORIZING = "authorizing"      # device authorization request sent, answer awaited
    WAITING = "waiting"              # waiting for the next poll
    POLLING = "polling"              # token request sent, answer awaited
    APPROVED = "approved"            # got the token: never poll again
    FAILED = "failed"                # denied, expired, or the server said something else


class Event(enum.Enum):
    SEND_AUTHORIZATION = "send_authorization"
    VERIFICATION = "verification"
    POLL = "poll"
    PENDING = "pending"
    SLOW_DOWN = "slow_down"
    TOKEN = "token"
    TIMEOUT = "timeout"
    FAILURE = "failure"


_S, _E = DeviceState, Event
#: state -> {event: next state}. Anything not listed is illegal in that state.
TRANSITIONS: Final[Mapping[DeviceState, Mapping[Event, DeviceState]]] = {
    _S.IDLE: {_E.SEND_AUTHORIZATION: _S.AUTHORIZING},
    _S.AUTHORIZING: {_E.VERIFICATION: _S.WAITING, _E.FAILURE: _S.FAILED},
    # FAILURE from WAITING: the code expired before the next poll was due.
    _S.WAITING: {_E.POLL: _S.POLLING, _E.FAILURE: _S.FAILED},
    _S.POLLING: {_E.PENDING: _S.WAITING, _E.SLOW_DOWN: _S.WAITING, _E.TIMEOUT: _S.WAITING,
                 _E.TOKEN: _S.APPROVED, _E.FAILURE: _S.FAILED},
    _S.APPROVED: {},
    _S.FAILED: {},
}


class DeviceStateError(KeyturnError):
    """An event that the device flow's state does not allow: a bug in the caller, not the server."""

    def __init__(self, event: Event, state: DeviceState) -> None:
        super().__init__(f"device flow: cannot {event.value} in state {state.name}")
        self.event = event
        self.state = state


@dataclass(frozen=True)
class DeviceVerification:
    """What the person needs to approve the login: shown by ``DeviceCode(prompt=...)``.

    ``expires_in`` and ``interval`` are seconds; ``expires_at`` is the wall-clock time at which the
    code dies. The device code itself is not here: only the poller needs it.
    """

    verification_uri: str
    user_code: str
    expires_in: float
    interval: float
    verification_uri_complete: str | None = None
    expires_at: float = 0.0
    #: The provider's own instructions, when its answer has them (Entra ID's ``message``: "To
    #: sign in, use a web browser to open the page ... and enter the code ..."), else None.
    message: str | None = None


class DeviceAuthorization:
    """One device login, from the authorization request to the token. See the module header."""

    def __init__(
        self, *, device_authorization_endpoint: str, token_endpoint: str, client_auth: ClientAuth,
        params: Mapping[str, str | list[str]] | None = None,
        requested_scope: tuple[str, ...] = (),
    ) -> None:
        self.device_authorization_endpoint = device_authorization_endpoint
        self.token_endpoint = token_endpoint
        self._client_auth = client_auth
        self._params = {k: v for k, v in (params or {}).items() if v not in (None, "", [])}
        self._requested_scope = requested_scope
        self.state = DeviceState.IDLE
        self.verification: DeviceVerification | None = None
        self.interval = DEFAULT_INTERVAL
        self.deadline = 0.0
        self.next_poll_at = 0.0
        self.polls = 0
        self._device_code: Secret[str] | None = None

    def __repr__(self) -> str:
        return (f"DeviceAuthorization(state={self.state.name}, interval={self.interval}, "
                f"polls={self.polls})")

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn DeviceAuthorization holds a device code and cannot be pickled")

    def _fire(self, event: Event) -> None:
        following = TRANSITIONS[self.state].get(event)
        if following is None:
            raise DeviceStateError(event, self.state)
        self.state = following

    def _fail(self, error: Exception) -> Exception:
        self._fire(Event.FAILURE)
        return error

    # -- the device authorization request (§3.1, §3.2) ---------------------------------------------

    def authorization_request(self, now: float) -> HttpRequest:
        self._fire(Event.SEND_AUTHORIZATION)
        # SecretFields: the client's credentials are added to them (see keyturn.secret).
        form = SecretFields(self._params)
        headers = SecretFields({"Accept": "application/json"})
        # RFC 8628 §3.1: "client_id REQUIRED if the client is not authenticating with the
        # authorization server as described in Section 3.2.1. of [RFC6749]." ClientAuth adds it
        # for public clients, and authenticates confidential ones as at the token endpoint.
        self._client_auth.apply(form, headers, audience=self.token_endpoint, now=now)
        return HttpRequest("POST", self.device_authorization_endpoint, headers=headers, form=form,
                           purpose=DEVICE_ENDPOINT)

    def receive_authorization(self, response: HttpResponse, now: float) -> DeviceVerification:
        """Parse the answer; ``now`` is the time the request was sent (so the deadline errs early)."""
        purpose = DEVICE_ENDPOINT
        if response.status != 200:
            raise self._fail(parse_error_response(response, purpose))
        try:
            # The answer holds the device code: as a local, only inside SecretFields.
            body = SecretFields(response.json_object(purpose))
            verification, device_code = _parse_authorization(body, response, now)
        except InvalidResponse as exc:
            raise self._fail(exc) from None
        self._fire(Event.VERIFICATION)
        self._device_code = device_code
        self.verification = verification
        self.interval = verification.interval
        self.deadline = verification.expires_at
        # RFC 8628 §3.5: "the client SHOULD wait at least "interval" seconds between polling
        # requests": the first poll too, since the person cannot have approved yet.
        self.next_poll_at = now + self.interval
        return verification

    # -- polling the token endpoint (§3.4, §3.5) --------------------------------------------------

    def wait(self) -> Wait:
        """When to poll next: at the interval, or at the deadline if that comes first."""
        if self.state is not DeviceState.WAITING:
            raise DeviceStateError(Event.POLL, self.state)
        return Wait(min(self.next_poll_at, self.deadline))

    def poll_request(self, now: float) -> HttpRequest:
        if self.state is DeviceState.WAITING and now >= self.deadline:
            # RFC 8628 §3.2, expires_in: "The lifetime in seconds of the "device_code" and
            # "user_code"." Past it no poll can succeed.
            raise self._fail(ExpiredToken(
                "expired_token", "the code was not approved within its lifetime (expires_in)",
                url=self.device_authorization_endpoint,
            ))
        self._fire(Event.POLL)
        assert self._device_code is not None
        self.polls += 1
        form = SecretFields({"grant_type": GRANT_DEVICE_CODE, "device_code": self._device_code})
        headers = SecretFields({"Accept": "application/json"})
        self._client_auth.apply(form, headers, audience=self.token_endpoint, now=now)
        # Not idempotent: if a successful answer were lost and the poll sent again, the provider
        # would see a second use of the code and revoke the grant. The transport then resends it
        # only when it surely never reached the server.
        return HttpRequest("POST", self.token_endpoint, headers=headers, form=form,
                           idempotent=False, purpose=TOKEN_ENDPOINT)

    def receive_poll(self, response: HttpResponse, now: float) -> Token | None:
        """The token once approved; None to keep polling. ``now`` is when the poll was sent."""
        if self.state is not DeviceState.POLLING:
            raise DeviceStateError(Event.TOKEN, self.state)
        try:
            token = parse_token_response(response, now=now, requested_scope=self._requested_scope)
        except AuthorizationPending:
            # RFC 8628 §3.5, authorization_pending: "The client SHOULD repeat the access token
            # request to the token endpoint".
            self._fire(Event.PENDING)
        except SlowDown:
            # RFC 8628 §3.5, slow_down: "the interval MUST be increased by 5 seconds for this and
            # all subsequent requests."
            self._fire(Event.SLOW_DOWN)
            self.interval = max(self.interval + SLOW_DOWN_STEP, _interval_given(response))
        except Exception as exc:
            # access_denied, expired_token (RFC 8628 §3.5) and anything else end the flow.
            raise self._fail(exc) from None
        else:
            self._fire(Event.TOKEN)
            self._device_code = None
            return token
        self.next_poll_at = now + self.interval
        return None

    def receive_timeout(self, now: float) -> None:
        """The poll got no answer (timeout, connection lost): wait longer, then poll again.

        RFC 8628 §3.5: "On encountering a connection timeout, clients MUST unilaterally reduce
        their polling frequency before retrying. The use of an exponential backoff algorithm to
        achieve this, such as doubling the polling interval on each such connection timeout, is
        RECOMMENDED."
        """
        self._fire(Event.TIMEOUT)
        self.interval *= 2
        self.next_poll_at = now + self.interval


def _interval_given(response: HttpResponse) -> float:
    """The new ``interval`` a slow_down answer names (GitHub's does: "the response includes the
    new interval"), or 0. Never less than RFC 8628's increase: :meth:`receive_poll` takes the
    larger of the two."""
    try:
        value = response_members(response, TOKEN_ENDPOINT).get("interval")
    except InvalidResponse:
        return 0.0
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # a form-encoded answer (GitHub without Accept: application/json)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 3600:
        return 0.0  # missing, or not a sensible number of seconds: RFC 8628's 5 more seconds
    return float(value)


def _parse_authorization(
    body: Mapping[str, Any], response: HttpResponse, now: float
) -> tuple[DeviceVerification, Secret[str]]:
    def text(name: str, *aliases: str, required: bool = True) -> str | None:
        for key in (name, *aliases):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
        if required:
            raise InvalidResponse(
                f"the device authorization endpoint sent no {name}", url=response.url,
                status=response.status,
            )
        return None

    def seconds(name: str, default: float | None) -> float:
        value = body.get(name)
        if value is None and default is not None:
            return default
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                or value == float("inf"):
            raise InvalidResponse(
                f"the device authorization endpoint sent {name}={str(value)[:20]!r}, which is not "
                "a positive number of seconds", url=response.url, status=response.status,
            )
        return float(value)

    # RFC 8628 §3.2: device_code, user_code, verification_uri and expires_in are REQUIRED.
    # ("verification_url" is what some providers, Google among them, send instead.)
    # A Secret before the next check can raise (text() raises rather than answer None here).
    device_code = Secret(text("device_code") or "")
    user_code = text("user_code")
    uri = text("verification_uri", "verification_url")
    complete = text("verification_uri_complete", "verification_url_complete", required=False)
    expires_in = seconds("expires_in", None)
    interval = seconds("interval", DEFAULT_INTERVAL)
    assert user_code is not None and uri is not None
    verification = DeviceVerification(
        verification_uri=uri, user_code=user_code, expires_in=expires_in, interval=interval,
        verification_uri_complete=complete, expires_at=now + expires_in,
        message=text("message", required=False),
    )
    return verification, device_code


def device_authorization_flow(machine: DeviceAuthorization, *, now: float) -> Flow[DeviceVerification]:
    """Ask for a device code; returns what to show the person."""
    response = yield from send(machine.authorization_request(now))
    return machine.receive_authorization(response, now)


def device_poll_flow(machine: DeviceAuthorization) -> Flow[Token]:
    """Poll until the person approves (the token), refuses, or the code expires (errors).

    A poll that got no answer is thrown in as a :class:`~keyturn.errors.TransportError` (the
    transport gave up on it: a timeout, a lost connection): the login goes on.
    """
    while True:
        now = yield from sleep_until(machine.wait())
        request = machine.poll_request(now)
        try:
            response = yield from send(request)
        except TransportError as exc:
            # RFC 8628 §3.5: "On encountering a connection timeout, clients MUST unilaterally
            # reduce their polling frequency before retrying." The interval counts from now,
            # when the poll was given up on (a Wait(0) reads the clock).
            failed_at = yield from sleep_until(Wait(0.0))
            machine.receive_timeout(failed_at)
            log.warning("DeviceCode: a poll got no answer (%s); polling again in %.0f s",
                        exc.__class__.__name__, machine.interval)
            continue
        try:
            token = machine.receive_poll(response, now)
        except InvalidResponse:
            salvaged = salvage_refresh_token(response, now=now)
            if salvaged is not None:  # approved, but the answer failed its checks: keep the login
                yield Received(salvaged)
            raise
        if token is not None:
            # The device code is spent (RFC 8628 §3.5 ends the polling here): keep the answer.
            yield Received(token)
            return token
