"""``python -m keyturn.server serve|demo|hash-password``."""

import sys

from .cli_entry import main

sys.exit(main())
