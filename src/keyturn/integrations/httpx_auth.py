"""A token source as an httpx ``auth=`` for ``Client`` and ``AsyncClient``: the two drivers of the
401-retry flow (:mod:`keyturn.integrations.retry`) for httpx's own auth-flow protocol."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from ..token import Token
from .base import Adapter
from .retry import UNAUTHORIZED, aresume, presented, resume

__all__ = ["HttpxAuth"]


class HttpxAuth(Adapter, httpx.Auth):
    """``httpx.Client(auth=HttpxAuth(source))``; every keyturn source is one already."""

    # The body is kept so the request can be sent again after a 401.
    requires_request_body = True

    # The retry flow is made only after a 401: every other request costs the token and its header,
    # as a hand-written header would (the flow's first step, the source's current token, is what
    # these adapters take first). The header is Token.authorization(), read as the value it
    # rendered when the token was made.

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        first = self.get_token()
        request.headers["Authorization"] = first._authorization
        response = yield request
        if response.status_code != UNAUTHORIZED:
            return
        response.read()  # before the connection is used again for the retry
        flow = presented(self.token_source, first)
        token: Token | None = resume(flow, response.status_code)
        while token is not None:
            request.headers["Authorization"] = token.authorization()
            response = yield request
            if response.status_code == UNAUTHORIZED:
                response.read()
            token = resume(flow, response.status_code)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        first = await self.aget_token()
        request.headers["Authorization"] = first._authorization
        response = yield request
        if response.status_code != UNAUTHORIZED:
            return
        await response.aread()
        flow = presented(self.token_source, first)
        token: Token | None = await aresume(flow, response.status_code)
        while token is not None:
            request.headers["Authorization"] = token.authorization()
            response = yield request
            if response.status_code == UNAUTHORIZED:
                await response.aread()
            token = await aresume(flow, response.status_code)
