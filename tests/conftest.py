import sys
from pathlib import Path

# tests/ is not a package: make tests/providerfixture.py importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from providerfixture import *  # noqa: F403  (fixtures: provider, fresh_stats)
from redisfixture import *  # noqa: F403  (fixtures: redis_server, redis_url)
