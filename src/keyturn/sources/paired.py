"""The saved login of the other flow: one person logs in to one account in a browser or with a
device code (:data:`keyturn.registry.LOGIN_PAIR`), and where the flow was picked by the machine
rather than named, a login saved by either answers for the other.

The two logins have different cache keys (the grant type is part of a key: a token is the
grant's answer), so each is saved under its own. Whoever picked the flow looks for the other's
saved login here before starting a new one: the command line (``keyturn token``, through
:func:`keyturn.cli.common.other_login`) and :class:`~keyturn.sources.user_login.UserLogin`, one
piece of logic for both, written once as a flow: its one effect asks the source for its token
(:func:`~keyturn.protocol.http.current_token`), which the sync driver answers with
``get_token()`` and the async one with ``await aget_token()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .._drivers import drive
from ..errors import LoginRequired
from ..protocol.http import Flow, HttpRequest, HttpResponse, current_token
from ..registry import paired_login
from ..token import Token
from .base import Source

__all__ = ["paired_saved_login", "paired_saved_login_flow"]

S = TypeVar("S", bound=Source)


def paired_saved_login_flow(grant: str, silent: Callable[[str], S]) -> Flow[tuple[S, Token] | None]:
    """The saved login of the other login of ``grant``'s pair, used silently: its source (built
    by ``silent(other_grant)``, which must build one that never starts a login) and its token,
    refreshed if it had to be. None when ``grant`` has no pair, or the other has no saved login
    that still works (its refresh token refused: the cache has dropped it)."""
    other = paired_login(grant)
    if other is None:
        return None
    source = silent(other)
    try:
        token = yield from current_token(source)
    except LoginRequired:
        return None
    return source, token


def _no_request(request: HttpRequest) -> HttpResponse:
    raise TypeError(f"paired_saved_login_flow sends no request itself ({request.method} "
                    f"{request.url}): its source does")


def paired_saved_login(grant: str, silent: Callable[[str], S]) -> tuple[S, Token] | None:
    """:func:`paired_saved_login_flow` carried out in this thread."""
    return drive(paired_saved_login_flow(grant, silent), _no_request)
