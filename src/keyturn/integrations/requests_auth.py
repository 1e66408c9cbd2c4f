"""A token source as a requests ``auth=``: sets the header, and on a 401 refreshes and retries once.

requests has no auth flow, so the retry is a response hook, as requests' own digest auth does it.
requests itself is never imported here: the source works without it installed. The tokens are
held as :class:`~keyturn.secret.Secret` in the hook's frame, which a failed refresh's traceback
shows.
"""

from __future__ import annotations

from typing import Any

from ..secret import Secret

__all__ = ["RequestsAuth"]


class RequestsAuth:
    """Mixed into every source; needs ``get_access_token`` and ``invalidate``."""

    def get_access_token(self) -> str:
        raise NotImplementedError

    def invalidate(self, access_token: str | None = None) -> None:
        raise NotImplementedError

    def __call__(self, request: Any) -> Any:
        token = Secret(self.get_access_token())
        request.headers["Authorization"] = f"Bearer {token.reveal()}"
        body: Any = getattr(request, "body", None)
        position = body.tell() if hasattr(body, "tell") else None

        def retry_once(response: Any, **kwargs: Any) -> Any:
            if response.status_code != 401 or getattr(response.request, "_keyturn_retry", False):
                return response
            self.invalidate(token.reveal())
            fresh = Secret(self.get_access_token())
            if fresh == token:  # a source that cannot renew (StaticToken) passes the 401 back
                return response
            if position is not None:
                body.seek(position)
            _ = response.content  # drain, so the connection can be reused
            response.close()
            again = response.request.copy()
            again._keyturn_retry = True
            again.headers["Authorization"] = f"Bearer {fresh.reveal()}"
            retried = response.connection.send(again, **kwargs)
            retried.history.append(response)
            retried.request = again
            return retried

        request.register_hook("response", retry_once)
        return request
