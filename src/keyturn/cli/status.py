"""``keyturn status``: each profile's saved login, and those of the ad-hoc command lines run here.

A profile that does not resolve (its secret's variable is unset, its secret file unreadable, any
:class:`~keyturn.errors.ConfigError` of that profile) is a row of its own with the error's message
as its ``problem``; the others are shown as usual and the command exits 0. ``--profile NAME`` for
one such profile fails with the error's exit code. At a terminal the rows are a rich table; off a
terminal (a pipe, a file) plain aligned text, one line per profile, nothing cut. The account
column is each login's ``account`` (several logins at one provider), ``-`` when it has none;
``--account NAME`` shows only that account's logins."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from .._fastindex import remembered_ad_hoc
from ..config import Profile, config_path, load_profile, profile_names, profile_settings
from ..errors import ConfigError, KeyturnError
from .common import one_line, saved_logins, when

__all__ = ["command"]

_COLUMNS = ("profile", "grant", "issuer", "client id", "account", "access token",
            "refresh token", "re-login due")


def _row(prof: Profile, now: float) -> dict[str, Any]:
    """What the store holds for ``prof``, as it is: no refresh, no request (a login of the other
    flow of the pair when the flow was picked by this machine: the one ``keyturn token`` uses)."""
    found = saved_logins(prof)
    saved = found[0][2] if found else None
    if found:
        prof = found[0][0]
    row: dict[str, Any] = {
        "profile": prof.name, "grant": prof.grant,
        "issuer": prof.kwargs.get("issuer") or prof.kwargs.get("token_endpoint"),
        "client_id": prof.kwargs.get("client_id"), "account": prof.kwargs.get("account"),
        "logged_in": saved is not None,
        "access_token_valid": False, "expires_at": None, "refresh_token": False,
        "relogin_due_at": None, "scope": None, "problem": None,
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


def _problem_row(name: str, exc: ConfigError) -> dict[str, Any]:
    """The row of a profile that does not resolve: what its config table says, and the error."""
    try:
        table = profile_settings(name)
    except ConfigError:
        table = {}
    grant, issuer, client_id, account = (table.get(key) for key in ("grant", "issuer", "client_id",
                                                                    "account"))
    issuer = issuer or table.get("token_endpoint")
    return {
        "profile": name, "grant": grant if isinstance(grant, str) else None,
        "issuer": issuer if isinstance(issuer, str) else None,
        "client_id": client_id if isinstance(client_id, str) else None,
        "account": account if isinstance(account, str) else None, "logged_in": False,
        "access_token_valid": False, "expires_at": None, "refresh_token": False,
        "relogin_due_at": None, "scope": None, "problem": one_line(str(exc)),
    }


def _profile_rows(names: list[str], now: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            rows.append(_row(load_profile(name), now))
        except ConfigError as exc:
            rows.append(_problem_row(name, exc))
    return rows


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


def _cells(row: dict[str, Any], now: float) -> list[str]:
    """The row's cells under :data:`_COLUMNS`."""
    if row["problem"]:
        access = due = "-"
    else:
        if not row["logged_in"]:
            access = "none (log in)"
        elif row["access_token_valid"]:
            access = "valid until " + when(row["expires_at"], now)
        else:
            access = "expired (refreshed on next use)" if row["refresh_token"] else "expired"
        due = when(row["relogin_due_at"], now) if row["relogin_due_at"] else (
            "unknown" if row["refresh_token"] else "-")
    return [row["profile"], row["grant"] or "-", str(row["issuer"] or "-"),
            str(row["client_id"] or "-"), str(row["account"] or "-"), access,
            "-" if row["problem"] else "yes" if row["refresh_token"] else "no", due]


def _lines(rows: list[dict[str, Any]], now: float) -> list[str]:
    """Plain aligned text: a header and one line per row, nothing cut (the last column, the
    problem when any row has one, is not padded)."""
    problems = any(row["problem"] for row in rows)
    header = [*_COLUMNS, "problem"] if problems else list(_COLUMNS)
    body = [[*_cells(row, now), row["problem"] or "-"] if problems else _cells(row, now)
            for row in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            .rstrip() for line in (header, *body)]


def _table(rows: list[dict[str, Any]], now: float) -> None:
    from rich.console import Console
    from rich.table import Table

    problems = any(row["problem"] for row in rows)
    table = Table(title="keyturn profiles")
    for column in (*_COLUMNS, "problem") if problems else _COLUMNS:
        # The issuer and the problem fold onto more lines in a narrow terminal, never cut.
        table.add_column(column, overflow="fold" if column in ("issuer", "problem") else "ellipsis")
    for row in rows:
        cells = _cells(row, now)
        table.add_row(*cells, *([row["problem"] or "-"] if problems else []))
    Console(soft_wrap=True).print(table)


@click.command("status")
@click.option("--profile", "-p", metavar="NAME", help="Only this profile (default: all).")
@click.option("--account", metavar="NAME",
              help="Only the logins of this account (with --profile: that profile's login as this "
                   "account).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def command(profile: str | None, account: str | None, as_json: bool) -> None:
    """Show each profile's saved login: token validity, refresh token, when a re-login is due.

    A profile with a configuration problem is shown with it (exit status 0); with --profile NAME
    that problem is the command's error."""
    now = time.time()
    if profile:
        # Its ConfigError is the command's error.
        rows = [_row(load_profile(profile, overrides={"account": account}), now)]
    else:
        rows = _profile_rows(profile_names(), now)
        rows.extend(_ad_hoc_rows(now))
        if account is not None:
            rows = [row for row in rows if row["account"] == account]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        where = config_path()
        config = (f"in {where}" if os.path.exists(where) else f"(no config file at {where})")
        click.echo(f"No profiles {config} and no saved logins: `keyturn login --help` tells how "
                   "to log in (with --issuer and --client-id, or a profile).", err=True)
        return
    if sys.stdout.isatty():
        _table(rows, now)
    else:
        click.echo("\n".join(_lines(rows, now)))
