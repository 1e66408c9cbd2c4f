"""The server tests' fixtures (defined in serverkit, where the tests also import helpers from)."""

from serverkit import server  # noqa: F401  (the fixture: the server on SQLite, then on Redis)
