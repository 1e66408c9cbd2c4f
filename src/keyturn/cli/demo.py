"""``keyturn demo``: a device login against an in-process demo server (:mod:`.walkthrough`)."""

from __future__ import annotations

import click

from .common import require_server_extra

__all__ = ["command"]


@click.command("demo")
@click.option("--auto-approve/--no-auto-approve", default=None,
              help="Let keyturn approve in the verification page itself (default: when stdin is "
                   "not a terminal; on a terminal, Enter does it).")
def command(auto_approve: bool | None) -> None:
    """Walk through a device login against an in-process demo server."""
    require_server_extra()
    from .server_commands import demo_command

    raise click.exceptions.Exit(demo_command(auto_approve))
