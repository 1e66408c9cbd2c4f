"""A token source as a requests ``auth=``: the requests driver of the 401-retry flow
(:mod:`keyturn.integrations.retry`).

requests has no auth flow, so the flow's retry is sent from a response hook, as requests' own digest
auth does it. requests itself is never imported here: the source works without it installed.
"""

from __future__ import annotations

from typing import Any

from .base import Adapter
from .retry import UNAUTHORIZED, presented, resume

__all__ = ["RequestsAuth"]


class RequestsAuth(Adapter):
    """``requests.get(url, auth=RequestsAuth(source))``; every keyturn source is one already."""

    def __call__(self, request: Any) -> Any:
        source = self.token_source  # for the 401, in the hook
        token = self.get_token()  # the flow's first step; the flow itself is made after a 401
        request.headers["Authorization"] = token._authorization  # authorization(), rendered once
        body: Any = getattr(request, "body", None)
        position = body.tell() if hasattr(body, "tell") else None

        def answer(response: Any, **kwargs: Any) -> Any:
            if response.is_redirect or response.status_code != UNAUTHORIZED:
                return response  # a redirect's last hop is the answer that counts
            fresh = resume(presented(source, token), response.status_code)
            if fresh is None:
                return response
            if position is not None:
                body.seek(position)
            _ = response.content  # drain, so the connection can be reused
            response.close()
            again = response.request.copy()
            again.headers["Authorization"] = fresh.authorization()
            retried = response.connection.send(again, **kwargs)
            retried.history.append(response)
            retried.request = again
            return retried

        request.register_hook("response", answer)
        return request
