"""How the command line shows a time: the local clock time and how far away it is, in one function
(:func:`when`), so ``login``, ``logout``, ``status``, ``whoami`` and ``demo`` read alike.

``--json`` outputs keep epoch seconds: those are for programs.
"""

from __future__ import annotations

import time

__all__ = ["relative", "when"]


def relative(seconds: float) -> str:
    """``seconds`` from now as a phrase: ``in 9 min``, ``in 2 h 5 min``, ``3 days ago``, ``now``
    (seconds and minutes cut down, long spans rounded to the nearest hour or day)."""
    span = abs(seconds)
    if span < 1:
        return "now"
    if span < 60:
        text = f"{int(span)} s"
    elif span < 3600:
        text = f"{int(span // 60)} min"
    elif span < 10 * 3600:
        hours, minutes = int(span // 3600), int(span % 3600 // 60)
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    elif span < 2 * 86400:
        text = f"{round(span / 3600)} h"  # to the nearest: 14 days less a second is "14 days"
    else:
        text = f"{round(span / 86400)} days"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def when(timestamp: float | None, now: float) -> str:
    """``timestamp`` (epoch seconds) as the local time and how far from ``now`` it is:
    ``14:05:09 (in 9 min)``, ``13:50:00 (6 min ago)``; another day's time has its date
    (``2026-12-03 09:00:00 (in 18 h 55 min)``). ``-`` for no time."""
    if timestamp is None:
        return "-"
    local = time.localtime(timestamp)
    same_day = local[:3] == time.localtime(now)[:3]
    stamp = time.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S", local)
    return f"{stamp} ({relative(timestamp - now)})"
