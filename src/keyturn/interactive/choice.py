"""Which login a person gets: the browser, or the device flow. The one rule, asked by the profiles
(``keyturn login`` and every command that resolves a profile without a grant) and by
:class:`~keyturn.sources.user_login.UserLogin`.

A browser login (RFC 8252) works only when a browser in front of the person can reach this
process's listener on 127.0.0.1: a browser on *this* machine, in *this* network namespace. Where
that is not so (an SSH session, a Linux box or container without a display, a Jupyter kernel on
JupyterHub or another remote host) the device flow (RFC 8628) is the login that works, since the
person approves it in any browser anywhere.

Standard library only, and barely that: ``keyturn token``'s fast path imports
:mod:`keyturn.config`, which asks this rule to resolve a profile without a grant.
"""

from __future__ import annotations

from .browser import can_open_browser
from .notebook import CONTAINER_MARKERS, in_kernel, kernel_is_remote

# Not ``typing`` / ``collections.abc`` at run time (the fast path, above); mypy reads this name.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

__all__ = ["BROWSER_LOGIN", "DEVICE_LOGIN", "browser_reaches_loopback", "choose_login"]

#: The two logins of :data:`keyturn.registry.LOGIN_PAIR`, by their grant names (spelled here, not
#: imported: the registry imports nothing of interactive/, and this module must stay as light).
BROWSER_LOGIN = "authorization_code"
DEVICE_LOGIN = "device_code"


def browser_reaches_loopback(
    environ: Mapping[str, str] | None = None, platform: str | None = None, *,
    kernel: bool | None = None, container_markers: tuple[str, ...] = CONTAINER_MARKERS,
) -> bool:
    """Whether a browser opened for the person can come back to a redirect to this machine's
    127.0.0.1. ``kernel`` says whether this runs in a Jupyter kernel (default: ask
    :func:`~keyturn.interactive.notebook.in_kernel`); ``container_markers`` are the files that
    mark a container (for tests: ``()``)."""
    in_a_kernel = in_kernel() if kernel is None else kernel
    if in_a_kernel and kernel_is_remote(environ, platform=platform, markers=container_markers):
        # The notebook's browser is wherever the person is; only a kernel on their own desktop
        # shares its loopback address (JupyterHub, SSH, a container or no display: it does not).
        # $BROWSER does not change that: it would start a browser beside the kernel, not theirs.
        return False
    # Outside a kernel (and for a kernel on the person's desktop): the browser keyturn starts is
    # on this machine. A container without a display has none; one with a display runs its
    # browser inside, on its own loopback: both follow from the display rule there.
    return can_open_browser(environ, platform)


def choose_login(
    environ: Mapping[str, str] | None = None, platform: str | None = None, *,
    offered: Collection[str] = (BROWSER_LOGIN, DEVICE_LOGIN), kernel: bool | None = None,
    container_markers: tuple[str, ...] = CONTAINER_MARKERS,
) -> str:
    """``"authorization_code"`` when a browser on this machine can reach the loopback redirect
    and the browser login is offered, else ``"device_code"`` (also when only that one is
    offered). ``offered``: the logins possible here — those this keyturn has and the provider
    (or the configuration) allows; when it offers only the browser login, that one.
    ``environ``/``platform`` default to this process's; ``kernel`` and ``container_markers`` as
    for :func:`browser_reaches_loopback`."""
    if BROWSER_LOGIN not in offered:
        return DEVICE_LOGIN
    if DEVICE_LOGIN not in offered:
        # No device flow: the browser login is the only one that may work (with $BROWSER, or a
        # person who opens the printed URL on this machine).
        return BROWSER_LOGIN
    reaches = browser_reaches_loopback(environ, platform, kernel=kernel,
                                       container_markers=container_markers)
    return BROWSER_LOGIN if reaches else DEVICE_LOGIN
