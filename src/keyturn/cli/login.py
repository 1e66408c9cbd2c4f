"""``keyturn login``: a device-code or browser login, saved for later silent use.

While the person approves, stderr says what to do (the device prompt, or that a browser was
opened) and, on a terminal, shows a spinner with the time left. ``--json`` prints one object on
stdout for scripts (who, where, until when; never a token) instead of the closing line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click

from ..protocol.device import DeviceVerification
from ..registry import paired_login
from .common import AD_HOC, given, login_label, remember, resolve, source_options, when

if TYPE_CHECKING:
    from ..sources.base import Source
    from ..sources.user_login import UserLogin

__all__ = ["command"]


class _ApprovalWait:
    """What the person is told to do (the device prompt, or that a browser was opened), then a
    spinner with the time left to do it (terminals only)."""

    #: Seconds the person has in the browser (the source's login_timeout).
    login_timeout: float = 300.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prompt(self, verification: DeviceVerification) -> None:
        from ..interactive.prompt import default_prompt

        default_prompt(verification)
        self._wait("Waiting for approval...",
                   verification.expires_at or time.time() + verification.expires_in)

    def open_browser(self, url: str) -> bool:
        from ..interactive.browser import open_browser

        if not open_browser(url):
            return False  # the source prints the URL itself
        # The URL holds no secret (the PKCE verifier stays in this process).
        sys.stderr.write(f"Opened a browser to sign in; if none appeared, open {url}\n")
        sys.stderr.flush()
        self._wait("Waiting for the browser sign-in...", time.time() + self.login_timeout)
        return True

    def _wait(self, text: str, deadline: float) -> None:
        if not sys.stderr.isatty():
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()
            return
        self._thread = threading.Thread(target=self._spin, args=(text, deadline), daemon=True)
        self._thread.start()

    def _spin(self, text: str, deadline: float) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("") as status:
            while not self._stop.is_set():
                left = max(0, int(deadline - time.time()))
                status.update(f"{text} {left // 60}:{left % 60:02d} left (Ctrl-C to cancel)")
                self._stop.wait(0.5)

    def done(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


@click.command("login")
@source_options
@click.option("--force", is_flag=True, help="Log in again even when a saved login exists.")
@click.option("--json", "as_json", is_flag=True,
              help="Print who logged in where as JSON on stdout (never a token).")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, force: bool, as_json: bool) -> None:
    """Log in (device code or browser) and save the tokens for later silent use."""
    settings = given(issuer, client_id, scope, flow)
    prof = resolve(profile, settings)
    wait = _ApprovalWait()
    source: Source | UserLogin
    if prof.chosen and paired_login(prof.grant) is not None:
        # The flow was picked by this machine: the library's UserLogin, the one rule with its
        # fallbacks (the device flow when no browser starts or the provider refuses the loopback
        # redirect), and a login saved by either flow is the login.
        source = prof.build_user_login(interactive=True, prompt=wait.prompt,
                                       open_browser=wait.open_browser)
    else:
        extra: dict[str, Any] = {"interactive": True}
        if prof.grant == "device_code":
            extra["prompt"] = wait.prompt
        elif prof.grant == "authorization_code":
            extra["open_browser"] = wait.open_browser
        source = prof.build(**extra)
    wait.login_timeout = float(getattr(source, "login_timeout", wait.login_timeout))
    if force:
        source.forget()
    try:
        got = source.get_token()
    finally:
        wait.done()
    if source.grant_name and source.grant_name != prof.grant:
        prof = prof.with_grant(source.grant_name)  # the login that answered: its store file
    remember(prof, profile, settings, source)
    who = got.claims.get("preferred_username") or got.claims.get("email") or got.claims.get("sub")
    if as_json:  # epoch seconds, for programs; no token of any kind
        click.echo(json.dumps({
            "profile": None if prof.name == AD_HOC else prof.name,
            "issuer": prof.kwargs.get("issuer") or prof.kwargs.get("token_endpoint"),
            "client_id": prof.kwargs.get("client_id"),
            "subject": got.claims.get("sub"),
            "name": got.claims.get("preferred_username") or got.claims.get("email"),
            "expires_at": got.expires_at,
            "refresh_token": bool(got.refresh_token),
        }, indent=2))
        return
    click.echo(f"Logged in{f' as {who}' if who else ''}{login_label(prof)}; "
               f"access token valid until {when(got.expires_at, time.time())}.", err=True)
