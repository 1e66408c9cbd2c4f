"""How the verification page looks: one stylesheet, the document around each page, the words.

No behaviour here (:mod:`.pages` decides what to show): the stylesheet, pinned by its hash in
the Content-Security-Policy (no other style, no script, no image, nothing from elsewhere), the
headers of every page, the site's name, the plain words for scopes and the user code's hint.
The page is read on phones as often as on desktops: one column at most 30rem wide, fields and
buttons the full width on a phone, text and buttons at WCAG AA contrast (4.5:1 or more).
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

from .device_flow import UserCodeFormat, format_user_code

__all__ = ["BUILT_IN_SCOPE_WORDS", "OFFLINE_ACCESS", "PAGE_HEADERS", "code_hint", "document", "esc",
           "scope_list", "site_name"]

# Colours on white (#fff) and their contrast: text #1b1b1b 17:1, hints #4a4f57 8.1:1, the
# primary button's white on #0b57d0 6.3:1, the error text #8a1c1c 9.2:1, focus ring #b35c00.
_STYLE: Final = (
    "*{box-sizing:border-box}"
    "body{margin:0;font:1rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;"
    "color:#1b1b1b;background:#eef0f3}"
    "main{max-width:30rem;margin:0 auto;padding:.75rem}"
    ".site{margin:.5rem 0 0;font-weight:600;color:#4a4f57;overflow-wrap:anywhere}"
    "h1{font-size:1.45rem;line-height:1.25;margin:.25rem 0 .75rem;overflow-wrap:anywhere}"
    ".card{background:#fff;border:1px solid #c9ced6;border-radius:.5rem;padding:.75rem 1rem}"
    "p{margin:.5rem 0}"
    "label{display:block;font-weight:600;margin:.9rem 0 .15rem}"
    ".hint{display:block;color:#4a4f57;font-size:.9rem;margin:0 0 .25rem}"
    "input{font:inherit;font-size:1.1rem;width:100%;padding:.5rem .6rem;color:#1b1b1b;"
    "background:#fff;border:1px solid #6b7280;border-radius:.375rem}"
    "#user_code{font-family:ui-monospace,Menlo,Consolas,monospace;letter-spacing:.08em}"
    "input:focus,button:focus{outline:3px solid #b35c00;outline-offset:2px}"
    ".actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1rem}"
    ".actions button{flex:1 1 9rem}"
    ".stack{flex-direction:column}.stack button{flex:none}"
    "button{font:inherit;font-weight:600;min-height:2.75rem;padding:.5rem 1rem;"
    "border-radius:.375rem;cursor:pointer}"
    ".primary{color:#fff;background:#0b57d0;border:2px solid #0b57d0}"
    ".secondary{color:#0b3d91;background:#fff;border:2px solid #6b7280}"
    ".or{margin:1.25rem 0 0;color:#4a4f57;text-align:center}"
    ".error{color:#8a1c1c;background:#fdecea;border-left:4px solid #b3261e;padding:.5rem .75rem}"
    ".warning{background:#fff4e5;border-left:4px solid #b35c00;padding:.5rem .75rem}"
    ".scopes{margin:.25rem 0 .75rem;padding-left:1.25rem}"
    "code{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}"
    ".code{font-size:1.1rem;font-weight:600;white-space:nowrap}"
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

#: What each standard scope gives, in the person's words (a site's ``[scope_descriptions]``
#: replaces any of them; a scope with no words is shown by its name). Not ``offline_access``:
#: whether the device stays signed in is the client's (:func:`scope_list`'s ``stays``).
BUILT_IN_SCOPE_WORDS: Final[Mapping[str, str]] = {
    "openid": "confirm who you are",
    "profile": "your name and user name",
    "email": "your email address",
}
#: The scope that asks to stay signed in (OpenID Connect Core §11); never listed by itself.
OFFLINE_ACCESS: Final = "offline_access"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def site_name(configured: str | None, issuer: str) -> str:
    """The name people see (``site_name``), else the issuer's host: what the address bar shows."""
    return configured or urlsplit(issuer).hostname or issuer


def code_hint(user_codes: UserCodeFormat) -> str:
    """The format of a code, with an example: "8 letters, like BCDF-GHJK"."""
    example = format_user_code((user_codes.alphabet * user_codes.length)[:user_codes.length])
    return f"{user_codes.length} {user_codes.name}, like {example}"


def scope_list(scopes: Iterable[str], *, words: Mapping[str, str], stays: str | None) -> str:
    """The scopes asked for as list items: the site's words, else the built-in ones, else the
    scope's own name (so nothing asked for is hidden). ``stays``: how long the device stays
    signed in (``"30 days"``) when it will get a refresh token, else None. That is what the
    server issues, with or without ``offline_access`` (which is therefore not listed itself)."""
    items = []
    for scope in scopes:
        if scope == OFFLINE_ACCESS:
            continue
        said = words.get(scope) or BUILT_IN_SCOPE_WORDS.get(scope)
        items.append(f"<li>{esc(said[:1].upper() + said[1:])}</li>" if said else
                     f"<li><code>{esc(scope)}</code></li>")
    if stays is not None:
        # A refresh token lives lifetimes.refresh_token seconds from its last use (each refresh
        # gives a new one), until keyturn serve admin revoke ends the login: no fixed end.
        items.append(f"<li>Stay signed in on that device until it goes unused for {esc(stays)}"
                     "</li>")
    return "".join(items) or "<li>Nothing beyond signing in</li>"


def document(*, title: str, site: str, body: str) -> str:
    """A whole page: the site's name above the heading and in the window's title."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)} · {esc(site)}</title><style>{_STYLE}</style></head>"
        f"<body><main><p class=site>{esc(site)}</p><h1>{esc(title)}</h1>"
        f"<div class=card>{body}</div></main></body></html>"
    )
