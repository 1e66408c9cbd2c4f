"""The one rule by which every adapter authorizes a request and answers a 401, as a generator that
does no I/O (the shape of httpx's auth flows, and of keyturn's protocol flows).

RFC 6750 §3.1: a resource server answers a token that "is expired, revoked, malformed, or invalid for
other reasons" with 401 (``error="invalid_token"``), and "The client MAY request a new access token
and retry the protected resource request." The flow, step by step (what it yields → what the driver
sends back):

1. :data:`FETCH` → the source's current :class:`~keyturn.token.Token`.
2. that ``Token`` → the HTTP status of the response. The driver puts ``token.authorization()``
   into the request's ``Authorization`` header and sends the request.
3. Not a 401: the flow ends, and that response is the answer.
4. A 401: ``Invalidate(token)`` → None. The driver has the source forget that token only if it is
   still the current one, so fifty requests refused together cause one refresh, not fifty.
5. :data:`FETCH` → the current token. If it is the token just refused, the source cannot renew it
   (a ``StaticToken``): the flow ends and the 401 is the answer.
6. the fresh ``Token`` → the status of the retry. The flow ends: a request is retried once.

The drivers — :func:`drive` and :func:`adrive` here, and the adapters around them (httpx sync and
async, requests, globus-sdk) — only carry out steps; no driver decides how to retry. The httpx and
requests adapters take the first step themselves (the current token) and make the flow only once a
401 came back (:func:`presented`): a request that is not refused costs no generator. The flow holds
tokens only as :class:`Token` objects, whose repr shows a hash, so a traceback through it shows no
token.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from typing import TYPE_CHECKING, Final

from .._uninterrupted import thread_future
from ..token import Token

if TYPE_CHECKING:
    from .base import TokenSource

__all__ = ["FETCH", "AuthFlow", "Fetch", "Invalidate", "Step", "adrive", "authorize", "drive",
           "presented"]

#: RFC 9110 §15.5.2 "401 (Unauthorized)": the request lacks valid credentials.
UNAUTHORIZED: Final = 401


class Fetch:
    """The step "send me the source's current token"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FETCH"


#: The one :class:`Fetch` step.
FETCH: Final = Fetch()


class Invalidate:
    """The step "have the source forget this token, if it is still the current one"."""

    __slots__ = ("token",)

    def __init__(self, token: Token) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"Invalidate({self.token!r})"


#: What the flow yields: a :class:`Token` means "present it and send the request".
Step = Token | Fetch | Invalidate
#: What the driver sends back: a Token for FETCH, the status for a Token, None for Invalidate.
AuthFlow = Generator[Step, Token | int | None, None]


def authorize() -> AuthFlow:
    """One request's authorization: present the current token; after a 401, once a fresh one."""
    token = yield FETCH
    if not isinstance(token, Token):
        raise TypeError(f"the driver must answer FETCH with a Token, not {type(token).__name__}")
    status = yield token
    if status != UNAUTHORIZED:
        return
    yield Invalidate(token)
    fresh = yield FETCH
    if not isinstance(fresh, Token):
        raise TypeError(f"the driver must answer FETCH with a Token, not {type(fresh).__name__}")
    if fresh.access_token == token.access_token:
        return  # nothing fresher to offer: the 401 is the answer
    yield fresh


def presented(token: Token) -> AuthFlow:
    """The flow of a request already sent with ``token`` (FETCH answered, ``token`` presented),
    waiting for its status: for an SDK that sends the request itself and reports a 401 later."""
    flow = authorize()
    next(flow)
    flow.send(token)
    return flow


def drive(flow: AuthFlow, source: TokenSource, reply: int | None) -> Token | None:
    """Send ``reply`` into ``flow`` (None to start it, else the status of the response to the token it
    presented) and carry out its steps with ``source``: the token to present next, or None when the
    flow has ended."""
    try:
        step = flow.send(reply)
        while step.__class__ is not Token:  # (not isinstance: this is every request's path)
            if step is FETCH:
                step = flow.send(source.get_token())
            else:
                assert isinstance(step, Invalidate)
                source.invalidate(step.token.access_token)
                step = flow.send(None)
        return step
    except StopIteration:
        return None


async def adrive(flow: AuthFlow, source: TokenSource, reply: int | None) -> Token | None:
    """:func:`drive` for async callers: the event loop is never blocked."""
    try:
        step = flow.send(reply)
        while step.__class__ is not Token:
            if step is FETCH:
                step = flow.send(await source.aget_token())
            else:
                assert isinstance(step, Invalidate)
                # invalidate() writes the store (a file, Redis) under its lock: a keyturn source
                # does it without a thread waiting on the lock; another source in a thread of its
                # own (never the default executor, which fifty 401s could fill while a refresh
                # holding that lock waits for it: keyturn._uninterrupted.thread_future).
                ainvalidate = getattr(source, "ainvalidate", None)
                if ainvalidate is not None:
                    await ainvalidate(step.token.access_token)
                else:
                    await thread_future(functools.partial(source.invalidate,
                                                          step.token.access_token))
                step = flow.send(None)
        return step
    except StopIteration:
        return None
