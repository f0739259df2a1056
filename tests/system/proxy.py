"""A loopback TCP proxy that loses answers on purpose (issue 9 item 2).

Each new client connection takes the next planned mode (then "pass"):

    "pass"            forward both ways
    "drop_response"   forward the request, swallow the answer, reset the client
                      (the server did the work; the client never hears of it)
    "reset_upload"    forward half the request's first packet (at most `reset_after`
                      bytes), then reset both sides (a phone losing its signal mid-upload)
    ("latency", s)    hold the answer back for s seconds before forwarding it
"""

from __future__ import annotations

import collections
import contextlib
import socket
import struct
import threading
import time

CHUNK = 64 * 1024


def _reset(sock: socket.socket) -> None:
    """Drop the connection at once, as a lost one looks (RST where the kernel can).

    shutdown() first: it wakes the other thread's recv() on this socket, which a
    bare close() would not (the blocked call keeps the socket alive).
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class Proxy:
    """Threads, one pair per connection; fine for the handful of connections a test makes."""

    def __init__(self, upstream_port: int, *, reset_after: int = 16 * 1024):
        self.upstream = ("127.0.0.1", upstream_port)
        self.reset_after = reset_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._plan: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self.seen: collections.Counter[str] = collections.Counter()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, *modes) -> None:
        """Queue modes for the next connections, in order."""
        with self._lock:
            self._plan.extend(modes)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self._plan.popleft() if self._plan else "pass"
            name = mode[0] if isinstance(mode, tuple) else mode
            self.seen[name] += 1
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _serve(self, client: socket.socket, mode) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=60)
        except OSError:
            _reset(client)
            return
        if mode == "reset_upload":
            self._forward_some(client, upstream)
            return
        up = threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True)
        up.start()
        self._pump(upstream, client, mode)
        up.join(5)

    def _forward_some(self, client: socket.socket, upstream: socket.socket) -> None:
        """Forward half of what the client sent first (at most reset_after bytes), then reset."""
        with contextlib.suppress(OSError):
            data = client.recv(CHUNK)
            upstream.sendall(data[: min(len(data) // 2, self.reset_after)])
        _reset(client)
        _reset(upstream)

    def _pump(self, src: socket.socket, dst: socket.socket, mode) -> None:
        """Copy src to dst until src closes; `mode` shapes the answer direction."""
        first = True
        try:
            while True:
                data = src.recv(CHUNK)
                if not data:
                    break
                if mode == "drop_response":
                    _reset(dst)  # the answer is lost; keep reading so the server finishes
                    continue
                if first and isinstance(mode, tuple) and mode[0] == "latency":
                    time.sleep(mode[1])
                first = False
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
            if mode is not None:  # the answer direction ends the connection
                _reset(dst) if mode == "drop_response" else dst.close()
                with contextlib.suppress(OSError):
                    src.close()
