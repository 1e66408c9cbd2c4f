"""``keyturn serve admin``: the click commands of :mod:`.server_admin` (logins, revoke, clients)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .common import require_server_extra

__all__ = ["admin"]

F = TypeVar("F", bound=Callable[..., Any])

_REDIS_HELP = ("The server's Redis (redis://host:6379/0). The command line is visible to every "
               "local user in `ps`: give a URL with a password in KEYTURN_REDIS_URL or the "
               "configuration (redis_url_env, redis_url_file) instead.")


def _storage_options(command: F) -> F:
    """The options that name the server's storage, as `keyturn serve` takes them."""
    for option in reversed((
            click.option("--config", "config_file", metavar="FILE",
                         help="The server's configuration file."),
            click.option("--data-dir", metavar="DIR",
                         help="Its data directory (if not in the configuration)."),
            click.option("--redis", "redis_url", metavar="URL", help=_REDIS_HELP))):
        command = option(command)
    return command


@click.group("admin")
def admin() -> None:
    """A server's users' logins (list, revoke) and its clients, beside the running server."""


@admin.command("logins")
@click.argument("user")
@_storage_options
@click.option("--json", "as_json", is_flag=True, help="JSON, with times in epoch seconds.")
def logins(user: str, config_file: str | None, data_dir: str | None, redis_url: str | None,
           as_json: bool) -> None:
    """USER's live logins: id, client, sign-in, last use, expiry, scope (never a token)."""
    require_server_extra()
    from .server_admin import logins_command

    raise click.exceptions.Exit(logins_command(user, config=config_file, data_dir=data_dir,
                                               redis=redis_url, as_json=as_json))


@admin.command("revoke")
@click.argument("user")
@click.argument("login_ids", nargs=-1, metavar="[LOGIN]...")
@click.option("--all", "all_logins", is_flag=True, help="Every live login of USER.")
@_storage_options
def revoke(user: str, login_ids: tuple[str, ...], all_logins: bool, config_file: str | None,
           data_dir: str | None, redis_url: str | None) -> None:
    """End logins of USER: their refresh tokens are refused from now on, on every replica."""
    require_server_extra()
    from .server_admin import revoke_command

    raise click.exceptions.Exit(revoke_command(user, login_ids, all_logins=all_logins,
                                               config=config_file, data_dir=data_dir,
                                               redis=redis_url))


@admin.command("clients")
@click.option("--config", "config_file", metavar="FILE", help="The server's configuration file.")
@click.option("--json", "as_json", is_flag=True, help="JSON.")
def clients(config_file: str | None, as_json: bool) -> None:
    """The configured clients: id, public or confidential, grants, scopes, name."""
    require_server_extra()
    from .server_admin import clients_command

    raise click.exceptions.Exit(clients_command(config=config_file, as_json=as_json))
