"""``keyturn demo``: the server in-process, and a device login against it with keyturn's own client.

A client program, so it lives with the command line, not in :mod:`keyturn.server` (which holds the
server only); ``keyturn.server.demo`` still names it.

It starts the server on a free loopback port with the demo configuration, asks for a device code
with :class:`keyturn.DeviceCode`, says where to approve and with which demo credentials, waits
for the approval, shows the token's claims, then refreshes silently (a new access token from the
refresh token, no person involved).
"""

from __future__ import annotations

import base64
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .. import strictjson
from ..errors import KeyturnError
from ..protocol.device import DeviceVerification
from ..server.config import demo_config
from ..server.runner import ServerThread
from .timefmt import when

__all__ = ["demo"]


def _jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: for display only (the id_token was verified by keyturn)."""
    try:
        payload = token.split(".")[1]
        claims = strictjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):  # strictjson.JsonError is a ValueError
        return {}
    return claims if isinstance(claims, dict) else {}


_CSRF = re.compile(r'name=csrf value="([^"]+)"')
_TICKET = re.compile(r'name=ticket value="([^"]+)"')


def approve_in_page(verification: DeviceVerification, password: str, username: str = "demo") -> None:
    """Do what the person would do on the verification page, over HTTP: open it with the code,
    sign in, press Approve. For ``keyturn demo`` on a machine with nobody at a browser."""
    import httpx

    url = verification.verification_uri
    with httpx.Client(timeout=10, trust_env=False) as browser:
        page = browser.get(url, params={"user_code": verification.user_code})
        csrf = _CSRF.search(page.text)
        if page.status_code != 200 or csrf is None:
            raise KeyturnError(f"the verification page {url} answered {page.status_code} without its "
                               "form: cannot approve the demo login")
        consent = browser.post(url, data={"csrf": csrf.group(1), "user_code": verification.user_code,
                                          "username": username, "password": password})
        ticket = _TICKET.search(consent.text)
        if consent.status_code != 200 or ticket is None:
            raise KeyturnError(f"signing in on {url} failed ({consent.status_code}): cannot approve "
                               "the demo login")
        decision = browser.post(f"{url}/decision", data={
            "csrf": csrf.group(1), "ticket": ticket.group(1), "decision": "approve"})
        if decision.status_code != 200:
            raise KeyturnError(f"approving on {url} failed ({decision.status_code})")


def _approve_on_enter(say: Callable[[str], None]) -> Callable[[DeviceVerification, str], None]:
    """An approver that waits, in a thread, for Enter on the terminal, then approves in the page;
    the person may approve in the browser instead, and the thread then just ends with the demo."""
    import threading

    def approve(verification: DeviceVerification, password: str) -> None:
        def wait_for_enter() -> None:
            try:
                line = sys.stdin.readline()
            except (OSError, ValueError):
                return
            if line:  # "" is end of input: nobody will press Enter
                say("  keyturn is approving in the page for you ...")
                try:
                    approve_in_page(verification, password)
                except KeyturnError as exc:
                    say(f"  {exc}")

        threading.Thread(target=wait_for_enter, name="keyturn-demo-enter", daemon=True).start()

    return approve


def demo(
    *, out: TextIO | None = None, approve: Callable[[DeviceVerification, str], None] | None = None,
    interval: int | None = None, auto_approve: bool | None = None,
) -> dict[str, Any]:
    """Run the walk-through; returns the access token's claims.

    ``approve(verification, password)`` is called instead of waiting for a person (tests);
    ``auto_approve`` lets keyturn approve in the page itself (default: when stdin is not a
    terminal, since then nobody can press Enter; on a terminal, Enter does it);
    ``interval`` overrides the polling interval (5 s).
    """
    import dataclasses

    from .. import DeviceCode, MemoryStore

    stream = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    config = demo_config()
    if interval is not None:
        config = dataclasses.replace(config, lifetimes=dataclasses.replace(
            config.lifetimes, interval=interval))
    password = config.demo_password
    if password is None:
        raise KeyturnError("the demo configuration has no demo password")
    on_terminal = sys.stdin is not None and sys.stdin.isatty()
    if approve is None:
        if auto_approve or (auto_approve is None and not on_terminal):
            approve = approve_in_page
        elif on_terminal:
            approve = _approve_on_enter(say)
    with ServerThread(config) as running:
        say(f"keyturn demo: an authorization server is running at {running.issuer}")
        say("  (public client 'demo', device and refresh grants; data in a temporary directory)")
        say()

        def prompt(verification: DeviceVerification) -> None:
            say("Step 1 - approve the login. Open this page in a browser on this machine:")
            say(f"    {verification.verification_uri_complete or verification.verification_uri}")
            say(f"  code:      {verification.user_code}")
            say("  user name: demo")
            say(f"  password:  {password}")
            say("then press Approve. keyturn polls the server meanwhile (Ctrl-C to stop).")
            if approve is approve_in_page:
                say("Nobody is at a terminal here: keyturn signs in and approves in the page itself.")
            elif on_terminal and approve is not None:
                say("No browser at hand? Press Enter and keyturn approves in the page for you.")
            say()
            if approve is not None:
                approve(verification, password)

        source = DeviceCode(issuer=running.issuer, client_id="demo", store=MemoryStore(),
                            prompt=prompt, interactive=True,
                            scope="openid profile email offline_access")
        try:
            token = source.get_token()
            say("Step 2 - approved. The access token (a JWT, RFC 9068) says:")
            claims = _jwt_claims(token.access_token)
            for name in ("iss", "sub", "aud", "client_id", "scope", "exp", "jti"):
                if name in claims:
                    value = claims[name]
                    is_time = name == "exp" and isinstance(value, (int, float))
                    shown = when(value, _now()) if is_time else value
                    say(f"  {name:10} {shown}")
            if token.claims:
                say(f"  id_token:  sub={token.claims.get('sub')} name={token.claims.get('name')!r}")
            say()
            first = token.access_token
            source.invalidate()
            refreshed = source.get_token()
            if refreshed.access_token == first:
                raise KeyturnError("the refresh returned the old access token")
            say("Step 3 - a silent refresh: a new access token from the (rotated) refresh token,")
            say(f"  no prompt. The new token expires {when(refreshed.expires_at, _now())}.")
            say()
            say("That is the whole device flow. In your own code:")
            say(f'    DeviceCode(issuer="{running.issuer}", client_id="demo").get_access_token()')
            return claims
        finally:
            source.close()


def _now() -> float:
    import time

    return time.time()
