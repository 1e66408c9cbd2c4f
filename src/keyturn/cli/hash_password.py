"""``keyturn hash-password``: the scrypt hash of a password, for a server configuration file."""

from __future__ import annotations

import click

from .common import require_server_extra

__all__ = ["command"]


@click.command("hash-password")
def command() -> None:
    """Print the scrypt hash of a password, for a server configuration file."""
    require_server_extra()
    from .server_commands import hash_password_command

    raise click.exceptions.Exit(hash_password_command())
