"""Response hooks: a caller's function that adapts a non-standard provider's answer before keyturn
parses it (``token_response_hook=``, ``DeviceCode(device_response_hook=)``).

A hook is ``callable(dict) -> dict``. It is applied in one place, :func:`with_response_hooks`, a
wrapper flow around a source's whole grant: every answer of the token endpoint (for every grant:
client credentials, refresh, code and device code exchanges, token exchange, assertions) and of
the device authorization endpoint passes through it, and what it returns is what the parsers of
:mod:`.grants` and :mod:`.device` check. So no grant carries hook logic of its own.

Only answers with HTTP 200 are given to a hook: the successful ones, and the errors some providers
send with a 200 (Slack's ``{"ok": false, "error": ...}``, GitHub's ``error=authorization_pending``).
Any other status is parsed as RFC 6749 §5.2 says, so a hook written for the success shape never
hides the server's error. A hook that raises, or returns something other than a dict of JSON
values, ends the grant with a :class:`~keyturn.errors.ConfigError` naming the hook; the answer
itself (it holds the tokens) is never in that error, nor in the traceback of this module.

A hook fails after the server has acted: on a request that cannot be sent again (a rotating
refresh, a code exchange, a device poll) the answer is the only copy of the new refresh token. So
before the error ends the grant, that refresh token is handed to the keeper
(:class:`~keyturn.protocol.http.Received`), as the grants do with an answer that fails its checks
(:func:`~keyturn.protocol.grants.salvage_refresh_token`): the saved login lives on, and the next
call, with the hook fixed, refreshes from it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias, TypeVar

from ..errors import ConfigError, InvalidResponse, KeyturnError
from ..secret import Secret
from .device import DEVICE_ENDPOINT
from .grants import TOKEN_ENDPOINT, response_members, salvage_refresh_token
from .http import Answer, Effect, Flow, HttpRequest, HttpResponse, Received
from .wire import GRANT_REFRESH_TOKEN

__all__ = ["DEVICE_ENDPOINT", "TOKEN_ENDPOINT", "ResponseHook", "check_hook", "describe_hook",
           "hooked_response", "with_response_hooks"]

T = TypeVar("T")

#: What a hook takes and returns: the answer's JSON object.
ResponseHook: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]



def describe_hook(hook: object) -> str:
    """The hook's name as its author wrote it, and where: ``lift_authed_user (myapp.auth)``."""
    name = getattr(hook, "__qualname__", None) or type(hook).__name__
    module = getattr(hook, "__module__", None)
    return f"{name} ({module})" if module else str(name)


def check_hook(hook: object, argument: str) -> None:
    """A :class:`ConfigError` for a hook that cannot be called (checked when the source is made)."""
    if hook is not None and not callable(hook):
        raise ConfigError(f"{argument}= must be a callable taking the answer as a dict and "
                          f"returning a dict, not {type(hook).__name__}")


def hooked_response(hook: ResponseHook, response: HttpResponse, *, argument: str,
                    purpose: str) -> HttpResponse | ConfigError:
    """The answer as ``hook`` rewrites it (as JSON, whatever the provider sent), or the
    :class:`ConfigError` to end the grant with. An answer that is not HTTP 200, or whose body is
    not an object, is returned as it is: the parsers say what is wrong with it."""
    if response.status != 200:
        return response
    try:
        members = response_members(response, purpose)
    except InvalidResponse:
        return response
    where = f"{argument} {describe_hook(hook)}"
    try:
        # The answer holds the tokens: in this frame only inside a Secret (a traceback with locals
        # shows it as a tag), and given to the hook as the plain dict it asks for.
        returned = Secret(hook(dict(members.items())))
    except KeyError as exc:
        key = exc.args[0] if exc.args else None
        if not isinstance(key, str):
            return _raised(where, exc, purpose)
        # A KeyError names the member that was missing: a name, safe to show, and what to fix.
        return ConfigError(f"{where} raised KeyError({key!r}) on the {purpose}'s answer, which "
                           "has no such member: fix the hook (it is given every HTTP 200 answer, "
                           "errors too; return it unchanged when it is not the shape you adapt)")
    except Exception as exc:  # the caller's code: any error is a problem of the configuration
        return _raised(where, exc, purpose)
    if not isinstance(returned.reveal(), Mapping):
        return ConfigError(f"{where} returned {type(returned.reveal()).__name__}, not a dict: a "
                           "response hook must return the answer (a dict) keyturn should parse")
    try:
        body = Secret(json.dumps(dict(returned.reveal()), allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        return ConfigError(f"{where} returned a dict that is not JSON ({type(exc).__name__}: only "
                           "str, numbers, bool, None, lists and dicts): return JSON values")
    headers = {k: v for k, v in response.headers.items() if k not in ("content-type",
                                                                     "content-length")}
    headers["content-type"] = "application/json"
    return HttpResponse(response.status, headers, body.reveal(), response.url)


def _raised(where: str, exc: Exception, purpose: str) -> ConfigError:
    # The exception's own text is left out: the hook's author may have put the answer (tokens) in it.
    return ConfigError(f"{where} raised {type(exc).__name__} on the {purpose}'s answer: fix the "
                       "hook (it is given the answer as a dict and must return a dict)")


def _keep_spent(request: HttpRequest, answer: HttpResponse) -> Flow[None]:
    """Hand the keeper the refresh token of an answer the hook failed on, when it has one: the
    server has spent what ``request`` carried (a refresh token, a code), and this answer is all
    there is of what it gave."""
    # A refresh-only placeholder, as Token.refresh_only: already expired (the next call
    # refreshes), so when it was issued (issued_at 0) counts for nothing.
    salvaged = salvage_refresh_token(answer, now=0.0)
    if salvaged is not None:
        # RFC 6749 §6: a refresh's answer continues the login it refreshed (Received.refresh).
        refresh = request.form is not None and request.form.get("grant_type") == (
            GRANT_REFRESH_TOKEN)
        yield Received(salvaged, refresh=refresh)


def with_response_hooks(flow: Flow[T], hooks: Mapping[str, tuple[str, ResponseHook]]) -> Flow[T]:
    """``flow`` with the answers to its requests rewritten by ``hooks`` (request purpose ->
    (argument name, hook)); every other effect and answer passes through unchanged, and what the
    driver throws in (a transport failure) is thrown into ``flow``."""
    if not hooks:
        return (yield from flow)
    try:
        effect: Effect = next(flow)
        while True:
            try:
                answer: Answer = yield effect
            except GeneratorExit:
                flow.close()
                raise
            except BaseException as thrown:  # handed on to the flow, as the driver would throw it
                effect = flow.throw(thrown)
                continue
            request = effect if isinstance(effect, HttpRequest) else None
            hooked = hooks.get(request.purpose) if request is not None else None
            if hooked is not None and request is not None and isinstance(answer, HttpResponse):
                argument, hook = hooked
                rewritten = hooked_response(hook, answer, argument=argument,
                                            purpose=request.purpose)
                if isinstance(rewritten, KeyturnError):
                    if not request.idempotent:
                        yield from _keep_spent(request, answer)
                    # Thrown into the flow at the request's yield, as a failed effect is: a flow
                    # that cleans up (closes a listener) does so.
                    effect = flow.throw(rewritten)
                    continue
                answer = rewritten
            effect = flow.send(answer)
    except StopIteration as stop:
        result: T = stop.value
        return result
