"""How deep keyturn lets JSON nest, in one place: :mod:`keyturn.strictjson` refuses any document
nested deeper (a server's answer, a token file, a JWT), and :mod:`keyturn._record` any token file
record nested deeper, which is how the ``keyturn token`` fast path (which reads token files
without strictjson: strictjson imports json, which costs it more than the rest of its work) refuses
what FileStore refuses. It imports nothing at all.
"""

from __future__ import annotations

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Final

__all__ = ["MAX_DEPTH", "depth_exceeds"]

#: Arrays and objects nested deeper than this are refused. OAuth and OpenID documents nest a few
#: levels (a JWKS is three); Python's own parser gives up near 1,000, and so can anything that
#: walks a document nested close to that.
MAX_DEPTH: Final = 64


def depth_exceeds(value: object, limit: int = MAX_DEPTH) -> bool:
    """True if ``value`` nests arrays/objects (lists/dicts) deeper than ``limit``; the value itself,
    if one, is level 1. A loop, never recursion: it walks what the parser could barely build."""
    # A tuple, not ``dict | list``: isinstance is faster with one, and the fast path runs this.
    containers = (dict, list)
    if not isinstance(value, containers):
        return False
    stack: list[tuple[dict[object, object] | list[object], int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, containers):
                stack.append((child, depth + 1))
    return False
