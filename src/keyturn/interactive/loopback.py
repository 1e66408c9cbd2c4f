"""A one-shot HTTP listener on the loopback interface that receives the browser's redirect.

RFC 8252 §7.3: "Loopback redirect URIs use the "http" scheme and are constructed with the loopback
IP literal and whatever port the client is listening on." So the listener binds ``127.0.0.1``
(never ``0.0.0.0``, never ``localhost``, which may resolve to another interface: §8.3 "the use
of localhost is NOT RECOMMENDED"), on a port the OS picks unless one is asked for, and the redirect
URI is ``http://127.0.0.1:PORT/callback``.

Theory of operation: :class:`LoopbackListener` serves in a background thread from the moment it
is opened, so the browser can be sent to the login page right after. The first ``GET /callback``
with the right ``Host`` is *the* callback: its query string goes to :meth:`LoopbackListener.wait`,
and the browser's request is held open until the caller hands over the landing page with
:meth:`LoopbackListener.respond` (so the page can say whether the whole login, code exchange
included, worked). Anything else — ``/favicon.ico``, a second callback, another ``Host`` (DNS
rebinding), a callback the caller's :attr:`LoopbackListener.accept` refuses (a wrong ``state``) —
gets a 404 or 400 and does not use up the one shot. Then the listener closes.

No request line is ever logged: it holds the authorization code.
"""

from __future__ import annotations

import errno
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError, KeyturnError, LoginTimeout

__all__ = ["CALLBACK_PATH", "LOOPBACK_HOST", "LoopbackListener"]

LOOPBACK_HOST = "127.0.0.1"
CALLBACK_PATH = "/callback"
#: How long the browser's callback request is held open waiting for the landing page.
PAGE_WAIT = 120.0
#: How long :meth:`LoopbackListener.close` waits for the landing page to be written out.
FLUSH_WAIT = 5.0

_FALLBACK = (b"<!DOCTYPE html><meta charset=utf-8><title>keyturn</title>"
             b"<p>keyturn stopped waiting for this sign-in; see the terminal.</p>")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR lets a fixed port be reused while an old connection sits in TIME_WAIT; on
    # Windows it would let another program take over a port in use, so not there.
    allow_reuse_address = sys.platform != "win32"
    listener: LoopbackListener


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    #: An idle connection (browsers open speculative ones) is dropped after this many seconds.
    timeout = 10
    server_version = "keyturn"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the default writes the request line, with the code in it, to stderr."""

    def do_GET(self) -> None:
        self.server.listener._handle(self)

    def refuse(self, status: int, text: str) -> None:
        body = f"<!DOCTYPE html><meta charset=utf-8><title>{status}</title><p>{text}</p>".encode()
        self.send_page(status, {"Content-Type": "text/html; charset=utf-8"}, body)

    def do_POST(self) -> None:
        self.refuse(405, "keyturn expects the browser to come back with a GET.")

    do_PUT = do_DELETE = do_PATCH = do_POST

    def send_page(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        headers = {"Cache-Control": "no-store", **headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()


class LoopbackListener:
    """Receive exactly one redirect on ``http://127.0.0.1:PORT/callback``::

        with LoopbackListener() as listener:
            open_browser(authorization_url_with(listener.redirect_uri))
            query = listener.wait(timeout=300)
            listener.respond(200, headers, page)

    ``port=0`` (the default) lets the OS pick a free port; a port that is taken is a
    :class:`~keyturn.errors.ConfigError`.
    """

    def __init__(self, *, port: int = 0, path: str = CALLBACK_PATH) -> None:
        if not 0 <= port <= 65535:
            raise ConfigError(f"redirect port {port} is not a TCP port (0-65535; 0 = any free one)")
        if not path.startswith("/"):
            raise ConfigError("the callback path must start with '/'")
        self.path = path
        self._lock = threading.Lock()
        self._arrived = threading.Event()  # the callback came (or the listener closed)
        self._page_ready = threading.Event()
        self._answered = threading.Event()
        self._query: str | None = None
        self._page: tuple[int, dict[str, str], bytes] | None = None
        self._closed = False
        #: Set by the caller once it knows what a callback for its request looks like (its
        #: ``state``): a callback it refuses gets a 400 and does not spend the one shot.
        self.accept: Callable[[str], bool] | None = None
        try:
            self._server = _Server((LOOPBACK_HOST, port), _Handler)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                what = "is in use by another program" if exc.errno == errno.EADDRINUSE else \
                    "may not be opened by this user"
                raise ConfigError(
                    f"cannot listen for the login redirect on {LOOPBACK_HOST}:{port}: the port "
                    f"{what}; choose another port, or 0 to let the system pick a free one"
                ) from None
            raise
        self._server.listener = self
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"keyturn-loopback-{self.port}", daemon=True,
        )
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}{self.path}"

    def __repr__(self) -> str:
        return f"LoopbackListener({self.redirect_uri!r})"

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the caller's side -----------------------------------------------------------------------

    def wait(self, timeout: float) -> str:
        """The query string of the callback, once the browser comes back.

        Raises :class:`~keyturn.errors.LoginTimeout` after ``timeout`` seconds.
        """
        if not self._arrived.wait(timeout):
            raise LoginTimeout(
                f"the browser did not come back to {self.redirect_uri} within {timeout:.0f} s: "
                "the sign-in was not finished (or the page was closed); try again"
            )
        with self._lock:
            query = self._query
        if query is None:
            raise KeyturnError("the login redirect listener was closed while waiting")
        return query

    def respond(self, status: int, headers: dict[str, str], body: bytes) -> None:
        """The page the browser gets for its callback (once; later calls are ignored)."""
        with self._lock:
            if self._page is None:
                self._page = (status, headers, body)
        self._page_ready.set()

    def close(self) -> None:
        """Answer a callback still waiting for its page, then stop listening. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            taken = self._query is not None
        self._arrived.set()  # release a waiter
        if taken:
            self.respond(500, {"Content-Type": "text/html; charset=utf-8"}, _FALLBACK)
            self._answered.wait(FLUSH_WAIT)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(FLUSH_WAIT)

    # -- the server's side (runs on the server's threads) -------------------------------------------

    def _handle(self, request: _Handler) -> None:
        target = urlsplit(request.path)
        host = request.headers.get("Host", "")
        if host != f"{LOOPBACK_HOST}:{self.port}":
            # A page elsewhere that rebinds its own host name to 127.0.0.1 (DNS rebinding) sends its
            # own Host: it must not spend the one callback.
            request.refuse(400, "This address only accepts the sign-in redirect.")
            return
        if target.path != self.path:
            request.refuse(404, "Not found.")
            return
        accept = self.accept
        if accept is not None and not accept(target.query):
            # A forged redirect (another page sending the browser here) or an old tab of an earlier
            # login: refused, and the login in progress goes on waiting for its own callback.
            request.refuse(400, "This sign-in page belongs to another login than the one keyturn is "
                                "waiting for. Finish signing in in the newest tab.")
            return
        with self._lock:
            first = self._query is None and not self._closed
            if first:
                self._query = target.query
        if not first:
            request.refuse(404, "This sign-in has already finished; you can close this tab.")
            return
        self._arrived.set()
        self._page_ready.wait(PAGE_WAIT)
        with self._lock:
            status, headers, body = self._page or (
                500, {"Content-Type": "text/html; charset=utf-8"}, _FALLBACK)
        try:
            request.send_page(status, headers, body)
        except OSError:
            pass  # the browser went away: nothing to tell it
        finally:
            self._answered.set()
