"""The authorization-object protocols of SDKs: pyFirecREST's ``auth_headers()`` and globus-sdk's
``GlobusAuthorizer`` (``get_authorization_header()`` / ``handle_missing_authorization()``).

Both are duck-typed by their SDKs, so neither is imported here.
"""

from __future__ import annotations

from collections.abc import Awaitable

__all__ = ["SdkAuth"]


class SdkAuth:
    """Mixed into every source; needs ``get_access_token``, ``aget_access_token``, ``invalidate``
    and ``_needs_wait()`` (True when no valid token is cached, so a caller would have to wait)."""

    def get_access_token(self) -> str:
        raise NotImplementedError

    async def aget_access_token(self) -> str:
        raise NotImplementedError

    def invalidate(self, access_token: str | None = None) -> None:
        raise NotImplementedError

    def _needs_wait(self) -> bool:
        return False

    def auth_headers(self) -> dict[str, str] | Awaitable[dict[str, str]]:
        """``{"Authorization": "Bearer …"}``.

        Called on a running event loop while no valid token is cached, it returns an awaitable of
        the headers instead, so an async client that awaits awaitables (pyFirecREST's
        ``AsyncFirecrest``) never blocks its loop on a token request. Inside the refresh leeway the
        valid token is returned at once and the refresh runs in a task.
        """
        if self._needs_wait() and _on_event_loop():
            return self.aauth_headers()
        return {"Authorization": f"Bearer {self.get_access_token()}"}

    async def aauth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.aget_access_token()}"}

    # globus-sdk's GlobusAuthorizer protocol.
    def get_authorization_header(self) -> str:
        return f"Bearer {self.get_access_token()}"

    def handle_missing_authorization(self) -> bool:
        """After a 401: drop the token so the SDK's single retry gets a new one."""
        self.invalidate()
        return True


def _on_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
