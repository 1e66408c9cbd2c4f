"""The ``keyturn`` command line (click for parsing, rich for the spinner and tables).

The entry point is :func:`keyturn._fastpath.main`, which answers ``keyturn token`` from a valid
cache before anything here is imported; :func:`run` handles everything else. One module per
command (:mod:`.login`, :mod:`.token`, :mod:`.logout`, :mod:`.status`, :mod:`.whoami`,
:mod:`.serve`, :mod:`.demo`, :mod:`.hash_password`), each defining ``command``; what they share is
in :mod:`.common` and the exit codes in :mod:`.exitcodes` (also in docs/cli.md). The server's
commands without click (``python -m keyturn.server``) are :mod:`.server_commands`, and the demo's
walk-through is :mod:`.walkthrough`.

Importing this package imports nothing heavy: click and the commands are imported by
:func:`group`, so the click-free modules here work without the CLI extra.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Not ``typing``: nothing here is worth its import before a command runs; mypy reads this name too.
TYPE_CHECKING = False

if TYPE_CHECKING:
    import click

__all__ = ["group", "run"]


def group() -> click.Group:
    """The ``keyturn`` click group, with every command."""
    import click

    from . import demo, hash_password, login, logout, serve, status, token, whoami

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="keyturn")
    def keyturn() -> None:
        """keyturn: OAuth 2.0 / OpenID Connect tokens for scripts, SDKs and curl."""

    for module in (login, token, logout, status, whoami, serve, demo, hash_password):
        keyturn.add_command(module.command)
    return keyturn


def run(argv: Sequence[str]) -> int:
    """Run the command line on ``argv`` and return the exit status."""
    try:
        import click
        import rich  # noqa: F401  (the spinner and the status table)
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.stderr.write(f"keyturn: the command line needs {exc.name}: pip install 'keyturn[cli]'\n")
        return 1

    from ..errors import KeyturnError
    from .common import CommandFailed, exit_code, one_line
    from .exitcodes import FAILED, INTERRUPTED, SUCCESS, USAGE

    try:
        # Outside standalone mode click returns the code of a click.exceptions.Exit (serve and
        # demo end that way) instead of raising it.
        code = group().main(args=list(argv), prog_name="keyturn", standalone_mode=False)
    except CommandFailed as exc:
        click.echo(f"keyturn: {one_line(str(exc))}", err=True)
        return exc.code
    except KeyturnError as exc:
        click.echo(f"keyturn: {one_line(str(exc))}", err=True)
        return exit_code(exc)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return USAGE if isinstance(exc, click.UsageError) else FAILED
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("keyturn: interrupted", err=True)
        return INTERRUPTED
    return code if isinstance(code, int) else SUCCESS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))
