"""django-oauth-toolkit, an independent Django-based OAuth 2.0 / OpenID provider, run as a real
server on 127.0.0.1 for keyturn's discovery and revocation tests (issue 11.4); see ``serve.py``
and the ``dot_provider`` fixture in :mod:`tests.support.dotfixture`."""
