"""The one rule by which every adapter authorizes a request and answers a 401, as a generator that
does no I/O, in the effects of the protocol flows (:mod:`keyturn.protocol.http`) plus one of its
own: a :class:`~keyturn.token.Token` yielded means "present this token and send me the status".

RFC 6750 §3.1: a resource server answers a token that "is expired, revoked, malformed, or invalid for
other reasons" with 401 (``error="invalid_token"``), and "The client MAY request a new access token
and retry the protected resource request." The flow of :func:`authorize` ``(source)``, step by step
(what it yields → what the driver sends back):

1. ``CurrentToken(source)`` (:func:`~keyturn.protocol.http.current_token`) → the source's
   current :class:`~keyturn.token.Token`.
2. that ``Token`` → the HTTP status of the response. The adapter puts ``token.authorization()``
   into the request's ``Authorization`` header and sends the request.
3. Not a 401: the flow ends, and that response is the answer.
4. A 401: ``Invalidate(source, token)`` (:func:`~keyturn.protocol.http.invalidate`) → None. The
   source forgets that token only if it is still the current one, so fifty requests refused
   together cause one refresh, not fifty.
5. ``CurrentToken(source)`` → the current token. If it is the token just refused, the
   source cannot renew it (a ``StaticToken``): the flow ends and the 401 is the answer.
6. the fresh ``Token`` → the status of the retry. The flow ends: a request is retried once.

The adapters (httpx sync and async, requests, globus-sdk) only present tokens and send requests;
:func:`resume` and :func:`aresume` carry every other step out with the code the protocol flows'
drivers use (:func:`keyturn._drivers.carry_out` / :func:`~keyturn._drivers.acarry_out`: the async
one awaits ``ainvalidate``, or runs a foreign source's ``invalidate`` in a thread of its own). No
driver decides how to retry. The httpx and requests adapters take step 1 themselves and make the
flow only once a 401 came back (:func:`presented`): a request that is not refused costs no
generator. The flow holds tokens only as :class:`Token` objects, whose repr shows a hash, so a
traceback through it shows no token.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Final, TypeAlias

from .._drivers import acarry_out, carry_out
from ..protocol.http import Answer, Effect, RenewableSource, current_token, invalidate
from ..token import Token

__all__ = ["UNAUTHORIZED", "AuthFlow", "aresume", "authorize", "presented", "resume"]

#: RFC 9110 §15.5.2 "401 (Unauthorized)": the request lacks valid credentials.
UNAUTHORIZED: Final = 401

#: Yields a protocol effect, or a :class:`Token` to present; is sent the effect's answer, or the
#: HTTP status (an int) of the response to the token presented.
AuthFlow: TypeAlias = Generator[Token | Effect, Answer | int, None]


def authorize(source: RenewableSource) -> AuthFlow:
    """One request's authorization with ``source``: present its current token; after a 401, once a
    fresh one."""
    token = yield from current_token(source)
    yield from _presenting(source, token)


def presented(source: RenewableSource, token: Token) -> AuthFlow:
    """The flow of a request already sent with ``token`` (step 1 taken by the adapter), waiting for
    its status: what the adapters make after a 401, and for an SDK that sends the request itself
    and reports the 401 later."""
    flow = _presenting(source, token)
    next(flow)  # yields `token`: presented already
    return flow


def _presenting(source: RenewableSource, token: Token) -> AuthFlow:
    status = yield token
    if status != UNAUTHORIZED:
        return
    yield from invalidate(source, token)
    fresh = yield from current_token(source)
    if fresh.access_token == token.access_token:
        return  # nothing fresher to offer: the 401 is the answer
    yield fresh


def resume(flow: AuthFlow, status: int | None) -> Token | None:
    """Send ``status`` into ``flow`` (None to start it, else the status of the response to the
    token it presented), carry out its effects in this thread: the token to present next, or None
    when the flow has ended."""
    try:
        step = flow.send(status)
        while not isinstance(step, Token):
            step = flow.send(carry_out(step))
        return step
    except StopIteration:
        return None


async def aresume(flow: AuthFlow, status: int | None) -> Token | None:
    """:func:`resume` for async callers: the event loop is never blocked."""
    try:
        step = flow.send(status)
        while not isinstance(step, Token):
            step = flow.send(await acarry_out(step))
        return step
    except StopIteration:
        return None
