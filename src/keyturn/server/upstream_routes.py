"""The two HTTP routes of an upstream sign-in: the "Sign in with NAME" button and the callback.

``POST <issuer>/device/upstream/NAME`` (the button of :class:`~..pages.SignInOption`): the CSRF
token of the page, then the typed user code through the same rate limits as a password sign-in
(:meth:`~..verification.Verification.lookup_user_code`), then a new login kept in the storage
(:mod:`.flow`) and a page that sends the browser on to the upstream's authorization endpoint.

``GET <issuer>/device/callback``: the login taken once from the storage by its ``state``, its
browser cookie, its age, the response's ``iss`` (RFC 9207) and ``error``, the code exchanged, the
id_token validated (:mod:`.client`), the person mapped and checked against the allow-list
(:mod:`.flow`), then the Approve/Deny page of a password sign-in
(:meth:`~..pages.DevicePages.consent`). Anything that fails shows the code form with one
sentence and approves nothing; no exception leaves these routes as a traceback. Every step
works on any replica: the login is in the storage, the consent ticket is signed with the
storage's page secret.
"""

from __future__ import annotations

import html
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..errors import InvalidResponse, OAuthError
from ..secret import Secret
from .device_flow import DeviceStatus
from .pages import PAGE_HEADERS, DevicePages, SignInOption
from .service import AuthorizationServer
from .upstream_presses import take_press
from .upstreams.client import UpstreamClient, UpstreamRefused, UpstreamUnavailable, quoted
from .upstreams.config import UpstreamConfig
from .upstreams.flow import (
    LOGIN_LIFETIME,
    PendingLogin,
    admitted,
    begin,
    login_key,
    map_user,
    reauthenticated,
    resume,
)

__all__ = ["BROWSER_COOKIE", "OUTCOMES", "UpstreamRoutes", "sign_in_options"]

log = logging.getLogger("keyturn.server.upstreams")

#: How a sign-in ended, as /metrics counts it: started (sent to the upstream), ok (the consent
#: page shown), not_allowed (the allow-list), refused (the upstream said no, or its id_token
#: failed the checks), unavailable (down or answering nonsense), forged (an unknown, replayed or
#: foreign state, another browser, a wrong iss), expired (too slow), limited (too many presses:
#: :mod:`.presses`).
OUTCOMES: Final = frozenset({"started", "ok", "not_allowed", "refused", "unavailable", "forged",
                             "expired", "limited"})
#: Binds a login to the browser that started it. SameSite=Lax, not Strict: the callback is a
#: top-level navigation from the upstream's site, on which a Strict cookie is not sent.
BROWSER_COOKIE: Final = "keyturn_upstream"


def _onward(upstream: UpstreamConfig, url: str) -> Response:
    """A page that sends the browser on to the upstream (a refresh, and a link to press).

    Not a 303 from the button's POST: the page's Content-Security-Policy says ``form-action
    'self'``, which browsers apply to every redirect after a form is sent (CSP Level 3,
    form-action: "whether a redirect should be followed"), and a provider may send the person on
    to hosts of its own (a federated login). A refresh is no form submission."""
    shown = html.escape(upstream.display_name)
    target = html.escape(url, quote=True)
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv=refresh content="0;url={target}">'
        f"<title>Continue to {shown}</title></head><body>"
        f'<p><a href="{target}">Continue to {shown}</a></p></body></html>'
    )
    return HTMLResponse(document, headers=PAGE_HEADERS)


def sign_in_options(upstreams: Mapping[str, UpstreamConfig], prefix: str
                    ) -> tuple[SignInOption, ...]:
    """The buttons of the code form, one per upstream, in the file's order."""
    return tuple(SignInOption(name=name, display_name=upstream.display_name,
                              action=f"{prefix}/device/upstream/{name}")
                 for name, upstream in upstreams.items())


class UpstreamRoutes:
    """The button and callback routes for every configured upstream."""

    def __init__(self, server: AuthorizationServer, pages: DevicePages,
                 upstreams: Mapping[str, UpstreamConfig], prefix: str,
                 clients: Mapping[str, UpstreamClient] | None = None) -> None:
        self.server = server
        self.pages = pages
        self.upstreams = dict(upstreams)
        self.clients = dict(clients) if clients is not None else {
            name: UpstreamClient(upstream) for name, upstream in upstreams.items()}
        self.callback_path = f"{prefix}/device/callback"
        # Over https the browser cookie is "__Host-" too (Path=/: RFC 6265bis §4.1.3.2), as the
        # CSRF cookie (pages.py), so that no sibling subdomain can set it (review R19 M4).
        self.browser_cookie = f"__Host-{BROWSER_COOKIE}" if pages.secure else BROWSER_COOKIE
        self.cookie_path = "/" if pages.secure else self.callback_path
        #: RFC 6749 §3.1.2: "The redirection endpoint URI MUST be an absolute URI": the one to
        #: register at each upstream.
        self.redirect_uri = f"{server.issuer}/device/callback"

    def __repr__(self) -> str:
        return f"UpstreamRoutes({', '.join(self.upstreams)})"

    async def aclose(self) -> None:
        """Close every upstream's connections (the server stops: the app's lifespan)."""
        for client in self.clients.values():
            await client.aclose()

    def _count(self, upstream: str, outcome: str) -> None:
        """/metrics' keyturn_upstream_sign_ins_total; ``outcome`` is one of OUTCOMES."""
        assert outcome in OUTCOMES
        self.server.metrics.upstream_sign_in(upstream, outcome)

    # -- pages ---------------------------------------------------------------------------------------

    def _refused(self, request: Request, message: str, status: int, user_code: str = "",
                 ) -> Response:
        """The code form with ``message``: nothing was approved."""
        known = request.cookies.get(self.pages.csrf_cookie)
        return self.pages.code_form(known or secrets.token_urlsafe(24), user_code=user_code,
                                    message=message, status=status, new_cookie=known is None)

    def _unreachable(self, request: Request, upstream: UpstreamConfig, user_code: str = ""
                     ) -> Response:
        self._count(upstream.name, "unavailable")
        response = self._refused(request, f"{upstream.display_name} could not be reached, or "
                                 "answered in a way that cannot be trusted: try again later.",
                                 502, user_code)
        response.headers["Retry-After"] = "60"
        return response

    # -- the button ----------------------------------------------------------------------------------

    async def start(self, request: Request, form: Mapping[str, Any], address: str) -> Response:
        upstream = self.upstreams.get(str(request.path_params.get("name", "")))
        if not self.pages.csrf_ok(request, form):
            return self._refused(request, "The form expired: try again.", 403)
        csrf = str(form["csrf"])
        typed = str(form.get("user_code", ""))[:40]
        if upstream is None:
            return self.pages.code_form(csrf, user_code=typed, message="That way of signing in "
                                        "is not offered here.", status=404)
        now = time.time()
        lookup = await run_in_threadpool(self.server.lookup_user_code, typed, address, now)
        if lookup.limited:
            return self.pages.code_form(csrf, message="Too many wrong codes: wait a few minutes "
                                        "and try again.", status=429)
        if lookup.grant is None:
            return self.pages.code_form(csrf, user_code=typed, message="That code is not valid "
                                        "(or has expired). Check it on your device.", status=400)
        # A right code is given back at once: no password is guessed with it here (the person
        # signs in at the upstream, which limits its own guesses).
        await run_in_threadpool(self.server.signed_in, address, now)
        # The presses themselves are counted (review R19 M2): each stores a login and may call
        # the upstream.
        if not await run_in_threadpool(take_press, self.server.storage,
                                       self.server.config.rate_limits, address=address,
                                       user_code=lookup.grant.user_code, now=now):
            self._count(upstream.name, "limited")
            limited = self.pages.code_form(csrf, message="Too many sign-in attempts with this "
                                           "code or from this network: wait a few minutes and "
                                           "try again.", status=429)
            limited.headers["Retry-After"] = str(self.server.config.rate_limits.window)
            return limited
        client = self.clients[upstream.name]
        try:
            metadata = await client.metadata()
        except UpstreamUnavailable:
            return self._unreachable(request, upstream, typed)
        authorization, login, cookie = begin(upstream, metadata, self.redirect_uri,
                                             lookup.grant.user_code, now)
        stored = await run_in_threadpool(self.server.storage.put_once, login_key(
            authorization.state), login.seal(authorization.state), now, now + LOGIN_LIFETIME)
        if not stored:  # 256 random bits collided: never, but nothing is overwritten
            return self._refused(request, "Please try again.", 500, typed)
        log.info("upstream %s: sign-in started", upstream.name)
        self._count(upstream.name, "started")
        response = _onward(upstream, authorization.url)
        response.set_cookie(self.browser_cookie, cookie, max_age=LOGIN_LIFETIME,
                            path=self.cookie_path, httponly=True, samesite="lax",
                            secure=self.pages.secure)
        return response

    # -- the callback --------------------------------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        query = Secret.wrap(request.url.query)  # it holds the code: never a plain local
        response = await self._finish(request, query)
        # The browser cookie has done its job, whatever happened.
        response.delete_cookie(self.browser_cookie, path=self.cookie_path, httponly=True,
                               samesite="lax", secure=self.pages.secure)
        return response

    async def _finish(self, request: Request, query: Secret[str]) -> Response:
        state = request.query_params.get("state", "")
        now = time.time()
        sealed = None
        if state:
            # Taken, not read: a second callback with this state (a replay, a reload) finds
            # nothing, on this replica or any other.
            sealed = await run_in_threadpool(self.server.storage.take_once, login_key(state), now)
        login = PendingLogin.open(state, sealed) if sealed else None
        if login is None:
            log.warning("upstream callback with an unknown, used or expired state")
            self._count("unknown", "forged")
            return self._refused(request, "This sign-in link is not valid (it was already used, "
                                 "has expired, or was not started here): enter the code again.",
                                 400)
        if login.stale(now):
            self._count(login.upstream, "expired")
            return self._refused(request, "This sign-in took too long: enter the code again.",
                                 400, login.user_code)
        if not login.same_browser(request.cookies.get(self.browser_cookie)):
            # Not the browser that pressed the button: someone else's login, sent as a link.
            log.warning("upstream %s: callback in another browser than the sign-in's",
                        login.upstream)
            self._count(login.upstream, "forged")
            return self._refused(request, "This sign-in was started in another browser: enter "
                                 "the code from your device here again.", 400)
        upstream = self.upstreams.get(login.upstream)
        if upstream is None:
            return self._refused(request, "That way of signing in is not offered here any more.",
                                 400, login.user_code)
        return await self._signed_in(request, query, upstream, state, login, now)

    async def _signed_in(self, request: Request, query: Secret[str], upstream: UpstreamConfig,
                         state: str, login: PendingLogin, now: float) -> Response:
        client = self.clients[upstream.name]
        code_shown = login.user_code
        try:
            metadata = await client.metadata()
        except UpstreamUnavailable:
            return self._unreachable(request, upstream, code_shown)
        authorization = resume(upstream, metadata, self.redirect_uri, state, login)
        try:
            code = Secret.wrap(authorization.parse_response(query))
        except OAuthError as exc:
            # RFC 6749 §4.1.2.1: the person (or the upstream) refused, e.g. access_denied.
            log.info("upstream %s: authorization error %s", upstream.name, quoted(exc.error))
            self._count(upstream.name, "refused")
            return self._refused(request, f"{upstream.display_name} did not sign you in "
                                 f"({exc.error[:40]}).", 403, code_shown)
        except InvalidResponse as exc:
            # A wrong or missing iss (RFC 9207 §2.4: "clients MUST reject the authorization
            # response"), a repeated parameter, neither code nor error.
            log.warning("upstream %s: authorization response refused: %s", upstream.name,
                        quoted(exc))
            self._count(upstream.name, "forged")
            return self._refused(request, f"The answer from {upstream.display_name} was refused "
                                 "(it did not come from the provider this sign-in went to).",
                                 400, code_shown)
        try:
            claims = await client.sign_in(authorization, code, metadata)
        except UpstreamUnavailable:
            return self._unreachable(request, upstream, code_shown)
        except UpstreamRefused:
            self._count(upstream.name, "refused")
            return self._refused(request, f"{upstream.display_name} did not confirm who you are: "
                                 "enter the code again to start over.", 403, code_shown)
        if not reauthenticated(upstream, claims, login):
            log.warning("upstream %s: prompt=login asked, but the id_token's auth_time is older "
                        "than the sign-in", upstream.name)
            self._count(upstream.name, "refused")
            return self._refused(request, f"{upstream.display_name} did not ask you to sign in "
                                 "again: enter the code again to start over.", 403, code_shown)
        user = map_user(upstream, claims)
        if user is None or not admitted(upstream, claims):
            log.info("upstream %s: a person not on the allow-list was refused", upstream.name)
            self._count(upstream.name, "not_allowed")
            return self._refused(request, f"Your {upstream.display_name} account is not allowed "
                                 "to sign in here. Nothing was approved.", 403)
        grant = await run_in_threadpool(self.server.storage.device_grant_by_user_code,
                                        login.user_code)
        if grant is None or grant.status_at(now) is not DeviceStatus.PENDING:
            return self._refused(request, "That code is no longer waiting for approval (it "
                                 "expired or was already used).", 400)
        log.info("upstream %s: signed in", upstream.name)
        self._count(upstream.name, "ok")
        known = request.cookies.get(self.pages.csrf_cookie)
        csrf = known or secrets.token_urlsafe(24)
        response = self.pages.consent(csrf=csrf, grant=grant, user=user, now=now)
        if known is None:
            # The page's CSRF cookie is SameSite=Strict: it did not come along on the redirect
            # from the upstream's site; the Approve form needs one.
            response.set_cookie(self.pages.csrf_cookie, csrf, path=self.pages.cookie_path,
                                httponly=True, samesite="strict", secure=self.pages.secure)
        return response
