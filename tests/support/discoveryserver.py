"""A small OAuth server on 127.0.0.1 whose metadata documents a test writes, for discovery tests.

It serves what a test puts in ``documents`` (path -> JSON object; any other path is a 404), a
token endpoint that issues random opaque tokens (any client, any grant), a device authorization
endpoint whose logins are approved at once (the first poll gets a token), and a revocation
endpoint that records every request (``revocations``) and answers ``revocation_status``. It stands
in for servers whose OpenID and RFC 8414 documents say different things (issue 11: an OpenID
document without ``revocation_endpoint``, an RFC 8414 one at the appended location naming it),
which the real test provider (oidc-provider serves one document at both locations) cannot show.

Usage::

    with DiscoveryServer(path="/o") as server:
        server.documents[server.oidc_path] = server.document(revocation=False)
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.support import SERVE_POLL

__all__ = ["DiscoveryServer", "Request", "discovery_server"]


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    method: str
    path: str
    form: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)


class DiscoveryServer:
    """See the module docstring. ``issuer`` is ``http://127.0.0.1:PORT{path}``."""

    def __init__(self, path: str = "") -> None:
        self.path = path.rstrip("/")
        self.documents: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.revocation_status = 200
        self.issued: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass  # the test reads server.requests

            def _reply(self, status: int, body: dict[str, Any] | None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, form: dict[str, list[str]]) -> None:
                with server._lock:
                    server.requests.append(Request(self.command, self.path, form,
                                                   {k.lower(): v for k, v in self.headers.items()}))

            def do_GET(self) -> None:
                self._record({})
                doc = server.documents.get(self.path)
                self._reply(200 if doc is not None else 404, doc or {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
                self._record(form)
                if self.path == f"{server.path}/token":
                    token = secrets.token_urlsafe(16)
                    with server._lock:
                        server.issued.append(token)
                    self._reply(200, {"access_token": token, "token_type": "Bearer",
                                      "expires_in": 3600})
                elif self.path == f"{server.path}/device":
                    # RFC 8628 §3.2, approved at once: the first poll gets a token.
                    self._reply(200, {"device_code": secrets.token_urlsafe(16),
                                      "user_code": "BCDF-GHJK",
                                      "verification_uri": f"{server.issuer}/verify",
                                      "expires_in": 300, "interval": 1})
                elif self.path == f"{server.path}/revoke":
                    status = server.revocation_status
                    self._reply(status, None if status == 200 else {
                        "error": "temporarily_unavailable"})
                else:
                    self._reply(404, {"error": "not_found"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = self.base + self.path
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": SERVE_POLL}, daemon=True)

    # -- the three discovery locations of an issuer with a path ----------------------------------

    @property
    def oidc_path(self) -> str:
        return f"{self.path}/.well-known/openid-configuration"

    @property
    def inserted_path(self) -> str:
        return f"/.well-known/oauth-authorization-server{self.path}"

    @property
    def appended_path(self) -> str:
        return f"{self.path}/.well-known/oauth-authorization-server"

    def document(self, *, revocation: bool = True, device: bool = True,
                 issuer: str | None = None) -> dict[str, Any]:
        """A metadata document of this server (``issuer`` another issuer's, to test the check)."""
        doc: dict[str, Any] = {
            "issuer": issuer or self.issuer,
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        }
        if revocation:
            doc["revocation_endpoint"] = f"{self.issuer}/revoke"
        if device:
            doc["device_authorization_endpoint"] = f"{self.issuer}/device"
        return doc

    def revocations(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == f"{self.path}/revoke"]

    def gets(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.method == "GET"]

    def __enter__(self) -> DiscoveryServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def discovery_server(path: str = "") -> Iterator[DiscoveryServer]:
    with DiscoveryServer(path) as server:
        yield server
