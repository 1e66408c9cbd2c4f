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

from ..config import Profile
from ..logout import NO_REVOCATION_ENDPOINT, Logout
from ..token import Token
from .common import AD_HOC, given, login_command, login_label, resolve, saved_login_options, saved_logins

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
    # The outcome is printed below: not also the library's warning of a failed revocation (which
    # Python's last-resort handler would print on stderr).
    logging.getLogger("keyturn").addHandler(logging.NullHandler())
    # Every login this command line stands for: with a flow picked by this machine, a login made
    # with the other flow answers `keyturn token` too, so it is forgotten as well.
    done: list[tuple[Profile, Token | None, Logout]] = [
        (each, saved, source.logout()) for each, source, saved in saved_logins(prof)]
    if not done:
        done = [(prof, None, prof.build(interactive=False).logout())]
    if as_json:
        reports = [{
            "profile": None if each.name == AD_HOC else each.name,
            "grant": each.grant,
            "issuer": each.kwargs.get("issuer") or each.kwargs.get("token_endpoint"),
            "client_id": each.kwargs.get("client_id"),
            "account": each.kwargs.get("account"),
            "forgotten": saved is not None,
            "refresh_token": saved is not None and bool(saved.refresh_token),
            "revoked": outcome.revoked,
            "reason": outcome.reason,
            "detail": outcome.detail,
            "login_command": login_command(prof, settings),
        } for each, saved, outcome in done]
        # The first login's report; "others": the other flow's login, forgotten too (rare).
        click.echo(json.dumps({**reports[0], "others": reports[1:]}, indent=2))
        return
    again = f"`{login_command(prof, settings)}` logs in again"
    for each, saved, outcome in done:
        if saved is None:
            click.echo(f"No saved tokens{login_label(each)}; {again}.", err=True)
        else:
            click.echo(f"Logged out{login_label(each)}: {_sentence(outcome)}; {again}.", err=True)
