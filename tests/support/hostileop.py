"""A loopback OpenID provider that signs whatever claims a test chooses (fault injection).

The suite's npm oidc-provider always says ``email_verified: true`` and never drops a key; a lax
or hostile provider does neither. This one answers discovery, ``/auth`` (straight back to the
redirect URI with a code, the ``state`` and RFC 9207's ``iss``), ``/token`` (an RS256 id_token
holding :attr:`HostileProvider.claims` and the request's ``nonce``) and ``/jwks`` (the keys of
:attr:`HostileProvider.published`; the id_token is signed with :attr:`HostileProvider.signing`,
published or not: an attacker holding a key the provider has dropped). With
:attr:`HostileProvider.drip` set, every answer sends its headers and then one byte per
``drip`` seconds (an upstream that never trips a read timeout).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwk, jwt

__all__ = ["HostileProvider"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # presses arrive together (socketserver's default is 5)


class HostileProvider:
    """Start with :meth:`start`; :meth:`stop` ends it."""

    def __init__(self, *, client_id: str = "c") -> None:
        self.client_id = client_id
        self.keys = {kid: jwk.RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig",
                                                                     "alg": "RS256"})
                     for kid in ("k1", "k2")}
        self.published: list[str] = ["k1"]
        self.signing = "k1"
        self.claims: dict[str, Any] = {"sub": "someone"}
        self.drip: float | None = None
        self.requests: dict[str, int] = {}
        #: The (host, port) of every connection a request of keyturn's came on (not /auth,
        #: the browser's), and how many connections are open now.
        self.peers: set[tuple[str, int]] = set()
        self.open_connections = 0
        self._lock = threading.Lock()
        self._codes: dict[str, str] = {}
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HostileProvider:
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self.drip = None
        self._server.shutdown()
        self._server.server_close()

    def _document(self) -> dict[str, Any]:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/auth",
                "token_endpoint": f"{base}/token", "jwks_uri": f"{base}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "authorization_response_iss_parameter_supported": True}

    def _id_token(self, nonce: str) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.client_id, "iat": now, "exp": now + 300,
                   "nonce": nonce, **self.claims}
        return jwt.encode({"alg": "RS256", "kid": self.signing}, payload, self.keys[self.signing])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        op = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: a client's pool reuses a connection

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with op._lock:
                    op.open_connections += 1
                try:
                    super().handle()
                except OSError:
                    pass  # keyturn gave up on a dripping answer
                finally:
                    with op._lock:
                        op.open_connections -= 1

            def _seen(self, path: str) -> None:
                with op._lock:
                    op.requests[path] = op.requests.get(path, 0) + 1
                    if path != "/auth":
                        op.peers.add((self.client_address[0], self.client_address[1]))

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                drip = op.drip
                if drip is None:
                    self.wfile.write(body)
                    return
                for byte in body:  # never quiet long enough for a read timeout
                    time.sleep(drip)
                    if op.drip is None:
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def _json(self, data: object) -> None:
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                self._seen(url.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/.well-known/openid-configuration":
                    self._json(op._document())
                elif url.path == "/jwks":
                    self._json({"keys": [op.keys[kid].as_dict(private=False)
                                         for kid in op.published]})
                elif url.path == "/auth":
                    code = secrets.token_urlsafe(16)
                    op._codes[code] = query["nonce"]
                    back = query["redirect_uri"] + "?" + urlencode(
                        {"code": code, "state": query["state"], "iss": op.issuer})
                    self._send(302, b"", {"Location": back})
                else:
                    self._send(404, b"", {})

            def do_POST(self) -> None:
                self._seen(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                nonce = op._codes.pop(form.get("code", ""), None)
                if nonce is None:
                    self._send(400, b'{"error": "invalid_grant"}',
                               {"Content-Type": "application/json"})
                    return
                self._json({"access_token": secrets.token_urlsafe(16), "token_type": "Bearer",
                            "expires_in": 300, "id_token": op._id_token(nonce)})

        return Handler
