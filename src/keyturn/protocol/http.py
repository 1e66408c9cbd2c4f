"""HTTP requests and responses as plain values, and the typed effects a protocol flow yields.

A flow is a generator that yields *effects* and is sent their outcome; its return value is the
result (a token, a metadata document). It never touches a socket, a clock, a sleep, a terminal or
another source: ``transport.run`` and ``transport.arun`` carry out the same flow for sync and async
callers, so no grant is written twice (httpx's ``auth_flow`` is the model). Every effect but the
request is carried out by ``keyturn._drivers.carry_out`` / ``acarry_out``, which those drivers and the
adapters' 401 retry (``keyturn.integrations.retry``) share; ``run_offline`` drives a flow in tests.

=====================  ===================================================  =====================
effect                 what the driver does                                 sent back
=====================  ===================================================  =====================
:class:`HttpRequest`   sends it once (retries are a wrapper flow,           :class:`HttpResponse`
                       ``keyturn._retry.retrying``)
:class:`Wait`          sleeps until ``until`` (``Wait(0)``: reads the time)  the wall-clock time
:class:`Pause`         sleeps ``seconds`` (a retry's backoff)                None
:class:`Received`      keeps the token (the cache's :class:`Keeper`)        None
:class:`Blocking`      calls ``call()``; the async driver in a worker       what ``call`` returned
                       thread, so a prompt or a browser never blocks a loop
:class:`TokenOf`       asks a :class:`TokenProvider` for its current        a ``Secret[str]``
                       access token (the async driver awaits
                       ``aget_access_token``)
:class:`CurrentToken`  asks a :class:`RenewableSource` for its current      the :class:`Token`
                       :class:`Token` (the async driver awaits
                       ``aget_token``)
:class:`Invalidate`    has the source forget ``token`` if it is still its   None
                       current one (the async driver awaits ``ainvalidate``;
                       a source without one, in a thread of its own)
=====================  ===================================================  =====================

An effect that fails (a :class:`~keyturn.errors.TransportError`, a login that timed out, an
interrupt) is thrown into the flow at the ``yield`` that asked for it, as h11's ``send_failed``
makes "I could not send" an input of its state machine: a flow may handle it (the device flow
polls again, RFC 8628 §3.5) or clean up (the browser login closes its listener); a flow that does
not catch it ends with it, and the driver raises it as it is.

Flows yield effects through the typed helpers :func:`send`, :func:`sleep_until`, :func:`pause`,
:func:`call`, :func:`token_of`, :func:`current_token` and :func:`invalidate`
(``response = yield from send(request)``), which check the answer's type, so the whole vocabulary
is checked by ``mypy --strict``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

from ..errors import InvalidResponse
from ..secret import Secret
from ..strictjson import JsonError, loads
from ..token import Token

__all__ = [
    "Answer",
    "Blocking",
    "CurrentToken",
    "Effect",
    "Flow",
    "HttpRequest",
    "HttpResponse",
    "Invalidate",
    "Keeper",
    "Pause",
    "Received",
    "RenewableSource",
    "TokenOf",
    "TokenProvider",
    "Wait",
    "call",
    "current_token",
    "invalidate",
    "pause",
    "run_offline",
    "send",
    "sleep_until",
    "token_of",
]

T = TypeVar("T")


@dataclass(frozen=True)
class HttpRequest:
    """A request to send. ``form`` is sent urlencoded; a key with a list value is repeated."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    form: Mapping[str, str | list[str]] | None = field(default=None, repr=False)
    #: False when sending it twice could do harm (a rotating refresh token): the transport then
    #: retries it only when it surely never reached the server.
    idempotent: bool = True
    #: What the request is for, in words, for error messages ("token endpoint").
    purpose: str = "endpoint"

    def form_items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = []
        for key, value in (self.form or {}).items():
            if isinstance(value, list):
                items.extend((key, v) for v in value)
            else:
                items.append((key, value))
        return items


@dataclass(frozen=True)
class HttpResponse:
    """A received response. ``headers`` keys are lower-case."""

    status: int
    headers: Mapping[str, str]
    #: Not in the repr: a token endpoint's answer holds the tokens, and a response is a local of
    #: the frames that parse it, which a traceback with locals shows.
    body: bytes = field(repr=False)
    url: str = ""

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    def json_object(self, purpose: str) -> dict[str, Any]:
        """The body as a JSON object, or :class:`InvalidResponse` naming the endpoint."""
        try:
            value = loads(self.body)
        except JsonError as exc:
            if not exc.syntax:
                # JSON, but hostile or broken: nested too deep, NaN, a number beyond a double.
                raise InvalidResponse(
                    f"the {purpose} answered HTTP {self.status} with JSON keyturn refuses: "
                    f"{exc.reason}", url=self.url, status=self.status,
                ) from None
            html = self.body.lstrip()[:1] == b"<"
            looks = "an HTML page" if html else "not JSON"
            # Where the parser stopped, or that the bytes are not UTF-8: an HTML page needs no more.
            why = "" if html else f"; {exc.reason}"
            raise InvalidResponse(
                f"the {purpose} answered HTTP {self.status} with {looks} "
                f"(content-type {self.content_type or 'missing'}{why}): check the URL",
                url=self.url,
                status=self.status,
            ) from None
        if not isinstance(value, dict):
            raise InvalidResponse(
                f"the {purpose} answered HTTP {self.status} with JSON that is not an object",
                url=self.url,
                status=self.status,
            )
        return value


@dataclass(frozen=True)
class Wait:
    """Resume the flow at wall-clock time ``until``; the driver sends back the time it resumed."""

    until: float


@dataclass(frozen=True)
class Pause:
    """Resume the flow ``seconds`` from now (a retry's backoff, a ``Retry-After``); the driver
    sleeps exactly that long and sends back None. Relative, unlike :class:`Wait`: a delay is what
    a retry policy computes, and the drivers' tests record it as it is."""

    seconds: float


@dataclass(frozen=True)
class Received:
    """The token endpoint answered a request that cannot be sent again (``idempotent=False``: a
    rotating refresh token, an authorization code, a device code) with ``token``.

    Yielded right after the answer is parsed, before anything else the flow does with it (an
    ID Token check, a key fetch) can fail: the driver keeps the token — in the store, under the
    refresh lock — and answers None. What the server gave is then never lost to a later error.
    """

    token: Token = field(repr=False)
    #: True for the answer to a refresh (RFC 6749 §6): it continues the login it refreshed —
    #: its identity, and its refresh token when the server did not rotate. False for a new login
    #: (a code or a device code exchanged), which continues nothing.
    refresh: bool = False


@dataclass(frozen=True)
class Blocking:
    """Run ``call()``, which blocks: a prompt, a browser launch, ``listener.wait``, closing a
    listener. The sync driver calls it; the async driver runs it in a thread of its own
    (``keyturn._uninterrupted.thread_future``), so the event loop goes on meanwhile. ``what``
    names it, for logs and errors ("wait for the browser").

    What ``call`` returns is sent back: None, or a :class:`~keyturn.secret.Secret` (the redirect's
    query holds a code, and the drivers' frames must hold it only as a tag).
    """

    call: Callable[[], Secret[str] | None] = field(repr=False)
    what: str = "a blocking call"


@runtime_checkable
class TokenProvider(Protocol):
    """What :class:`TokenOf` asks: any keyturn source, or StaticToken (token exchange's
    ``AccessTokenSource``)."""

    def get_access_token(self) -> str: ...

    async def aget_access_token(self) -> str: ...


class RenewableSource(Protocol):
    """What :class:`CurrentToken` and :class:`Invalidate` ask: a keyturn source, or any token
    source an adapter takes (an SDK author's own; ``keyturn.integrations.TokenSource`` is this
    protocol). A keyturn source also has ``async ainvalidate()``, which the async driver awaits
    when a source has it."""

    def get_token(self) -> Token: ...

    async def aget_token(self) -> Token: ...

    def invalidate(self, access_token: str | None = None) -> None: ...


@dataclass(frozen=True)
class TokenOf:
    """The current access token of a source (token exchange's subject or actor token): the sync
    driver asks ``source.get_access_token()``, the async one awaits ``source.aget_access_token()``;
    it is sent back as a :class:`~keyturn.secret.Secret`, so a driver's frame holds only a tag."""

    source: TokenProvider = field(repr=False)


@dataclass(frozen=True)
class CurrentToken:
    """The current :class:`Token` of a source, renewed by it if it had to be (what the userinfo
    call and the adapters' 401 retry present): the sync driver asks ``source.get_token()``, the
    async one awaits ``source.aget_token()``; the Token is sent back (its repr shows a hash, not
    the token). An effect of its own, not a flag on :class:`TokenOf`: the answer's type and what
    the source must have follow from the effect's class, so mypy refuses a source without
    ``get_token`` here."""

    source: RenewableSource = field(repr=False)


@dataclass(frozen=True)
class Invalidate:
    """Have ``source`` forget ``token`` if it is still its current one, so that requests refused
    together cause one renewal (``source.invalidate``; the async driver awaits
    ``source.ainvalidate``, so no thread waits on the store's lock, and calls the ``invalidate`` of
    a source without one in a thread of its own). Sent back: None."""

    source: RenewableSource = field(repr=False)
    token: Token


class Keeper(Protocol):
    """Where a driver keeps what a non-idempotent request brought (the cache's refresh in progress)."""

    def confirm(self) -> None:
        """Called immediately before each attempt at sending a non-idempotent request: raises when
        the caller no longer holds the refresh lock, or when the answer could not be saved."""

    def keep(self, received: Received) -> None:
        """Save what the server answered to that request before anything else happens."""


#: What a flow yields.
Effect: TypeAlias = (HttpRequest | Wait | Pause | Received | Blocking | TokenOf | CurrentToken
                     | Invalidate)
#: What a driver sends back: :class:`HttpResponse` for a request, the time (a float) after a wait,
#: None after :class:`Pause`, :class:`Received` and :class:`Invalidate`, what a :class:`Blocking`
#: call returned, a ``Secret[str]`` for :class:`TokenOf`, a :class:`Token` for :class:`CurrentToken`.
Answer: TypeAlias = HttpResponse | float | Secret[str] | Token | None

Flow: TypeAlias = Generator[Effect, Answer, T]
"""A protocol flow that returns a ``T``: see the module's docstring."""


def _wrong_answer(effect: Effect, answer: Answer, expected: str) -> TypeError:
    # Who answered wrongly is code driving a flow by hand (the drivers and the adapters' 401 retry
    # answer every effect through keyturn._drivers.carry_out/acarry_out): say what was due and where
    # the effect is carried out.
    return TypeError(f"a flow driver answered {type(answer).__name__} to {type(effect).__name__}, "
                     f"which is answered with {expected}: carry the effects out with "
                     "keyturn._drivers.carry_out/acarry_out (as keyturn.transport.run/arun and the "
                     "adapters' 401 retry do) or, in tests, run_offline")


def send(request: HttpRequest) -> Flow[HttpResponse]:
    """Have ``request`` sent; its response."""
    answer = yield request
    if not isinstance(answer, HttpResponse):
        raise _wrong_answer(request, answer, "an HttpResponse")
    return answer


def sleep_until(wait: Wait) -> Flow[float]:
    """Resume at ``wait.until``; the wall-clock time then (``Wait(0.0)``: the time now)."""
    answer = yield wait
    if not isinstance(answer, (int, float)):
        raise _wrong_answer(wait, answer, "the time (a float)")
    return float(answer)


def pause(seconds: float) -> Flow[None]:
    """Resume ``seconds`` from now."""
    effect = Pause(seconds)
    answer = yield effect
    if answer is not None:
        raise _wrong_answer(effect, answer, "None")


def call(effect: Blocking) -> Flow[Secret[str] | None]:
    """Have the blocking call run; what it returned."""
    answer = yield effect
    if answer is not None and not isinstance(answer, Secret):
        raise _wrong_answer(effect, answer, "None or a Secret")
    return answer


def token_of(source: TokenProvider) -> Flow[Secret[str]]:
    """The current access token of ``source``."""
    effect = TokenOf(source)
    answer = yield effect
    if not isinstance(answer, Secret):
        raise _wrong_answer(effect, answer, "a Secret[str]")
    return answer


def current_token(source: RenewableSource) -> Flow[Token]:
    """The current :class:`Token` of ``source`` (renewed by it if it had to be)."""
    effect = CurrentToken(source)
    answer = yield effect
    if not isinstance(answer, Token):
        raise _wrong_answer(effect, answer, "a Token")
    return answer


def invalidate(source: RenewableSource, token: Token) -> Flow[None]:
    """Have ``source`` forget ``token``, if it is still its current one."""
    effect = Invalidate(source, token)
    answer = yield effect
    if answer is not None:
        raise _wrong_answer(effect, answer, "None")


def run_offline(flow: Flow[T], responses: Mapping[str, HttpResponse]) -> T:
    """Drive a flow with canned responses keyed by URL: for unit tests and examples. Waits and
    pauses move a clock that starts at 0 (nothing sleeps); blocking calls are called, and a
    source asked for its token or told to forget one, in this thread."""
    now = 0.0
    try:
        step = next(flow)
        while True:
            answer: Answer
            if isinstance(step, Wait):
                now = max(now, step.until)
                answer = now
            elif isinstance(step, Pause):
                now += max(0.0, step.seconds)
                answer = None
            elif isinstance(step, Received):
                answer = None
            elif isinstance(step, Blocking):
                answer = step.call()
            elif isinstance(step, CurrentToken):
                answer = step.source.get_token()
            elif isinstance(step, TokenOf):
                answer = Secret(step.source.get_access_token())
            elif isinstance(step, Invalidate):
                step.source.invalidate(step.token.access_token)
                answer = None
            else:
                answer = responses[step.url]
            step = flow.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
