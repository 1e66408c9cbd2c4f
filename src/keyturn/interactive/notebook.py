"""Knowing that keyturn runs in a Jupyter (IPython) kernel, where a person watches the cell's output.

In a kernel stdin and stderr are not terminals, yet a person is there: a login may start, and the
device prompt is the cell's rich output (:mod:`keyturn.interactive.notebook_prompt`). This module
only tells where keyturn runs, with ``os`` and ``sys``: the login choice rule imports it on
``keyturn token``'s fast path.
"""

from __future__ import annotations

import os
import sys

from .browser import in_ssh_session, lacks_display

# Not ``typing`` / ``collections.abc`` at run time: the choice rule that calls kernel_is_remote()
# may run on ``keyturn token``'s fast path, where every import costs milliseconds.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["CONTAINER_MARKERS", "in_kernel", "kernel_is_remote", "refuse_loopback_redirect",
           "remote_reason"]

#: Environment variables JupyterHub sets in the single-user server, hence in its kernels.
_JUPYTERHUB_VARIABLES = ("JUPYTERHUB_API_URL", "JUPYTERHUB_USER")
#: Files a container runtime puts at the root of the container's file system (Docker; Podman).
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")


def in_kernel() -> bool:
    """True inside an IPython kernel (Jupyter, JupyterHub, VS Code notebooks). IPython is never
    imported here: a kernel has imported it already, and a plain program must not pay for it."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def kernel_is_remote(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None,
    markers: tuple[str, ...] = CONTAINER_MARKERS,
) -> bool:
    """Whether the person's browser is (or may be) on another machine than this kernel, so that it
    cannot reach a redirect to this machine's 127.0.0.1 and the login must use the device flow.

    True under JupyterHub, in an SSH session, in a container (Docker, Podman, Kubernetes, systemd's
    ``container=``), and on Linux/BSD without a display. It says where the *kernel* runs, and is
    meant to be asked when :func:`in_kernel` is true: the notebook's browser is wherever the person
    is, and only a kernel on their own desktop shares its loopback address.
    """
    return remote_reason(environ, platform=platform, markers=markers) is not None


def remote_reason(
    environ: Mapping[str, str] | None = None, *, platform: str | None = None,
    markers: tuple[str, ...] = CONTAINER_MARKERS,
) -> str | None:
    """Why :func:`kernel_is_remote` is true, in words for a message ("JupyterHub runs it"); None
    when it is false."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if any(env.get(name) for name in _JUPYTERHUB_VARIABLES):
        # A hub spawns the kernel on a node or in a pod; the person's browser reaches it only
        # through the hub's proxy, never at the node's 127.0.0.1.
        return "JupyterHub runs it"
    if in_ssh_session(env):
        return "it runs in an SSH session"
    if env.get("KUBERNETES_SERVICE_HOST") or env.get("container"):
        # Kubernetes sets the first in every pod; systemd-nspawn, Podman and LXC set the second.
        return "it runs in a container"
    if any(os.path.exists(marker) for marker in markers):
        # A container has its own network namespace: its 127.0.0.1 is not the host browser's.
        return "it runs in a container"
    if lacks_display(env, platform):
        # No display: no browser runs on this machine, so the person's is elsewhere.
        return "its machine has no display"
    return None


def refuse_loopback_redirect(issuer: str | None, client_id: str) -> None:
    """Raise :class:`~keyturn.errors.ConfigError` in a kernel on another machine than the person's
    browser, before a browser login starts that could only wait for a redirect that never comes."""
    if not in_kernel():
        return
    reason = remote_reason()
    if reason is None:
        return
    from ..errors import ConfigError

    args = (f"issuer={issuer!r}, client_id={client_id!r}" if issuer else
            f"client_id={client_id!r}, device_authorization_endpoint='...'")
    raise ConfigError(
        f"AuthorizationCode cannot sign in from this Jupyter kernel: {reason}, so your browser is "
        "on another machine and cannot reach the redirect to http://127.0.0.1 here. Use the "
        f"device flow: keyturn.DeviceCode({args}), or keyturn.UserLogin({args}), which picks "
        "it in such a kernel (pass open_browser= to AuthorizationCode only if you forward the "
        "redirect yourself)"
    )
