"""The suite-wide fixtures. ``tests`` is a package under the repository root, which pytest puts on
``sys.path`` (its default ``prepend`` import mode), so the helpers import as ``tests.support.…``."""

from tests.support.mode import mode  # noqa: F401  (fixture: each test runs sync, then async)
from tests.support.providerfixture import *  # noqa: F403  (fixtures: provider, fresh_stats)
from tests.support.redisfixture import *  # noqa: F403  (fixtures: redis_server, redis_url)
