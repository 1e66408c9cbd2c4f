"""The commands of ``keyturn``: login, token, logout, status, whoami, serve, demo.

Every command finds its source through :mod:`keyturn.config` (``--profile``, or the ad-hoc
``--issuer/--client-id/--scope/--flow``). Errors end the command with one ``keyturn: ...`` line on
stderr and the exit status of :data:`keyturn.cli.EXIT_CODES`; no secret is ever printed except the
access token that ``keyturn token`` exists to print.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from .._fastpath import remember, remembered_ad_hoc, render
from ..config import INTERACTIVE_GRANTS, Profile, load_profile, profile_names
from ..errors import (
    ConfigError,
    DiscoveryError,
    KeyturnError,
    LoginRequired,
    OAuthError,
    TransportError,
)
from ..protocol.device import DeviceVerification
from ..sources.base import Source
from ..token import Token

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


class CommandFailed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _source_options(func: F) -> F:
    for decorator in reversed([
        click.option("--profile", "-p", metavar="NAME", help="Profile in the keyturn config file."),
        click.option("--issuer", metavar="URL", help="Issuer (ad hoc, or overriding the profile)."),
        click.option("--client-id", metavar="ID", help="Client id (ad hoc or override)."),
        click.option("--scope", metavar="SCOPES", help="Space-separated scopes (ad hoc or override)."),
        click.option("--flow", metavar="FLOW",
                     help="device, browser, client_credentials, refresh_token (default: profile's "
                          "grant; else the browser where one can be opened, the device flow "
                          "over SSH or without a display)."),
    ]):
        func = decorator(func)
    return func


def _profile(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
             flow: str | None) -> Profile:
    overrides = {"issuer": issuer, "client_id": client_id, "scope": scope, "grant": flow}
    return load_profile(profile, overrides=overrides)


def _remember(profile: Profile, name: str | None, overrides: dict[str, str | None],
              source: Source) -> None:
    """Let the next ``keyturn token`` with these arguments answer from the fast path."""
    store_file = profile.store_file()
    if store_file is None:
        return
    remember(name, {k: v for k, v in overrides.items() if v is not None}, store_file=store_file,
             key=source.cache.key, leeway=float(profile.kwargs.get("leeway", 60.0)),
             env=profile.secret_env, files=profile.secret_files)


def _other_login(prof: Profile) -> tuple[Profile, Source, Token] | None:
    """The saved login of the other interactive grant, when the grant was not named."""
    if not prof.chosen or prof.grant not in INTERACTIVE_GRANTS:
        return None
    (grant,) = INTERACTIVE_GRANTS - {prof.grant}
    other = prof.with_grant(grant)
    source = other.build(interactive=False)
    try:
        return other, source, source.get_token()
    except LoginRequired:
        return None


def _hint(profile: Profile) -> str:
    return "keyturn login" + ("" if profile.name == "(ad hoc)" else f" --profile {profile.name}")


def _stored(source: Source) -> Token | None:
    cache = source.cache
    return cache.store.load(cache.key)


def _when(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "-"
    left = timestamp - now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
    if left <= 0:
        return f"{stamp} (passed)"
    if left < 3600:
        return f"{stamp} (in {int(left // 60)} min {int(left % 60)} s)"
    if left < 2 * 86400:
        return f"{stamp} (in {left / 3600:.1f} h)"
    return f"{stamp} (in {left / 86400:.1f} days)"


# -- the spinner while a person approves ----------------------------------------------------------

class _ApprovalWait:
    """What the person is told to do (the device prompt, or that a browser was opened), then a
    spinner with the time left to do it (terminals only)."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def prompt(self, verification: DeviceVerification) -> None:
        from ..interactive.prompt import default_prompt

        default_prompt(verification)
        self._wait("Waiting for approval...",
                   verification.expires_at or time.time() + verification.expires_in)

    #: Seconds the person has in the browser (the source's login_timeout).
    login_timeout: float = 300.0

    def open_browser(self, url: str) -> bool:
        from ..interactive.browser import open_browser

        if not open_browser(url):
            return False  # the source prints the URL itself
        # The URL holds no secret (the PKCE verifier stays in this process).
        sys.stderr.write(f"Opened a browser to sign in; if none appeared, open {url}\n")
        sys.stderr.flush()
        self._wait("Waiting for the browser sign-in...", time.time() + self.login_timeout)
        return True

    def _wait(self, text: str, deadline: float) -> None:
        if not sys.stderr.isatty():
            sys.stderr.write(f"{text}\n")
            sys.stderr.flush()
            return
        self._thread = threading.Thread(target=self._spin, args=(text, deadline), daemon=True)
        self._thread.start()

    def _spin(self, text: str, deadline: float) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        with console.status("") as status:
            while not self._stop.is_set():
                left = max(0, int(deadline - time.time()))
                status.update(f"{text} {left // 60}:{left % 60:02d} left (Ctrl-C to cancel)")
                self._stop.wait(0.5)

    def done(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


# -- commands -------------------------------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="keyturn")
def cli() -> None:
    """keyturn: OAuth 2.0 / OpenID Connect tokens for scripts, SDKs and curl."""


@cli.command()
@_source_options
@click.option("--min-valid", type=float, default=0.0, metavar="SECONDS",
              help="Refresh first when the token has less than this left.")
@click.option("--header", "output", flag_value="header", help="Print 'Authorization: Bearer ...'.")
@click.option("--json", "output", flag_value="json", help="Print a JSON object.")
@click.option("--exec-credential", "output", flag_value="exec-credential",
              help="Print a kubectl ExecCredential (client.authentication.k8s.io/v1).")
def token(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
          flow: str | None, min_valid: float, output: str | None) -> None:
    """Print a valid access token (never interactive)."""
    prof = _profile(profile, issuer, client_id, scope, flow)
    source = prof.build(interactive=False)
    try:
        current = source.get_token()
    except LoginRequired:
        # A flow picked by this machine's environment (no --flow, no grant in the profile): the
        # person may have logged in with the other one (the device flow over SSH, the browser at
        # the desk), and that login is as good.
        other = _other_login(prof)
        if other is None:
            raise CommandFailed(f"login required for profile {prof.name}: run `{_hint(prof)}`",
                                4) from None
        prof, source, current = other
    left = current.expires_in(time.time())
    if min_valid > 0 and left is not None and left < min_valid:
        source.invalidate(current.access_token)
        try:
            current = source.get_token()
        except LoginRequired:
            raise CommandFailed(f"login required for profile {prof.name}: run `{_hint(prof)}`",
                                4) from None
    _remember(prof, profile, {"issuer": issuer, "client_id": client_id, "scope": scope,
                              "grant": flow}, source)
    click.echo(render(current.to_record(), output or "plain", time.time()))


@cli.command()
@_source_options
@click.option("--force", is_flag=True, help="Log in again even when a saved login exists.")
def login(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
          flow: str | None, force: bool) -> None:
    """Log in (device code or browser) and save the tokens for later silent use."""
    prof = _profile(profile, issuer, client_id, scope, flow)
    wait = _ApprovalWait()
    extra: dict[str, Any] = {"interactive": True}
    if prof.grant == "device_code":
        extra["prompt"] = wait.prompt
    elif prof.grant == "authorization_code":
        extra["open_browser"] = wait.open_browser
    source = prof.build(**extra)
    wait.login_timeout = float(getattr(source, "login_timeout", wait.login_timeout))
    if force:
        source.cache.forget()
    try:
        got = source.get_token()
    finally:
        wait.done()
    _remember(prof, profile, {"issuer": issuer, "client_id": client_id, "scope": scope,
                              "grant": flow}, source)
    who = got.claims.get("preferred_username") or got.claims.get("email") or got.claims.get("sub")
    click.echo(f"Logged in{f' as {who}' if who else ''} (profile {prof.name}); "
               f"access token valid until {_when(got.expires_at, time.time())}.", err=True)


@cli.command()
@_source_options
def logout(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
           flow: str | None) -> None:
    """Forget the saved tokens and revoke them at the server (RFC 7009)."""
    prof = _profile(profile, issuer, client_id, scope, flow)
    source = prof.build(interactive=False)
    had = _stored(source) is not None
    source.logout()
    click.echo(f"Logged out (profile {prof.name})." if had else
               f"No saved tokens for profile {prof.name}.", err=True)


def _status_row(prof: Profile, now: float) -> dict[str, Any]:
    source = prof.build(interactive=False)
    saved = _stored(source)
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
            key = prof.build(interactive=False).cache.key
        except KeyturnError:
            continue  # a command line that no longer resolves (a secret's variable is unset)
        if key in seen:
            continue
        seen.add(key)
        row = _status_row(prof, now)
        if row["logged_in"]:
            rows.append(row)
    return rows


@cli.command()
@click.option("--profile", "-p", metavar="NAME", help="Only this profile (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(profile: str | None, as_json: bool) -> None:
    """Show each profile's saved login: token validity, refresh token, when a re-login is due."""
    names = [profile] if profile else profile_names()
    now = time.time()
    rows = [_status_row(load_profile(name), now) for name in names]
    if not profile:
        rows.extend(_ad_hoc_rows(now))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No profiles and no saved logins: see `keyturn --help` and docs/cli.md.",
                   err=True)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="keyturn profiles")
    for column in ("profile", "grant", "issuer", "access token", "refresh token", "re-login due"):
        table.add_column(column)
    for row in rows:
        if not row["logged_in"]:
            access = "none (log in)"
        elif row["access_token_valid"]:
            access = "valid until " + _when(row["expires_at"], now)
        else:
            access = "expired (refreshed on next use)" if row["refresh_token"] else "expired"
        due = _when(row["relogin_due_at"], now) if row["relogin_due_at"] else (
            "unknown" if row["refresh_token"] else "-")
        table.add_row(row["profile"], row["grant"], str(row["issuer"] or ""), access,
                      "yes" if row["refresh_token"] else "no", due)
    Console(soft_wrap=True).print(table)


@cli.command()
@_source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def whoami(profile: str | None, issuer: str | None, client_id: str | None, scope: str | None,
           flow: str | None, as_json: bool) -> None:
    """Show who the saved login is: the id_token's claims, and userinfo when the server has it."""
    prof = _profile(profile, issuer, client_id, scope, flow)
    source = prof.build(interactive=False)
    try:
        got = source.get_token()
    except LoginRequired:
        raise CommandFailed(f"login required for profile {prof.name}: run `{_hint(prof)}`",
                            4) from None
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


def _server_commands() -> Any:
    try:
        import starlette  # noqa: F401  (the server's one dependency that the CLI extra lacks)

        from ..server import cli_entry
    except ImportError:
        raise CommandFailed(
            "the authorization server needs the server extra: pip install 'keyturn[server]'", 1
        ) from None
    return cli_entry


@cli.command()
@click.option("--config", "config_file", metavar="FILE",
              help="Server configuration (TOML; default: the demo configuration).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, type=int, show_default=True, help="0 takes a free port.")
@click.option("--data-dir", metavar="DIR", help="Where SQLite and the signing keys live.")
@click.option("--cert", metavar="PEM", help="Serve TLS with this certificate chain.")
@click.option("--key", metavar="PEM", help="... and this private key.")
@click.option("--forwarded-allow-ips", metavar="IPS",
              help="Reverse proxies whose X-Forwarded-* headers are believed (comma-separated).")
@click.option("--path", "issuer_path", default="", metavar="/REALM",
              help="Serve under this path: the issuer becomes https://host/REALM.")
@click.option("--redis", "redis_url", metavar="URL",
              help="Keep all state in Redis, for several replicas (redis://host:6379/0).")
def serve(config_file: str | None, host: str, port: int, data_dir: str | None, cert: str | None,
          key: str | None, forwarded_allow_ips: str | None, issuer_path: str,
          redis_url: str | None) -> None:
    """Run the RFC 8628 device authorization server (the first stdout line is its issuer URL)."""
    code = _server_commands().serve_command(
        config=config_file, host=host, port=port, data_dir=data_dir, cert=cert, key=key,
        forwarded_allow_ips=forwarded_allow_ips, path=issuer_path, redis=redis_url)
    raise click.exceptions.Exit(code)


@cli.command()
@click.option("--auto-approve/--no-auto-approve", default=None,
              help="Let keyturn approve in the verification page itself (default: when stdin is "
                   "not a terminal; on a terminal, Enter does it).")
def demo(auto_approve: bool | None) -> None:
    """Walk through a device login against an in-process demo server."""
    raise click.exceptions.Exit(_server_commands().demo_command(auto_approve))


@cli.command("hash-password")
def hash_password() -> None:
    """Print the scrypt hash of a password, for a server configuration file."""
    raise click.exceptions.Exit(_server_commands().hash_password_command())


# -- running ------------------------------------------------------------------------------------

def _code_for(exc: KeyturnError) -> int:
    if isinstance(exc, LoginRequired):
        return 4
    if isinstance(exc, ConfigError):
        return 3
    if isinstance(exc, OAuthError):
        return 5
    if isinstance(exc, (TransportError, DiscoveryError)):
        return 6
    return 1


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: Sequence[str]) -> int:
    try:
        # Outside standalone mode click returns the code of a click.exceptions.Exit (serve and
        # demo end that way) instead of raising it.
        code = cli.main(args=list(argv), prog_name="keyturn", standalone_mode=False)
    except CommandFailed as exc:
        click.echo(f"keyturn: {_one_line(str(exc))}", err=True)
        return exc.code
    except KeyturnError as exc:
        click.echo(f"keyturn: {_one_line(str(exc))}", err=True)
        return _code_for(exc)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else 1
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("keyturn: interrupted", err=True)
        return 130
    return code if isinstance(code, int) else 0
