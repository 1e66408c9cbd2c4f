"""The client credentials grant (RFC 6749 §4.4): a service account's own token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..secret import conceal_arguments
from ..token import Token
from .base import Grant, Source

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .options import SourceOptions

__all__ = ["ClientCredentials"]


class ClientCredentials(Source):
    """A token for the client itself::

        source = ClientCredentials(issuer="https://id.example.org", client_id="batch",
                                   client_secret=os.environ["SECRET"], scope="api:read")
        source.get_access_token()
    """

    grant_name = "client_credentials"

    def __init__(self, **options: Unpack[SourceOptions]) -> None:
        conceal_arguments(options)  # first: this frame shows in a ConfigError's traceback
        super().__init__(**options)

    def _grant(self, previous: Token | None) -> Grant:
        # RFC 6749 §4.4.3: "A refresh token SHOULD NOT be included": each refresh is a new grant.
        return Grant(self.grant_type, self._base_params())
