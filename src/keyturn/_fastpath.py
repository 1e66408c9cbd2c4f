"""The ``keyturn`` entry point: ``keyturn token`` from a valid cached token, with json/os/time only.

Shell scripts (and pyFirecREST's ``TokenCommandAuth``) run ``keyturn token`` before every API call,
so answering it must cost little more than starting Python. This module reads the profile
(:mod:`keyturn.config`, standard library only), finds the FileStore record under the same cache key
the source uses (:mod:`keyturn.cachekey`), and prints the token when it is valid for long enough.
Anything else — another command, an option it does not know, no valid token, a refresh, an error —
goes to the full command line (:mod:`keyturn.cli`), which imports httpx, click and rich.

It trusts what FileStore trusts (:mod:`keyturn._filecheck`): a token file and its directory of the
user's own that no other user can write, the file private (0600); and an index file of the user's
that no other user can write. A file it does not trust, or cannot parse (deeply nested JSON raises
RecursionError), is no answer: the full command line then says what is wrong.
"""

from __future__ import annotations

import json
import os
import sys
import time

from ._filecheck import UntrustedFile, open_checked

# Not ``typing``: importing it costs the fast path milliseconds; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

__all__ = ["DEFAULT_LEEWAY", "main", "render"]

#: The sources' default ``leeway=``: a token with less left than this is refreshed, not printed.
DEFAULT_LEEWAY = 60.0
_FORMATS = {"--header": "header", "--json": "json", "--exec-credential": "exec-credential"}
_VALUED = {"--profile": "profile", "-p": "profile", "--min-valid": "min_valid", "--issuer": "issuer",
           "--client-id": "client_id", "--scope": "scope", "--flow": "grant"}


def render(token: Mapping[str, Any], output: str, now: float) -> str:
    """``token`` (a Token record: access_token, token_type, expires_at, scope) as ``output``."""
    access = str(token["access_token"])
    expires_at = token.get("expires_at")
    if output == "header":
        token_type = str(token.get("token_type") or "Bearer")
        # RFC 6750 §2.1 spells the scheme "Bearer"; servers answer "bearer" too.
        return f"Authorization: {'Bearer' if token_type.lower() == 'bearer' else token_type} {access}"
    if output == "json":
        scope = token.get("scope")
        return json.dumps({
            "access_token": access,
            "token_type": token.get("token_type") or "Bearer",
            "expires_at": expires_at,
            "expires_in": None if expires_at is None else int(expires_at - now),
            "scope": " ".join(scope) if isinstance(scope, list | tuple) else scope,
        })
    if output == "exec-credential":
        status: dict[str, Any] = {"token": access}
        if expires_at is not None:
            status["expirationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                          time.gmtime(expires_at))
        return json.dumps({"apiVersion": "client.authentication.k8s.io/v1",
                           "kind": "ExecCredential", "status": status})
    return access


def _parse(argv: Sequence[str]) -> tuple[dict[str, Any], str] | None:
    """The options of a ``token`` command the fast path understands, or None."""
    if not argv or argv[0] != "token":
        return None
    options: dict[str, Any] = {}
    output = "plain"
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg in _FORMATS:
            output = _FORMATS[arg]
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


def index_path() -> str:
    """Where the full CLI remembers, per command line, which token file answers it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "keyturn", "fastpath.json")


def lookup(name: str | None, overrides: Mapping[str, Any]) -> str:
    """The index key of a command line: everything that decides which profile it resolves to."""
    config = os.environ.get("KEYTURN_CONFIG") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"),
        "keyturn", "config.toml")
    return json.dumps([config, os.environ.get("KEYTURN_PROFILE"), name, sorted(overrides.items())])


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def _read_index() -> dict[str, Any]:
    """The index, or {} when there is none, or it is damaged, or another user could have written
    it (its entries name the token file to print: one planted there would be printed)."""
    try:
        with os.fdopen(open_checked(index_path(), private=False), "rb") as handle:
            index = json.loads(handle.read())
    except (OSError, ValueError, RecursionError, UntrustedFile):
        return {}
    return index if isinstance(index, dict) else {}


def _from_index(name: str | None, overrides: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """(token file, cache key, leeway) remembered by the full CLI, if still true of the config."""
    entry = _read_index().get(lookup(name, overrides))
    if not entry:
        return None
    # The profile resolves as it did when the entry was written only while the config file and
    # the secret files are unchanged and the secret variables are still set.
    if any(_stat(path) != seen for path, seen in entry["files"]):
        return None
    if not all(os.environ.get(variable) for variable in entry["env"]):
        return None
    return str(entry["store"]), str(entry["key"]), float(entry["leeway"])


def _from_config(name: str | None, overrides: Mapping[str, Any]) -> tuple[str, str, float] | None:
    """The same, by reading the config file (tomllib and hashlib: a few milliseconds more)."""
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
            where = _from_index(name, options)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            where = None
        if where is None:
            where = _from_config(name, options)
        if where is None:
            return None
        path, key, leeway = where
        # The same checks as FileStore, on the index's path as on the config's.
        with os.fdopen(open_checked(path), "rb") as handle:
            record = json.loads(handle.read())
        if record.get("format") != 1 or record.get("key") != key:
            return None
        token = record["token"]
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            return None
        now = time.time()
        expires_at = token.get("expires_at")
        if expires_at is not None:
            lifetime = max(0.0, float(expires_at) - float(token.get("issued_at") or 0.0))
            # The cache refreshes within min(leeway, lifetime / 2) of expiry (token.refresh_margin).
            margin = max(min_valid, min(leeway, lifetime / 2))
            if float(expires_at) - now <= margin:
                return None
        return render(token, output, now)
    except Exception:
        # Whatever the fast path cannot settle (an untrusted file, a RecursionError from nested
        # JSON, a damaged record), the full command line settles and explains.
        return None


def remember(name: str | None, overrides: Mapping[str, Any], *, store_file: str, key: str,
             leeway: float, env: Sequence[str], files: Sequence[str]) -> None:
    """Record, for the fast path, which token file answers this command line (no secrets: paths,
    the cache key, and the names of the variables and files the profile's secrets come from)."""
    path = index_path()
    # Entries of an index another user could have written are dropped, not carried over.
    index = _read_index()
    config = json.loads(lookup(name, overrides))[0]
    index[lookup(name, overrides)] = {
        "store": store_file, "key": key, "leeway": leeway, "env": list(env),
        "files": [[p, _stat(p)] for p in [config, *files]],
    }
    while len(index) > 64:
        index.pop(next(iter(index)))
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(index))
        os.replace(tmp, path)
    except OSError:
        pass  # only the fast path is lost: the next call reads the config instead


def remembered_ad_hoc() -> list[dict[str, Any]]:
    """The ``--issuer/--client-id/...`` settings of the ad-hoc command lines the index remembers
    for the current configuration (``keyturn status`` lists their logins beside the profiles)."""
    index = _read_index()
    current = json.loads(lookup(None, {}))
    found: list[dict[str, Any]] = []
    for key in index:
        try:
            config, env_profile, name, items = json.loads(key)
            overrides = dict(items)
        except (ValueError, TypeError, RecursionError):
            continue
        if ([config, env_profile, name] == current[:3] and overrides.get("issuer")
                and overrides not in found):
            found.append(overrides)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    answer = cached_answer(args)
    if answer is not None:
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
        return 0
    try:
        from .cli import run
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.stderr.write(f"keyturn: the command line needs {exc.name}: "
                         "pip install 'keyturn[cli]'\n")
        return 1
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
