"""No secret in a traceback rendered with its locals (issue 9, "Client-side security").

Every error path keyturn has is made to happen for real — against loopback HTTP servers that
answer what a broken or hostile provider answers, a closed port, a port that never answers, a
Redis URL with a password that cannot connect, constructors given bad arguments next to a secret
— and each exception is rendered as a person or a tool would see it: the standard library's
``TracebackException(capture_locals=True)`` (what pytest's ``--showlocals`` and Sentry show) and
rich's ``Traceback(show_locals=True)``, alone and chained as ``__cause__`` and ``__context__`` of a
caller's own error. The text must hold none of the secrets — the client secret, tokens, codes,
the private key's PEM lines, the Basic header's base64, the Redis password — and must show the
frames' locals at all (so that a test that finds nothing has looked).

Each error is provoked from :func:`tracebackcheck.capture`, whose frame holds no secret: the traceback starts
there, and every other frame in it is keyturn's (or httpx's, redis-py's) own.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import keyturn.transport as transport
from keyturn import (
    ClientCredentials,
    ConfigError,
    DeviceCode,
    InvalidClient,
    InvalidGrant,
    InvalidIdToken,
    InvalidResponse,
    JwtBearer,
    MemoryStore,
    OAuthError,
    RefreshToken,
    StoreError,
    TokenExchange,
    TransportError,
)
from keyturn.protocol.authcode import AuthorizationRequest, code_exchange_flow
from keyturn.protocol.client_auth import ClientAuth
from keyturn.protocol.idtoken import validate_id_token_flow
from keyturn.protocol.metadata import ServerMetadata
from keyturn.protocol.revocation import revocation_flow
from keyturn.protocol.userinfo import userinfo_flow
from keyturn.secret import Secret, SecretFields
from keyturn.server.clientauth import authenticate_client
from keyturn.server.config import ClientConfig
from keyturn.server.passwords import hash_password
from keyturn.stores.redis import RedisStore
from tests.support import SERVE_POLL
from tests.support.tracebackcheck import assert_hidden, capture, leaks


# Distinctive values, random but for a two-letter prefix: a hit in the rendered text (the secret,
# or any 12 characters of it) cannot be an accident, nor a word of the source code shown.
def _value(prefix: str) -> str:
    return prefix + "-" + secrets.token_urlsafe(27)


CLIENT_SECRET = _value("cs")
REFRESH_TOKEN = _value("rt")
ACCESS_TOKEN = _value("at")
NEW_REFRESH = _value("nr")
ID_SIGNATURE = _value("sg")
DEVICE_CODE = _value("dc")
AUTH_CODE = _value("ac")
SUBJECT_TOKEN = _value("st")
ACTOR_TOKEN = _value("ak")
ASSERTION = _value("as")
REDIS_PASSWORD = _value("rp")
SERVER_SECRET = _value("sv")
PROXY_PASSWORD = _value("pp")
CLIENT_ID = "svc-trace"


def _pem(curve: ec.EllipticCurve) -> str:
    return ec.generate_private_key(curve).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


PRIVATE_PEM = _pem(ec.SECP256R1())
#: secp256k1 loads, but has no default JWS algorithm: a ConfigError after the key was read.
ODD_CURVE_PEM = _pem(ec.SECP256K1())


def basic_value(client_id: str, secret: str) -> str:
    return base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def pem_lines(pem: str) -> list[str]:
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


#: Every secret of this module, by what it is (the failure message names them).
LABELS = {
    CLIENT_SECRET: "client secret", REFRESH_TOKEN: "refresh token", ACCESS_TOKEN: "access token",
    NEW_REFRESH: "rotated refresh token", ID_SIGNATURE: "id_token signature",
    DEVICE_CODE: "device code", AUTH_CODE: "authorization code", SUBJECT_TOKEN: "subject token",
    ACTOR_TOKEN: "actor token", ASSERTION: "JWT assertion", REDIS_PASSWORD: "Redis password",
    SERVER_SECRET: "server-side client secret", PROXY_PASSWORD: "proxy password",
    basic_value(CLIENT_ID, CLIENT_SECRET): "Basic header value",
    basic_value("server-client", SERVER_SECRET): "server-side Basic header value",
    **{line: "private key PEM line" for line in pem_lines(PRIVATE_PEM)},
    **{line: "private key PEM line (secp256k1)" for line in pem_lines(ODD_CURVE_PEM)},
}
SECRETS = list(LABELS)


def assert_no_secret(exc: BaseException, *extra: str, shows: str | None = None) -> None:
    assert_hidden(exc, [*SECRETS, *extra], LABELS, shows=shows)


# -- loopback servers ----------------------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]


class Canned:
    """A real HTTP server on 127.0.0.1 that answers each path with a fixed response."""

    def __init__(self, routes: dict[str, Answer]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.requests.append((self.path, dict(self.headers), body))
                status, headers, payload = outer.routes.get(
                    self.path.split("?")[0], (404, {}, b'{"error":"not_found"}'))
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[Canned]:
        thread = threading.Thread(target=self._server.serve_forever,
                                  kwargs={"poll_interval": SERVE_POLL}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=10)


def answer(status: int, body: Any, **headers: str) -> Answer:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return status, headers, payload


@pytest.fixture
def server() -> Iterator[Callable[[dict[str, Answer]], Canned]]:
    started: list[Any] = []

    def start(routes: dict[str, Answer]) -> Canned:
        canned = Canned(routes)
        context = canned.running()
        context.__enter__()
        started.append(context)
        return canned

    yield start
    for context in started:
        context.__exit__(None, None, None)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def invalid(error: str, status: int = 400) -> Answer:
    return answer(status, {"error": error, "error_description": "refused by the test server"})


# -- the token endpoint --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_wrong_client_secret(server, method):
    canned = server({"/token": invalid("invalid_client", 401)})
    source = ClientCredentials(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET, auth_method=method, store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidClient)
    # The request did carry the secret: the test is about where else it shows.
    _path, headers, body = canned.requests[0]
    assert CLIENT_SECRET in body.decode() or basic_value(CLIENT_ID, CLIENT_SECRET) in str(headers)
    assert_no_secret(exc, shows="Secret(sha256:")


def test_refused_refresh_token(server):
    canned = server({"/token": invalid("invalid_grant")})
    source = RefreshToken(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                          client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN,
                          store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidGrant)
    assert_no_secret(exc, shows="Secret(sha256:")


def test_private_key_jwt_refused(server):
    canned = server({"/token": invalid("invalid_client", 401)})
    source = ClientCredentials(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                               private_key=PRIVATE_PEM, store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidClient)
    assertion = dict(p.split("=", 1) for p in canned.requests[0][2].decode().split("&"))[
        "client_assertion"]
    # The assertion is a credential too (until it expires): neither it nor its signature shows.
    assert_no_secret(exc, assertion, assertion.rsplit(".", 1)[1])


def test_connection_refused(closed_port):
    source = RefreshToken(token_endpoint=f"http://127.0.0.1:{closed_port}/token",
                          client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                          refresh_token=REFRESH_TOKEN, store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, TransportError)
    assert_no_secret(exc)


def test_timeout(silent_port):
    source = RefreshToken(token_endpoint=f"http://127.0.0.1:{silent_port}/token",
                          client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                          auth_method="client_secret_post", refresh_token=REFRESH_TOKEN,
                          store=MemoryStore(), timeout=0.3)
    exc = capture(source.get_access_token)
    assert isinstance(exc, TransportError) and "timed out" in str(exc)
    assert_no_secret(exc)


def test_invalid_json_answer(server):
    canned = server({"/token": answer(200, b'{"access_token": "' + ACCESS_TOKEN.encode() + b'",')})
    source = RefreshToken(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                          client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN,
                          store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidResponse)
    assert_no_secret(exc)


def test_token_answer_refused_after_parsing(server):
    """A 200 that holds tokens but a broken expires_in: the parser had the tokens in hand."""
    body = {"access_token": ACCESS_TOKEN, "refresh_token": NEW_REFRESH, "token_type": "Bearer",
            "id_token": f"e30.e30.{ID_SIGNATURE}", "expires_in": "soon"}
    canned = server({"/token": answer(200, body)})
    source = RefreshToken(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                          refresh_token=REFRESH_TOKEN, store=MemoryStore())
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidResponse) and "expires_in" in str(exc)
    assert_no_secret(exc)


def test_token_exchange_refused(server):
    canned = server({"/token": invalid("invalid_request")})
    source = TokenExchange(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                           client_secret=CLIENT_SECRET, subject_token=SUBJECT_TOKEN,
                           actor_token=ACTOR_TOKEN,
                           actor_token_type="urn:ietf:params:oauth:token-type:access_token",
                           store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, OAuthError)
    assert_no_secret(exc)


def test_jwt_bearer_refused(server):
    canned = server({"/token": invalid("invalid_grant")})
    source = JwtBearer(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                       client_secret=CLIENT_SECRET, assertion=ASSERTION, store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidGrant)
    assert_no_secret(exc)


# -- the other endpoints ---------------------------------------------------------------------------------

def _driven(flow: Any) -> Callable[[], Any]:
    def drive() -> Any:
        with transport.HttpSettings(timeout=5).client() as client:
            return transport.run(flow, client)
    return drive


def test_device_authorization_answer_without_user_code(server):
    canned = server({"/device": answer(200, {"device_code": DEVICE_CODE, "expires_in": 600,
                                             "verification_uri": "http://127.0.0.1/d"})})
    source = DeviceCode(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                        client_secret=CLIENT_SECRET,
                        device_authorization_endpoint=canned.base + "/device",
                        interactive=True, prompt=lambda verification: None, store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, InvalidResponse) and "user_code" in str(exc)
    assert_no_secret(exc)


def test_device_poll_refused(server):
    canned = server({
        "/device": answer(200, {"device_code": DEVICE_CODE, "user_code": "BCDF-GHJK",
                                "expires_in": 600, "interval": 0.05,
                                "verification_uri": "http://127.0.0.1/d"}),
        "/token": invalid("access_denied"),
    })
    source = DeviceCode(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                        client_secret=CLIENT_SECRET,
                        device_authorization_endpoint=canned.base + "/device",
                        interactive=True, prompt=lambda verification: None, store=None)
    exc = capture(source.get_access_token)
    assert isinstance(exc, OAuthError) and exc.error == "access_denied"
    assert_no_secret(exc)


def test_code_exchange_refused(server):
    canned = server({"/token": invalid("invalid_grant")})
    request = AuthorizationRequest.create(
        authorization_endpoint=canned.base + "/authorize", client_id=CLIENT_ID,
        redirect_uri="http://127.0.0.1:1/callback", scope=("openid",))
    auth = ClientAuth.create(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    flow = code_exchange_flow(request, AUTH_CODE, token_endpoint=canned.base + "/token",
                              client_auth=auth, now=0.0)
    exc = capture(_driven(flow))
    assert isinstance(exc, InvalidGrant)
    assert_no_secret(exc, request.pkce.verifier, request.state)


def test_authorization_response_with_a_code_refused():
    request = AuthorizationRequest.create(
        authorization_endpoint="http://127.0.0.1:1/authorize", client_id=CLIENT_ID,
        redirect_uri="http://127.0.0.1:1/callback", scope=("openid",),
        issuer="http://127.0.0.1:1")
    query = Secret(f"code={AUTH_CODE}&state={request.state}&iss=http://evil.example")
    exc = capture(lambda: request.parse_response(query))
    assert isinstance(exc, InvalidResponse) and "mix-up" in str(exc)
    assert_no_secret(exc, request.state)


def test_userinfo_refused(server):
    canned = server({"/userinfo": answer(401, {}, **{
        "WWW-Authenticate": 'Bearer error="invalid_token"'})})
    flow = userinfo_flow(endpoint=canned.base + "/userinfo", access_token=Secret(ACCESS_TOKEN))
    exc = capture(_driven(flow))
    assert isinstance(exc, OAuthError) and exc.status == 401
    assert_no_secret(exc)


def test_revocation_refused(server):
    canned = server({"/revoke": invalid("invalid_client", 401)})
    auth = ClientAuth.create(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    flow = revocation_flow(endpoint=canned.base + "/revoke", token=Secret(REFRESH_TOKEN),
                           token_type_hint="refresh_token", client_auth=auth,
                           audience=canned.base + "/token", now=0.0)
    exc = capture(_driven(flow))
    assert isinstance(exc, InvalidClient)
    assert_no_secret(exc)


def test_id_token_refused():
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=").decode()
    id_token = f"{header}.e30.{ID_SIGNATURE}"
    metadata = ServerMetadata(issuer="http://127.0.0.1:1", jwks_uri="http://127.0.0.1:1/jwks")
    flow = validate_id_token_flow(Secret(id_token), metadata=metadata, client_id=CLIENT_ID,
                                  now=0.0)
    exc = capture(_driven(flow))
    assert isinstance(exc, InvalidIdToken) and "alg" in str(exc)
    assert_no_secret(exc)


# -- constructors: a ConfigError next to a secret ------------------------------------------------------

CONFIG_ERRORS: dict[str, Callable[[], Any]] = {
    "leeway next to client_secret": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, leeway=-1),
    "resource next to client_secret": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, resource="not-a-uri"),
    "resource next to private_key": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        private_key=PRIVATE_PEM, resource="not-a-uri"),
    "method without its key, next to a secret": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, auth_method="private_key_jwt"),
    "a key with no default algorithm": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        private_key=ODD_CURVE_PEM),
    "a private key that is not one": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        private_key=PRIVATE_PEM.replace("PRIVATE KEY", "NOT A KEY")),
    "a JWK that is not one": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        private_key={"kty": "EC", "crv": "P-256", "d": CLIENT_SECRET}),
    "issuer missing, next to a refresh token": lambda: RefreshToken(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH_TOKEN),
    "leeway next to a refresh token": lambda: RefreshToken(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        refresh_token=REFRESH_TOKEN, leeway=-5),
    "device endpoint missing, next to a secret": lambda: DeviceCode(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET),
    "actor without its type": lambda: TokenExchange(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, subject_token=SUBJECT_TOKEN, actor_token=ACTOR_TOKEN),
    "assertion key without a subject": lambda: JwtBearer(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET, assertion_key=PRIVATE_PEM, assertion_issuer="svc"),
    "both assertion kinds": lambda: JwtBearer(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        assertion=ASSERTION, assertion_key=PRIVATE_PEM),
    "leeway next to a proxy password": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        proxy=f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128", leeway=-1),
    "a proxy URL with a path, and a password": lambda: ClientCredentials(
        token_endpoint="http://127.0.0.1:1/token", client_id=CLIENT_ID,
        proxy=f"http://user:{PROXY_PASSWORD}@127.0.0.1:3128/path"),
    "redis lease next to a password": lambda: RedisStore(
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0", lease=0),
    "redis URL that is not one": lambda: RedisStore(
        f"redis://:{REDIS_PASSWORD}@127.0.0.1:notaport/0"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_config_error_next_to_a_secret(case):
    exc = capture(CONFIG_ERRORS[case])
    assert isinstance(exc, ConfigError), repr(exc)
    assert_no_secret(exc)


def test_config_error_of_a_profile_next_to_its_proxy_password(tmp_path):
    """A profile's proxy URL holds the proxy's password: the parsed file, the profile's table and
    the source's frames show it only as a tag."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
[profiles.hpc]
token_endpoint = "http://127.0.0.1:1/token"
client_id = "{CLIENT_ID}"
proxy = "http://user:{PROXY_PASSWORD}@127.0.0.1:3128"
leeway = -1
""")
    config.chmod(0o600)
    from keyturn.config import load_profile

    exc = capture(lambda: load_profile("hpc", path=str(config)).build())
    assert isinstance(exc, ConfigError) and "leeway" in str(exc), repr(exc)
    assert_no_secret(exc)


def test_a_proxy_password_in_a_config_file_others_can_read_is_refused(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f"""
[profiles.hpc]
token_endpoint = "http://127.0.0.1:1/token"
client_id = "{CLIENT_ID}"
proxy = "http://user:{PROXY_PASSWORD}@127.0.0.1:3128"
""")
    config.chmod(0o644)
    from keyturn.config import load_profile

    exc = capture(lambda: load_profile("hpc", path=str(config)))
    assert isinstance(exc, ConfigError) and "chmod 600" in str(exc), repr(exc)
    assert_no_secret(exc)
    # Without a password the proxy URL is no secret: the same file loads.
    config.write_text(config.read_text().replace(f"user:{PROXY_PASSWORD}@", ""))
    assert load_profile("hpc", path=str(config)).kwargs["proxy"].reveal() == "http://127.0.0.1:3128"


def test_config_error_of_a_profile_next_to_its_secrets(tmp_path, monkeypatch):
    """A profile whose second secret cannot be resolved, after its first one was: the config
    loader's frames hold the parsed file (an inline secret) and the resolved one."""
    config = tmp_path / "config.toml"
    config.write_text(f"""
[profiles.svc]
token_endpoint = "http://127.0.0.1:1/token"
client_id = "{CLIENT_ID}"
client_secret_env = "TRACE_TEST_SECRET"
refresh_token = "{REFRESH_TOKEN}"
private_key_env = "TRACE_TEST_UNSET"
""")
    config.chmod(0o600)
    monkeypatch.setenv("TRACE_TEST_SECRET", CLIENT_SECRET)
    monkeypatch.delenv("TRACE_TEST_UNSET", raising=False)
    from keyturn.config import load_profile

    exc = capture(lambda: load_profile("svc", path=str(config)))
    assert isinstance(exc, ConfigError) and "TRACE_TEST_UNSET" in str(exc)
    assert_no_secret(exc)


# -- stores ---------------------------------------------------------------------------------------------

def test_redis_with_a_password_that_cannot_connect(server, closed_port):
    canned = server({"/token": answer(200, {"access_token": ACCESS_TOKEN, "expires_in": 300})})
    store = RedisStore(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port}/0", socket_timeout=0.5)
    source = ClientCredentials(token_endpoint=canned.base + "/token", client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET, store=store)
    exc = capture(source.get_access_token)
    assert isinstance(exc, StoreError) and "unreachable" in str(exc)
    assert_no_secret(exc)


def test_redis_url_with_a_password_in_the_query(closed_port):
    store = RedisStore(f"redis://127.0.0.1:{closed_port}/0?password={REDIS_PASSWORD}",
                       socket_timeout=0.5)
    exc = capture(lambda: store.load("some key"))
    assert isinstance(exc, StoreError)
    assert_no_secret(exc)


# -- the server: a client's Basic header ----------------------------------------------------------------

def _server_clients() -> dict[str, ClientConfig]:
    return {"server-client": ClientConfig(client_id="server-client", name="trace test",
                                          grants=("client_credentials",), scopes=(),
                                          secret_hash=hash_password("the-right-one"))}


def _authenticate(how: str) -> Any:
    """The server's check of one wrong client secret, sent ``how``. The header and the form are
    passed as expressions, as the server's endpoint passes them: this frame holds neither."""
    clients = _server_clients()
    if how == "basic":
        return authenticate_client(clients, "Basic " + basic_value("server-client", SERVER_SECRET),
                                   SecretFields())
    if how == "post":
        return authenticate_client(clients, None, SecretFields(
            {"client_id": "server-client", "client_secret": SERVER_SECRET}))
    if how == "basic twice":
        return authenticate_client(clients, "Basic " + basic_value("server-client", SERVER_SECRET),
                                   SecretFields({"client_secret": SERVER_SECRET}))
    return authenticate_client(clients, "Basic " + SERVER_SECRET + "!", SecretFields())


@pytest.mark.parametrize("how", ["basic", "post", "basic twice", "not base64"])
def test_server_refuses_a_client_secret(how):
    exc = capture(lambda: _authenticate(how))
    # The server raises the client's error classes (keyturn.errors), rendered the same way.
    assert isinstance(exc, OAuthError) and exc.error in ("invalid_client", "invalid_request")
    assert_no_secret(exc)


# -- the value types ---------------------------------------------------------------------------------------

def test_secret_and_fields_show_tags_only():
    fields = SecretFields({"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                           "resource": ["https://api.example"]})
    fields["Authorization"] = "Basic " + basic_value(CLIENT_ID, CLIENT_SECRET)
    assert dict(fields)["refresh_token"] == REFRESH_TOKEN  # what httpx is given
    assert fields == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                      "resource": ["https://api.example"],
                      "Authorization": "Basic " + basic_value(CLIENT_ID, CLIENT_SECRET)}
    for text in (repr(fields), str(fields), repr(Secret(CLIENT_SECRET)), f"{Secret(ACCESS_TOKEN)}"):
        assert not leaks(text, SECRETS, LABELS), text
    assert "refresh_token" in repr(fields) and "https://api.example" in repr(fields)
    assert Secret(REFRESH_TOKEN) == Secret(REFRESH_TOKEN) != Secret(ACCESS_TOKEN)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(Secret(CLIENT_SECRET))
