"""``keyturn serve admin``: an operator's commands on a server's storage, beside the running
server (the same ``--config`` / ``--data-dir`` / ``--redis`` as ``keyturn serve``)::

    keyturn serve admin logins USER [--json]        a user's live logins (never a token)
    keyturn serve admin revoke USER LOGIN... | --all
    keyturn serve admin clients [--json]            the configured clients

A *login* is a family of rotated refresh tokens, named by its id (the ``sid`` claim of its
access tokens). Revoking it ends it on every replica at once: its refresh token is refused with
``invalid_grant`` and its access tokens fail introspection and userinfo; a resource server that
only checks an access token's signature accepts it until it expires (``lifetimes.access_token``).

Plain functions returning an exit code (as :mod:`.server_commands`); :mod:`.serve_admin` maps
the click options onto them, :func:`add_parser` the ``python -m keyturn.server admin`` ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import KeyturnError
from .exitcodes import CONFIG, FAILED, SUCCESS
from .timefmt import when

if TYPE_CHECKING:
    from ..server.config import ServerConfig
    from ..server.storage.base import Login, ServerStorage

#: A revocation is kept this much longer than the login could last: a refresh racing with the
#: revocation, and the replicas' clocks, may give the family a token a little later.
REVOKE_MARGIN = 3600

__all__ = ["add_parser", "clients_command", "logins_command", "revoke_command", "run"]


def _fail(command: str, message: str, code: int = CONFIG) -> int:
    print(f"keyturn serve admin {command}: {' '.join(message.split())}", file=sys.stderr)
    return code


def _unreachable(command: str, storage: ServerStorage, exc: Exception) -> int:
    # The storage by its repr (password-free), the error by its class: its text may name a URL.
    return _fail(command, f"cannot read the server's storage {storage!r} "
                          f"({exc.__class__.__name__}): is it running, and the URL right?")


def _server_storage(command: str, *, config: str | None, data_dir: str | None,
                    redis: str | None) -> tuple[ServerConfig, ServerStorage] | int:
    """The running server's configuration and storage, or the exit code of why not: a storage
    that does not exist, or holds no server's data (a mistyped --data-dir, or the SQLite
    data_dir when the server runs on the Redis of its EnvironmentFile=) is refused, never
    listed as "no live logins"."""
    from ..server.runner import open_server_storage, require_server_data

    try:
        settings, storage = open_server_storage(config, data_dir=data_dir, redis_url=redis,
                                                command=f"admin {command}", existing=True)
    except KeyturnError as exc:
        return _fail(command, str(exc))
    try:
        require_server_data(storage)
    except KeyturnError as exc:
        storage.close()
        return _fail(command, str(exc))
    except Exception as exc:  # Redis down
        code = _unreachable(command, storage, exc)
        storage.close()
        return code
    return settings, storage


def revoked_until(login: Login, now: float) -> float:
    """How long a revocation of ``login`` is kept: as long as any token of it could be valid,
    from the login's own figures, not a configuration's lifetime (admin may run without the
    server's --config). Its newest refresh token expires at ``expires_at``; a refresh racing
    with this revocation would issue one living as long again from now."""
    lifetime = login.expires_at - login.last_used_at  # refresh tokens live this long from issue
    return max(login.expires_at, now + lifetime) + REVOKE_MARGIN


def _login_json(login: Login) -> dict[str, object]:
    return {"login": login.family_id, "client_id": login.client_id, "user": login.subject,
            "scope": " ".join(login.scope), "signed_in_at": int(login.signed_in_at),
            "last_used_at": int(login.last_used_at), "expires_at": int(login.expires_at)}


def logins_command(user: str, *, config: str | None = None, data_dir: str | None = None,
                   redis: str | None = None, as_json: bool = False) -> int:
    """``keyturn serve admin logins USER``: one line per live login, the most recent first."""
    opened = _server_storage("logins", config=config, data_dir=data_dir, redis=redis)
    if isinstance(opened, int):
        return opened
    _, storage = opened
    now = time.time()
    try:
        logins = storage.logins(user, now)
    except KeyturnError as exc:
        return _fail("logins", str(exc), FAILED)
    except Exception as exc:  # Redis down, SQLite locked: one line, as rotate-keys
        return _unreachable("logins", storage, exc)
    finally:
        storage.close()
    if as_json:
        print(json.dumps([_login_json(login) for login in logins], indent=2))
        return SUCCESS
    if not logins:
        print(f"no live logins for {user!r} in {storage!r}")
        return SUCCESS
    _print_table([("LOGIN", "CLIENT", "SIGNED IN", "LAST USED", "EXPIRES", "SCOPE")] + [
        (login.family_id, login.client_id, when(login.signed_in_at, now),
         when(login.last_used_at, now), when(login.expires_at, now), " ".join(login.scope))
        for login in logins])
    return SUCCESS


def revoke_command(user: str, login_ids: Sequence[str], *, all_logins: bool = False,
                   config: str | None = None, data_dir: str | None = None,
                   redis: str | None = None) -> int:
    """``keyturn serve admin revoke USER LOGIN... | --all``: each named login must be one of the
    user's live logins (a mistyped id revokes nothing, and says so)."""
    if all_logins == bool(login_ids):
        return _fail("revoke", "name the logins to revoke (see `keyturn serve admin logins "
                               "USER`), or give --all, not both", FAILED)
    opened = _server_storage("revoke", config=config, data_dir=data_dir, redis=redis)
    if isinstance(opened, int):
        return opened
    _, storage = opened
    now = time.time()
    try:
        live = {login.family_id: login for login in storage.logins(user, now)}
        unknown = [name for name in login_ids if name not in live]
        if unknown:
            return _fail("revoke", f"{user!r} has no live login {unknown[0]!r} (see `keyturn "
                                   f"serve admin logins {user}`); nothing was revoked", FAILED)
        chosen = list(live) if all_logins else list(dict.fromkeys(login_ids))
        for family in chosen:
            storage.revoke_family(family, revoked_until(live[family], now))
    except KeyturnError as exc:
        return _fail("revoke", str(exc), FAILED)
    except Exception as exc:
        return _unreachable("revoke", storage, exc)
    finally:
        storage.close()
    if not chosen:
        print(f"no live logins for {user!r} in {storage!r}")
    for family in chosen:
        print(f"revoked login {family} of {user!r} (client {live[family].client_id})")
    return SUCCESS


def clients_command(*, config: str | None = None, as_json: bool = False) -> int:
    """``keyturn serve admin clients``: the clients of the configuration file."""
    from ..server.config import load_config

    if config is None:
        return _fail("clients", "give --config (the server's configuration file)")
    try:
        settings = load_config(config)
    except KeyturnError as exc:
        return _fail("clients", str(exc))
    clients = settings.clients.values()
    if as_json:
        print(json.dumps([{"client_id": c.client_id, "name": c.name,
                           "type": "public" if c.public else "confidential",
                           "grants": list(c.grants), "scopes": list(c.scopes)} for c in clients],
                         indent=2))
        return SUCCESS
    _print_table([("CLIENT", "TYPE", "GRANTS", "SCOPES", "NAME")] + [
        (c.client_id, "public" if c.public else "confidential",
         # The short names of the configuration file, not the URNs.
         ",".join(g.rsplit(":", 1)[-1] for g in c.grants), " ".join(c.scopes), c.name)
        for c in clients])
    return SUCCESS


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    """Columns padded to their widest cell; the last one (free text) is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)),
                         row[-1]]))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser],
               redis_help: str) -> None:
    """``python -m keyturn.server admin ...``: the same commands for a site that installed the
    server extra without the CLI extra (click)."""
    admin = commands.add_parser("admin", help="a server's users' logins and its clients")
    which = admin.add_subparsers(dest="admin_command", required=True)
    logins = which.add_parser("logins", help="a user's live logins (never a token)")
    logins.add_argument("user")
    revoke = which.add_parser("revoke", help="end logins of a user, on every replica")
    revoke.add_argument("user")
    revoke.add_argument("login_ids", nargs="*", metavar="LOGIN")
    revoke.add_argument("--all", dest="all_logins", action="store_true",
                        help="every live login of the user")
    for sub in (logins, revoke):
        sub.add_argument("--config", help="the server's configuration file")
        sub.add_argument("--data-dir")
        sub.add_argument("--redis", metavar="URL", help=redis_help)
    clients = which.add_parser("clients", help="the configured clients")
    clients.add_argument("--config", help="the server's configuration file")
    for sub in (logins, clients):
        sub.add_argument("--json", dest="as_json", action="store_true")


def run(args: argparse.Namespace) -> int:
    """The command :func:`add_parser` parsed."""
    if args.admin_command == "logins":
        return logins_command(args.user, config=args.config, data_dir=args.data_dir,
                              redis=args.redis, as_json=args.as_json)
    if args.admin_command == "revoke":
        return revoke_command(args.user, args.login_ids, all_logins=args.all_logins,
                              config=args.config, data_dir=args.data_dir, redis=args.redis)
    return clients_command(config=args.config, as_json=args.as_json)
