"""``keyturn status``: each profile's saved login, and those of the ad-hoc command lines run here."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from .._fastindex import remembered_ad_hoc
from ..config import Profile, load_profile, profile_names
from ..errors import KeyturnError
from .common import when

__all__ = ["command"]


def _row(prof: Profile, now: float) -> dict[str, Any]:
    """What the store holds for ``prof``, as it is: no refresh, no request."""
    saved = prof.build(interactive=False).saved_token()
    row: dict[str, Any] = {
        "profile": prof.name, "grant": prof.grant,
        "issuer": prof.kwargs.get("issuer") or prof.kwargs.get("token_endpoint"),
        "client_id": prof.kwargs.get("client_id"), "logged_in": saved is not None,
        "access_token_valid": False, "expires_at": None, "refresh_token": False,
        "relogin_due_at": None, "scope": None,
    }
    if saved is not None:
        row.update(
            access_token_valid=bool(saved.access_token) and (
                saved.expires_at is None or saved.expires_at > now),
            expires_at=saved.expires_at or None, refresh_token=bool(saved.refresh_token),
            relogin_due_at=saved.refresh_expires_at,
            scope=" ".join(saved.scope) if saved.scope is not None else None,
        )
    return row


def _ad_hoc_rows(now: float) -> list[dict[str, Any]]:
    """The saved logins of ``--issuer/--client-id`` command lines this user ran (remembered by the
    fast path's index), once each: a login and a token command line often differ only in
    ``--flow``."""
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for overrides in remembered_ad_hoc():
        try:
            prof = load_profile(None, overrides=overrides)
            key = prof.build(interactive=False).cache_key
        except KeyturnError:
            continue  # a command line that no longer resolves (a secret's variable is unset)
        if key in seen:
            continue
        seen.add(key)
        row = _row(prof, now)
        if row["logged_in"]:
            rows.append(row)
    return rows


def _table(rows: list[dict[str, Any]], now: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keyturn profiles")
    for column in ("profile", "grant", "issuer", "access token", "refresh token", "re-login due"):
        table.add_column(column)
    for row in rows:
        if not row["logged_in"]:
            access = "none (log in)"
        elif row["access_token_valid"]:
            access = "valid until " + when(row["expires_at"], now)
        else:
            access = "expired (refreshed on next use)" if row["refresh_token"] else "expired"
        due = when(row["relogin_due_at"], now) if row["relogin_due_at"] else (
            "unknown" if row["refresh_token"] else "-")
        table.add_row(row["profile"], row["grant"], str(row["issuer"] or ""), access,
                      "yes" if row["refresh_token"] else "no", due)
    Console(soft_wrap=True).print(table)


@click.command("status")
@click.option("--profile", "-p", metavar="NAME", help="Only this profile (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def command(profile: str | None, as_json: bool) -> None:
    """Show each profile's saved login: token validity, refresh token, when a re-login is due."""
    names = [profile] if profile else profile_names()
    now = time.time()
    rows = [_row(load_profile(name), now) for name in names]
    if not profile:
        rows.extend(_ad_hoc_rows(now))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No profiles and no saved logins: see `keyturn --help` and docs/cli.md.",
                   err=True)
        return
    _table(rows, now)
