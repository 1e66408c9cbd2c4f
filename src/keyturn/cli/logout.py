"""``keyturn logout``: forget the saved tokens, and revoke them at the server (RFC 7009).

It says what happened at the server too (:class:`~keyturn.Logout`): revoked there, or not (the
server names no revocation endpoint, or the revocation failed), in which case the tokens stay
valid until they expire. Exit status 0 either way: the login is gone from here.

``--json`` prints one object on stdout for scripts: which login, whether tokens were saved and
forgotten, whether the server revoked them (``revoked``) and why not (``reason``, ``detail``).
"""

from __future__ import annotations

import json
import logging

import click

from ..logout import NO_REVOCATION_ENDPOINT, Logout
from .common import AD_HOC, given, login_command, login_label, resolve, saved_login_options

__all__ = ["command"]


def _sentence(outcome: Logout) -> str:
    """What happened, for a person (a CLI user sets the revocation endpoint as an option or a
    profile key, not as ``revocation_endpoint=``)."""
    if outcome.reason == NO_REVOCATION_ENDPOINT:
        return ("forgot the login here; the server names no revocation endpoint, so its tokens "
                "stay valid until they expire (if it has one, give --revocation-endpoint URL or "
                "set revocation_endpoint in the profile)")
    return outcome.message


@click.command("logout")
@saved_login_options
@click.option("--revocation-endpoint", metavar="URL",
              help="Revoke the tokens there (RFC 7009), for a server whose metadata does not "
                   "name its revocation endpoint (default: the profile's, else discovery's).")
@click.option("--json", "as_json", is_flag=True,
              help="Print what was forgotten and revoked as JSON on stdout (never a token).")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, revocation_endpoint: str | None, as_json: bool) -> None:
    """Forget the saved tokens and revoke them at the server (RFC 7009); says whether the
    server revoked them."""
    settings = given(issuer, client_id, scope, flow)
    # Not part of which login it is, so not in the login command of a hint.
    prof = resolve(profile, {**settings, "revocation_endpoint": revocation_endpoint})
    source = prof.build(interactive=False)
    saved = source.saved_token()
    # The outcome is printed below: not also the library's warning of a failed revocation (which
    # Python's last-resort handler would print on stderr).
    logging.getLogger("keyturn").addHandler(logging.NullHandler())
    outcome = source.logout()
    if as_json:
        click.echo(json.dumps({
            "profile": None if prof.name == AD_HOC else prof.name,
            "issuer": prof.kwargs.get("issuer") or prof.kwargs.get("token_endpoint"),
            "client_id": prof.kwargs.get("client_id"),
            "account": prof.kwargs.get("account"),
            "forgotten": saved is not None,
            "refresh_token": saved is not None and bool(saved.refresh_token),
            "revoked": outcome.revoked,
            "reason": outcome.reason,
            "detail": outcome.detail,
            "login_command": login_command(prof, settings),
        }, indent=2))
        return
    again = f"`{login_command(prof, settings)}` logs in again"
    if saved is None:
        click.echo(f"No saved tokens{login_label(prof)}; {again}.", err=True)
        return
    click.echo(f"Logged out{login_label(prof)}: {_sentence(outcome)}; {again}.", err=True)
