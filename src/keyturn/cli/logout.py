"""``keyturn logout``: forget the saved tokens, and revoke them at the server (RFC 7009)."""

from __future__ import annotations

import click

from .common import given, login_command, login_label, resolve, source_options

__all__ = ["command"]


@click.command("logout")
@source_options
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None) -> None:
    """Forget the saved tokens and revoke them at the server (RFC 7009)."""
    prof = resolve(profile, given(issuer, client_id, scope, flow))
    source = prof.build(interactive=False)
    had = source.saved_token() is not None
    source.logout()
    again = f"`{login_command(prof)}` logs in again"
    click.echo(f"Logged out{login_label(prof)}; {again}." if had else
               f"No saved tokens{login_label(prof)}; {again}.", err=True)
