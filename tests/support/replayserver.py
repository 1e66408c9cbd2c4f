"""A scripted HTTP server on 127.0.0.1 that replays a provider's documented answers.

The providers of docs/providers.md (Keycloak, Entra ID, Google, GitHub, Okta, Auth0, Globus,
Slack) cannot be reached from here; their documentation shows what they answer. A
:class:`ReplayServer` serves those answers byte for byte, from the files of
``tests/integration/replays/<provider>/``, to keyturn's real sources over real HTTP, and records
every request so a test can check what keyturn sent.

A script maps ``(method, path)`` to a list of :class:`Reply`; each request takes the next one and
the last one repeats (a device login: pending, pending, then the token). The changes made to a
replayed body are :meth:`ReplayServer.body`'s ``origin=``: a discovery document names the
provider's own URLs, and they are rewritten to this server's (``https://login.microsoftonline.com``
becomes ``http://127.0.0.1:PORT``), and ``interval=``: a device answer's ``"interval": 5`` made
shorter, for the tests that are not about the interval (a real login waits 5 s per poll, which the
client honours for real: the suite would wait it too); byte for byte otherwise.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from tests.support import SERVE_POLL

REPLAYS = Path(__file__).resolve().parent.parent / "integration" / "replays"

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

#: A JSON ``"interval": N`` member (RFC 8628 §3.2), its value in the second group.
_INTERVAL = re.compile(rb'("interval"\s*:\s*)(\d+)')


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, headers (Content-Length is added) and the exact body."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Recorded:
    """A request the server received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


class ReplayServer:
    """Serves a script; see the module's docstring. Use :func:`replay_server`."""

    def __init__(self) -> None:
        self._script: dict[tuple[str, str], list[Reply]] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="replay-server",
                                        kwargs={"poll_interval": SERVE_POLL}, daemon=True)

    # -- the script --------------------------------------------------------------------------------

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer ``method path`` with ``replies`` in turn, the last one for every later request."""
        with self._lock:
            self._script[(method.upper(), path)] = list(replies)

    @staticmethod
    def body(provider: str, name: str, *, origin: str | None = None, to: str = "",
             interval: int | None = None) -> bytes:
        """The bytes of ``replays/<provider>/<name>``; with ``origin``, its occurrences replaced
        by ``to`` (the provider's URLs made this server's); with ``interval``, its one JSON
        ``"interval"`` member's value replaced by that number (see the module's docstring)."""
        data = (REPLAYS / provider / name).read_bytes()
        if origin:
            data = data.replace(origin.encode(), to.encode())
        if interval is not None:
            data, count = _INTERVAL.subn(rb"\g<1>%d" % interval, data)
            if count != 1:
                raise ValueError(f"replays/{provider}/{name} has {count} \"interval\" members, "
                                 "not one: interval= cannot shorten it")
        return data

    def reply(self, provider: str, name: str, status: int = 200, *, content_type: str = JSON,
              origin: str | None = None, headers: Mapping[str, str] | None = None,
              interval: int | None = None) -> Reply:
        """A :class:`Reply` with the replayed file as its body (``origin`` made this server's,
        ``interval`` shortened)."""
        return Reply(status, self.body(provider, name, origin=origin, to=self.url,
                                       interval=interval), content_type, dict(headers or {}))

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # -- serving -----------------------------------------------------------------------------------

    def _next(self, method: str, path: str) -> Reply:
        with self._lock:
            replies = self._script.get((method, path))
            if not replies:
                return Reply(404, b'{"error":"not_scripted"}')
            return replies.pop(0) if len(replies) > 1 else replies[0]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with server._lock:
                    server.requests.append(Recorded(
                        self.command, parts.path, dict(parse_qsl(parts.query)),
                        {k.lower(): v for k, v in self.headers.items()}, body))
                reply = server._next(self.command, parts.path)
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = _answer
            do_POST = _answer

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def replay_server() -> Iterator[ReplayServer]:
    """A started :class:`ReplayServer`, stopped afterwards."""
    server = ReplayServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
