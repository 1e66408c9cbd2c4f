"""The exit status of every ``keyturn`` command (docs/cli.md lists them too). Scripts rely on them.

Its own module, importing nothing: the click commands and the click-free server commands
(:mod:`.server_commands`, ``python -m keyturn.server``) exit with the same numbers.
"""

from __future__ import annotations

__all__ = ["CONFIG", "EXIT_CODES", "FAILED", "INTERRUPTED", "LOGIN_REQUIRED", "NETWORK", "REFUSED",
           "SUCCESS", "USAGE"]

SUCCESS = 0
FAILED = 1
USAGE = 2
CONFIG = 3
LOGIN_REQUIRED = 4
REFUSED = 5
NETWORK = 6
INTERRUPTED = 130

#: Exit status -> meaning.
EXIT_CODES = {
    SUCCESS: "success",
    FAILED: "any other keyturn error (store, invalid response, id_token validation)",
    USAGE: "usage error: unknown command or option",
    CONFIG: "configuration error: profile, config file, arguments",
    LOGIN_REQUIRED: "login required: run the `keyturn login` the message gives, with the same "
                    "--profile NAME or --issuer URL --client-id ID (never prompted by `keyturn token`)",
    REFUSED: "the authorization server refused (OAuth error: access_denied, invalid_client, ...)",
    NETWORK: "network or discovery failure: the server could not be reached or described itself "
             "wrongly",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
