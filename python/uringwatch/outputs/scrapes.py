"""The HTTP side of `--metrics`: one thread answering scrapes through a
selector, so that what clients do costs bounded threads and memory. At most
MAX_OPEN connections are open (a new one closes the oldest), each is closed
TIMEOUT seconds after it was accepted whatever it has sent or read, and a
request is at most MAX_REQUEST bytes. (prometheus_client's own server
started a thread per connection with no timeout: 2,000 slow connections
were 2,000 threads.)"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import Callable

MAX_OPEN = 64
TIMEOUT = 5.0
MAX_REQUEST = 8192
PATHS = ("/", "/metrics")


class _Conn:
    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline
        self.request = bytearray()
        self.reply: memoryview | None = None


class ScrapeServer:
    """Serves render()'s text (of content_type) at / and /metrics on
    addr:port until close()."""

    def __init__(self, addr: str, port: int, render: Callable[[], bytes], content_type: str):
        self.render, self.content_type = render, content_type
        family, kind, proto, _, sockaddr = socket.getaddrinfo(addr, port, 0,
                                                              socket.SOCK_STREAM)[0]
        self._listener = socket.socket(family, kind, proto)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind(sockaddr)
            self._listener.listen(128)
        except OSError:
            self._listener.close()
            raise
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._open: dict[socket.socket, _Conn] = {}     # oldest first
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="uringwatch-metrics",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self._thread.join()
        for conn in list(self._open.values()):
            self._drop(conn)
        self._sel.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            s.close()

    def _run(self) -> None:
        while not self._stop:
            now = time.monotonic()
            first = next(iter(self._open.values()), None)
            wait = max(0.0, first.deadline - now) if first else None
            for key, _ in self._sel.select(wait):
                if key.fileobj is self._listener:
                    self._accept()
                elif key.fileobj is not self._wake_r:
                    self._serve(key.data)
            now = time.monotonic()
            while self._open and (c := next(iter(self._open.values()))).deadline <= now:
                self._drop(c)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:          # out of fds, say: the oldest makes room
                if self._open:
                    self._drop(next(iter(self._open.values())))
                return
            if len(self._open) >= MAX_OPEN:
                self._drop(next(iter(self._open.values())))
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic() + TIMEOUT)
            self._open[sock] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _serve(self, conn: _Conn) -> None:
        try:
            if conn.reply is None:
                self._read(conn)
            else:
                self._write(conn)
        except OSError:
            self._drop(conn)

    def _read(self, conn: _Conn) -> None:
        data = conn.sock.recv(4096)
        conn.request += data
        if not data or len(conn.request) > MAX_REQUEST:
            self._drop(conn)
        elif b"\r\n\r\n" in conn.request or b"\n\n" in conn.request:
            conn.reply = memoryview(self._reply(bytes(conn.request)))
            self._sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            self._write(conn)

    def _write(self, conn: _Conn) -> None:
        sent = conn.sock.send(conn.reply)
        conn.reply = conn.reply[sent:]
        if not conn.reply:
            self._drop(conn)

    def _reply(self, request: bytes) -> bytes:
        method, _, rest = request.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0].decode(errors="replace")
        if method not in (b"GET", b"HEAD"):
            return _response(405, "text/plain", b"only GET\n", True)
        if path not in PATHS:
            return _response(404, "text/plain", b"the metrics are at /metrics\n", True)
        return _response(200, self.content_type, self.render(), method == b"GET")

    def _drop(self, conn: _Conn) -> None:
        self._open.pop(conn.sock, None)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, content_type: str, body: bytes, with_body: bool) -> bytes:
    head = (f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + (body if with_body else b"")
