"""The default device-login prompt: the URL, the code and a QR code, on stderr.

The QR code encodes ``verification_uri_complete`` (the URL with the code in it), so a phone camera
goes straight to the approval page. It is drawn only on a terminal: in a log file or a pipe it would
be noise. It is drawn by ``segno`` (pure Python, no dependencies, maintained since 2016, typed),
imported only here, so that nothing else pays for it; without segno the prompt still works, with
no QR code.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..protocol.device import DeviceVerification

__all__ = ["default_prompt", "qr_text"]


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


def default_prompt(verification: DeviceVerification, *, stream: TextIO | None = None) -> None:
    """Tell the person where to approve the login. Writes to ``stream`` (default: stderr), so that
    stdout stays free for the program's own output (``$(keyturn token)``)."""
    out = stream if stream is not None else sys.stderr
    if out is None:
        return
    minutes = max(1, round(verification.expires_in / 60))
    lines = [
        "",
        "To sign in, open this page in a browser on any device:",
        f"    {verification.verification_uri}",
        f"and enter the code:  {verification.user_code}",
    ]
    complete = verification.verification_uri_complete
    if complete:
        lines.append(f"(or open {complete} to skip typing the code)")
    lines.append(f"The code is valid for {minutes} minute{'s' if minutes != 1 else ''}.")
    text = "\n".join(lines) + "\n"
    if complete and _is_terminal(out):
        qr = qr_text(complete)
        if qr:
            text += "\nOr scan this with a phone:\n" + qr
    out.write(text)
    out.flush()
