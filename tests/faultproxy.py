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
"""

from __future__ import annotations

import collections
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlsplit


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._actions: collections.deque[Any] = collections.deque()
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
            self._default = "pass"

    _default: Any = "pass"

    def _next(self) -> Any:
        with self._lock:
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
        action = self._next()
        name = action if isinstance(action, str) else action[0]
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
            else:
                if name == "delay":
                    time.sleep(action[1])
                response = self._forward(request)
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
