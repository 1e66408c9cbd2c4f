"""A real OpenID provider (panva ``oidc-provider`` 9.13.3 on Node) for keyturn's tests.

Plain helpers plus pytest fixtures. ``tests/conftest.py`` does
``from tests.support.providerfixture import *``, which exposes the fixtures ``provider`` (session scope,
default client set) and ``fresh_stats`` (function scope, stats reset).

The Node side lives in ``tests/provider/`` (``provider.mjs``, pinned by ``package-lock.json``).
Every provider runs on 127.0.0.1 with a random port; its issuer is ``http://127.0.0.1:PORT``.
Test-control endpoints under ``/__test/`` count token requests, inject failures, tune the
device flow and mint refresh tokens; see the ``Provider`` methods.

Client dicts (``make_client`` / ``default_clients``) are oidc-provider client metadata plus the
optional key ``"private_jwk"`` (private JWK dict, kept on the Python side; the provider only
receives the public JWKS) and the extra per-client properties ``access_token_ttl``,
``refresh_token_ttl`` (seconds) and ``force_refresh_rotation`` (bool).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

__all__ = [
    "DEVICE_CODE_GRANT",
    "PROVIDER_DIR",
    "ClientInfo",
    "Provider",
    "ProviderError",
    "approve_device_code",
    "complete_authorization",
    "default_clients",
    "ensure_node_modules",
    "fresh_stats",
    "make_client",
    "provider",
    "start_provider",
]

TESTS_DIR = Path(__file__).resolve().parents[1]
PROVIDER_DIR = TESTS_DIR / "provider"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

READY_TIMEOUT = 20.0
NPM_TIMEOUT = 600.0
CONTROL_TIMEOUT = 30.0  # generous: 2-core shared machines


class ProviderError(RuntimeError):
    """The test provider could not be installed, started or controlled."""


# --------------------------------------------------------------------------------------------
# node_modules
# --------------------------------------------------------------------------------------------

_npm_lock = threading.Lock()


def _node_modules_fresh() -> bool:
    installed = PROVIDER_DIR / "node_modules" / ".package-lock.json"
    lock = PROVIDER_DIR / "package-lock.json"
    marker = PROVIDER_DIR / "node_modules" / "oidc-provider" / "package.json"
    if not (installed.is_file() and marker.is_file()):
        return False
    return installed.stat().st_mtime >= lock.stat().st_mtime


def ensure_node_modules() -> None:
    """Run ``npm ci`` in tests/provider unless node_modules is present and up to date.

    Fast path (a few stat calls) when node_modules is newer than package-lock.json. Safe to call
    from several processes at once (file lock), e.g. under pytest-xdist.
    """
    if _node_modules_fresh():
        return
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise ProviderError(
            "the test identity provider needs Node.js (>= 20) and npm on PATH "
            f"(node={node!r}, npm={npm!r}); install them or skip the integration tests"
        )
    key = hashlib.sha256(str(PROVIDER_DIR).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"keyturn-provider-npm-{key}.lock"
    with _npm_lock, open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if _node_modules_fresh():  # another process did it meanwhile
                return
            try:
                proc = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=PROVIDER_DIR,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ProviderError(f"`npm ci` in {PROVIDER_DIR} timed out after {NPM_TIMEOUT}s") from exc
            if proc.returncode != 0 or not _node_modules_fresh():
                raise ProviderError(
                    f"`npm ci --no-audit --no-fund` in {PROVIDER_DIR} failed "
                    f"(exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
                )
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------

_KEY_ALGS = {"RS256", "ES256", "EdDSA", "Ed25519"}


def _generate_private_jwk(alg: str, kid: str) -> dict[str, Any]:
    params: Any = {"kid": kid, "alg": alg, "use": "sig"}
    if alg == "RS256":
        key: Any = RSAKey.generate_key(2048, parameters=params, private=True)
    elif alg == "ES256":
        key = ECKey.generate_key("P-256", parameters=params, private=True)
    elif alg in ("EdDSA", "Ed25519"):
        key = OKPKey.generate_key("Ed25519", parameters=params, private=True)
    else:
        raise ValueError(f"unsupported private_key_jwt alg {alg!r}")
    return dict(key.as_dict(private=True))


def _public_jwk(private_jwk: dict[str, Any]) -> dict[str, Any]:
    private_members = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
    return {k: v for k, v in private_jwk.items() if k not in private_members}


def make_client(
    client_id: str,
    auth_method: str = "client_secret_basic",
    *,
    grant_types: list[str] | None = None,
    signing_alg: str | None = None,
    access_token_ttl: int | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    """Build a client dict for ``start_provider`` with a fresh secret or key pair.

    ``auth_method`` is the ``token_endpoint_auth_method``: ``client_secret_basic``,
    ``client_secret_post``, ``client_secret_jwt`` (HS256 by default), ``private_key_jwt``
    (``signing_alg`` RS256/ES256/EdDSA; ES256 by default) or ``none``. Confidential clients get
    ``client_credentials`` (and no redirect URIs / response types) unless overridden; extra
    keyword arguments are copied into the metadata verbatim.
    """
    client: dict[str, Any] = {"client_id": client_id, "token_endpoint_auth_method": auth_method}
    if auth_method == "none":
        client.update(
            application_type="native",
            grant_types=grant_types or ["authorization_code", "refresh_token"],
            response_types=["code"],
            redirect_uris=["http://127.0.0.1/callback"],
        )
    else:
        client.update(
            grant_types=grant_types or ["client_credentials"],
            response_types=[],
            redirect_uris=[],
        )
        if auth_method in ("client_secret_basic", "client_secret_post", "client_secret_jwt"):
            # 48 random bytes -> 64 chars: long enough for HS256/384/512 on either side.
            client["client_secret"] = secrets.token_urlsafe(48)
        if auth_method == "client_secret_jwt":
            client["token_endpoint_auth_signing_alg"] = signing_alg or "HS256"
        elif auth_method == "private_key_jwt":
            alg = signing_alg or "ES256"
            if alg not in _KEY_ALGS:
                raise ValueError(f"unsupported private_key_jwt alg {alg!r}")
            client["token_endpoint_auth_signing_alg"] = alg
            client["private_jwk"] = _generate_private_jwk(alg, f"{client_id}-{alg.lower()}")
    if grant_types is not None:
        client["grant_types"] = list(grant_types)
    if access_token_ttl is not None:
        client["access_token_ttl"] = access_token_ttl
    client.update(metadata)
    return client


def default_clients() -> list[dict[str, Any]]:
    """The default client set (fresh secrets and keys on every call)."""
    cc, rt = "client_credentials", "refresh_token"
    return [
        make_client("basic", "client_secret_basic", grant_types=[cc, rt]),
        make_client("post", "client_secret_post", grant_types=[cc, rt]),
        make_client("secret-jwt", "client_secret_jwt", grant_types=[cc, rt], signing_alg="HS256"),
        make_client("pk-rs256", "private_key_jwt", grant_types=[cc, rt], signing_alg="RS256"),
        make_client("pk-es256", "private_key_jwt", grant_types=[cc, rt], signing_alg="ES256"),
        make_client("pk-eddsa", "private_key_jwt", grant_types=[cc, rt], signing_alg="EdDSA"),
        make_client("short", "client_secret_basic", grant_types=[cc], access_token_ttl=2),
        make_client(
            "public",
            "none",
            grant_types=["authorization_code", rt, DEVICE_CODE_GRANT],
            access_token_ttl=3,
        ),
        # Rotates like "public" (a public client's refresh token, on every use) with the default
        # one-hour access tokens: for sharing one rotating refresh token among late-comers, where
        # a 3 s token is refreshed again by whoever adopts it after half its life (refresh_margin).
        make_client("public-hour", "none", grant_types=["authorization_code", rt]),
        make_client("confidential-device", "client_secret_basic", grant_types=[cc, DEVICE_CODE_GRANT, rt]),
    ]


@dataclass
class ClientInfo:
    """What a test needs to authenticate as one registered client."""

    client_id: str
    client_secret: str | None
    private_key: dict[str, Any] | None  # private JWK (with kid) for private_key_jwt
    auth_method: str
    access_token_ttl: int | None
    signing_alg: str | None = None
    grant_types: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # what the provider received

    @property
    def basic_auth(self) -> tuple[str, str]:
        """(client_id, secret) for httpx ``auth=``; RFC 6749 form-encoding is not applied."""
        assert self.client_secret is not None, f"{self.client_id} has no client secret"
        return (self.client_id, self.client_secret)

    def client_assertion(
        self,
        audience: str,
        *,
        jti: str | None = None,
        lifetime: int = 60,
        extra_claims: dict[str, Any] | None = None,
    ) -> str:
        """A signed RFC 7523 client assertion (iss = sub = client_id) for JWT client auth."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": audience,
            "jti": jti or uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
        }
        claims.update(extra_claims or {})
        if self.auth_method == "client_secret_jwt":
            assert self.client_secret is not None
            alg = self.signing_alg or "HS256"
            key: Any = OctKey.import_key(self.client_secret)
            header: dict[str, Any] = {"alg": alg}
        elif self.auth_method == "private_key_jwt":
            assert self.private_key is not None
            alg = self.signing_alg or self.private_key["alg"]
            kty = self.private_key["kty"]
            key_cls: Any = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}[kty]
            key = key_cls.import_key(self.private_key)
            header = {"alg": alg, "kid": self.private_key["kid"]}
        else:
            raise ValueError(f"{self.client_id} uses {self.auth_method}, not a JWT method")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags "EdDSA" as deprecated (RFC 9864)
            return jwt.encode(header, claims, key, algorithms=[alg])


# --------------------------------------------------------------------------------------------
# Provider process
# --------------------------------------------------------------------------------------------

_running: set[Provider] = set()
_running_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        running = list(_running)
    for p in running:
        with contextlib.suppress(Exception):
            p.stop()


class Provider:
    """A running test provider (one Node process)."""

    def __init__(
        self,
        *,
        issuer: str,
        process: subprocess.Popen[bytes],
        clients: dict[str, ClientInfo],
        log_path: Path,
        config_path: Path,
        startup_seconds: float,
        verify: Any = True,
        url: str | None = None,
    ) -> None:
        self.issuer = issuer
        #: Where the Node server listens: the issuer, unless it was started with another issuer
        #: (a proxy in front of it); the test-control endpoints are always reached here.
        self.url = url or issuer
        self.process = process
        self.pid = process.pid
        self.clients = clients
        self.log_path = log_path
        self.config_path = config_path
        self.startup_seconds = startup_seconds
        self._http = httpx.Client(base_url=self.url, trust_env=False, timeout=CONTROL_TIMEOUT,
                                  verify=_verify_context(verify))
        self._discovery: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<Provider {self.issuer} pid={self.pid}>"

    # -- endpoints ---------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            r = self._http.get("/.well-known/openid-configuration")
            r.raise_for_status()
            self._discovery = r.json()
        return self._discovery

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def device_authorization_endpoint(self) -> str:
        return f"{self.issuer}/device/auth"

    @property
    def introspection_endpoint(self) -> str:
        return f"{self.issuer}/token/introspection"

    @property
    def revocation_endpoint(self) -> str:
        return f"{self.issuer}/token/revocation"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    # -- control -----------------------------------------------------------------------------
    def _control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self._http.request(method, f"/__test/{path}", json=body)
        if r.status_code != 200:
            raise ProviderError(f"{method} /__test/{path} -> {r.status_code}: {r.text}\n{self.log_tail()}")
        return r.json()

    def stats(self, *, log: bool = False) -> dict[str, Any]:
        """``{"token_requests": {client_id: {grant_type: n}}, "total": n}``.

        With ``log=True`` also ``"log"``: one ``{"t", "client_id", "grant_type", "status"}`` per
        token request (``t`` = server epoch seconds, float), in arrival order.
        """
        return dict(self._control("GET", "stats" + ("?log=1" if log else "")))

    def token_requests(self, client_id: str, grant_type: str | None = None) -> int:
        per_client = self.stats()["token_requests"].get(client_id, {})
        if grant_type is None:
            return int(sum(per_client.values()))
        return int(per_client.get(grant_type, 0))

    def reset_stats(self) -> None:
        """Clear the counters and any pending ``fail_next`` (device knobs are kept)."""
        self._control("POST", "reset")

    def reset_all(self) -> None:
        """Like ``reset_stats`` and also clear the device knobs."""
        self._control("POST", "reset?all=1")

    def mint_refresh_token(
        self,
        client_id: str,
        scope: str = "openid offline_access api:read",
        account_id: str = "alice",
        *,
        resource: str | None = None,
        expires_in: int | None = None,
    ) -> str:
        """A real refresh token (and Grant) made through the provider's own models."""
        body: dict[str, Any] = {"client_id": client_id, "scope": scope, "account_id": account_id}
        if resource is not None:
            body["resource"] = resource
        if expires_in is not None:
            body["expires_in"] = expires_in
        return str(self._control("POST", "mint_refresh_token", body)["refresh_token"])

    def set_device_knobs(self, interval: int | None = 1, slow_down_times: int = 0) -> None:
        """Add ``interval`` to device authorization responses (None: omit it, the stock
        behaviour) and answer ``slow_down`` to the next ``slow_down_times`` device-code polls."""
        self._control("POST", "device_knobs", {"interval": interval, "slow_down_times": slow_down_times})

    def fail_next(
        self,
        status: int = 503,
        count: int = 1,
        *,
        body: dict[str, Any] | None = None,
        retry_after: int | str | None = None,
    ) -> None:
        """The next ``count`` token requests get HTTP ``status`` with a JSON error body
        (``temporarily_unavailable`` for 5xx unless ``body`` is given). They are still counted."""
        payload: dict[str, Any] = {"status": status, "count": count}
        if body is not None:
            payload["body"] = body
        if retry_after is not None:
            payload["retry_after"] = retry_after
        self._control("POST", "fail_next", payload)

    # -- lifecycle ---------------------------------------------------------------------------
    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no provider log)"
        return "provider log tail:\n" + "\n".join(lines[-n:])

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the Node process (idempotent)."""
        with _running_lock:
            _running.discard(self)
        with contextlib.suppress(Exception):
            self._http.close()
        _terminate(self.process)


def _verify_context(verify: Any) -> Any:
    if isinstance(verify, str):
        import ssl

        return ssl.create_default_context(cafile=verify)
    return verify


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=5)


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start_provider(
    clients: list[dict[str, Any]] | None = None,
    tmp_dir: str | os.PathLike[str] | None = None,
    *,
    refresh_token_ttl: int | None = None,
    device_code_ttl: int | None = None,
    timeout: float = READY_TIMEOUT,
    jwt_bearer_keys: dict[str, dict[str, Any]] | None = None,
    tls: dict[str, str] | None = None,
    issuer: str | None = None,
) -> Provider:
    """Start a provider with ``clients`` (default: ``default_clients()``) and wait until ready.

    ``jwt_bearer_keys`` ({issuer: public JWK}) enables the test-only RFC 7523 grant's issuers.
    ``tls`` ({"cert", "key", "client_ca", "ca"}: PEM paths) serves https, asking clients for a
    certificate signed by ``client_ca`` (RFC 8705 tls_client_auth); ``ca`` verifies the server.
    Config, ready file and log (``provider.log``, stdout+stderr) go to ``tmp_dir`` (a fresh
    temporary directory when None). ``issuer`` makes the provider advertise another issuer URL
    than the one it listens on (a fault proxy's in front of it: every endpoint it names then goes
    through the proxy); ``Provider.url`` is where it listens. Raises ``ProviderError`` with the log
    tail on failure.
    """
    ensure_node_modules()
    node = shutil.which("node")
    if not node:
        raise ProviderError("the test identity provider needs Node.js (>= 20) on PATH")
    work = Path(tmp_dir) if tmp_dir is not None else Path(tempfile.mkdtemp(prefix="keyturn-provider-"))
    work.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    config_path = work / f"provider-{tag}.json"
    ready_path = work / f"provider-{tag}.ready"
    log_path = work / f"provider-{tag}.log"

    specs = default_clients() if clients is None else clients
    infos: dict[str, ClientInfo] = {}
    registered: list[dict[str, Any]] = []
    for spec in specs:
        meta = {k: v for k, v in spec.items() if k != "private_jwk"}
        private_jwk = spec.get("private_jwk")
        if private_jwk is not None and "jwks" not in meta:
            meta["jwks"] = {"keys": [_public_jwk(private_jwk)]}
        registered.append(meta)
        cid = meta["client_id"]
        if cid in infos:
            raise ValueError(f"duplicate client_id {cid!r}")
        infos[cid] = ClientInfo(
            client_id=cid,
            client_secret=meta.get("client_secret"),
            private_key=private_jwk,
            auth_method=meta.get("token_endpoint_auth_method", "client_secret_basic"),
            access_token_ttl=meta.get("access_token_ttl"),
            signing_alg=meta.get("token_endpoint_auth_signing_alg"),
            grant_types=list(meta.get("grant_types", ["authorization_code"])),
            metadata=meta,
        )

    config: dict[str, Any] = {"clients": registered}
    if refresh_token_ttl is not None:
        config["refresh_token_ttl"] = refresh_token_ttl
    if device_code_ttl is not None:
        config["device_code_ttl"] = device_code_ttl
    if jwt_bearer_keys is not None:
        # Test-only jwt-bearer grant: {assertion issuer: public JWK} the provider trusts.
        config["jwt_bearer_keys"] = jwt_bearer_keys
    if tls is not None:
        config["tls"] = {k: tls[k] for k in ("cert", "key", "client_ca")}
    if issuer is not None:
        config["issuer"] = issuer
    config_path.write_text(json.dumps(config, indent=1))

    started = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT), str(config_path), str(ready_path)],
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = started + timeout
        delay = 0.01
        while not ready_path.exists():
            if proc.poll() is not None:
                raise ProviderError(
                    f"test provider exited with code {proc.returncode} before it was ready\n"
                    f"log {log_path}:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"test provider not ready after {timeout}s\nlog {log_path}:\n{_tail(log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)
        ready = json.loads(ready_path.read_text())
    except BaseException:
        _terminate(proc)
        raise
    p = Provider(
        issuer=ready["issuer"],
        process=proc,
        clients=infos,
        log_path=log_path,
        config_path=config_path,
        startup_seconds=time.monotonic() - started,
        verify=tls["ca"] if tls is not None else True,
        url=ready.get("url"),
    )
    with _running_lock:
        _running.add(p)
    return p


# --------------------------------------------------------------------------------------------
# Device approval through the dev interaction pages
# --------------------------------------------------------------------------------------------


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.title = ""
        self._in_title = False
        self._form: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._form = {
                "id": a.get("id", ""),
                "action": a.get("action", ""),
                "method": a.get("method", "get"),
                "fields": {},
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            if a.get("type", "text") in ("checkbox", "radio") and "checked" not in a:
                return
            self._form["fields"][a["name"]] = a.get("value", "")
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


class _Browser:
    """Follows redirects by hand (stopping at the first URL outside the issuer, e.g. a
    loopback redirect_uri where nothing listens) and counts HTTP requests."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self.http = httpx.Client(trust_env=False, follow_redirects=False, timeout=CONTROL_TIMEOUT)
        self.requests = 0
        self.left_to: str | None = None  # first redirect target outside the issuer

    def __enter__(self) -> _Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def go(self, method: str, url: str, data: dict[str, str] | None = None) -> httpx.Response:
        r = self.http.request(method, url, data=data)
        self.requests += 1
        for _ in range(20):
            if not r.is_redirect:
                return r
            location = urljoin(str(r.url), r.headers["location"])
            if not location.startswith(self.provider.issuer + "/"):
                self.left_to = location
                return r
            r = self.http.get(location)
            self.requests += 1
        raise ProviderError(f"too many redirects from {url}")

    def fail(self, r: httpx.Response, why: str) -> ProviderError:
        return ProviderError(
            f"{why}: {r.request.method} {r.url} -> {r.status_code}: {r.text[:2000]}\n"
            f"{self.provider.log_tail()}"
        )


def _next_form(browser: _Browser, r: httpx.Response) -> tuple[_FormParser, dict[str, Any] | None]:
    page = _FormParser()
    page.feed(r.text)
    return page, next((f for f in page.forms if f["action"]), None)


def _submit(
    browser: _Browser, r: httpx.Response, form: dict[str, Any], fields: dict[str, str]
) -> httpx.Response:
    url = urljoin(str(r.url), form["action"])
    if form["method"].lower() == "post":
        return browser.go("POST", url, fields)
    return browser.go("GET", url + ("&" if "?" in url else "?") + urlencode(fields))


def _fill_interaction(fields: dict[str, str], login: str, password: str) -> dict[str, str]:
    if fields.get("prompt") == "login" or "login" in fields:
        fields["login"] = login
        fields["password"] = password
    return fields


def approve_device_code(
    provider: Provider,
    verification_uri_complete_or_user_code: str,
    login: str = "alice",
    *,
    password: str = "secret",
    abort: bool = False,
    max_steps: int = 20,
) -> int:
    """Approve (or with ``abort=True`` deny at the confirm page) a pending device authorization
    as user ``login``, driving the provider's dev pages over HTTP with one cookie jar
    (GET /device -> user code -> confirm -> login -> consent -> "Sign-in Success").
    Returns the number of HTTP requests made. Raises ``ProviderError`` on an unexpected page.
    """
    target = verification_uri_complete_or_user_code
    user_code = None
    if not target.startswith(("http://", "https://")):
        user_code, target = target, f"{provider.issuer}/device"
    with _Browser(provider) as browser:
        r = browser.go("GET", target)
        for _ in range(max_steps):
            page, form = _next_form(browser, r)
            if r.status_code == 200 and "Sign-in Success" in page.title:
                return browser.requests
            if r.status_code != 200 or form is None:
                raise browser.fail(r, "unexpected device approval page")
            fields = dict(form["fields"])
            if form["id"] == "op.deviceInputForm":
                if not fields.get("user_code"):
                    if user_code is None:
                        raise browser.fail(r, "device input page without a user code")
                    fields["user_code"] = user_code
            elif form["id"] == "op.deviceConfirmForm" and abort:
                fields["abort"] = "yes"
                r = _submit(browser, r, form, fields)
                return browser.requests
            _fill_interaction(fields, login, password)
            r = _submit(browser, r, form, fields)
    raise ProviderError(f"device approval did not finish within {max_steps} steps; last page {r.url}")


def complete_authorization(
    provider: Provider,
    authorization_url: str,
    login: str = "alice",
    *,
    password: str = "secret",
    max_steps: int = 20,
) -> str:
    """Log in and consent for an authorization request (a full ``/auth?...`` URL) through the
    dev pages and return the final redirect URL (``redirect_uri?code=...&state=...&iss=...``
    or with ``error=...``). The redirect target itself is not requested, so a loopback
    redirect_uri needs no listener.
    """
    with _Browser(provider) as browser:
        r = browser.go("GET", authorization_url)
        for _ in range(max_steps):
            if browser.left_to is not None:
                return browser.left_to
            _page, form = _next_form(browser, r)
            if r.status_code != 200 or form is None:
                raise browser.fail(r, "unexpected authorization page")
            r = _submit(browser, r, form, _fill_interaction(dict(form["fields"]), login, password))
    raise ProviderError(f"authorization did not finish within {max_steps} steps; last page {r.url}")


# --------------------------------------------------------------------------------------------
# pytest fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    """A session-wide test provider with ``default_clients()``."""
    p = start_provider(None, tmp_path_factory.mktemp("provider"))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def fresh_stats(provider: Provider) -> Iterator[Provider]:
    """The session provider with token-request counters (and pending failures) cleared."""
    provider.reset_stats()
    yield provider
