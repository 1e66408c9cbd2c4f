"""Opening the person's browser, and knowing when there is none to open.

The browser is started with the standard library's :mod:`webbrowser`, which honours ``$BROWSER``
(a ``:``-separated list of commands, ``%s`` standing for the URL). A browser login needs the
browser on *this* machine, since it must reach keyturn's listener on 127.0.0.1: over SSH, or on a
Linux box without a display, there is none, and the device flow is the one to use.
"""

from __future__ import annotations

import os
import sys

# Not ``typing`` / ``collections.abc`` at run time: ``keyturn token``'s fast path may call
# can_open_browser() to pick a profile's flow, and every import there costs milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["COMMAND_GRACE", "SSH_VARIABLES", "can_open_browser", "in_ssh_session", "lacks_display",
           "open_browser"]

#: Variables sshd sets in a session: the person sits at another machine.
SSH_VARIABLES = ("SSH_CONNECTION", "SSH_CLIENT", "SSH_TTY")

#: Seconds :func:`open_browser` waits for the browser command. ``webbrowser`` waits for a
#: ``$BROWSER`` command until it exits (``w3m %s``, a script), but that browser comes back to
#: keyturn's listener while it runs, and keyturn must be listening to answer it, or both wait for
#: each other. A command that fails does so at once; one that is still running has started.
COMMAND_GRACE = 1.0


def can_open_browser(environ: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a browser on this machine can be opened for the person at the keyboard."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if env.get("BROWSER"):
        # The person named a browser (a terminal one such as w3m, or a script that hands the URL
        # to their own machine, with the port forwarded): their explicit choice wins.
        return True
    if in_ssh_session(env):
        # The person sits at another machine: a browser started here (if any) is not in front of
        # them, and theirs cannot reach our 127.0.0.1.
        return False
    return not lacks_display(env, platform)


def in_ssh_session(env: Mapping[str, str]) -> bool:
    return any(env.get(name) for name in SSH_VARIABLES)


def lacks_display(env: Mapping[str, str], platform: str) -> bool:
    """A Linux or BSD machine without X11 or Wayland runs no browser (macOS and Windows always
    have their own)."""
    return (platform.startswith("linux") or "bsd" in platform) and not (
        env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    """Open ``url`` in the system browser (``$BROWSER`` first). False when none could be started,
    so the caller can show the URL instead.

    Returns within :data:`COMMAND_GRACE` seconds even when the browser command keeps running (see
    there); that command then goes on in the background, and True is returned.
    """
    import threading
    import webbrowser

    outcome: list[bool | BaseException] = []

    def run() -> None:
        try:
            outcome.append(webbrowser.open(url, new=1, autoraise=True))
        except webbrowser.Error:
            outcome.append(False)
        except Exception as exc:  # handed to the caller, not printed by the thread
            outcome.append(exc)

    thread = threading.Thread(target=run, name="keyturn-browser", daemon=True)
    thread.start()
    thread.join(COMMAND_GRACE)
    if not outcome:
        # Still running: a browser in the foreground, which is working on the login right now.
        return True
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result
