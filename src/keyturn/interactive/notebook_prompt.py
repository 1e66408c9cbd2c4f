"""The device login prompt as a Jupyter cell's rich output, replaced in place by how it ended.

Inside a kernel stderr is not a terminal and a person reads the cell, so :func:`show_device_prompt`
displays a :class:`DevicePrompt` there (``IPython.display.display(..., display_id=True)``): the
sign-in link, clickable (to ``verification_uri_complete`` when the provider gives one, so the code
is filled in), the user code large and selectable, the link as a QR code image (with segno; none
without it), and the time left. A timer thread updates the time left every :data:`UPDATE_EVERY`
seconds: ipykernel sends a display update from any thread to the cell (measured with ipykernel
7.4), so the countdown runs while a sync ``get_access_token()`` blocks the cell's thread, and the
kernel's event loop is never used for it under ``await aget_access_token()``. When the login ends,
the same output becomes one line: "Signed in as alice at https://id.example.org", or why it did not.

Every value from the provider is escaped before it goes into HTML or Markdown, and only an http(s)
URL becomes a link: the device authorization answer is not trusted to write markup in the notebook.
IPython is imported only here, only inside a kernel (where it is imported already).
"""

from __future__ import annotations

import asyncio
import html
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import AccessDenied, ExpiredToken
from .device_text import prompt_lines

if TYPE_CHECKING:
    from ..protocol.device import DeviceVerification
    from ..token import Token

__all__ = [
    "UPDATE_EVERY",
    "DevicePrompt",
    "Rich",
    "failed_line",
    "link_target",
    "qr_data_uri",
    "show_device_prompt",
    "signed_in_line",
]

log = logging.getLogger("keyturn")

#: Seconds between two updates of the time left (each update sends the whole output again).
UPDATE_EVERY = 5.0

#: Characters with a meaning in Markdown, escaped with a backslash in the text/markdown output.
_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()#+-.!|~")


def link_target(url: str | None) -> str | None:
    """``url`` if it may become a link: http or https with a host. A ``javascript:`` or
    ``data:`` URL from a hostile provider stays text."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def qr_data_uri(data: str) -> str | None:
    """``data`` as a QR code, an SVG ``data:`` URI for an ``<img>``; None without segno."""
    try:
        import segno
    except ImportError:
        return None
    # Error correction "L" keeps the code small; a screen is not a damaged sticker.
    uri: str = segno.make(data, error="l", micro=False).svg_data_uri(scale=4, border=2)
    return uri


def _md(text: str) -> str:
    """``text`` as literal Markdown: HTML-escaped (Markdown passes HTML through), then every
    Markdown character backslash-escaped."""
    # quote=False: a quote means nothing to Markdown, and "&#x27;" would show as it is.
    return "".join("\\" + c if c in _MARKDOWN_SPECIAL else c for c in html.escape(text, quote=False))


def _md_link(text: str, url: str) -> str:
    # CommonMark: a destination in <...> may hold anything but line breaks and unescaped < >.
    safe = "".join(f"%{ord(c):02X}" if c in "<>\\" or c.isspace() else c for c in url)
    return f"[{_md(text)}](<{safe}>)"


def _time_left(seconds: float) -> str:
    if seconds <= 0:
        return "The code has expired."
    whole = int(seconds + 0.999)
    return f"Waiting for approval: {whole // 60}:{whole % 60:02d} left."


class Rich:
    """One state of the output, in the three forms a frontend may pick: HTML, Markdown, text."""

    def __init__(self, html_text: str, markdown: str, plain: str) -> None:
        self.html = html_text
        self.markdown = markdown
        self.plain = plain

    def _repr_html_(self) -> str:
        return self.html

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.plain)

    def __repr__(self) -> str:
        return self.plain


def _who(token: Token) -> str | None:
    claims = token.claims
    for name in ("preferred_username", "email", "name", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _outcome(words: list[tuple[str, bool]]) -> Rich:
    """One line from ``(text, is_a_value)`` pieces: values in bold (escaped like the rest)."""
    plain = "".join(text for text, _ in words)
    markup = "".join(f"<strong>{html.escape(t)}</strong>" if value else html.escape(t)
                     for t, value in words)
    markdown = "".join(f"**{_md(t)}**" if value else _md(t) for t, value in words)
    return Rich(f'<div class="keyturn-login">{markup}</div>', markdown, plain)


def signed_in_line(token: Token, issuer: str | None) -> Rich:
    """"Signed in as alice at https://id.example.org"."""
    who = _who(token)
    words: list[tuple[str, bool]] = [("Signed in", False)]
    if who:
        words += [(" as ", False), (who, True)]
    if issuer:
        words += [(" at ", False), (issuer, True)]
    return _outcome(words)


def failed_line(error: BaseException, issuer: str | None) -> Rich:
    """Why the login ended without a token, in one line (the error itself is raised in the cell)."""
    words: list[tuple[str, bool]] = [("Login", False)]
    if issuer:
        words += [(" at ", False), (issuer, True)]
    if isinstance(error, ExpiredToken):
        words.append((" expired: the code was not approved in time. Run the cell again for a "
                      "new code.", False))
    elif isinstance(error, AccessDenied):
        words.append((" was denied.", False))
    elif isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
        words.append((" was interrupted.", False))
    else:
        # The type only: the message is in the traceback below, where keyturn wrote it.
        words += [(" failed: ", False), (type(error).__name__, True), (" (see below).", False)]
    return _outcome(words)


class DevicePrompt:
    """The device prompt of one login in a notebook cell; see the module's docstring."""

    def __init__(self, verification: DeviceVerification, *,
                 clock: Callable[[], float] = time.time, every: float | None = None) -> None:
        self.verification = verification
        self._clock = clock
        self._every = UPDATE_EVERY if every is None else every
        self._deadline = verification.expires_at or clock() + verification.expires_in
        # RFC 8628 §3.3.1: clients "MAY present this URI in a non-textual manner" (the link's
        # target, the QR code), and "it is RECOMMENDED for clients to still display the textual
        # verification URI" (the link's text), with the user_code beside it.
        self._link = (link_target(verification.verification_uri_complete)
                      or link_target(verification.verification_uri))
        self._qr = qr_data_uri(self._link) if self._link else None
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self._handle: Any = None

    def waiting(self) -> Rich:
        """The prompt as it stands now, with the time left."""
        v = self.verification
        left = _time_left(self._deadline - self._clock())
        uri, code = html.escape(v.verification_uri), html.escape(v.user_code)
        link = html.escape(self._link) if self._link else None
        place = (f'<a href="{link}" target="_blank" rel="noopener noreferrer">{uri}</a>' if link
                 else f"<code>{uri}</code>")
        parts = [
            '<div class="keyturn-device-login" style="line-height:1.5">',
            f"<div>To sign in, open {place} in a browser on any device and enter the code:</div>",
            '<div style="margin:.3em 0"><code class="keyturn-user-code" style="font-size:2em;'
            "font-weight:bold;letter-spacing:.08em;user-select:all;-webkit-user-select:all;"
            f'padding:.1em .4em">{code}</code></div>',
        ]
        complete = link_target(v.verification_uri_complete)
        if complete:
            parts.append("<div>(the link fills the code in)</div>")
        if self._qr:
            parts.append(f'<div><img src="{html.escape(self._qr)}" alt="QR code of the sign-in '
                         'link" style="image-rendering:pixelated"></div>'
                         "<div>or scan this with a phone.</div>")
        parts += [f'<div class="keyturn-time-left">{html.escape(left)}</div>', "</div>"]
        shown = _md_link(v.verification_uri, self._link) if self._link else _md(v.verification_uri)
        markdown = (f"To sign in, open {shown} in a browser on any device and enter the code "
                    f"**{_md(v.user_code)}**\n\n{_md(left)}")
        plain = "\n".join([*prompt_lines(v), left])
        return Rich("".join(parts), markdown, plain)

    def show(self) -> DevicePrompt:
        """Display the prompt in the running cell and start the countdown."""
        from IPython.display import display

        with self._lock:
            self._handle = display(self.waiting(), display_id=True)  # type: ignore[no-untyped-call]
        threading.Thread(target=self._count_down, name="keyturn-notebook-prompt",
                         daemon=True).start()
        return self

    def _count_down(self) -> None:
        # Ends with the login (signed_in/failed set _ended), or once the code has expired: the
        # thread never outlives the code.
        while not self._ended.wait(self._every):
            with self._lock:
                if self._ended.is_set():
                    return
                self._update(self.waiting())
            if self._clock() >= self._deadline:
                return

    def _update(self, rich: Rich) -> None:
        try:
            self._handle.update(rich)
        except Exception as exc:  # the login goes on without its countdown
            log.warning("DeviceCode: the notebook prompt could not be updated (%s)",
                        type(exc).__name__)

    def _end(self, rich: Rich) -> None:
        with self._lock:
            if self._ended.is_set():
                return
            self._ended.set()
            self._update(rich)

    def signed_in(self, token: Token, issuer: str | None) -> None:
        """Replace the prompt with "Signed in as ... at ..."."""
        self._end(signed_in_line(token, issuer))

    def failed(self, error: BaseException, issuer: str | None) -> None:
        """Replace the prompt with why the login ended (expired, denied, interrupted, failed)."""
        self._end(failed_line(error, issuer))


def show_device_prompt(verification: DeviceVerification) -> DevicePrompt | None:
    """The device prompt displayed in the running cell; None (the prompt then written to stderr,
    which the cell shows too) if IPython could not display it."""
    try:
        return DevicePrompt(verification).show()
    except Exception as exc:
        log.warning("DeviceCode: the notebook prompt could not be displayed (%s)",
                    type(exc).__name__)
    if sys.stderr is not None:
        sys.stderr.write("\n" + "\n".join(prompt_lines(verification)) + "\n")
        sys.stderr.flush()
    return None
