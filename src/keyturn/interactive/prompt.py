"""The default device-login prompt: the URL, the code and a QR code, on stderr or in a notebook.

The QR code encodes ``verification_uri_complete`` (the URL with the code in it), so a phone camera
goes straight to the approval page. It is drawn only on a terminal: in a log file or a pipe it would
be noise. It is drawn by ``segno`` (pure Python, no dependencies, maintained since 2016, typed),
imported only here, so that nothing else pays for it; without segno the prompt still works, with
no QR code.

Inside a Jupyter (IPython) kernel the prompt is the cell's rich output instead
(:mod:`keyturn.interactive.notebook`): stderr there is no terminal, and a person reads the cell.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Protocol, TextIO

from ..protocol.device import DeviceVerification
from .device_text import prompt_lines
from .notebook import in_kernel

if TYPE_CHECKING:
    from ..token import Token

__all__ = ["LoginDisplay", "default_prompt", "qr_text"]


class LoginDisplay(Protocol):
    """A prompt still on screen, told how the login ended so that it can say so in its place."""

    def signed_in(self, token: Token, issuer: str | None) -> None:
        """The login succeeded with ``token``."""

    def failed(self, error: BaseException, issuer: str | None) -> None:
        """The login ended without a token (``error`` is raised to the caller next)."""


def qr_text(data: str) -> str | None:
    """``data`` as a QR code of half-block characters (two modules per line), or None without segno."""
    try:
        import segno
    except ImportError:
        return None
    import io

    out = io.StringIO()
    # Error correction "L" keeps the code small; a screen is not a damaged sticker. A 2-module
    # quiet zone is enough on a terminal and keeps the block compact.
    segno.make(data, error="l", micro=False).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced by something that is not a file
        return False


def default_prompt(verification: DeviceVerification, *,
                   stream: TextIO | None = None) -> LoginDisplay | None:
    """Tell the person where to approve the login. Writes to ``stream`` (default: stderr), so that
    stdout stays free for the program's own output (``$(keyturn token)``).

    Without ``stream``, inside a Jupyter kernel, the prompt is the cell's rich output, and the
    :class:`LoginDisplay` returned replaces it with the outcome; elsewhere None is returned."""
    if stream is None and in_kernel():
        from .notebook_prompt import show_device_prompt

        return show_device_prompt(verification)
    out = stream if stream is not None else sys.stderr
    if out is None:
        return None
    text = "\n".join(["", *prompt_lines(verification)]) + "\n"
    complete = verification.verification_uri_complete
    if complete and _is_terminal(out):
        qr = qr_text(complete)
        if qr:
            text += "\nOr scan this with a phone:\n" + qr
    out.write(text)
    out.flush()
    return None
