"""HTTP requests and responses as plain values, and the shape of a protocol flow.

A flow is a generator that yields the :class:`HttpRequest` it needs sent and receives the
:class:`HttpResponse`, or yields a :class:`Wait` and receives the wall-clock time once the wait is
over, or yields :class:`Received` (a token endpoint's answer to a request that cannot be sent
again) and receives None once the driver has kept it; its return value is the result (a token, a
metadata document). It never touches a socket, a
clock or a sleep: ``transport.run`` and ``transport.arun`` drive the same flow
for sync and async callers, so no grant is written twice.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from ..errors import InvalidResponse
from ..strictjson import JsonError, loads
from ..token import Token

__all__ = ["Flow", "HttpRequest", "HttpResponse", "Keeper", "Received", "Wait", "run_offline"]

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


class Keeper(Protocol):
    """Where a driver keeps what a non-idempotent request brought (the cache's refresh in progress)."""

    def confirm(self) -> None:
        """Called immediately before each attempt at sending a non-idempotent request: raises when
        the caller no longer holds the refresh lock, or when the answer could not be saved."""

    def keep(self, received: Received) -> None:
        """Save what the server answered to that request before anything else happens."""


Flow = Generator[Any, Any, T]
"""Yields :class:`HttpRequest` (answered with :class:`HttpResponse`), :class:`Wait` (answered
with the current wall-clock time, a float) or :class:`Received` (answered with None)."""


def run_offline(flow: Flow[T], responses: Mapping[str, HttpResponse]) -> T:
    """Drive a flow with canned responses keyed by URL: for unit tests and examples."""
    now = 0.0
    try:
        step = next(flow)
        while True:
            if isinstance(step, Wait):
                now = max(now, step.until)
                step = flow.send(now)
            elif isinstance(step, Received):
                step = flow.send(None)
            else:
                step = flow.send(responses[step.url])
    except StopIteration as stop:
        result: T = stop.value
        return result
