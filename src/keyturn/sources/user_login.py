"""A person's login, in the browser or with a device code, whichever works where the program runs.

:class:`UserLogin` asks the rule of :mod:`keyturn.interactive.choice` (the one ``keyturn login``
asks) which login a browser here could finish: :class:`~keyturn.sources.authorization_code.
AuthorizationCode` where a browser on this machine can reach the loopback redirect,
:class:`~keyturn.sources.device_code.DeviceCode` otherwise (an SSH session, no display, a
container, a remote Jupyter kernel). Before any new login it uses a saved one, silently: first the
chosen flow's, then the other's (:mod:`keyturn.sources.paired`, as the command line does), so a
login made with either — by ``keyturn login`` too — answers, and its refresh goes on. A browser
login that cannot happen gives way to the device flow: when no browser can be started, when the
provider refuses the loopback redirect, or when it names no authorization endpoint.

It is not a grant of its own: its tokens are those of the login that answered, stored under that
grant's cache key, where the two sources above (and the command line) find them.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._drivers import adrive, drive
from ..errors import ConfigError, DiscoveryError, KeyturnError, LoginRequired, OAuthError, TransportError
from ..integrations import Adapters
from ..interactive.choice import BROWSER_LOGIN, DEVICE_LOGIN, choose_login
from ..logout import Logout
from ..protocol.device import DeviceVerification
from ..protocol.http import Flow, HttpRequest, HttpResponse, current_token, send
from ..secret import conceal_arguments
from ..stores.file import FileStore
from ..token import Token
from .authorization_code import DEFAULT_LOGIN_TIMEOUT, AuthorizationCode, _LoginPlan
from .device_code import DeviceCode
from .oidc import OpenIDSource
from .paired import paired_saved_login_flow

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ..interactive.landing import LandingPage
    from ..interactive.loopback import LoopbackListener
    from .options import OpenIDOptions

__all__ = ["UserLogin"]

log = logging.getLogger("keyturn")


class _NoBrowserLogin(KeyturnError):
    """The browser login cannot happen here (no browser started, the redirect refused, a provider
    without it): the device flow takes over. Raised before anything of the login was sent that
    could not be sent again: no code was issued, no token was asked for. ``by_hand``: the browser
    login could still be finished by a person opening the URL themselves (only no browser would
    start), which is the way left when the device flow cannot start either."""

    def __init__(self, message: str, *, by_hand: bool = False) -> None:
        super().__init__(message)
        self.by_hand = by_hand


class _BrowserOrDevice(AuthorizationCode):
    """The browser login of a :class:`UserLogin` that also has the device flow: it gives way
    (:class:`_NoBrowserLogin`) instead of printing the URL and waiting for a person who cannot
    use it. Same grant, same cache key as :class:`AuthorizationCode`."""

    def _plan_flow(self, token_endpoint: str) -> Flow[_LoginPlan]:
        if self._authorization_endpoint is None and self.issuer is not None:
            metadata = yield from self._metadata_flow()  # kept: the plan below asks no more
            if not metadata.authorization_endpoint:
                raise _NoBrowserLogin(f"issuer {self.issuer} names no authorization_endpoint")
        plan = yield from super()._plan_flow(token_endpoint)
        return plan

    def _redirect_flow(self, listener: LoopbackListener, plan: _LoginPlan) -> Flow[Token]:
        refused = yield from self._refusal_flow(plan, listener.redirect_uri)
        if refused is not None:
            raise _NoBrowserLogin(refused)
        token = yield from super()._redirect_flow(listener, plan)
        return token

    def _refusal_flow(self, plan: _LoginPlan, redirect_uri: str) -> Flow[str | None]:
        """Whether the provider refuses this loopback redirect, asked before a browser is opened.

        RFC 6749 §4.1.2.1: "If the request fails due to a missing, invalid, or mismatching
        redirection URI, or if the client identifier is missing or invalid, the authorization
        server SHOULD inform the resource owner of the error and MUST NOT automatically redirect
        the user-agent to the invalid redirection URI." So a refused redirect never reaches our
        listener: the person would face an error page (oidc-provider: HTTP 400 "oops! something
        went wrong", Keycloak: 400 "Invalid parameter: redirect_uri") while keyturn waited. The
        same GET, sent by keyturn without following redirects, tells the two apart: a login page
        (200) or a redirect (3xx: to the login page, or to us with an error) is a request the
        provider took; a 4xx without a redirect is one it refused.

        The probe is a request of its own (its own ``state``, ``nonce`` and PKCE pair), never the
        login's: nothing the login sends goes out twice, and a code can only come of the
        browser's request. It asks the same of the provider as the login will (client, redirect,
        scope, prompt), since a probe that differed (``prompt=none``, say) could be answered
        differently. Nothing is decided on a network failure or a 5xx: the browser goes ahead
        and the person sees the provider's own page.
        """
        probe = self._request(plan, redirect_uri)
        try:
            response = yield from send(HttpRequest("GET", probe.url, purpose="authorization endpoint"))
        except TransportError:
            return None
        if 400 <= response.status < 500:
            return (f"the authorization endpoint refused the loopback redirect {redirect_uri} "
                    f"(HTTP {response.status}): its registered redirect URIs do not allow it")
        return None

    def _launch(self, url: str) -> None:
        """Send the browser to ``url``; when none starts, give way to the device flow (instead
        of printing the URL for a person who has no browser here)."""
        from ..interactive.browser import open_browser

        opener = self._open_browser or open_browser
        try:
            opened = opener(url)
        except Exception as exc:
            raise _NoBrowserLogin(f"the browser could not be started ({type(exc).__name__})",
                                  by_hand=True) from None
        if opened is False:
            raise _NoBrowserLogin("no browser could be started", by_hand=True)
        if self._open_browser is None and sys.stderr is not None:
            # The URL holds no secret (the PKCE verifier never leaves this process).
            sys.stderr.write("\nA browser window was opened to sign in. If none appeared, open "
                             f"this page in a browser on this machine:\n    {url}\n")
            sys.stderr.flush()


def _together(outcomes: list[Logout]) -> Logout:
    """One :class:`Logout` for the two logins: nothing saved when neither had a login; else the
    first whose tokens the server did not revoke (they stay valid: the person must hear it), else
    a revoked one."""
    forgotten = [outcome for outcome in outcomes if outcome.forgotten]
    if not forgotten:
        return outcomes[0]
    kept = [outcome for outcome in forgotten if not outcome.revoked]
    return (kept or forgotten)[0]


def _no_request(request: HttpRequest) -> HttpResponse:
    raise TypeError(f"UserLogin sends no request itself ({request.method} {request.url})")


async def _ano_request(request: HttpRequest) -> HttpResponse:
    return _no_request(request)


#: The modes of a UserLogin's sources (see UserLogin._source).
_SILENT, _LOGIN, _BY_HAND = "silent", "login", "by hand"


def _refused_before_a_code(device: OpenIDSource, error: KeyturnError) -> bool:
    """Whether the device flow failed before any code was issued: the provider names no device
    endpoint, or its device authorization endpoint refused this client (RFC 8628 §3.2: an error
    answer there, before any user code exists). A refusal while polling is the login's outcome."""
    if isinstance(error, DiscoveryError):
        return True
    if not isinstance(device, DeviceCode):
        return False
    metadata = device._metadata
    endpoint = device._device_endpoint or (
        metadata.device_authorization_endpoint if metadata is not None else None)
    return isinstance(error, OAuthError) and error.url is not None and error.url == endpoint


class UserLogin(Adapters):
    """Tokens for a person, by the login that works here::

        source = UserLogin(issuer="https://id.example.org", client_id="cli")
        source.get_access_token()   # first time: the browser, or a device code over SSH; later: silent

    The browser login (:class:`AuthorizationCode`) where a browser on this machine can reach the
    loopback redirect, the device flow (:class:`DeviceCode`) otherwise
    (:func:`keyturn.interactive.choice.choose_login`); a saved login of either is used first, and
    the browser login falls back to the device flow when it cannot happen. The keywords are those
    of the two logins: ``open_browser``, ``authorization_endpoint``, ``landing_page``,
    ``login_timeout``, ``redirect_port`` for the browser; ``device_authorization_endpoint`` and
    ``device_response_hook`` for the device flow. ``prompt`` is either login's: a callable shows
    the device code (as ``DeviceCode(prompt=)``), a string is OpenID's ``prompt`` parameter for
    the browser (as ``AuthorizationCode(prompt=)``). ``interactive`` says whether a login may be
    started at all (default: when ``prompt`` or ``open_browser`` is a callable, or as each login
    decides: a terminal, a notebook).
    """

    def __init__(
        self, *, prompt: str | Callable[[DeviceVerification], None] | None = None,
        open_browser: Callable[[str], Any] | None = None, interactive: bool | None = None,
        device_authorization_endpoint: str | None = None,
        device_response_hook: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        authorization_endpoint: str | None = None, landing_page: LandingPage | None = None,
        login_timeout: float = DEFAULT_LOGIN_TIMEOUT, redirect_port: int = 0,
        **options: Unpack[OpenIDOptions],
    ) -> None:
        conceal_arguments(options)  # first: this frame shows in a ConfigError's traceback
        if prompt is not None and not (isinstance(prompt, str) or callable(prompt)):
            raise ConfigError("prompt= is a callable taking a DeviceVerification (the device "
                              "code shown), or OpenID's prompt parameter (a string)")
        issuer = options.get("issuer")
        offered = [login for login, endpoint in ((BROWSER_LOGIN, authorization_endpoint),
                                                 (DEVICE_LOGIN, device_authorization_endpoint))
                   if issuer or endpoint]
        if not offered:
            raise ConfigError("give issuer= (for discovery), or authorization_endpoint= or "
                              "device_authorization_endpoint= with token_endpoint=")
        if "store" not in options:
            # One store for every source of this login: a login saved by one is read by the others.
            options["store"] = FileStore()
        asks = callable(prompt) or open_browser is not None
        self._interactive = interactive if interactive is not None else (True if asks else None)
        self._options = options
        self._own: dict[str, dict[str, Any]] = {
            BROWSER_LOGIN: {"authorization_endpoint": authorization_endpoint,
                            "prompt": prompt if isinstance(prompt, str) else None,
                            "open_browser": open_browser, "landing_page": landing_page,
                            "login_timeout": login_timeout, "redirect_port": redirect_port},
            DEVICE_LOGIN: {"device_authorization_endpoint": device_authorization_endpoint,
                           "device_response_hook": device_response_hook,
                           "prompt": prompt if callable(prompt) else None},
        }
        self._offered = tuple(offered)
        #: The login the rule picked here; the one started when no saved login answers.
        self.chosen: str = choose_login(offered=self._offered)
        self._sources: dict[tuple[str, str], OpenIDSource] = {}
        for login in self._offered:  # now: a bad argument is a ConfigError here, not at first use
            self._source(login, _LOGIN)
        #: The source whose login answers (None until one did).
        self._active: OpenIDSource | None = None

    def _source(self, login: str, mode: str) -> OpenIDSource:
        """The source of ``login`` in ``mode``: :data:`_SILENT` never starts a login (it finds a
        saved one); :data:`_LOGIN` starts one (the browser login giving way to the device flow
        when it cannot happen here); :data:`_BY_HAND` is the browser login that prints its URL
        for the person to open when no browser starts."""
        source = self._sources.get((login, mode))
        if source is None:
            # Callable[..., ]: each login's class takes its own keywords besides the shared.
            cls: Callable[..., OpenIDSource] = DeviceCode
            if login == BROWSER_LOGIN:
                gives_way = mode == _LOGIN and DEVICE_LOGIN in self._offered
                cls = _BrowserOrDevice if gives_way else AuthorizationCode
            source = cls(**self._own[login], **self._options,
                         interactive=False if mode == _SILENT else self._interactive)
            self._sources[(login, mode)] = source
        return source

    # -- which login answers: one flow, driven sync or async -----------------------------------

    def _token_flow(self) -> Flow[tuple[OpenIDSource, Token]]:
        """The token of the login that answers: the one that did before; else a saved login
        (the chosen flow's, then the other's); else a new login of the chosen flow, the device
        flow when the browser login cannot happen."""
        active = self._active
        if active is not None:
            try:
                token = yield from current_token(active)
            except LoginRequired:
                if active.interactive or not self.interactive:
                    raise
                # The saved login found before has ended (its refresh token refused): a new
                # login, by the flow chosen here.
            else:
                return active, token
        else:
            silent = self._source(self.chosen, _SILENT)
            try:
                token = yield from current_token(silent)
            except LoginRequired:
                pass
            else:
                return silent, token
            found = yield from paired_saved_login_flow(
                self.chosen, functools.partial(self._source, mode=_SILENT))
            if found is not None:
                return found
            if not self.interactive:
                raise LoginRequired(
                    "no saved login (browser or device) for this UserLogin and this call is not "
                    "interactive: log in first (keyturn login), or pass interactive=True")
        source = self._source(self.chosen, _LOGIN)
        try:
            token = yield from current_token(source)
        except _NoBrowserLogin as exc:
            log.info("UserLogin: %s; logging in with the device flow instead", exc)
            device = self._source(DEVICE_LOGIN, _LOGIN)
            try:
                token = yield from current_token(device)
            except (OAuthError, DiscoveryError) as refused:
                if not (exc.by_hand and _refused_before_a_code(device, refused)):
                    raise
                # No browser starts and the client may not use the device flow: the browser
                # login with its URL for the person to open, as AuthorizationCode does.
                log.info("UserLogin: the device flow is refused too (%s); the browser login's URL "
                         "is for the person to open", type(refused).__name__)
                source = self._source(BROWSER_LOGIN, _BY_HAND)
                token = yield from current_token(source)
            else:
                source = device
        return source, token

    def _answered(self, found: tuple[OpenIDSource, Token]) -> Token:
        self._active, token = found
        return token

    # -- public API ---------------------------------------------------------------------------------

    def _fresh(self) -> Token | None:
        """The answering login's cached token while it is fresh: the cache's fast path, as
        Source.get_token has it."""
        active = self._active
        if active is not None:
            cache = active.cache
            entry = cache.entry
            if entry is not None and cache.clock() < entry.refresh_at:
                return entry.token
        return None

    def get_token(self) -> Token:
        fresh = self._fresh()
        return fresh if fresh is not None else self._answered(drive(self._token_flow(), _no_request))

    async def aget_token(self) -> Token:
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        return self._answered(await adrive(self._token_flow(), _ano_request))

    def get_access_token(self) -> str:
        """A valid access token: the saved login's, refreshed when due, or a new login's."""
        return self.get_token().access_token

    async def aget_access_token(self) -> str:
        return (await self.aget_token()).access_token

    def _needs_wait(self) -> bool:
        return self._active is None or self._active._needs_wait()

    @property
    def interactive(self) -> bool:
        """Whether a login may be started (the chosen login's answer)."""
        return self._source(self.chosen, _LOGIN).interactive

    @property
    def grant_name(self) -> str:
        """The login that answers (``authorization_code`` or ``device_code``): the one that did,
        else the one chosen here."""
        active = self._active
        return active.grant_name or self.chosen if active is not None else self.chosen

    @property
    def cache_key(self) -> str:
        """Where the tokens of the login that answers are stored (see :attr:`grant_name`)."""
        active = self._active
        return (active if active is not None else self._source(self.chosen, _LOGIN)).cache_key

    @property
    def login_timeout(self) -> float:
        """Seconds a person has to finish signing in in the browser."""
        return float(self._own[BROWSER_LOGIN]["login_timeout"])

    def _logins(self) -> list[list[OpenIDSource]]:
        """Per login offered, every source of it built so far (at least one)."""
        return [[s for (login, _), s in self._sources.items() if login == offered]
                for offered in self._offered]

    def invalidate(self, access_token: str | None = None) -> None:
        """Forget the cached access token (the refresh token is kept). With ``access_token``, only
        if it is still the current one."""
        for sources in self._logins():
            for source in sources:
                source.invalidate(access_token)

    async def ainvalidate(self, access_token: str | None = None) -> None:
        for sources in self._logins():
            for source in sources:
                await source.ainvalidate(access_token)

    def saved_token(self) -> Token | None:
        """The saved token of the login that answers (:attr:`grant_name`), as it is."""
        active = self._active
        return (active if active is not None else self._source(self.chosen, _LOGIN)).saved_token()

    def forget(self) -> Token | None:
        """Forget both logins (browser and device), in memory and in the store, without revoking
        them: either would answer the next call otherwise. Returns the newest one forgotten."""
        newest: Token | None = None
        for sources in self._logins():
            for source in sources:
                token = source.forget()
                if token is not None and (newest is None or (token.expires_at or 0) > (
                        newest.expires_at or 0)):
                    newest = token
        self._active = None
        return newest

    def logout(self) -> Logout:
        """Forget both logins (browser and device) and revoke their tokens at the server (see
        :meth:`~keyturn.sources.base.Source.logout`): either would answer the next call otherwise.
        What happened (:class:`~keyturn.Logout`): a login whose tokens stay valid is reported
        before one that was revoked."""
        outcomes = []
        for first, *others in self._logins():
            outcomes.append(first.logout())  # this login's tokens, in the shared store: revoked
            for source in others:
                source.forget()  # what they still hold in memory
        self._active = None
        return _together(outcomes)

    async def alogout(self) -> Logout:
        """:meth:`logout` without blocking the event loop."""
        outcomes = []
        for first, *others in self._logins():
            outcomes.append(await first.alogout())
            for source in others:
                await source.cache.aforget()
        self._active = None
        return _together(outcomes)

    def userinfo(self) -> dict[str, Any]:
        """The UserInfo claims (OIDC Core §5.3) of the login that answers."""
        self.get_token()
        assert self._active is not None
        return self._active.userinfo()

    async def auserinfo(self) -> dict[str, Any]:
        await self.aget_token()
        assert self._active is not None
        return await self._active.auserinfo()

    def close(self) -> None:
        for source in self._sources.values():
            source.close()

    def __enter__(self) -> UserLogin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Any:
        raise TypeError("a keyturn UserLogin holds secrets and cannot be pickled")

    def __repr__(self) -> str:
        # getattr: also for one whose __init__ raised half-way (a traceback with locals shows it).
        options = getattr(self, "_options", {})
        return (f"UserLogin(issuer={options.get('issuer')!r}, "
                f"client_id={options.get('client_id')!r}, chosen={getattr(self, 'chosen', None)!r})")
