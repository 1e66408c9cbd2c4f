"""``keyturn whoami``: who the saved login is, from the id_token's claims and userinfo."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import click

from ..errors import KeyturnError, LoginRequired
from .common import given, login_required, resolve, source_options

__all__ = ["command"]


@click.command("whoami")
@source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, as_json: bool) -> None:
    """Show who the saved login is: the id_token's claims, and userinfo when the server has it."""
    prof = resolve(profile, given(issuer, client_id, scope, flow))
    source = prof.build(interactive=False)
    try:
        got = source.get_token()
    except LoginRequired:
        raise login_required(prof) from None
    claims: dict[str, Any] = dict(got.claims)
    userinfo = getattr(source, "userinfo", None)
    if callable(userinfo) and got.id_token:
        # When userinfo fails, the id_token's claims are enough to say who it is.
        with contextlib.suppress(KeyturnError):
            claims.update(userinfo())
    info: dict[str, Any] = {"profile": prof.name, "claims": claims,
                            "scope": " ".join(got.scope) if got.scope is not None else None,
                            "expires_at": got.expires_at}
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    if not claims:
        click.echo(f"profile {prof.name}: a token without identity claims (grant {prof.grant}); "
                   f"scope: {info['scope']}")
        return
    for name in sorted(claims):
        click.echo(f"{name}: {claims[name]}")
