"""Who left a file in the token directory, and whether that writer can still be alive.

Lease lock files and temporary files name the process that wrote them: its process id and its
*node*, a digest of what makes process ids comparable — the host name, the boot (a rebooted host
reuses pids) and the pid namespace (two containers of one host each number their own processes).
Only a writer of this node can be known to be dead (``kill(pid, 0)`` answers ESRCH); a writer on
another node is judged by time alone.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket

__all__ = ["alive", "hostname", "node"]


@functools.cache
def hostname() -> str:
    return socket.gethostname()


@functools.cache
def node() -> str:
    """12 hex digits naming this host, boot and pid namespace (the same in a forked child)."""
    parts = [hostname()]
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            parts.append(handle.read().strip())
    except OSError:
        parts.append("")
    try:
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:
        parts.append("")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def alive(pid: int) -> bool:
    """False only when no process ``pid`` exists on this node; anything unsure counts as alive."""
    if pid <= 0 or os.name == "nt":  # on Windows, kill(pid, 0) would end the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, and belongs to someone else
        return True
    return True
