"""``keyturn whoami``: who the saved login is, from the id_token's claims and userinfo."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import click

from ..errors import KeyturnError, LoginRequired
from .common import given, login_label, login_required, other_login, resolve, saved_login_options, when

__all__ = ["command"]

#: The claims that are times (epoch seconds), shown as local times.
_TIMES = frozenset({"exp", "iat", "nbf", "auth_time", "updated_at"})


@click.command("whoami")
@saved_login_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def command(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
            flow: str | None, as_json: bool) -> None:
    """Show who the saved login is: the id_token's claims, and userinfo when the server has it."""
    settings = given(issuer, client_id, scope, flow)
    prof = resolve(profile, settings)
    source = prof.build(interactive=False)
    try:
        got = source.get_token()
    except LoginRequired:
        # As keyturn token: a login made with the other flow of the pair answers for it.
        other = other_login(prof)
        if other is None:
            raise login_required(prof, settings) from None
        prof, source, got = other
    claims: dict[str, Any] = dict(got.claims)
    userinfo = getattr(source, "userinfo", None)
    if callable(userinfo) and got.id_token:
        # When userinfo fails, the id_token's claims are enough to say who it is.
        with contextlib.suppress(KeyturnError):
            claims.update(userinfo())
    info: dict[str, Any] = {"profile": prof.name, "claims": claims,
                            "scope": " ".join(got.scope) if got.scope is not None else None,
                            "expires_at": got.expires_at}
    if as_json:  # epoch seconds, for programs
        click.echo(json.dumps(info, indent=2, default=str))
        return
    now = time.time()
    if not claims:
        click.echo(f"A token without identity claims{login_label(prof)}, grant {prof.grant}; "
                   f"scope: {info['scope']}; expires {when(got.expires_at, now)}")
        return
    for name in sorted(claims):
        value = claims[name]
        shown = when(value, now) if name in _TIMES and isinstance(value, (int, float)) else value
        click.echo(f"{name}: {shown}")
    click.echo(f"access token expires {when(got.expires_at, now)}")
