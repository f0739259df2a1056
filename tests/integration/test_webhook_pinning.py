"""Webhook deliveries connect to the address they checked: DNS rebinding cannot steer them.

Name resolution is faked at its edge (socket.getaddrinfo) so that a name can answer
one thing to the check and another to any second look-up. Where an attempt would
leave the machine (a public address), the one function that opens a TCP connection
(app.partners.pinned_http.open_tcp) records the address and refuses, as an
unreachable internet would; connections to loopback go through for real, so a
delivery steered to a local receiver would show up there.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import logging
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.config import Settings
from app.partners import pinned_http
from app.partners.delivery import Delivery, deliver_due, post
from app.partners.webhooks import InvalidWebhook, check_target, new_secret, pin_target
from tests.integration.test_webhooks import (
    T0,
    Receiver,
    _act,
    _attempts,
    _partner_tip,
    _rows,
    _verify,
)

PUBLIC = "93.184.216.34"  # a global address; tests never reach it (open_tcp refuses it)
NAME = "hooks.partner.test"
TOKEN = "partner-token-5KQ2"  # a canary in the URL's query: never in a log line


@pytest.fixture
def wh_settings(settings):
    return settings.with_(webhook_retry_base_seconds=10.0, webhook_timeout_seconds=5.0)


@pytest.fixture
def receiver():
    """A local receiver on 127.0.0.1: the internal service a rebinding attack aims at."""
    r = Receiver()
    yield r
    r.close()


# --- the edges -------------------------------------------------------------------------------


class FakeDNS:
    """socket.getaddrinfo for a few names: a first answer, then another for every later call."""

    def __init__(self, real):
        self.real = real
        self.answers: dict[str, tuple[list[str] | None, list[str] | None]] = {}
        self.calls: dict[str, int] = {}

    def answer(self, name: str, first: list[str] | None, then: list[str] | None = None):
        """Answer `first` to the next look-up of name and `then` (default: first) after it.

        None is a name that does not resolve.
        """
        self.answers[name] = (first, first if then is None else then)
        self.calls[name] = 0

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):
        if host not in self.answers:
            return self.real(host, port, family, type, proto, flags)
        self.calls[host] += 1
        first, then = self.answers[host]
        addresses = first if self.calls[host] == 1 else then
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for address in addresses:
            if ipaddress.ip_address(address).version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
        return infos


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDNS(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def dialled(monkeypatch):
    """Record every TCP connection a delivery opens; refuse all but loopback (no internet)."""
    seen: list[tuple[int, str, int]] = []
    real = pinned_http.open_tcp

    def open_tcp(family, sockaddr, timeout):
        seen.append((family, sockaddr[0], sockaddr[1]))
        if not ipaddress.ip_address(sockaddr[0]).is_loopback:
            raise ConnectionRefusedError("the internet is out of the tests' reach")
        return real(family, sockaddr, timeout)

    monkeypatch.setattr(pinned_http, "open_tcp", open_tcp)
    return seen


class Listener:
    """A local HTTP(S) receiver on a chosen address and port that answers 200 and keeps calls."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None):
        self.calls: list[dict] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                listener.calls.append({"headers": self.headers, "body": body, "path": self.path})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def server_bind(self):
                socketserver.TCPServer.server_bind(self)  # no reverse look-up of the address
                self.server_name, self.server_port = self.server_address[:2]

        self.server = Server((host, port), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listeners():
    made: list[Listener] = []

    def make(*args, **kwargs) -> Listener:
        made.append(Listener(*args, **kwargs))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def _settings(tmp_path: Path, **changes) -> Settings:
    """Production-like settings for cases that need no database (private targets refused)."""
    return Settings(
        database_url="sqlite://",
        secret_key="test-secret-key-not-for-production",
        media_dir=tmp_path / "media",
        instance_dir=tmp_path,
        webhook_timeout_seconds=5.0,
    ).with_(**changes)


def _delivery(url: str) -> Delivery:
    return Delivery(1, 1, url, new_secret(), "msg_pinning", b'{"type":"request.updated"}', 1)


# --- the rebinding attack --------------------------------------------------------------------


def test_rebinding_name_is_pinned_to_the_checked_public_address(
    wh_settings, seeded, receiver, dns, dialled, caplog
):
    """The check sees a public address, a second look-up would see the local receiver."""
    caplog.set_level(logging.INFO, logger="tipline.partners")
    prod = wh_settings.with_(testing=False)
    port = receiver.server.server_port
    url = f"http://{NAME}:{port}/hooks/tipline?token={TOKEN}"
    dns.answer(NAME, [PUBLIC])
    check_target(url, prod)  # the partner's name was public when it was added
    tip_id, _ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, url)
    _act(seeded, tip_id, staff, "acknowledge")

    dns.answer(NAME, [PUBLIC], then=["127.0.0.1"])
    assert deliver_due(seeded, prod, now=T0) == {"retry": 1}
    assert dns.calls[NAME] == 1  # one look-up: the check and the connection share it
    assert dialled == [(socket.AF_INET, PUBLIC, port)]  # the checked address, not 127.0.0.1
    assert receiver.calls == []
    [attempt] = _attempts(seeded)
    assert attempt.error == "connection_error:ConnectionRefusedError"

    # The next try looks the name up afresh; now it is internal, and nothing is sent.
    later = T0 + dt.timedelta(hours=1)
    assert deliver_due(seeded, prod, now=later) == {"retry": 1}
    assert dns.calls[NAME] == 2
    assert len(dialled) == 1 and receiver.calls == []
    [row] = _rows(seeded)
    assert (row.status, row.attempts, row.last_error) == ("pending", 2, "target_private")
    due = row.next_attempt_at
    assert (due if due.tzinfo else due.replace(tzinfo=dt.UTC)) > later  # backoff, not at once
    assert "non-public address" in caplog.text
    assert TOKEN not in caplog.text and NAME not in caplog.text and "/hooks" not in caplog.text


def test_the_connection_goes_to_the_first_answer_even_on_loopback(
    wh_settings, seeded, dns, listeners
):
    """Real sockets: 127.0.0.2 answered to the check, 127.0.0.1 to any later look-up."""
    internal = listeners("127.0.0.1")
    try:
        checked = listeners("127.0.0.2", internal.port)
    except OSError as exc:
        pytest.skip(f"this host cannot listen on 127.0.0.2 ({exc})")
    url = f"http://{NAME}:{internal.port}/hooks/tipline?token={TOKEN}"
    tip_id, _ref, staff, _sub, secret = _partner_tip(wh_settings, seeded, url)
    _act(seeded, tip_id, staff, "acknowledge")
    dns.answer(NAME, ["127.0.0.2"], then=["127.0.0.1"])

    assert deliver_due(seeded, wh_settings, now=T0) == {"sent": 1}
    assert dns.calls[NAME] == 1
    assert internal.calls == []
    [call] = checked.calls
    assert call["headers"]["Host"] == f"{NAME}:{internal.port}"  # the name, not the address
    assert call["path"] == f"/hooks/tipline?token={TOKEN}"
    _verify(call, secret)


def test_addresses_are_tried_in_order(tmp_path, dns, dialled, listeners):
    local = listeners("127.0.0.1")
    url = f"http://{NAME}:{local.port}/hook"
    dns.answer(NAME, [PUBLIC, "127.0.0.1"])
    result = post(_delivery(url), _settings(tmp_path, testing=True), timestamp=1)
    assert result.status_code == 200
    assert [(a, p) for _f, a, p in dialled] == [(PUBLIC, local.port), ("127.0.0.1", local.port)]
    assert len(local.calls) == 1


# --- what a name may resolve to --------------------------------------------------------------

REFUSED_ANSWERS = {
    "ipv4-mapped loopback": ["::ffff:127.0.0.1"],
    "ipv4-mapped metadata": ["::ffff:169.254.169.254"],
    "unspecified v4": ["0.0.0.0"],  # noqa: S104 (an answer to refuse, not a bind)
    "unspecified v6": ["::"],
    "loopback v6": ["::1"],
    "cloud metadata": ["169.254.169.254"],
    "cgnat low": ["100.64.0.1"],
    "cgnat high": ["100.127.255.254"],
    "private 10/8": ["10.1.2.3"],
    "public then private": [PUBLIC, "10.0.0.5"],
    "private then public": ["192.168.1.1", PUBLIC],
    "ipv4-compatible loopback": ["::127.0.0.1"],
    "6to4 of a private address": ["2002:a00:1::1"],
    "nat64 of the metadata address": ["64:ff9b::a9fe:a9fe"],
    "link-local v6": ["fe80::1"],
    "unique-local v6": ["fd00::1"],
    "multicast": ["224.0.0.1"],
    "broadcast": ["255.255.255.255"],
    "documentation": ["192.0.2.10"],
}


@pytest.mark.parametrize("answer", REFUSED_ANSWERS.values(), ids=REFUSED_ANSWERS.keys())
def test_a_name_resolving_to_any_non_public_address_is_refused(tmp_path, dns, dialled, answer):
    settings = _settings(tmp_path)
    url = f"https://{NAME}/hook?token={TOKEN}"
    dns.answer(NAME, answer)
    result = post(_delivery(url), settings, timestamp=1)
    assert (result.status_code, result.error) == (None, "target_private")
    assert dialled == []
    with pytest.raises(InvalidWebhook):
        check_target(url, settings)  # and it cannot be subscribed either
    assert pin_target(url, settings.with_(webhook_allow_private=True)).host == NAME


@pytest.mark.parametrize(
    "host",
    [
        "[::ffff:127.0.0.1]",
        "0.0.0.0",  # noqa: S104 (a host to refuse, not a bind)
        "[::]",
        "[::1]",
        "169.254.169.254",
        "100.64.0.1",
        "[::127.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "localhost",
        "api.localhost",
    ],
)
def test_a_private_host_in_the_url_is_refused_for_good_without_a_look_up(
    tmp_path, dns, dialled, host
):
    settings = _settings(tmp_path)
    dns.answer("localhost", ["127.0.0.1"])
    dns.answer("api.localhost", ["127.0.0.1"])
    result = post(_delivery(f"http://{host}:8080/hook"), settings, timestamp=1)
    assert (result.status_code, result.error) == (None, "target_refused")
    assert dialled == [] and dns.calls["localhost"] == dns.calls["api.localhost"] == 0


def test_a_public_answer_is_dialled(tmp_path, dns, dialled):
    dns.answer(NAME, [PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"])
    result = post(_delivery(f"https://{NAME}/hook"), _settings(tmp_path), timestamp=1)
    assert result.error == "connection_error:ConnectionRefusedError"
    assert [(f, a, p) for f, a, p in dialled] == [
        (socket.AF_INET, PUBLIC, 443),
        (socket.AF_INET6, "2606:2800:220:1:248:1893:25c8:1946", 443),
    ]


def test_a_name_that_resolves_to_nothing_is_retried_then_failed(
    wh_settings, seeded, receiver, dns, dialled, caplog
):
    caplog.set_level(logging.INFO, logger="tipline.partners")
    prod = wh_settings.with_(testing=False, webhook_max_attempts=2)
    url = f"https://{NAME}/hooks/tipline?token={TOKEN}"
    tip_id, _ref, staff, _sub, _secret = _partner_tip(wh_settings, seeded, url)
    _act(seeded, tip_id, staff, "acknowledge")
    dns.answer(NAME, None)

    assert deliver_due(seeded, prod, now=T0) == {"retry": 1}
    [row] = _rows(seeded)
    assert (row.status, row.last_error) == ("pending", "target_unresolved")
    # The normal backoff: not again before the base delay, then once more, then failed.
    assert deliver_due(seeded, prod, now=T0 + dt.timedelta(seconds=9)) == {}
    assert deliver_due(seeded, prod, now=T0 + dt.timedelta(hours=1)) == {"failed": 1}
    [row] = _rows(seeded)
    assert (row.status, row.last_error) == ("failed", "target_unresolved")
    assert [a.error for a in _attempts(seeded)] == ["target_unresolved"] * 2
    assert dialled == [] and dns.calls[NAME] == 2
    assert "resolves to no address" in caplog.text
    assert TOKEN not in caplog.text and NAME not in caplog.text


def test_an_empty_answer_is_unresolved(tmp_path, dns, dialled):
    dns.answer(NAME, [])
    result = post(_delivery(f"http://{NAME}/hook"), _settings(tmp_path), timestamp=1)
    assert result.error == "target_unresolved" and dialled == []


def test_private_answers_are_allowed_when_the_operator_says_so(tmp_path, dns, listeners):
    local = listeners("127.0.0.1")
    dns.answer("receiver.internal", ["127.0.0.1"])
    settings = _settings(tmp_path, webhook_allow_private=True)
    result = post(_delivery(f"http://receiver.internal:{local.port}/hook"), settings, timestamp=1)
    assert result.status_code == 200 and len(local.calls) == 1


def test_a_malformed_answer_is_a_connection_error_not_a_crash(tmp_path, dns):
    """A status line http.client cannot parse ends the try; the worker goes on."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_garbage():
        conn, _addr = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"NOT-HTTP garbage\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    try:
        dns.answer(NAME, ["127.0.0.1"])
        result = post(
            _delivery(f"http://{NAME}:{port}/hook"), _settings(tmp_path, testing=True), timestamp=1
        )
    finally:
        thread.join(10)
        server.close()
    assert result.status_code is None
    assert result.error == "connection_error:BadStatusLine"


# --- https: the name stays the name ----------------------------------------------------------


def _tls_files(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """Make a test CA and a server certificate for `name` it signed: (ca, cert, key) files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tipline test CA")])

    def builder(subject, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        )

    usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(cert.public_bytes(pem))
    files[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def tls_receiver(tmp_path, listeners):
    """An HTTPS receiver on 127.0.0.1 with a certificate for NAME; the SNI names it saw."""
    ca, cert, key = _tls_files(tmp_path, NAME)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    sni: list[str | None] = []
    server_context.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    listener = listeners("127.0.0.1", tls=server_context)
    listener.sni = sni
    listener.trust = ssl.create_default_context(cafile=str(ca))
    return listener


def test_https_keeps_the_host_name_for_sni_and_the_certificate(
    wh_settings, seeded, dns, dialled, tls_receiver
):
    url = f"https://{NAME}:{tls_receiver.port}/hooks/tipline?token={TOKEN}"
    tip_id, _ref, staff, _sub, secret = _partner_tip(wh_settings, seeded, url)
    _act(seeded, tip_id, staff, "acknowledge")
    dns.answer(NAME, ["127.0.0.1"])

    # The system trust store does not know the test CA: the certificate is checked.
    assert deliver_due(seeded, wh_settings, now=T0) == {"retry": 1}
    [attempt] = _attempts(seeded)
    assert attempt.error == "connection_error:SSLCertVerificationError"
    assert tls_receiver.calls == []

    later = T0 + dt.timedelta(hours=1)
    send = functools.partial(post, tls_context=tls_receiver.trust)
    assert deliver_due(seeded, wh_settings, now=later, send=send) == {"sent": 1}
    # Connected to 127.0.0.1, yet SNI and the certificate check used the URL's name.
    assert {a for _f, a, _p in dialled} == {"127.0.0.1"}
    assert tls_receiver.sni[-1] == NAME and set(tls_receiver.sni) == {NAME}
    [call] = tls_receiver.calls
    assert call["headers"]["Host"] == f"{NAME}:{tls_receiver.port}"
    _verify(call, secret)


def test_https_refuses_a_certificate_for_another_name(tmp_path, dns, tls_receiver):
    other = "other.partner.test"
    dns.answer(other, ["127.0.0.1"])  # same server, whose certificate names NAME only
    settings = _settings(tmp_path, testing=True)
    url = f"https://{other}:{tls_receiver.port}/hook"
    result = post(_delivery(url), settings, timestamp=1, tls_context=tls_receiver.trust)
    assert result.error == "connection_error:SSLCertVerificationError"
    assert tls_receiver.sni == [other] and tls_receiver.calls == []
