"""keyturn's test suite, a package: its modules import each other as ``tests.…`` (no ``sys.path`` edits).

``unit/`` mirrors ``src/keyturn/``; ``integration/``, ``e2e/`` and ``server/`` run real components;
``support/`` holds the helpers and fixtures they share.
"""
