"""A tiny protected API on 127.0.0.1 that checks bearer tokens with the provider's real
introspection endpoint (RFC 7662): what a resource server in front of an API does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.support import SERVE_POLL


class ResourceServer:
    def __init__(self, introspection_endpoint: str, client_id: str, client_secret: str) -> None:
        self._endpoint = introspection_endpoint
        self._auth = (client_id, client_secret)
        self.hits = 0
        self.always_401 = False
        self._lock = threading.Lock()
        self._http = httpx.Client(trust_env=False, timeout=10)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with server._lock:
                    server.hits += 1
                header = self.headers.get("Authorization", "")
                active = False
                if header.startswith("Bearer ") and not server.always_401:
                    active = server.introspect(header[7:])
                if not active:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                # Enough for pyFirecREST v2 (GET /status/systems) and globus-sdk (GET /v0.10/endpoint/ID).
                payload = json.dumps({"ok": True, "echo": body.decode(), "systems": [],
                                      "DATA_TYPE": "endpoint", "id": self.path.rsplit("/", 1)[-1]}
                                     ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _answer
            do_POST = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"

    def introspect(self, token: str) -> bool:
        response = self._http.post(self._endpoint, data={"token": token}, auth=self._auth)
        response.raise_for_status()
        return bool(response.json().get("active"))

    @contextmanager
    def running(self) -> Iterator[ResourceServer]:
        thread = threading.Thread(target=self._server.serve_forever,
                                  kwargs={"poll_interval": SERVE_POLL}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            self._http.close()
