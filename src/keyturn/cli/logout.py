"""``keyturn logout``: forget the saved tokens, and revoke them at the server (RFC 7009).

``--json`` prints one object on stdout for scripts: which login, and whether tokens were saved and
forgotten. Whether the server revoked them is not known here: :meth:`~keyturn.sources.base.Source.logout`
logs a failed revocation and returns nothing.
"""

from __future__ import annotations

import json

import click

from .common import AD_HOC, given, login_command, login_label, resolve, saved_login_options

__all__ = ["command"]


@click.command("logout")
@saved_login_options
@click.option("--json", "as_json", is_flag=True,
              help="Print what was forgotten as JSON on stdout (never a token).")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, as_json: bool) -> None:
    """Forget the saved tokens and revoke them at the server (RFC 7009)."""
    settings = given(issuer, client_id, scope, flow)
    prof = resolve(profile, settings)
    source = prof.build(interactive=False)
    saved = source.saved_token()
    source.logout()
    if as_json:
        click.echo(json.dumps({
            "profile": None if prof.name == AD_HOC else prof.name,
            "issuer": prof.kwargs.get("issuer") or prof.kwargs.get("token_endpoint"),
            "client_id": prof.kwargs.get("client_id"),
            "forgotten": saved is not None,
            "refresh_token": saved is not None and bool(saved.refresh_token),
            "login_command": login_command(prof, settings),
        }, indent=2))
        return
    had = saved is not None
    again = f"`{login_command(prof, settings)}` logs in again"
    click.echo(f"Logged out{login_label(prof)}; {again}." if had else
               f"No saved tokens{login_label(prof)}; {again}.", err=True)
