"""Knowing that keyturn runs in a Jupyter (IPython) kernel, where a person watches the cell's output.

In a kernel stdin and stderr are not terminals, yet a person is there: a login may start.
"""

from __future__ import annotations

import sys

__all__ = ["in_kernel"]


def in_kernel() -> bool:
    """True inside an IPython kernel (Jupyter, JupyterHub, VS Code notebooks). IPython is never
    imported here: a kernel has imported it already, and a plain program must not pay for it."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    return shell is not None and getattr(shell, "kernel", None) is not None
