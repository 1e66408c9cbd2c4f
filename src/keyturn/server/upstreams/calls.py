"""An upstream's outbound HTTP, bounded (review R19, M1): a person is waiting, and a provider
that is slow must not hold the server's connections and file descriptors without end.

* **A deadline per call** (:func:`asyncio.wait_for`): httpx's timeouts are per read, so a provider
  that sends one byte every few seconds never trips them; a call (discovery with its two URLs, a
  token request, a JWKS, userinfo) ends at the deadline whatever it is doing.
* **At most** :data:`MAX_CALLS` **at once** per upstream: past them a press or callback fails at
  once ("could not be reached"), instead of opening another connection to a provider that is
  not answering the ones it has.
* **One AsyncClient per upstream** (its connection pool), made on first use and closed at the
  server's shutdown (:meth:`UpstreamCalls.aclose`, from the app's lifespan).
"""

from __future__ import annotations

import asyncio
from typing import Final, TypeVar

import httpx

from ...errors import KeyturnError
from ...protocol.http import Flow
from ...transport import HttpSettings, arun

__all__ = ["MAX_CALLS", "CallAbandoned", "UpstreamCalls"]

T = TypeVar("T")

#: Calls to one upstream under way at once in one server process.
MAX_CALLS: Final = 32


class CallAbandoned(KeyturnError):
    """A call to the upstream was not made (too many under way) or ran past its deadline."""


class UpstreamCalls:
    """The HTTP calls to one upstream."""

    def __init__(self, name: str, settings: HttpSettings, *, deadline: float,
                 slots: int = MAX_CALLS) -> None:
        self.name = name
        self.deadline = deadline
        self._settings = settings
        self._slots = asyncio.Semaphore(slots)
        self._client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None

    def __repr__(self) -> str:
        return f"UpstreamCalls({self.name!r}, deadline={self.deadline})"

    async def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        held = self._client
        if held is None or held[0] is not loop:  # an AsyncClient is bound to its loop
            held = (loop, await self._settings.async_client())
            self._client = held
        return held[1]

    async def run(self, flow: Flow[T]) -> T:
        """``flow`` carried out on the shared client, within the deadline and the slots;
        raises :class:`CallAbandoned` (a :class:`~keyturn.errors.KeyturnError`) otherwise."""
        if self._slots.locked():
            raise CallAbandoned(f"{MAX_CALLS} calls to {self.name} are already under way")
        async with self._slots:
            try:
                # asyncio.wait_for, not asyncio.timeout: the package still runs on Python 3.10.
                return await asyncio.wait_for(self._run(flow), self.deadline)
            except asyncio.TimeoutError:  # not the builtin before Python 3.11
                raise CallAbandoned(f"{self.name} did not answer within {self.deadline:g} s"
                                    ) from None

    async def _run(self, flow: Flow[T]) -> T:
        return await arun(flow, await self._http(), self._settings.retry)

    async def aclose(self) -> None:
        held, self._client = self._client, None
        if held is not None:
            await held[1].aclose()
