"""Browser login: the authorization code grant with PKCE and a loopback redirect (RFC 6749 §4.1,
RFC 7636, RFC 8252).

The first call opens the person's browser on the provider's login page; the provider sends the
browser back to ``http://127.0.0.1:PORT/callback``, where keyturn listens for exactly that one
request, checks it (``state``, RFC 9207 ``iss``), exchanges the code (with the PKCE verifier),
validates the ID Token (signature, ``nonce``), and shows the outcome on a landing page. The tokens
go to a :class:`~keyturn.stores.file.FileStore` by default, so every later process of the user
finds them; from then on the refresh token is used, and a new browser login is asked for only when
the provider refuses it, and only from an interactive caller: a silent one (a cron job,
``keyturn token``) gets :class:`~keyturn.errors.LoginRequired`.

The login runs inside the cache's transaction, under the store's lock: two processes that need a
login at once open one browser, and the second gets the first one's tokens.
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import registry
from ..account import login_hint
from ..errors import ConfigError, DiscoveryError
from ..interactive.landing import LandingPage, LoginOutcome, render
from ..interactive.loopback import LoopbackListener
from ..interactive.notebook import refuse_loopback_redirect
from ..protocol.authcode import (
    AuthorizationRequest,
    code_exchange_flow,
    iss_required,
)
from ..protocol.endpoints import check_endpoint_url
from ..protocol.http import Blocking, Flow, call
from ..secret import Secret, conceal_arguments
from ..stores.base import Store
from ..stores.file import FileStore
from ..token import Token
from .oidc import OpenIDSource, person_is_watching

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import OpenIDOptions

__all__ = ["DEFAULT_LOGIN_TIMEOUT", "DEFAULT_SCOPE", "AuthorizationCode"]

log = logging.getLogger("keyturn")

#: Asked for when ``scope=`` is not given (the registry's row of the grant says which).
DEFAULT_SCOPE = registry.grant("authorization_code").default_scope
#: Seconds a person gets to finish the login in the browser.
DEFAULT_LOGIN_TIMEOUT = 300.0


def _file_store() -> Store | None:
    return FileStore()


@dataclass(frozen=True)
class _LoginPlan:
    """Where a browser login goes: what :meth:`AuthorizationCode._plan_flow` found out."""

    authorization_endpoint: str
    token_endpoint: str
    issuer: str | None
    require_iss: bool


class AuthorizationCode(OpenIDSource):
    """Tokens for a person who signs in with the browser on this machine::

        source = AuthorizationCode(issuer="https://id.example.org", client_id="cli")
        source.get_access_token()   # first time: opens the browser; later: silent

    ``open_browser(url)`` starts the browser (default: :func:`webbrowser.open`, honouring
    ``$BROWSER``); returning False means it could not, and the URL is printed on stderr instead.
    ``landing_page`` customises the page the browser shows afterwards (see
    :mod:`keyturn.interactive.landing`). ``login_timeout`` is how long the person has, in seconds;
    ``redirect_port`` a fixed port for the redirect (0: any free one, as RFC 8252 §7.3 wants).
    ``prompt`` is OpenID's ``prompt`` parameter (default: ``consent`` when ``offline_access`` is
    asked for, as OpenID Connect Core §11 requires; ``""`` sends none). ``interactive`` says
    whether a login may be started at all; by default it may when ``open_browser`` is given, when
    stdin and stderr are terminals, and in a Jupyter kernel (one on another machine than the
    browser refuses with :class:`~keyturn.errors.ConfigError`: use ``DeviceCode`` there).
    """

    grant_name = "authorization_code"
    default_store = _file_store

    def __init__(
        self, *, authorization_endpoint: str | None = None, prompt: str | None = None,
        open_browser: Callable[[str], Any] | None = None,
        landing_page: LandingPage | None = None, login_timeout: float = DEFAULT_LOGIN_TIMEOUT,
        redirect_port: int = 0, interactive: bool | None = None,
        **options: Unpack[OpenIDOptions],
    ) -> None:
        conceal_arguments(options)  # first: this frame shows in a ConfigError's traceback
        super().__init__(**options)
        if authorization_endpoint:
            check_endpoint_url(authorization_endpoint, "authorization_endpoint",
                               allow_http=self._allow_http)
        elif self.issuer is None:
            raise ConfigError("give issuer= (for discovery) or authorization_endpoint=")
        if prompt is not None and not isinstance(prompt, str):
            raise ConfigError("prompt= is OpenID's prompt parameter ('consent', 'login', ...), a "
                              "string; the browser is started by open_browser=")
        if open_browser is not None and not callable(open_browser):
            raise ConfigError("open_browser= must be a callable taking the URL to open")
        if landing_page is not None and not (isinstance(landing_page, str) or callable(landing_page)):
            raise ConfigError("landing_page= must be an HTML template string or a callable")
        if not login_timeout > 0:
            raise ConfigError("login_timeout= must be a positive number of seconds")
        if not 0 <= redirect_port <= 65535:
            raise ConfigError("redirect_port= must be 0 (any free port) or a TCP port")
        self._authorization_endpoint = authorization_endpoint
        self._prompt = prompt
        self._open_browser = open_browser
        self._landing_page = landing_page
        self._login_timeout = float(login_timeout)
        self._redirect_port = redirect_port
        self._interactive = interactive

    @property
    def login_timeout(self) -> float:
        """Seconds a person has to finish signing in."""
        return self._login_timeout

    @property
    def interactive(self) -> bool:
        if self._interactive is not None:
            return self._interactive
        return self._open_browser is not None or person_is_watching()

    # -- the grant: one flow, driven by Source._fetch / _afetch ---------------------------------------

    def _flow(self, previous: Token | None) -> Flow[Token]:
        """The saved login refreshed, or a browser login: the browser sent to the provider, the
        redirect awaited on the loopback listener (blocking calls: the async driver runs them in a
        thread), the code exchanged."""
        token_endpoint = yield from self._endpoint_flow()
        refreshed = yield from self._refresh_or_login_flow(token_endpoint, previous)
        if refreshed is not None:
            return refreshed
        if self._open_browser is None:
            # Never wait on a redirect the person's browser cannot reach (a remote kernel).
            refuse_loopback_redirect(self.issuer, self.client_auth.client_id)
        plan = yield from self._plan_flow(token_endpoint)
        token = yield from self._login_flow(plan)
        return token

    def _plan_flow(self, token_endpoint: str) -> Flow[_LoginPlan]:
        endpoint = self._authorization_endpoint
        issuer, require_iss = None, False
        if self.issuer is not None:
            metadata = yield from self._metadata_flow()
            endpoint = endpoint or metadata.authorization_endpoint
            issuer, require_iss = metadata.issuer, iss_required(metadata)
        if not endpoint:
            raise DiscoveryError(
                f"issuer {self.issuer} names no authorization_endpoint: pass "
                "authorization_endpoint=, or use the device flow", url=self.issuer,
            )
        return _LoginPlan(endpoint, token_endpoint, issuer, require_iss)

    # -- the browser login -------------------------------------------------------------------------------

    def _request(self, plan: _LoginPlan, redirect_uri: str) -> AuthorizationRequest:
        params = {k: v for k, v in self._base_params().items() if k != "scope"}
        params.update(login_hint(self.account, params))  # which of several accounts (account=)
        return AuthorizationRequest.create(
            authorization_endpoint=plan.authorization_endpoint,
            client_id=self.client_auth.client_id, redirect_uri=redirect_uri, scope=self.scope,
            prompt=self._prompt, params=params, issuer=plan.issuer, require_iss=plan.require_iss,
            allow_http=self._allow_http,
        )

    def _launch(self, url: str) -> None:
        """Send the browser to ``url``; if none opens, tell the person where to go."""
        from ..interactive.browser import open_browser

        opener = self._open_browser or open_browser
        try:
            opened = opener(url)
        except Exception as exc:
            log.warning("AuthorizationCode: could not start a browser (%s)", type(exc).__name__)
            opened = False
        if opened is False or self._open_browser is None:
            # The URL holds no secret (the PKCE verifier never leaves this process); showing it
            # lets a person finish the login when the browser did not come up.
            stream = sys.stderr
            if stream is not None:
                intro = ("A browser window was opened to sign in. If none appeared, open this page "
                         "in a browser on this machine:" if opened is not False else
                         "To sign in, open this page in a browser on this machine:")
                stream.write(f"\n{intro}\n    {url}\n")
                stream.flush()

    def _exchange_flow(self, request: AuthorizationRequest, query: Secret[str],
                       token_endpoint: str) -> Flow[Token]:
        # The query and the code as Secrets: this frame is in the traceback of a refused exchange.
        code = Secret(request.parse_response(query))
        token = yield from code_exchange_flow(request, code, token_endpoint=token_endpoint,
                                              client_auth=self.client_auth, now=time.time(),
                                              resource=self.resource)
        token = yield from self._claims_flow(token, None, nonce=request.nonce)
        return token

    def _answer(self, listener: LoopbackListener, outcome: LoginOutcome) -> None:
        try:
            listener.respond(*render(outcome, self._landing_page))
        except Exception as exc:  # a broken custom page must not lose the tokens or the error
            log.error("AuthorizationCode: landing_page failed (%s)", type(exc).__name__)

    @staticmethod
    def _who(token: Token) -> str | None:
        claims = token.claims
        who = claims.get("preferred_username") or claims.get("email") or claims.get("sub")
        return who if isinstance(who, str) else None

    def _login_flow(self, plan: _LoginPlan) -> Flow[Token]:
        listener = LoopbackListener(port=self._redirect_port)
        # close() waits for the landing page to go out and the server thread to end: a blocking
        # call, yielded on every way out of the login.
        close = Blocking(listener.close, "close the login redirect listener")
        try:
            token = yield from self._redirect_flow(listener, plan)
        except GeneratorExit:
            listener.close()  # the driver dropped the flow: there is no one left to yield to
            raise
        except BaseException:
            yield from call(close)
            raise
        yield from call(close)
        return token

    def _redirect_flow(self, listener: LoopbackListener, plan: _LoginPlan) -> Flow[Token]:
        request = self._request(plan, listener.redirect_uri)
        listener.accept = request.is_for_this_request
        # webbrowser.open may wait for the browser command; the wait certainly blocks.
        yield from call(Blocking(functools.partial(self._launch, request.url), "open the browser"))
        query = yield from call(Blocking(
            functools.partial(_redirect_query, listener, self._login_timeout),
            "wait for the browser to come back"))
        if query is None:
            raise TypeError("the driver answered None to the wait for the login redirect")
        try:
            token = yield from self._exchange_flow(request, query, plan.token_endpoint)
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._answer(listener, LoginOutcome.failure(exc))
            raise
        self._answer(listener, LoginOutcome.success(self._who(token)))
        return token


def _redirect_query(listener: LoopbackListener, timeout: float) -> Secret[str]:
    """The redirect's query string (it holds the code), as a Secret from the start: it passes
    through the drivers' frames."""
    return Secret(listener.wait(timeout))
