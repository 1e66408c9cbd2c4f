"""The verification page ``/device``: type the user code, sign in, see who asks for what, decide.

Three steps, no JavaScript, every response ``no-store`` and unframeable:

1. ``GET /device[?user_code=...]`` shows a form (user code, user name, password).
2. ``POST /device`` checks the CSRF token, looks the code up (wrong codes are rate-limited, see
   docs/server.md), checks the password with the :class:`~.passwords.Authenticator`, and shows the
   client's name and the scopes with Approve and Deny buttons. What was decided so far travels in a
   *ticket*: an HMAC-signed, 5-minute note of user code and user, bound to this browser's CSRF
   cookie, so any replica can take the next step (no session store).
3. ``POST /device/decision`` checks CSRF and ticket again and approves or denies the grant.

CSRF: a random cookie (``HttpOnly``, ``SameSite=Strict``) that every form must repeat in a hidden
field (double submit); another site can neither read the cookie nor send it along.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import strictjson
from .device_flow import DeviceGrant, DeviceStatus, format_user_code
from .fetchsite import from_own_page
from .page_html import PAGE_HEADERS, code_hint, document, esc, scope_list, site_name
from .passwords import Authenticator, User
from .service import AuthorizationServer

__all__ = ["PAGE_HEADERS", "DevicePages", "SignInOption"]

CSRF_COOKIE: Final = "keyturn_csrf"
TICKET_LIFETIME: Final = 300
#: A field of the code form to start in ("": none, as on a form of upstream buttons only).
Focus = Literal["user_code", "username", "password", ""]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _wait_text(seconds: int) -> str:
    """A wait as a person reads it, rounded up: "1 second", "2 minutes", "1 hour"."""
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * length or (unit == "minute" and seconds > length):
            count = -(-seconds // length)
            return f"{count} {unit}s"
    if seconds >= 60:
        return "1 minute"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _account(user: User) -> str:
    """Who signs in, as the person knows it (HTML): the user name in bold, then the name when
    the claims have one ("<b>alice</b> (Alice Example)"). Not the subject alone, which after an
    upstream sign-in may be an opaque id (``subject_claim = "oid"``) or carry a
    ``subject_prefix``: ``preferred_username`` comes first when it was copied."""
    account = user.claims.get("preferred_username") or user.subject
    name = user.claims.get("name")
    return f"<b>{esc(account)}</b>" + (f" ({esc(name)})" if name and name != account else "")


@dataclass(frozen=True, kw_only=True)
class SignInOption:
    """One "Sign in with NAME" button on the code form (an upstream identity provider, issue 12 §1).

    The button posts the form's ``csrf`` and ``user_code`` fields to ``action`` (a path on this
    server, e.g. ``/device/upstream/corp``); the route there owns the rest. The CSRF cookie is set
    for the page's path (``/device``), so a route under it receives the cookie to compare.
    """

    name: str           # the configuration's key, e.g. "corp" (sent as the button's value)
    display_name: str   # shown as "Sign in with <display_name>"
    action: str         # path the button posts to


class DevicePages:
    def __init__(self, server: AuthorizationServer, authenticator: Authenticator, prefix: str, *,
                 sign_in_options: Sequence[SignInOption] = (), local_passwords: bool = True) -> None:
        if not sign_in_options and not local_passwords:
            raise ValueError("the /device page needs a way to sign in: configure local users or an "
                             "upstream identity provider")
        self.server = server
        self.authenticator = authenticator
        self.sign_in_options = tuple(sign_in_options)
        self.local_passwords = local_passwords
        self.path = f"{prefix}/device"
        self.site = site_name(server.config.site_name, server.issuer)
        self.secure = server.issuer.startswith("https://")
        #: RFC 6265bis §4.1.3.2: a "__Host-" cookie is Secure, Path=/ and has no Domain, so no
        #: sibling subdomain or plain-http page can set (toss) it for this host (review R19 M4).
        self.csrf_cookie = f"__Host-{CSRF_COOKIE}" if self.secure else CSRF_COOKIE
        self.cookie_path = "/" if self.secure else self.path
        self._secret = server.storage.setting("page_secret", lambda: secrets.token_hex(32)).encode()

    def __repr__(self) -> str:
        return f"DevicePages(path={self.path!r})"

    # -- rendering -----------------------------------------------------------------------------------

    def _page(self, title: str, body: str, status: int = 200, csrf: str | None = None) -> Response:
        page = document(title=title, site=self.site, body=body)
        response = HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)
        if csrf is not None:
            response.set_cookie(self.csrf_cookie, csrf, path=self.cookie_path, httponly=True,
                                samesite="strict", secure=self.secure)
        return response

    def code_form(self, csrf: str, *, user_code: str = "", message: str = "", status: int = 200,
                  new_cookie: bool = False, username: str = "", focus: Focus | None = None
                  ) -> Response:
        """The first page: the code field and each configured way to sign in (``message`` shown
        as an alert); ``new_cookie`` sets ``csrf`` as this browser's CSRF cookie. ``username``
        is what was typed before (kept after a wrong password; a password never is). ``focus``
        names the field to start in (default: the first one still empty)."""
        if focus is None:
            focus = ("user_code" if not user_code else
                     "username" if self.local_passwords and not username else
                     "password" if self.local_passwords else "")

        def autofocus(field: str) -> str:
            return " autofocus" if field == focus else ""

        note = f"<p class=error role=alert>{esc(message)}</p>" if message else ""
        local = (
            "<label for=username>User name</label>"
            f'<input id=username name=username value="{esc(username)}" autocomplete=username '
            f"autocapitalize=none spellcheck=false required{autofocus('username')}>"
            "<label for=password>Password</label>"
            "<input id=password name=password type=password autocomplete=current-password "
            f"required{autofocus('password')}>"
            "<div class=actions><button type=submit class=primary>Continue</button></div>"
        ) if self.local_passwords else ""
        # One form, so the typed code goes along whichever way the person signs in: an upstream's
        # button posts it (and csrf) to its own route; formnovalidate, as its route needs no
        # password. The local Continue comes first, so Enter signs in with the password.
        upstreams = "".join(
            f'<button type=submit class={"secondary" if self.local_passwords else "primary"} '
            f'formaction="{esc(option.action)}" formnovalidate name=upstream '
            f'value="{esc(option.name)}">Sign in with {esc(option.display_name)}</button>'
            for option in self.sign_in_options)
        if upstreams:
            upstreams = (("<p class=or>or</p>" if self.local_passwords else "")
                         + f"<div class='actions stack'>{upstreams}</div>")
        codes = self.server.config.user_codes
        # Digits get the phone's number pad; letters its capitals. The hint is the real format.
        keyboard = "inputmode=numeric" if codes.alphabet.isdigit() else "autocapitalize=characters"
        body = (
            f"{note}<p>Enter the code your device shows, then sign in to let it use your account."
            f'</p><form method=post action="{esc(self.path)}">'
            f'<input type=hidden name=csrf value="{esc(csrf)}">'
            "<label for=user_code>Code from your device</label>"
            f"<span class=hint id=user_code_hint>{esc(code_hint(codes))}</span>"
            f'<input id=user_code name=user_code value="{esc(user_code)}" '
            f"aria-describedby=user_code_hint {keyboard} autocomplete=off spellcheck=false "
            f"required{autofocus('user_code')}>"
            f"{local}{upstreams}</form>"
        )
        return self._page("Sign in to a device", body, status, csrf if new_cookie else None)

    # -- CSRF and tickets ------------------------------------------------------------------------------

    def csrf_ok(self, request: Request, form: Mapping[str, Any]) -> bool:
        """The form's ``csrf`` field repeats this browser's CSRF cookie (for every POST route),
        and the browser does not say the POST came from another site (:mod:`.fetchsite`)."""
        if not from_own_page(request.headers, self.server.issuer):
            return False
        cookie = request.cookies.get(self.csrf_cookie, "")
        field = form.get("csrf")
        return bool(cookie) and isinstance(field, str) and hmac.compare_digest(
            cookie.encode(), field.encode())

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._secret, payload, hashlib.sha256).digest())

    def _ticket(self, user_code: str, user: User, csrf: str, now: float) -> str:
        payload = json.dumps({"uc": user_code, "sub": user.subject, "claims": dict(user.claims),
                              "exp": now + TICKET_LIFETIME, "csrf": csrf}).encode()
        return f"{_b64(payload)}.{self._mac(payload)}"

    def _read_ticket(self, ticket: str, csrf: str, now: float) -> tuple[str, User] | None:
        encoded, _, mac = ticket.partition(".")
        try:
            payload = _unb64(encoded)
            if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
                return None
            data = strictjson.loads(payload, as_written=True)
        except (ValueError, UnicodeError):  # strictjson.JsonError is a ValueError
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < now or data.get("csrf") != csrf:
            return None
        return str(data["uc"]), User(subject=str(data["sub"]), claims=dict(data["claims"]))

    # -- handlers -----------------------------------------------------------------------------------------

    async def no_authorization_endpoint(self, request: Request) -> Response:
        # RFC 6749 §4.1.2.1: with no registered redirection URI to trust, "the authorization
        # server SHOULD inform the resource owner of the error and MUST NOT automatically redirect
        # the user-agent".
        return self._page("Not available", "<p>This server signs in devices only (RFC 8628): "
                          f'use the code your device shows at <a href="{esc(self.path)}">'
                          f"{esc(self.path)}</a>. (unsupported_response_type)</p>", status=400)

    async def show(self, request: Request) -> Response:
        csrf = request.cookies.get(self.csrf_cookie) or secrets.token_urlsafe(24)
        typed = request.query_params.get("user_code", "")[:20]
        return self.code_form(csrf, user_code=typed, new_cookie=True)

    async def submit(self, request: Request, form: Mapping[str, Any], address: str) -> Response:
        if not self.csrf_ok(request, form):
            return self.code_form(secrets.token_urlsafe(24), message="The form expired: try again.",
                                   status=403, new_cookie=True)
        csrf = str(form["csrf"])
        typed = str(form.get("user_code", ""))[:40]
        # Kept for the next try (a typo in the code or the password); the password never is.
        username = str(form.get("username", ""))[:200]
        if not self.local_passwords:  # no password is checked where none is configured
            return self.code_form(csrf, user_code=typed, message="Choose how to sign in.",
                                  status=400)
        now = time.time()
        lookup = await run_in_threadpool(self.server.lookup_user_code, typed, address, now)
        if lookup.limited:
            return self.code_form(csrf, message="Too many wrong codes: wait a few minutes and try "
                                  "again.", status=429, username=username)
        if lookup.grant is None:
            return self.code_form(csrf, user_code=typed, message="That code is not valid (or "
                                  "has expired). Check it on your device.", status=400,
                                  username=username,
                                  focus="user_code")
        password = str(form.get("password", ""))[:1000]
        turn = await run_in_threadpool(self.server.verification.take_password_check, username, now)
        if not turn.allowed:
            # The same words, for a name that exists and one that does not: no oracle.
            locked = self.code_form(csrf, user_code=typed, message="Too many failed sign-ins "
                                    "with this user name: try again in "
                                    f"{_wait_text(turn.retry_after)}.", status=429,
                                    username=username)
            locked.headers["Retry-After"] = str(turn.retry_after)
            return locked
        user = await run_in_threadpool(self.authenticator.authenticate, username, password)
        if user is None:
            # The try stays counted: wrong passwords are rate-limited like wrong codes, and per
            # user name (take_password_check).
            return self.code_form(csrf, user_code=typed, message="Wrong user name or password.",
                                  status=401, username=username, focus="password")
        await run_in_threadpool(self.server.signed_in, address, now)
        await run_in_threadpool(self.server.verification.password_accepted, username, now)
        return self.consent(csrf=csrf, grant=lookup.grant, user=user, now=now)

    def consent(self, *, csrf: str, grant: DeviceGrant, user: User, now: float) -> Response:
        """The Approve/Deny page for ``user``, signed in (by password or at an upstream), about
        ``grant``; its form posts to ``/device/decision`` with a ticket bound to ``csrf``."""
        config = self.server.config
        client = config.clients.get(grant.client_id)
        client_name = client.name if client else grant.client_id
        ticket = self._ticket(grant.user_code, user, csrf, now)
        shown = format_user_code(grant.user_code)
        # What the token endpoint will issue (ClientConfig.issues_refresh_tokens), not what the
        # scope asks for: a client allowed the refresh grant gets a refresh token either way.
        stays = (_wait_text(config.lifetimes.refresh_token)
                 if client is not None and client.issues_refresh_tokens else None)
        scopes = scope_list(grant.scope, words=config.scope_descriptions, stays=stays)
        body = (
            f"<p>Allow <b>{esc(client_name)}</b> to sign in to <b>{esc(self.site)}</b> as "
            f"{_account(user)}?</p><p>It asks for:</p>"
            f"<ul class=scopes>{scopes}</ul>"
            # RFC 8628 §5.4: "it is RECOMMENDED to inform the user that they are authorizing a
            # device during the user-interaction step ... and to confirm that the device is in
            # their possession. The authorization server SHOULD display information about the
            # device" (the client's name, above); and, as verification_uri_complete spares
            # typing the code, "display the code during the authorization flow and ask the user
            # to verify that the same code is currently being displayed on the device".
            "<p class=warning role=note><b>Approve only a sign-in you started yourself, on a "
            "device you have in front of you</b>, and only if it shows the code "
            f"<span class=code>{esc(shown)}</span>. If someone sent you this code or asked you "
            "to enter it, choose Deny.</p>"
            f'<form method=post action="{esc(self.path)}/decision">'
            f'<input type=hidden name=csrf value="{esc(csrf)}">'
            f'<input type=hidden name=ticket value="{esc(ticket)}">'
            # Approve first: the primary action, and the form's default button; Deny second.
            "<div class=actions><button type=submit class=primary name=decision value=approve>"
            "Approve</button><button type=submit class=secondary name=decision value=deny>"
            "Deny</button></div></form>"
        )
        return self._page("Approve this sign-in?", body)

    async def decide(self, request: Request, form: Mapping[str, Any]) -> Response:
        if not self.csrf_ok(request, form):
            return self.code_form(secrets.token_urlsafe(24), message="The form expired: try again.",
                                   status=403, new_cookie=True)
        now = time.time()
        found = self._read_ticket(str(form.get("ticket", "")), str(form["csrf"]), now)
        decision = form.get("decision")
        if found is None or decision not in ("approve", "deny"):
            return self.code_form(str(form["csrf"]), message="The form expired: start again.",
                                   status=400)
        user_code, user = found
        grant = await run_in_threadpool(self.server.storage.device_grant_by_user_code, user_code)
        status = None
        if grant is not None:
            status = await run_in_threadpool(self.server.settle, grant.device_code_hash,
                                             user if decision == "approve" else None, now)
        if status is DeviceStatus.APPROVED:
            return self._page("Device approved", "<p>You are signed in on your device. You may "
                              "close this window.</p>")
        if status is DeviceStatus.DENIED:
            return self._page("Request denied", "<p>The device was not given access. You may "
                              "close this window.</p>")
        return self.code_form(str(form["csrf"]), message="That code is no longer waiting for "
                               "approval (it expired or was already used).", status=400)
