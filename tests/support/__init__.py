"""Helpers and fixtures the tests share (the test provider, redis-server, Chromium, fault proxies, ...).

Nothing here is collected as a test; ``tests/conftest.py`` exports the suite-wide fixtures.
"""
