"""The HTTP clients keyturn builds: no redirects followed (credentials must not travel to another
URL, RFC 9700 §4.11), no proxy or CA settings taken silently from the environment, one TLS context
per process."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keyturn import ClientCredentials, InvalidResponse, MemoryStore
from keyturn.transport import HttpSettings
from tests.support import SERVE_POLL


@pytest.fixture
def redirecting_server():
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(307)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": SERVE_POLL},
                              daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_a_redirect_is_not_followed_with_the_credentials(redirecting_server, monkeypatch):
    url, hits = redirecting_server
    # The proxy environment is honoured (issue 11), and NO_PROXY sends this loopback call direct:
    # through the dead proxy at port 9 it could not reach the server at all.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    source = ClientCredentials(token_endpoint=url + "/token", client_id="c", client_secret="s",
                               store=MemoryStore())
    with pytest.raises(InvalidResponse) as info:
        source.get_access_token()
    assert info.value.status == 307
    assert hits == ["/token"]  # /elsewhere never saw the client secret


def test_clients_do_not_trust_the_environment():
    settings = HttpSettings()
    with settings.client() as client:
        assert client.follow_redirects is False
        assert client.trust_env is False


def test_one_tls_context_per_process_and_settings():
    first, second = HttpSettings(), HttpSettings(timeout=5)
    assert first.tls_context() is second.tls_context()
    assert HttpSettings(verify=False).tls_context() is not first.tls_context()
