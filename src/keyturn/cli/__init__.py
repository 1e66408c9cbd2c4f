"""The ``keyturn`` command line (click for parsing, rich for the spinner and tables).

The entry point is :func:`keyturn._fastpath.main`, which answers ``keyturn token`` from a valid
cache before anything here is imported; :func:`run` handles everything else. Exit codes (also in
docs/cli.md): see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["EXIT_CODES", "run"]

#: Exit status -> meaning. Scripts may rely on these.
EXIT_CODES = {
    0: "success",
    1: "any other keyturn error (store, invalid response, id_token validation)",
    2: "usage error: unknown command or option",
    3: "configuration error: profile, config file, arguments",
    4: "login required: run `keyturn login` (never prompted by `keyturn token`)",
    5: "the authorization server refused (OAuth error: access_denied, invalid_client, ...)",
    6: "network or discovery failure: the server could not be reached or described itself wrongly",
    130: "interrupted (Ctrl-C)",
}


def run(argv: Sequence[str]) -> int:
    """Run the command line on ``argv`` and return the exit status."""
    from .commands import main

    return main(list(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(sys.argv[1:]))
