"""The client credentials grant (RFC 6749 §4.4): a service account's own token."""

from __future__ import annotations

from ..protocol.grants import GRANT_CLIENT_CREDENTIALS
from ..token import Token
from .base import Grant, Source

__all__ = ["ClientCredentials"]


class ClientCredentials(Source):
    """A token for the client itself::

        source = ClientCredentials(issuer="https://id.example.org", client_id="batch",
                                   client_secret=os.environ["SECRET"], scope="api:read")
        source.get_access_token()
    """

    grant_type = GRANT_CLIENT_CREDENTIALS

    # No __init__ of its own: Source's takes the same arguments and wraps the secrets first; one
    # that only passed **kwargs on would hold the client secret in a plain dict of its frame.

    def _grant(self, previous: Token | None) -> Grant:
        # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included": each refresh is a new grant.
        return Grant(GRANT_CLIENT_CREDENTIALS, self._base_params())
