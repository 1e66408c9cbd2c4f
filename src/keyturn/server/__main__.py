"""``python -m keyturn.server serve|demo|hash-password``: the commands live in :mod:`keyturn.cli`
(argparse there, no click: this works without the CLI extra)."""

import sys

from ..cli.server_commands import main

sys.exit(main())
