"""A token source as an httpx ``auth=`` for ``Client`` and ``AsyncClient``.

On a 401 the flow invalidates the token it sent (only that one, so that many requests failing
together cause one refresh), gets a fresh one and retries once. The tokens are held as
:class:`~keyturn.secret.Secret` in the flow's frame, which a failed refresh's traceback shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING

import httpx

from ..secret import Secret

if TYPE_CHECKING:
    from ..token import Token

__all__ = ["HttpxAuth"]


class HttpxAuth(httpx.Auth):
    """Mixed into every source; needs ``get_access_token``/``aget_access_token``/``invalidate``."""

    # The body is kept so the request can be sent again after a 401.
    requires_request_body = True

    def get_access_token(self) -> str:
        raise NotImplementedError

    async def aget_access_token(self) -> str:
        raise NotImplementedError

    def invalidate(self, access_token: str | None = None) -> None:
        raise NotImplementedError

    def get_token(self) -> Token:
        raise NotImplementedError

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = Secret(self.get_access_token())
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if response.status_code == 401:
            response.read()
            self.invalidate(token.reveal())
            fresh = Secret(self.get_access_token())
            if fresh != token:  # a source that cannot renew (StaticToken) passes the 401 back
                request.headers["Authorization"] = f"Bearer {fresh.reveal()}"
                yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = Secret(await self.aget_access_token())
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            # invalidate() touches the store (a file, Redis): off the event loop.
            await asyncio.to_thread(self.invalidate, token.reveal())
            fresh = Secret(await self.aget_access_token())
            if fresh != token:
                request.headers["Authorization"] = f"Bearer {fresh.reveal()}"
                yield request
