"""``keyturn token``: print a valid access token, and nothing else; never interactive.

The entry point answers this command from a valid cached token before anything here is imported
(:mod:`keyturn._fastpath`); this is the rest: a token to fetch or refresh, ``--min-valid`` to
honour, or a saved login to find. Either way the output is the same (:mod:`keyturn._tokenformat`).
"""

from __future__ import annotations

import time

import click

from .._tokenformat import render
from ..errors import LoginRequired
from .common import given, login_required, other_login, remember, resolve, saved_login_options

__all__ = ["command"]


@click.command("token")
@saved_login_options
@click.option("--min-valid", type=float, default=0.0, metavar="SECONDS",
              help="Refresh first when the token has less than this left.")
@click.option("--header", "output", flag_value="header", help="Print 'Authorization: Bearer ...'.")
@click.option("--json", "output", flag_value="json", help="Print a JSON object.")
@click.option("--exec-credential", "output", flag_value="exec-credential",
              help="Print a kubectl ExecCredential (client.authentication.k8s.io/v1).")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, min_valid: float, output: str | None) -> None:
    """Print a valid access token (never interactive)."""
    settings = given(issuer, client_id, scope, flow)
    prof = resolve(profile, settings)
    source = prof.build(interactive=False)
    try:
        current = source.get_token()
    except LoginRequired:
        # A flow picked by this machine's environment (no --flow, no grant in the profile): the
        # person may have logged in with the other one (the device flow over SSH, the browser at
        # the desk), and that login is as good.
        other = other_login(prof)
        if other is None:
            raise login_required(prof, settings) from None
        prof, source, current = other
    left = current.expires_in(time.time())
    if min_valid > 0 and left is not None and left < min_valid:
        source.invalidate(current.access_token)
        try:
            current = source.get_token()
        except LoginRequired:
            raise login_required(prof, settings) from None
    remember(prof, profile, settings, source)
    click.echo(render(current.to_record(), output or "plain", time.time()))
