"""The app's hot endpoints called without starlette's router and middleware stack.

Discovery, the JWKS, device authorization and the token endpoint take nearly every request a
server gets. Starlette reaches an endpoint through two middlewares, a router that tries each
route's regular expression in turn, and a wrapper per request: about as much CPU as the endpoint
itself on this hardware (benchmarks/SERVER_RESULTS.md). :class:`FastRoutes` looks those exact
(method, path) pairs up in a dict and calls the same endpoint functions with the same
:class:`~starlette.requests.Request`; everything else (other methods, paths with parameters, the
lifespan) goes through starlette as before. What the stack would have done is done here too:
the storage-outage handler answers the exceptions it is registered for, and any other exception
raised by the endpoint gets the ``500 Internal Server Error`` starlette's ServerErrorMiddleware
sends, before it is raised again for uvicorn to log. The route is left in the scope
(``scope["route"]``) as starlette's router leaves it, for the access log.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = ["FastRoutes"]

OutageHandler = Callable[[Request, Any], Awaitable[Response]]


class FastRoutes(Starlette):
    """Starlette, with :meth:`route_directly` for the endpoints to call without its stack."""

    def __init__(self, *args: Any, outages: tuple[type[BaseException], ...] = (),
                 on_outage: OutageHandler | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct: dict[tuple[str, str], Route] = {}
        self._outages = outages
        self._on_outage = on_outage

    def route_directly(self, routes: Iterable[Route]) -> None:
        """Call these routes' endpoints directly (exact paths only: no ``{parameters}``)."""
        for route in routes:
            if "{" in route.path:
                raise ValueError(f"{route.path}: only exact paths are routed directly")
            for method in route.methods or ():
                if method != "HEAD":  # HEAD goes through starlette, which answers it for GET
                    self._direct[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self._direct.get((scope["method"], scope["path"]))
        if route is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        scope["router"] = self.router
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        request = Request(scope, receive, send)
        try:
            try:
                response: Response = await route.endpoint(request)
            except self._outages as exc:
                assert self._on_outage is not None
                response = await self._on_outage(request, exc)
        except Exception:
            # Nothing was sent yet: the answer ServerErrorMiddleware gives, then uvicorn logs it.
            await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise
        await response(scope, receive, send)
