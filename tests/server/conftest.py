"""The server tests' fixtures (defined in tests.support.serverkit, which the tests import helpers from)."""

from tests.support.serverkit import server  # noqa: F401  (the fixture: the server on SQLite, then on Redis)
