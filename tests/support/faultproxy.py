"""A loopback HTTP proxy between keyturn and the real provider that misbehaves on request.

Each accepted connection carries one request (the proxy answers with ``Connection: close``) and
takes the next action from a queue; when the queue is empty it passes requests through. Actions:

- ``"pass"``: forward to the provider and back.
- ``"drop"``: read the request, close the connection without an answer.
- ``"reset"``: read the request, close with a TCP reset.
- ``("delay", seconds)``: wait, then forward (the client may have timed out meanwhile; the
  provider then still sees the request, as it would on a real network).
- ``"hold"``: read the request, never forward it, and keep the connection open until the proxy
  stops (the client times out; the provider never sees it).
- ``"corrupt"``: forward, then replace the response body with bytes of the same length.
- ``("status", code, content_type, body)``: answer this instead of the provider.
- ``("hold_answer", gate)``: forward, then hold the provider's answer (``gate.answered`` is set)
  until the test sets ``gate.release``, then deliver it — the request was acted on, the answer is
  on its way, and the test interrupts the client meanwhile.
- ``("rewrite", fn)``: forward, then deliver ``fn(body)`` instead of the body (a tampered answer).

``on(path, *actions)`` queues actions for requests to one path only (``"/jwks"``); they come
before the general queue. Every request is logged in :attr:`FaultProxy.exchanges` with the
status of the answer the provider gave (None when it never got the request).

:class:`TcpFaultProxy` does the same for a TCP protocol (Redis): bytes pass both ways until the
client sends a command the armed fault names, which is then dropped, or forwarded and its answer
dropped or held.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

#: Longest a held answer waits for its release (the test releases it, or failed, long before).
HOLD_MAX = 30.0


class Gate:
    """A held answer: ``answered`` once the provider answered (``status``), ``release`` to deliver
    it (or, with ``drop``, to close the connection instead)."""

    def __init__(self, *, drop: bool = False) -> None:
        self.answered = threading.Event()
        self.release = threading.Event()
        self.drop = drop
        self.status: int | None = None
        self.delivered: bool | None = None  # whether the answer reached the client's socket

    def open(self) -> None:
        self.release.set()


@dataclass
class Exchange:
    """One request through the proxy and what became of it."""

    method: str
    path: str
    form: dict[str, str] = field(default_factory=dict)
    action: str = "pass"
    status: int | None = None  # the provider's answer; None when it never saw the request

    @property
    def grant_type(self) -> str | None:
        return self.form.get("grant_type")


class FaultProxy:
    def __init__(self, upstream: str | None = None) -> None:
        self._upstream = ("127.0.0.1", 9)
        if upstream is not None:
            self.retarget(upstream)
        self._actions: collections.deque[Any] = collections.deque()
        self._paths: dict[str, collections.deque[Any]] = {}
        #: Every request, in arrival order (see :class:`Exchange`).
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.seen: list[str] = []  # the action taken for each request, in order
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for held in self._held:
            held.close()

    def retarget(self, upstream: str) -> None:
        """Forward to ``upstream`` from now on (a server started after the proxy, whose issuer is
        the proxy's URL)."""
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def on(self, path: str, *actions: Any) -> FaultProxy:
        """Take ``actions`` for the next requests to ``path`` (before the general queue)."""
        with self._lock:
            self._paths.setdefault(path, collections.deque()).extend(actions)
        return self

    def mark(self) -> int:
        """A position in :attr:`exchanges`, for :meth:`token_exchanges`."""
        with self._lock:
            return len(self.exchanges)

    def token_exchanges(self, since: int = 0, grant_type: str | None = None) -> list[Exchange]:
        """The token requests since ``mark()`` (of one grant type)."""
        with self._lock:
            found = self.exchanges[since:]
        return [e for e in found if e.path.endswith("/token")
                and (grant_type is None or e.grant_type == grant_type)]

    def then(self, *actions: Any) -> FaultProxy:
        with self._lock:
            self._actions.extend(actions)
        return self

    def always(self, action: Any) -> None:
        """Take ``action`` for every request from now on (until clear())."""
        with self._lock:
            self._actions.clear()
            self._default = action

    def clear(self) -> None:
        with self._lock:
            self._actions.clear()
            self._paths.clear()
            self._default = "pass"

    _default: Any = "pass"

    def _next(self, path: str = "") -> Any:
        with self._lock:
            queue = self._paths.get(path)
            if queue:
                return queue.popleft()
            return self._actions.popleft() if self._actions else self._default

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            request = _read_request(conn)
        except OSError:
            conn.close()
            return
        if request is None:
            conn.close()
            return
        exchange = _exchange(request)
        action = self._next(exchange.path)
        name = action if isinstance(action, str) else action[0]
        exchange.action = name
        with self._lock:
            self.exchanges.append(exchange)
        self.seen.append(name)
        try:
            if name == "drop":
                conn.close()
            elif name == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            elif name == "hold":
                self._held.append(conn)
            elif name == "status":
                _, code, content_type, body = action
                head = (f"HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                conn.sendall(head + body)
                conn.close()
            elif name == "hold_answer":
                gate: Gate = action[1]
                response = self._forward(request)
                exchange.status = gate.status = _status(response)
                gate.answered.set()
                gate.release.wait(HOLD_MAX)
                if gate.drop:
                    gate.delivered = False
                    conn.close()
                    return
                try:
                    conn.sendall(response)
                    gate.delivered = True
                except OSError:
                    gate.delivered = False
                conn.close()
            elif name == "rewrite":
                response = self._forward(request)
                exchange.status = _status(response)
                fn: Callable[[bytes], bytes] = action[1]
                conn.sendall(_with_body(response, fn(_body(response))))
                conn.close()
            else:
                if name == "delay":
                    time.sleep(action[1])
                response = self._forward(request)
                exchange.status = _status(response)
                if name == "corrupt":
                    head, _, body = response.partition(b"\r\n\r\n")
                    response = head + b"\r\n\r\n" + bytes((b * 7 + 13) % 256 for b in body)
                conn.sendall(response)
                conn.close()
        except OSError:
            conn.close()

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self._upstream, timeout=10) as upstream:
            upstream.sendall(request)
            chunks = []
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = [line for line in lines[1:] if not line.lower().startswith((b"connection:",
                                                                          b"keep-alive:"))]
    length = 0
    for line in headers:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return b"\r\n".join([lines[0], *headers, b"Connection: close"]) + b"\r\n\r\n" + body


def _exchange(request: bytes) -> Exchange:
    head, _, body = request.partition(b"\r\n\r\n")
    method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
    path = urlsplit(rest.rsplit(" ", 1)[0]).path
    form: dict[str, str] = {}
    if b"application/x-www-form-urlencoded" in head.lower():
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
    return Exchange(method, path, form)


def _status(response: bytes) -> int | None:
    try:
        return int(response.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _body(response: bytes) -> bytes:
    """The body of a whole HTTP/1.1 response, de-chunked."""
    head, _, body = response.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        return body
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def _with_body(response: bytes, body: bytes) -> bytes:
    head = response.partition(b"\r\n\r\n")[0].split(b"\r\n")
    kept = [line for line in head[1:] if not line.lower().startswith(
        (b"content-length:", b"transfer-encoding:"))]
    return b"\r\n".join([head[0], *kept, b"Content-Length: %d" % len(body)]) + b"\r\n\r\n" + body


class TcpFaultProxy:
    """Bytes both ways between clients and a TCP server (a real redis-server), with one armed fault.

    ``arm(mode, patterns)``: the next chunk a client sends that contains one of ``patterns`` (a
    Redis command: the SHA1 of a script, or a piece of its text) meets ``mode``:

    - ``"drop_before"``: the connection is closed and the chunk never reaches the server;
    - ``"drop_after"``: the chunk is forwarded; the server's answer is dropped and the connection
      closed (the command was carried out, the client never hears so);
    - ``"hold_reply"``: forwarded; the answer is held (``gate.answered``) until ``gate.release``,
      then delivered (or, with ``gate.drop``, dropped with the connection).

    A fault fires once; ``hits`` counts the commands it met.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed: tuple[str, tuple[bytes, ...], Gate | None] | None = None
        self.hits: list[str] = []
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def __enter__(self) -> TcpFaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for sock in list(self._sockets):
            sock.close()

    def arm(self, mode: str, patterns: tuple[bytes, ...], gate: Gate | None = None) -> None:
        assert mode in ("drop_before", "drop_after", "hold_reply"), mode
        with self._lock:
            self._armed = (mode, patterns, gate)

    def _take(self, chunk: bytes) -> tuple[str, Gate | None] | None:
        with self._lock:
            if self._armed is None or not any(p in chunk for p in self._armed[1]):
                return None
            mode, _, gate = self._armed
            self._armed = None
            self.hits.append(mode)
            return mode, gate

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, server):
                sock.settimeout(None)
                self._sockets.append(sock)
            reply_fault: list[tuple[str, Gate | None]] = []
            threading.Thread(target=self._upward, args=(client, server, reply_fault),
                             daemon=True).start()
            threading.Thread(target=self._downward, args=(server, client, reply_fault),
                             daemon=True).start()

    def _upward(self, client: socket.socket, server: socket.socket,
                reply_fault: list[tuple[str, Gate | None]]) -> None:
        try:
            while chunk := client.recv(65536):
                fault = self._take(chunk)
                if fault is not None and fault[0] == "drop_before":
                    break
                if fault is not None:
                    reply_fault.append(fault)
                server.sendall(chunk)
        except OSError:
            pass
        _close(client, server)

    def _downward(self, server: socket.socket, client: socket.socket,
                  reply_fault: list[tuple[str, Gate | None]]) -> None:
        try:
            while chunk := server.recv(65536):
                if reply_fault:
                    mode, gate = reply_fault.pop()
                    if mode == "hold_reply" and gate is not None:
                        gate.answered.set()
                        gate.release.wait(HOLD_MAX)
                        if not gate.drop:
                            client.sendall(chunk)
                            continue
                    break
                client.sendall(chunk)
        except OSError:
            pass
        _close(client, server)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
