"""The ``keyturn`` entry point: ``keyturn token`` from a valid cached token, with json/os/time only.

Shell scripts (and pyFirecREST's ``TokenCommandAuth``) run ``keyturn token`` before every API call,
so answering it must cost little more than starting Python. This module finds the command line's
token file and cache key in the index the full command line keeps (:mod:`keyturn._fastindex`), or
else from the profile (:mod:`keyturn.config`, standard library only; the cache key is the
source's, :mod:`keyturn.cachekey`), reads the token file's record without importing json
(:mod:`keyturn._fastjson`) and checks it as FileStore does (:mod:`keyturn._record`), and prints the token
(:mod:`keyturn._tokenformat`) when it is valid for longer than the cache's refresh margin
(:func:`keyturn.paths.refresh_margin`). Anything else — another command, an option it does not know, no valid
token, a refresh, an error — goes to the full command line (:mod:`keyturn.cli`), which imports
httpx, click and rich. Only :func:`main` imports :mod:`keyturn.cli`, when it falls through; the CLI
imports nothing from here (what both need lives in the modules named above).

It may refuse more than FileStore, never less: what FileStore would not load is no answer. It
trusts what FileStore trusts (:mod:`keyturn._filecheck`): a token file and its directory of the
user's own that no other user can write, the file private (0600); and an index file of the user's
that no other user can write. It answers from a record FileStore would load
(:func:`keyturn._record.token_fields`: the fields a Token has, nested no deeper than strictjson
allows), and only with a non-empty access token. A file it does not trust, cannot parse (deeply
nested JSON raises RecursionError) or finds damaged is no answer: the full command line then moves
a damaged file aside, says so and fetches a token again.
"""

from __future__ import annotations

import os
import sys
import time

from ._fastindex import find, remember
from ._fastjson import loads
from ._filecheck import open_checked
from ._record import token_fields
from ._tokenformat import FORMATS, render
from .paths import DEFAULT_LEEWAY, refresh_margin

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["DEFAULT_LEEWAY", "cached_answer", "main"]

_VALUED = {"--profile": "profile", "-p": "profile", "--min-valid": "min_valid", "--issuer": "issuer",
           "--client-id": "client_id", "--scope": "scope", "--flow": "grant",
           "--account": "account"}


def _parse(argv: Sequence[str]) -> tuple[dict[str, Any], str] | None:
    """The options of a ``token`` command the fast path understands, or None."""
    if not argv or argv[0] != "token":
        return None
    options: dict[str, Any] = {}
    output = "plain"
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg in FORMATS:
            output = FORMATS[arg]
            continue
        name, eq, value = arg.partition("=")
        if name not in _VALUED:
            return None
        if not eq:
            if not args:
                return None
            value = args.pop(0)
        options[_VALUED[name]] = value
    return options, output


def _from_config(name: str | None, overrides: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(token file, cache key, leeway) by reading the config file (tomllib and hashlib: a few
    milliseconds more than the index), remembered in the index for the next call."""
    from .config import load_profile

    profile = load_profile(name, overrides=overrides)
    path = profile.store_file()
    if path is None:
        return None
    key, leeway = profile.cache_key(), float(profile.kwargs.get("leeway", DEFAULT_LEEWAY))
    if os.path.exists(path):
        remember(name, overrides, store_file=path, key=key, leeway=leeway,
                 env=profile.secret_env, files=profile.secret_files)
    return path, key, leeway


def cached_answer(argv: Sequence[str]) -> str | None:
    """What ``keyturn token ARGS`` prints when the cache can answer, else None."""
    parsed = _parse(argv)
    if parsed is None:
        return None
    options, output = parsed
    try:
        min_valid = float(options.pop("min_valid", 0) or 0)
        name = options.pop("profile", None)
        try:
            where = find(name, options)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            where = None
        if where is None:
            where = _from_config(name, options)
        if where is None:
            return None
        path, key, leeway = where
        # The same checks as FileStore, on the index's path as on the config's: a private file of
        # the user's, and a valid record of the key (the fields are what Token.to_record writes).
        with os.fdopen(open_checked(path), "rb") as handle:
            token = token_fields(loads(handle.read()), key)
        if token is None or not token["access_token"]:  # an empty one: the CLI refreshes
            return None
        now = time.time()
        expires_at = token.get("expires_at")
        if expires_at is not None:
            lifetime = max(0.0, float(expires_at) - float(token.get("issued_at") or 0.0))
            # A token the cache would refresh now is not printed: the full command line refreshes.
            margin = max(min_valid, refresh_margin(lifetime, leeway))
            # "not >", not "<=": a NaN (json.dumps writes one, a damaged file may hold one) is no
            # expiry the fast path can vouch for.
            if not float(expires_at) - now > margin:
                return None
        return render(token, output, now)
    except Exception:
        # Whatever the fast path cannot settle (an untrusted file, a RecursionError from nested
        # JSON, a damaged record), the full command line settles and explains.
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    answer = cached_answer(args)
    if answer is not None:
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
        return 0
    # The one import of the full command line, and only when the cache could not answer.
    from .cli import run

    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
