"""Discovery and logout against django-oauth-toolkit, an independent Django-based provider run as
a real server (issue 11.4): its OpenID document omits the revocation endpoint that its RFC 8414
document at ``{issuer}/.well-known/oauth-authorization-server`` names, so only a discovery that
merges them can revoke at logout."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import oauth2_provider  # noqa: F401  (the test extra has it: missing, this fails, never a skip)
import pytest

from keyturn import ClientCredentials
from keyturn.protocol.metadata import discover
from keyturn.transport import HttpSettings, Transport
from tests.support.dotfixture import DotProvider, running_dot
from tests.support.mode import Mode


@pytest.fixture(scope="module")
def dot_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotProvider]:
    with running_dot(tmp_path_factory.mktemp("dot")) as dot:
        yield dot


def _works(dot: DotProvider, token: str) -> bool:
    """Whether DOT's own protected resource accepts the token."""
    response = httpx.get(dot.base + "/api/", headers={"Authorization": f"Bearer {token}"},
                         trust_env=False, timeout=30)
    assert response.status_code in (200, 403), response.text
    return response.status_code == 200


def test_its_documents_merged(dot_provider: DotProvider) -> None:
    dot = dot_provider
    transport = Transport(HttpSettings())
    try:
        oidc = transport.run(discover(dot.issuer, allow_http=True))
    finally:
        transport.close()
    # What the OpenID document names...
    assert oidc.userinfo_endpoint == dot.issuer + "/userinfo/"
    assert oidc.jwks_uri == dot.issuer + "/.well-known/jwks.json"
    # ...and what only the RFC 8414 one at the appended location does.
    assert oidc.revocation_endpoint == dot.issuer + "/revoke_token/"
    assert oidc.introspection_endpoint == dot.issuer + "/introspect/"
    assert oidc.locations == (dot.issuer + "/.well-known/openid-configuration",
                              dot.issuer + "/.well-known/oauth-authorization-server")
    assert "revocation_endpoint" not in httpx.get(
        dot.issuer + "/.well-known/openid-configuration", trust_env=False).json()


def test_client_credentials_then_logout_revokes_there(dot_provider: DotProvider, mode: Mode) -> None:
    dot = dot_provider
    source = ClientCredentials(issuer=dot.issuer, client_id=dot.client_id,
                               client_secret=dot.client_secret, store=None)
    token = mode.call(source.get_access_token, source.aget_access_token)
    assert _works(dot, token), dot.log_tail()
    outcome = mode.call(source.logout, source.alogout)
    assert outcome.revoked is True, (outcome, dot.log_tail())
    assert outcome.endpoint == dot.issuer + "/revoke_token/"
    assert not _works(dot, token)  # DOT revoked it


def test_revocation_endpoint_given_explicitly(dot_provider: DotProvider) -> None:
    # A token_endpoint-only source has no discovery: revocation_endpoint= names DOT's.
    dot = dot_provider
    source = ClientCredentials(token_endpoint=dot.issuer + "/token/", client_id=dot.client_id,
                               client_secret=dot.client_secret, store=None,
                               revocation_endpoint=dot.issuer + "/revoke_token/")
    token = source.get_access_token()
    assert _works(dot, token)
    assert source.logout().revoked is True
    assert not _works(dot, token)
