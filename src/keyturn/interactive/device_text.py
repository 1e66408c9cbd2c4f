"""The words of the device prompt, in plain text: what the terminal prompt writes, and what a
notebook's prompt offers as its ``text/plain`` form. One place, so that the two say the same."""

from __future__ import annotations

from ..protocol.device import DeviceVerification

__all__ = ["prompt_lines"]


def prompt_lines(verification: DeviceVerification) -> list[str]:
    """The prompt as plain text lines (no QR code): what a terminal, a log or a pipe shows."""
    minutes = max(1, round(verification.expires_in / 60))
    lines = [
        "To sign in, open this page in a browser on any device:",
        f"    {verification.verification_uri}",
        f"and enter the code:  {verification.user_code}",
    ]
    complete = verification.verification_uri_complete
    if complete:
        lines.append(f"(or open {complete} to skip typing the code)")
    lines.append(f"The code is valid for {minutes} minute{'s' if minutes != 1 else ''}.")
    return lines
