"""The suite-wide fixtures. ``tests`` is a package under the repository root, which pytest puts on
``sys.path`` (its default ``prepend`` import mode), so the helpers import as ``tests.support.…``."""

import os

import pytest

from tests.support.browserfixture import close_session_chromium
from tests.support.mode import mode  # noqa: F401  (fixture: each test runs sync, then async)
from tests.support.providerfixture import *  # noqa: F403  (fixtures: provider, fresh_stats)
from tests.support.redisfixture import *  # noqa: F403  (fixtures: redis_server, redis_url)

# keyturn honours the proxy variables (docs/proxies.md), and every server of this suite listens on
# 127.0.0.1: a machine whose environment names a proxy would send the suite's requests, and those
# of the CLI it starts, through that proxy. The proxy tests set the variables they need themselves.
for _name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
    for _variable in (_name, _name.upper()):
        os.environ.pop(_variable, None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # One Chromium serves the session (tests/support/browserfixture.py): closed once, here.
    close_session_chromium()
