"""What the commands share: the exit code of an error, the source options and the profile they resolve to,
the "login required" failure and the ``keyturn login`` command a hint gives, the fast path's index
entry, and the time format (:mod:`.timefmt`).

A command fails by raising :class:`CommandFailed` (or letting a :class:`~keyturn.KeyturnError`
through); :func:`keyturn.cli.run` prints it as one ``keyturn: ...`` line on stderr and exits with
the status :func:`exit_code` gives (:mod:`.exitcodes`). No secret is ever printed except the access token that
``keyturn token`` exists to print.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._fastindex import remember as remember_in_index
from ..config import Profile, load_profile
from ..errors import ConfigError, DiscoveryError, KeyturnError, LoginRequired, OAuthError, TransportError
from ..paths import DEFAULT_LEEWAY
from ..registry import paired_login
from ..sources.base import Source
from ..sources.paired import paired_saved_login
from ..token import Token
from .exitcodes import CONFIG, FAILED, LOGIN_REQUIRED, NETWORK, REFUSED
from .timefmt import when

if TYPE_CHECKING:
    from ..sources.user_login import UserLogin

__all__ = [
    "CommandFailed",
    "exit_code",
    "given",
    "login_command",
    "login_label",
    "login_name",
    "login_required",
    "one_line",
    "other_login",
    "remember",
    "require_server_extra",
    "resolve",
    "saved_login_options",
    "source_options",
    "when",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The ad-hoc settings of a command line (``--issuer`` ...), as profile keyword arguments.
Given = Mapping[str, str | None]


class CommandFailed(Exception):
    """A command ends with this one-line message and exit status ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: KeyturnError) -> int:
    """The exit status of a command that ended with ``exc``."""
    if isinstance(exc, LoginRequired):
        return LOGIN_REQUIRED
    if isinstance(exc, ConfigError):
        return CONFIG
    if isinstance(exc, OAuthError):
        return REFUSED
    if isinstance(exc, (TransportError, DiscoveryError)):
        return NETWORK
    return FAILED


# -- the source a command works on ---------------------------------------------------------------

_FLOWS = "device, browser, client_credentials, refresh_token"
_PICKED = ("default: profile's grant; else the browser where one can be opened, the device flow "
           "over SSH or without a display")


def _options(func: F, scope_help: str, flow_help: str) -> F:
    for decorator in reversed([
        click.option("--profile", "-p", metavar="NAME", help="Profile in the keyturn config file."),
        click.option("--issuer", metavar="URL", help="Issuer (ad hoc, or overriding the profile)."),
        click.option("--client-id", metavar="ID", help="Client id (ad hoc or override)."),
        click.option("--scope", metavar="SCOPES", help=scope_help),
        click.option("--flow", metavar="FLOW", help=flow_help),
        _ACCOUNT,
    ]):
        func = decorator(func)
    return func


#: Where the settings of the options that every command takes without a parameter of its own
#: (``--account``, ``--device-authorization-endpoint``) wait for :func:`given`.
_EXTRA = "keyturn.settings"


def _setting(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def keep(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.meta.setdefault(_EXTRA, {})[key] = value
    return keep


_ACCOUNT = click.option(
    "--account", metavar="NAME", expose_value=False, callback=_setting("account"),
    help="A local name for one of several logins at one provider (ad hoc or override; part of "
         "which login it is, and sent as login_hint where the login takes one).")


def source_options(func: F) -> F:
    """``--profile`` and the ad-hoc settings that override it (or stand for a profile): the
    source ``keyturn login`` logs in with."""
    func = click.option(
        "--device-authorization-endpoint", metavar="URL", expose_value=False,
        callback=_setting("device_authorization_endpoint"),
        help="The device flow's endpoint, for a server whose metadata does not name it.")(func)
    return _options(func, "Space-separated scopes (ad hoc or override).",
                    f"{_FLOWS} ({_PICKED}).")


def saved_login_options(func: F) -> F:
    """:func:`source_options` for the commands that use a saved login (``token``, ``whoami``,
    ``logout``): the scope and the grant are part of the login's cache key, so ``--scope`` and
    ``--flow`` select which saved login the command is about, and their help says so."""
    return _options(
        func,
        "Space-separated scopes (ad hoc or override); selects the saved login made with these "
        "scopes (the scopes are part of which login it is).",
        f"{_FLOWS}; selects the saved login made with this flow (the flow is part of which "
        f"login it is; {_PICKED}).")


def given(issuer: str | None, client_id: str | None, scope: str | None,
          flow: str | None) -> dict[str, str | None]:
    """The :func:`source_options` of a command line as profile settings (``--flow`` is ``grant``;
    ``--account`` and ``--device-authorization-endpoint`` too, when given)."""
    ctx = click.get_current_context(silent=True)
    extra: dict[str, str] = ctx.meta.get(_EXTRA, {}) if ctx is not None else {}
    return {"issuer": issuer, "client_id": client_id, "scope": scope, "grant": flow, **extra}


def resolve(profile: str | None, settings: Given) -> Profile:
    """The profile a command line names, with its ad-hoc settings on top."""
    return load_profile(profile, overrides=settings)


def remember(prof: Profile, name: str | None, settings: Given, source: Source | UserLogin) -> None:
    """Let the next ``keyturn token`` with these arguments answer from the fast path."""
    store_file = prof.store_file()
    if store_file is None:
        return
    remember_in_index(name, {k: v for k, v in settings.items() if v is not None},
                      store_file=store_file, key=source.cache_key,
                      leeway=float(prof.kwargs.get("leeway", DEFAULT_LEEWAY)),
                      env=prof.secret_env, files=prof.secret_files)


def other_login(prof: Profile) -> tuple[Profile, Source, Token] | None:
    """The saved login of the other grant of the registry's browser/device pair, when the grant
    was not named (an interactive grant outside the pair has none)."""
    if not prof.chosen:
        return None
    # The one lookup UserLogin makes too (keyturn.sources.paired).
    found = paired_saved_login(prof.grant, lambda grant: prof.with_grant(grant).build(interactive=False))
    if found is None:
        return None
    source, token = found
    return prof.with_grant(source.grant_name or ""), source, token


def saved_logins(prof: Profile) -> list[tuple[Profile, Source, Token]]:
    """The saved logins ``prof`` stands for, as the store holds them (no refresh, no request):
    its own, and when the flow was picked by this machine, the other login of the pair too (the
    one :func:`other_login` would answer with). ``keyturn logout`` forgets them all, ``keyturn
    status`` shows the first."""
    profiles = [prof]
    grant = paired_login(prof.grant) if prof.chosen else None
    if grant is not None:
        profiles.append(prof.with_grant(grant))
    found = []
    for each in profiles:
        source = each.build(interactive=False)
        saved = source.saved_token()
        if saved is not None:
            found.append((each, source, saved))
    return found


#: The name :func:`keyturn.config.load_profile` gives the settings of a command line alone.
AD_HOC = "(ad hoc)"


def login_name(prof: Profile) -> str:
    """Which login a message is about: ``profile hpc`` (``profile hpc, account alice``), or for
    the settings of a command line alone (the profile :data:`AD_HOC`) ``https://issuer (client
    demo)`` (``https://issuer (client demo, account alice)``)."""
    account = prof.settings.get("account")
    if prof.name != AD_HOC:
        return f"profile {prof.name}" + (f", account {account}" if account else "")
    where = prof.settings.get("issuer") or prof.settings.get("token_endpoint") or "?"
    return (f"{where} (client {prof.settings.get('client_id') or '?'}"
            + (f", account {account})" if account else ")"))


def login_label(prof: Profile) -> str:
    """:func:`login_name` to follow a verb: `` (profile hpc)``, `` at https://issuer (client demo)``."""
    return f" ({login_name(prof)})" if prof.name != AD_HOC else f" at {login_name(prof)}"


#: The ad-hoc options of a command line, as (option, profile setting).
_OVERRIDES = (("--issuer", "issuer"), ("--client-id", "client_id"), ("--scope", "scope"),
              ("--flow", "grant"), ("--account", "account"),
              ("--device-authorization-endpoint", "device_authorization_endpoint"))


def login_command(prof: Profile, overrides: Given | None = None) -> str:
    """The ``keyturn login`` command line that logs in to ``prof`` again, shell-quoted: the
    ``--profile`` of a named profile (with the ``overrides`` the command line gave it: its
    ``--scope`` or ``--flow`` selected the login), the ``--issuer``/``--client-id`` (and
    ``--scope``, ``--flow``) of an ad-hoc one."""
    words = ["keyturn", "login"]
    if prof.name != AD_HOC:
        words += ["--profile", prof.name]
        for option, key in _OVERRIDES:
            value = (overrides or {}).get(key)
            if value:
                words += [option, value]
    else:
        settings = prof.settings
        if settings.get("issuer"):
            words += ["--issuer", str(settings["issuer"])]
        if settings.get("client_id"):
            words += ["--client-id", str(settings["client_id"])]
        scope = settings.get("scope")
        if scope:
            words += ["--scope", scope if isinstance(scope, str) else " ".join(scope)]
        if not prof.chosen:
            words += ["--flow", prof.grant]
        if settings.get("account"):
            words += ["--account", str(settings["account"])]
        if settings.get("device_authorization_endpoint"):
            # A server whose metadata does not name it: the login cannot start without it.
            words += ["--device-authorization-endpoint",
                      str(settings["device_authorization_endpoint"])]
    return shlex.join(words)


def login_required(prof: Profile, overrides: Given | None = None) -> CommandFailed:
    """What a silent command says when only a login can get a token (``overrides``: as for
    :func:`login_command`)."""
    return CommandFailed(
        f"login required for {login_name(prof)}: run `{login_command(prof, overrides)}`",
        LOGIN_REQUIRED)


def require_server_extra() -> None:
    """``serve``, ``demo`` and ``hash-password`` need the server's dependencies."""
    try:
        import starlette  # noqa: F401  (the server's one dependency that the CLI extra lacks)
    except ImportError:
        raise CommandFailed(
            "the authorization server needs the server extra: pip install 'keyturn[server]'", FAILED
        ) from None


# -- output ---------------------------------------------------------------------------------------

def one_line(message: str) -> str:
    """``message`` on one line (an error's text may hold newlines; stderr gets one line)."""
    return " ".join(message.split())
