"""``python -m keyturn``: the same entry point as the ``keyturn`` command."""

import sys

from ._fastpath import main

sys.exit(main())
