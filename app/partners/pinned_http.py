"""HTTP(S) connections to a host name that connect only to addresses checked beforehand.

http.client resolves the host again when it connects; between a check and that
second look-up a hostile DNS server can swap a public address for an internal one
(DNS rebinding). These connections keep the name for everything the name is for —
the Host header, and for https the SNI and the certificate check — and take the TCP
peer from the list they were given, in order, never from DNS.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Sequence
from functools import cache

Address = tuple[int, tuple]  # (socket family, sockaddr) as socket.getaddrinfo gives them


def open_tcp(family: int, sockaddr: tuple, timeout: float) -> socket.socket:
    """Open one TCP connection to one address (the only place a webhook touches the network)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client does
    except BaseException:
        sock.close()
        raise
    return sock


def dial(addresses: Sequence[Address], timeout: float) -> socket.socket:
    """Connect to the first address that answers, in order, all within one timeout."""
    deadline = time.monotonic() + timeout
    error: OSError = OSError("no address to connect to")
    for family, sockaddr in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("connect timed out")
        try:
            sock = open_tcp(family, sockaddr, left)
        except OSError as exc:
            error = exc
            continue
        sock.settimeout(timeout)  # each read and write of the exchange gets the full timeout
        return sock
    raise error


class PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to `host` whose socket goes to one of the given addresses."""

    def __init__(self, host: str, port: int, addresses: Sequence[Address], *, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.addresses = tuple(addresses)

    def connect(self) -> None:
        self.sock = dial(self.addresses, self.timeout)


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address that still verifies the certificate for `host`."""

    def __init__(
        self,
        host: str,
        port: int,
        addresses: Sequence[Address],
        *,
        timeout: float,
        context: ssl.SSLContext | None = None,
    ):
        self.tls = context or default_tls_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.addresses = tuple(addresses)

    def connect(self) -> None:
        sock = dial(self.addresses, self.timeout)
        # The name, not the address: SNI, and the certificate must be valid for it.
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


@cache
def default_tls_context() -> ssl.SSLContext:
    """The system's trust store with hostname checks on (built on first use, then shared)."""
    return ssl.create_default_context()
