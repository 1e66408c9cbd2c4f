"""keyturn and its peers, each set up the way its documentation tells users to.

Every adapter is small on purpose. For each library it answers three questions:

* cached path: the call a user makes to get a valid token (or that the library makes on every
  request), once a token is cached;
* herd: the object shared by many threads / tasks / processes, and the call each of them makes;
* plugin: the ``auth=`` object (or session/client subclass) that puts the token on each request.

All token traffic goes to the same local oidc-provider. Client ``basic`` (client_secret_basic) is
used where the library sends Basic auth; client ``post`` (client_secret_post) where the library
always sends the secret in the body (MSAL, google-auth); the provider rejects a mismatch.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import _infra  # first: it puts the repository root on sys.path for tests.support
from tests.support.providerfixture import default_clients, make_client

SCOPE = "api:read"

PEER_PACKAGES = ["keyturn", "httpx", "requests", "authlib", "requests-oauthlib", "oauthlib", "msal",
                 "msal-extensions", "google-auth", "httpx-auth", "trustme"]


def versions() -> dict[str, str]:
    out = {}
    for name in PEER_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def bench_clients() -> list[dict[str, Any]]:
    """The provider's default clients plus one confidential client whose refresh tokens rotate
    on every use (so google-auth, which needs a client secret, can take part in that herd)."""
    return [*default_clients(),
            make_client("rotating", "client_secret_post", grant_types=["refresh_token"],
                        force_refresh_rotation=True, access_token_ttl=60)]


@dataclass
class Env:
    provider: Any
    work: Path
    tls: _infra.Tls
    proxy_url: str  # https://127.0.0.1:P/realm, served from the provider by tls_proxy.mjs
    fast_url: str  # the fast endpoint of the plugin-overhead benchmark
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def token_endpoint(self) -> str:
        return self.provider.token_endpoint

    @property
    def proxy_token_endpoint(self) -> str:
        return f"{self.proxy_url}/token"

    def secret(self, client_id: str) -> str:
        return str(self.provider.clients[client_id].client_secret)

    def tmpdir(self, prefix: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self.work))

    def on_close(self, fn: Callable[[], Any]) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        for fn in reversed(self._closers):
            with contextlib.suppress(Exception):
                fn()
        self._closers.clear()


def _requests_session(verify: Any = True) -> Any:
    import requests

    session = requests.Session()
    # REQUESTS_CA_BUNDLE is set on these machines and would override `verify` (interop notes).
    session.trust_env = False
    session.verify = verify
    return session


def _httpx_client(**kwargs: Any) -> Any:
    import httpx

    return httpx.Client(trust_env=False, **kwargs)


# ------------------------------------------------------------------------------------------------
# keyturn
# ------------------------------------------------------------------------------------------------


_SSL_CONTEXT: Any = None


def shared_ssl_context() -> Any:
    """One ssl.SSLContext built ahead of time (building one loads the CA bundle: tens of ms)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import ssl

        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


def keyturn_cc(env: Env, store: str = "memory", *, via_proxy: bool = False,
               prebuilt_ssl: bool = False) -> Any:
    import keyturn

    chosen = keyturn.MemoryStore() if store == "memory" else keyturn.FileStore(env.tmpdir("kt-file-"))
    verify: Any = str(env.tls.ca_pem) if via_proxy else True
    if prebuilt_ssl:
        verify = shared_ssl_context()
    source = keyturn.ClientCredentials(
        token_endpoint=env.proxy_token_endpoint if via_proxy else env.token_endpoint,
        client_id="basic", client_secret=env.secret("basic"), scope=SCOPE, store=chosen,
        verify=verify,
    )
    env.on_close(source.close)
    return source


def keyturn_rt(env: Env, refresh_token: str, client_id: str = "post", store: str = "memory") -> Any:
    import keyturn

    chosen = keyturn.MemoryStore() if store == "memory" else keyturn.FileStore(env.tmpdir("kt-file-"))
    source = keyturn.RefreshToken(
        token_endpoint=env.token_endpoint, client_id=client_id, client_secret=env.secret(client_id),
        auth_method="client_secret_post", refresh_token=refresh_token, store=chosen,
    )
    env.on_close(source.close)
    return source


# ------------------------------------------------------------------------------------------------
# authlib: OAuth2Client (an httpx.Client) with grant_type="client_credentials". Its docs: call
# fetch_token() once; every request then runs ensure_active_token(), which fetches a new token
# when the current one is expired (leeway 60 s).
# ------------------------------------------------------------------------------------------------


def authlib_client(env: Env, *, fetch: bool = True) -> Any:
    from authlib.integrations.httpx_client import OAuth2Client

    client = OAuth2Client(
        client_id="basic", client_secret=env.secret("basic"), scope=SCOPE,
        token_endpoint=env.token_endpoint, grant_type="client_credentials", trust_env=False,
    )
    env.on_close(client.close)
    if fetch:
        client.fetch_token()
    else:
        # A herd starts from a token that has expired: authlib has no "no token yet" path (a
        # request without a token raises MissingTokenError), so this is its cold state.
        client.token = expired_token_dict()
    return client


def authlib_async_client(env: Env) -> Any:
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    client = AsyncOAuth2Client(
        client_id="basic", client_secret=env.secret("basic"), scope=SCOPE,
        token_endpoint=env.token_endpoint, grant_type="client_credentials", trust_env=False,
    )
    client.token = expired_token_dict()
    return client


def authlib_get_token(client: Any) -> str:
    """What a user of authlib calls to get a valid token (what client.request() does first)."""
    client.ensure_active_token(client.token)
    return str(client.token["access_token"])


def expired_token_dict() -> dict[str, Any]:
    return {"access_token": "expired", "token_type": "Bearer", "expires_at": int(time.time()) - 1}


# ------------------------------------------------------------------------------------------------
# requests-oauthlib: OAuth2Session(client=BackendApplicationClient). Its docs: fetch_token() once;
# every request runs oauthlib's Client.add_token(), which raises TokenExpiredError once the token
# expired; for client credentials there is no auto-refresh, the docs say to catch that and call
# fetch_token() again. OAUTHLIB_INSECURE_TRANSPORT=1 (set by run.py) lets it use loopback http.
# ------------------------------------------------------------------------------------------------


def roauthlib_session(env: Env, *, fetch: bool = True) -> Any:
    from oauthlib.oauth2 import BackendApplicationClient
    from requests_oauthlib import OAuth2Session

    session = OAuth2Session(client=BackendApplicationClient(client_id="basic"), scope=[SCOPE])
    session.trust_env = False
    env.on_close(session.close)
    if fetch:
        roauthlib_fetch(env, session)
    else:
        session.token = expired_token_dict()
    return session


def roauthlib_fetch(env: Env, session: Any) -> Any:
    return session.fetch_token(token_url=env.token_endpoint, client_id="basic",
                               client_secret=env.secret("basic"))


def roauthlib_add_token(session: Any, url: str) -> str:
    """The token step of OAuth2Session.request(): expiry check plus the Authorization header."""
    _url, headers, _body = session._client.add_token(url, http_method="GET", body=None, headers={})
    return str(headers["Authorization"])


def roauthlib_get_token(env: Env, session: Any, url: str) -> str:
    """The documented pattern: on TokenExpiredError, fetch_token() again."""
    from oauthlib.oauth2 import TokenExpiredError

    try:
        return roauthlib_add_token(session, url)
    except TokenExpiredError:
        roauthlib_fetch(env, session)
        return roauthlib_add_token(session, url)


# ------------------------------------------------------------------------------------------------
# MSAL: ConfidentialClientApplication.acquire_token_for_client(), which looks in its token cache
# first (MSAL >= 1.23). It needs https and an issuer with a path: it talks to the provider through
# tls_proxy.mjs (https://127.0.0.1:P/realm), with a requests session that trusts the trustme CA.
# ------------------------------------------------------------------------------------------------


def msal_app(env: Env, token_cache: Any = None) -> Any:
    import msal

    session = _requests_session(verify=str(env.tls.ca_pem))
    env.on_close(session.close)
    return msal.ConfidentialClientApplication(
        "post", client_credential=env.secret("post"), oidc_authority=env.proxy_url,
        http_client=session, token_cache=token_cache,
    )


def msal_get_token(app: Any) -> str:
    result = app.acquire_token_for_client(scopes=[SCOPE])
    if "access_token" not in result:
        raise RuntimeError(f"MSAL: {result.get('error')}: {result.get('error_description')}")
    return str(result["access_token"])


# ------------------------------------------------------------------------------------------------
# google-auth: google.oauth2.credentials.Credentials with a refresh token and token_uri. Its
# transports (AuthorizedSession, ...) call credentials.before_request() on every request; a user
# who wants the token checks credentials.valid and calls refresh(Request()).
# ------------------------------------------------------------------------------------------------


def google_credentials(env: Env, refresh_token: str, client_id: str = "post") -> tuple[Any, Any]:
    import google.auth.transport.requests
    import google.oauth2.credentials

    session = _requests_session()
    env.on_close(session.close)
    request = google.auth.transport.requests.Request(session=session)
    credentials = google.oauth2.credentials.Credentials(
        token=None, refresh_token=refresh_token, token_uri=env.token_endpoint,
        client_id=client_id, client_secret=env.secret(client_id),
    )
    return credentials, request


def google_get_token(credentials: Any, request: Any) -> str:
    if not credentials.valid:
        credentials.refresh(request)
    return str(credentials.token)


def google_before_request(credentials: Any, request: Any, url: str) -> str:
    headers: dict[str, str] = {}
    credentials.before_request(request, "GET", url, headers)
    return headers["authorization"]


# ------------------------------------------------------------------------------------------------
# httpx-auth: OAuth2ClientCredentials, an httpx auth= object. Tokens live in the process-wide
# OAuth2.token_cache (a TokenMemoryCache, or a JsonTokenFileCache shared through a file).
# ------------------------------------------------------------------------------------------------


def httpx_auth_cc(env: Env) -> Any:
    import httpx_auth

    client = _httpx_client()
    env.on_close(client.close)
    return httpx_auth.OAuth2ClientCredentials(
        env.token_endpoint, client_id="basic", client_secret=env.secret("basic"), scope=SCOPE,
        client=client,
    )


def httpx_auth_reset() -> None:
    import httpx_auth

    httpx_auth.OAuth2.token_cache = httpx_auth.TokenMemoryCache()


def httpx_auth_get_token(auth: Any, request: Any) -> str:
    """httpx-auth's per-request path (its users never call anything else): the auth flow's first
    step, which takes the token from the cache (fetching if needed) and sets the header."""
    flow = auth.auth_flow(request)
    return str(next(flow).headers["Authorization"])


async def httpx_auth_aget_token(auth: Any, request: Any) -> str:
    """What an httpx.AsyncClient runs: the default Auth.async_auth_flow, which drives the sync
    auth_flow (httpx-auth has no async token request)."""
    flow = auth.async_auth_flow(request)
    sent = await flow.__anext__()
    await flow.aclose()
    return str(sent.headers["Authorization"])
