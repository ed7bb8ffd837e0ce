"""A small HTTPS server on 127.0.0.1 with canned answers, and the test CA that signs it.

For tests of anything fetched over HTTPS (CILogon's OpenID configuration and key set, raw
GitHub files): the client's TLS verification runs for real, against a CA generated at test
time, so a test can also show that an untrusted or mis-named certificate is refused.

    ca = make_test_ca()
    with LocalHTTPSServer({"/doc": (200, "application/json", b"{}")}, ca=ca) as server:
        ...  # fetch server.url_for("/doc"), trusting server.ca_file

``routes`` maps a path (query ignored) to ``(status, content_type, body)`` or a ``Route``
with extra headers (e.g. ``Location``) and delays; it may be changed while the server runs.
Unknown paths answer 404. ``requests`` lists the paths asked for, in order.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["LocalCA", "LocalHTTPSServer", "Route", "make_test_ca"]

_VALIDITY = dt.timedelta(days=2)


@dataclass(frozen=True)
class Route:
    """A canned answer. ``delay`` waits before answering; ``trickle`` waits between 16-byte pieces."""

    status: int
    content_type: str
    body: bytes | str
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0

    @property
    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


RouteSpec = Route | tuple[int, str, bytes | str]


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class LocalCA:
    """A throw-away certificate authority (EC P-256) that issues server certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        """Write the CA certificate (PEM) to ``path``, for a client to trust."""
        path = Path(path)
        path.write_bytes(self.cert_pem)
        return path

    def issue(self, hosts: Sequence[str]) -> tuple[bytes, bytes]:
        """A server certificate for ``hosts`` (IP addresses or DNS names): (cert PEM, key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "server")]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def make_test_ca(name: str = "justin-flows test CA") -> LocalCA:
    """A new CA, valid for two days, trusted by nobody until a client is given its file."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return LocalCA(name, key, cert)


class TLSServer(ThreadingHTTPServer):
    """A threading HTTP server on a free 127.0.0.1 port whose connections are TLS; ``owner``
    is the object the request handler answers for."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, owner: Any, context: ssl.SSLContext, handler: type[BaseHTTPRequestHandler]) -> None:
        self.owner = owner
        self.context = context
        super().__init__(("127.0.0.1", 0), handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the connection's own thread, so one stuck client never blocks accept()
        with self.context.wrap_socket(request, server_side=True) as tls:
            super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # refused handshakes and clients that hung up are expected in these tests


def serve_tls(
    owner: Any, handler: type[BaseHTTPRequestHandler], ca: LocalCA, hosts: Sequence[str], work_dir: Path, name: str
) -> tuple[TLSServer, threading.Thread, bytes]:
    """Start a ``TLSServer`` with a certificate ``ca`` issues for ``hosts`` (key file 0600 in
    ``work_dir``) in a daemon thread; returns the server, its thread and the certificate PEM."""
    cert_pem, key_pem = ca.issue(hosts)
    cert_file, key_file = work_dir / "server.pem", work_dir / "server.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    key_file.chmod(0o600)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = TLSServer(owner, context, handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    return server, thread, cert_pem


def stop_tls(server: TLSServer | None, thread: threading.Thread | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
    if thread is not None:
        thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: TLSServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.owner._answer(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class LocalHTTPSServer:
    """An HTTPS server on 127.0.0.1 (a free port) answering ``routes``."""

    def __init__(
        self,
        routes: Mapping[str, RouteSpec] | None = None,
        *,
        ca: LocalCA | None = None,
        hosts: Sequence[str] = ("127.0.0.1", "localhost"),
        work_dir: Path | None = None,
    ) -> None:
        self.routes: dict[str, RouteSpec] = dict(routes or {})
        self.ca = ca or make_test_ca()
        self.hosts = tuple(hosts)
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="justin-https-")
            work_dir = Path(self._tmp.name)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self.ca.write(self.work_dir / "ca.pem")
        self._server: TLSServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalHTTPSServer:
        if self._server is None:
            self._server, self._thread, _ = serve_tls(self, _Handler, self.ca, self.hosts, self.work_dir, "local-https")
        return self

    def stop(self) -> None:
        stop_tls(self._server, self._thread)
        self._server = self._thread = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalHTTPSServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    def hits(self, path: str) -> int:
        with self._lock:
            return self.requests.count(path)

    # -- answering ---------------------------------------------------------------------------

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        with self._lock:
            self.requests.append(path)
        spec = self.routes.get(path)
        if spec is None:
            route = Route(404, "application/json", b'{"error": "not found"}')
        elif isinstance(spec, Route):
            route = spec
        else:
            route = Route(*spec)
        if route.delay:
            time.sleep(route.delay)
        body = route.body_bytes
        try:
            handler.send_response(route.status)
            handler.send_header("Content-Type", route.content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in route.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if route.trickle:
                for start in range(0, len(body), 16):
                    handler.wfile.write(body[start:start + 16])
                    handler.wfile.flush()
                    time.sleep(route.trickle)
            else:
                handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up (a timeout test)
