"""The page the browser shows when it comes back to keyturn after a login: success, or what failed.

The default pages are self-contained: inline style, no script, no image, no font, and a
``Content-Security-Policy`` that forbids loading anything, so the page never reaches out to the
network (and never leaks the callback URL, which held the authorization code, in a ``Referer``).
Every page is sent with ``Cache-Control: no-store``.

``landing_page=`` customises both pages: a string is a :class:`string.Template` with ``$title``,
``$message``, ``$outcome`` (``success`` or ``error``) and ``$error`` (the OAuth error code, or
empty), each HTML-escaped; a callable gets the :class:`LoginOutcome` and returns the HTML.
"""

from __future__ import annotations

import html
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from ..errors import KeyturnError, OAuthError

__all__ = ["LandingPage", "LoginOutcome", "render"]


@dataclass(frozen=True)
class LoginOutcome:
    """What happened, in words for the person at the browser."""

    ok: bool
    title: str
    message: str
    #: The OAuth ``error`` code (``access_denied`` ...) when the server sent one.
    error: str | None = None

    @classmethod
    def success(cls, who: str | None = None) -> LoginOutcome:
        title = f"Signed in as {who}" if who else "Signed in"
        return cls(True, title, "You can close this tab and go back to the terminal.")

    @classmethod
    def failure(cls, exc: BaseException) -> LoginOutcome:
        if isinstance(exc, OAuthError):
            return cls(False, "Sign-in failed", str(exc), exc.error)
        if isinstance(exc, KeyturnError):  # messages of keyturn errors never hold secrets
            return cls(False, "Sign-in failed", str(exc))
        return cls(False, "Sign-in failed",
                   f"keyturn could not finish the sign-in ({type(exc).__name__}); see the terminal.")


#: ``landing_page=``: an HTML template string, or a callable from outcome to HTML.
LandingPage: TypeAlias = "str | Callable[[LoginOutcome], str]"

_STRICT_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

_DEFAULT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>$title - keyturn</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;min-height:100vh;display:flex;align-items:center;
justify-content:center;background:#f4f5f7;color:#1d2433}
main{background:#fff;border-radius:8px;padding:2rem 2.5rem;max-width:34rem;
box-shadow:0 1px 4px rgba(0,0,0,.15);border-top:6px solid $colour}
h1{font-size:1.4rem;margin:0 0 .8rem}p{line-height:1.5;margin:0;overflow-wrap:anywhere}
</style></head>
<body><main class="$outcome"><h1>$title</h1><p>$message</p></main></body></html>
"""


def _fields(outcome: LoginOutcome) -> Mapping[str, str]:
    return {
        "title": html.escape(outcome.title),
        "message": html.escape(outcome.message),
        "outcome": "success" if outcome.ok else "error",
        "error": html.escape(outcome.error or ""),
        "colour": "#1a7f37" if outcome.ok else "#cf222e",
    }


def render(outcome: LoginOutcome, landing_page: LandingPage | None = None,
           ) -> tuple[int, dict[str, str], bytes]:
    """The HTTP status, headers and body of the landing page for ``outcome``."""
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        # The page answers a URL that carried the authorization code: keep it out of caches.
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    if landing_page is None:
        page = string.Template(_DEFAULT).substitute(_fields(outcome))
        headers["Content-Security-Policy"] = _STRICT_CSP
    elif isinstance(landing_page, str):
        page = string.Template(landing_page).safe_substitute(_fields(outcome))
    else:
        page = landing_page(outcome)
    return (200 if outcome.ok else 400), headers, page.encode("utf-8")
