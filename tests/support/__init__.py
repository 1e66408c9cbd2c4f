"""Helpers and fixtures the tests share (the test provider, redis-server, Chromium, fault proxies, ...).

Nothing here is collected as a test; ``tests/conftest.py`` exports the suite-wide fixtures.
"""

#: ``serve_forever(poll_interval=)`` of the suite's threaded HTTP servers: how often they look for
#: ``shutdown()``. The standard library's 0.5 s would be paid by every test that stops one.
SERVE_POLL = 0.05
