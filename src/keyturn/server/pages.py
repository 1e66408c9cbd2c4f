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
import html
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .. import strictjson
from .device_flow import DeviceGrant, DeviceStatus, format_user_code
from .passwords import Authenticator, User
from .service import AuthorizationServer

__all__ = ["PAGE_HEADERS", "DevicePages", "SignInOption"]

_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "color:#222}label{display:block;margin:.8rem 0 .2rem}input{font-size:1.1rem;padding:.3rem;"
    "width:100%;box-sizing:border-box}button{font-size:1.1rem;margin:1rem .5rem 0 0;padding:.4rem 1rem}"
    ".error{color:#a00}code{font-size:1.2rem}"
)
_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()
#: On every page: never cached (it may show a code), never framed (clickjacking an Approve button).
PAGE_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CSRF_COOKIE: Final = "keyturn_csrf"
TICKET_LIFETIME: Final = 300


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


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
        self.secure = server.issuer.startswith("https://")
        self._secret = server.storage.setting("page_secret", lambda: secrets.token_hex(32)).encode()

    def __repr__(self) -> str:
        return f"DevicePages(path={self.path!r})"

    # -- rendering -----------------------------------------------------------------------------------

    def _page(self, title: str, body: str, status: int = 200, csrf: str | None = None) -> Response:
        document = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width,initial-scale=1">'
            f"<title>{_esc(title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{_esc(title)}</h1>{body}</body></html>"
        )
        response = HTMLResponse(document, status_code=status, headers=PAGE_HEADERS)
        if csrf is not None:
            response.set_cookie(CSRF_COOKIE, csrf, path=self.path, httponly=True, samesite="strict",
                                secure=self.secure)
        return response

    def code_form(self, csrf: str, user_code: str = "", message: str = "", status: int = 200,
                   new_cookie: bool = False) -> Response:
        """The first page: the code field and each configured way to sign in (``message`` shown
        as an alert); ``new_cookie`` sets ``csrf`` as this browser's CSRF cookie."""
        note = f'<p class=error role=alert>{_esc(message)}</p>' if message else ""
        local = (
            '<label for=username>User name</label>'
            '<input id=username name=username autocomplete=username required>'
            '<label for=password>Password</label>'
            '<input id=password name=password type=password autocomplete=current-password required>'
            '<button type=submit>Continue</button>'
        ) if self.local_passwords else ""
        # One form, so the typed code goes along whichever way the person signs in: an upstream's
        # button posts it (and csrf) to its own route; formnovalidate, as its route needs no
        # password. The local Continue comes first, so Enter signs in with the password.
        upstreams = "".join(
            f'<button type=submit formaction="{_esc(option.action)}" formnovalidate '
            f'name=upstream value="{_esc(option.name)}">Sign in with {_esc(option.display_name)}'
            "</button>" for option in self.sign_in_options)
        body = (
            f"{note}<p>Enter the code shown on your device, then sign in.</p>"
            f'<form method=post action="{_esc(self.path)}">'
            f'<input type=hidden name=csrf value="{_esc(csrf)}">'
            '<label for=user_code>Code</label>'
            f'<input id=user_code name=user_code value="{_esc(user_code)}" autocomplete=off '
            'autocapitalize=characters spellcheck=false required placeholder="XXXX-XXXX">'
            f"{local}{upstreams}</form>"
        )
        return self._page("Sign in to a device", body, status, csrf if new_cookie else None)

    # -- CSRF and tickets ------------------------------------------------------------------------------

    @staticmethod
    def csrf_ok(request: Request, form: Mapping[str, Any]) -> bool:
        """The form's ``csrf`` field repeats this browser's CSRF cookie (for every POST route)."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
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
                          f'use the code your device shows at <a href="{_esc(self.path)}">'
                          f"{_esc(self.path)}</a>. (unsupported_response_type)</p>", status=400)

    async def show(self, request: Request) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        typed = request.query_params.get("user_code", "")[:20]
        return self.code_form(csrf, typed, new_cookie=True)

    async def submit(self, request: Request, form: Mapping[str, Any], address: str) -> Response:
        if not self.csrf_ok(request, form):
            return self.code_form(secrets.token_urlsafe(24), message="The form expired: try again.",
                                   status=403, new_cookie=True)
        csrf = str(form["csrf"])
        typed = str(form.get("user_code", ""))[:40]
        if not self.local_passwords:  # no password is checked where none is configured
            return self.code_form(csrf, typed, "Choose how to sign in.", status=400)
        now = time.time()
        lookup = await run_in_threadpool(self.server.lookup_user_code, typed, address, now)
        if lookup.limited:
            return self.code_form(csrf, message="Too many wrong codes: wait a few minutes and try "
                                   "again.", status=429)
        if lookup.grant is None:
            return self.code_form(csrf, typed, "That code is not valid (or has expired). "
                                   "Check it on your device.", status=400)
        username, password = str(form.get("username", ""))[:200], str(form.get("password", ""))[:1000]
        turn = await run_in_threadpool(self.server.verification.take_password_check, username, now)
        if not turn.allowed:
            # The same words, for a name that exists and one that does not: no oracle.
            locked = self.code_form(csrf, typed, "Too many failed sign-ins with this user name: "
                                     f"try again in {_wait_text(turn.retry_after)}.", status=429)
            locked.headers["Retry-After"] = str(turn.retry_after)
            return locked
        user = await run_in_threadpool(self.authenticator.authenticate, username, password)
        if user is None:
            # The try stays counted: wrong passwords are rate-limited like wrong codes, and per
            # user name (take_password_check).
            return self.code_form(csrf, typed, "Wrong user name or password.", status=401)
        await run_in_threadpool(self.server.signed_in, address, now)
        await run_in_threadpool(self.server.verification.password_accepted, username, now)
        return self.consent(csrf=csrf, grant=lookup.grant, user=user, now=now)

    def consent(self, *, csrf: str, grant: DeviceGrant, user: User, now: float) -> Response:
        """The Approve/Deny page for ``user``, signed in (by password or at an upstream), about
        ``grant``; its form posts to ``/device/decision`` with a ticket bound to ``csrf``."""
        client = self.server.config.clients.get(grant.client_id)
        client_name = client.name if client else grant.client_id
        scopes = "".join(f"<li><code>{_esc(s)}</code></li>" for s in grant.scope) or "<li>none</li>"
        ticket = self._ticket(grant.user_code, user, csrf, now)
        body = (
            f"<p>Signed in as <b>{_esc(user.subject)}</b>.</p>"
            f"<p><b>{_esc(client_name)}</b> (code <code>{_esc(format_user_code(grant.user_code))}"
            f"</code>) asks for access to:</p><ul>{scopes}</ul>"
            f'<form method=post action="{_esc(self.path)}/decision">'
            f'<input type=hidden name=csrf value="{_esc(csrf)}">'
            f'<input type=hidden name=ticket value="{_esc(ticket)}">'
            '<button type=submit name=decision value=approve>Approve</button>'
            '<button type=submit name=decision value=deny>Deny</button></form>'
        )
        return self._page("Approve this device?", body)

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
