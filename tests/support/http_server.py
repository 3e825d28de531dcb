"""A local HTTP(S) server whose pages change while a test runs: hosts for re-checks to visit.

Each path answers with a :class:`Route`: a status, headers and a body, or a misbehaviour
(``delay_s`` before answering, a body that ``drip``s or never ends, a redirect). Tests swap
routes between re-checks ("the page is up, then gone, then back"). ``tls`` serves HTTPS with
a certificate from a throw-away CA (:func:`make_tls_files`), or a self-signed one that no
client trusts. Used by tests/contract, tests/integration and bench/rechecks.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0           # wait before the status line
    drip_s: float = 0.0            # wait between body bytes (a slow-loris answer)
    endless: bool = False          # a body that never ends (5 GB and more), no Content-Length
    location: str | None = None    # a redirect (status 302 unless given)


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer._Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        site = self.server.site
        site.requests.append((self.path, self.headers.get("User-Agent", ""), self.headers.get("Host", "")))
        route = site.routes.get(self.path.split("?")[0]) or Route(404, b"<html><body>Not Found</body></html>")
        with contextlib.suppress(OSError):
            self._answer(route)

    def _answer(self, route: Route) -> None:
        if route.delay_s:
            time.sleep(route.delay_s)
        status = route.status if route.location is None or route.status != 200 else 302
        self.send_response(status)
        self.send_header("Content-Type", route.content_type)
        if route.location is not None:
            self.send_header("Location", route.location)
        for name, value in route.headers.items():
            self.send_header(name, value)
        if route.endless:
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"\0" * 65536
            while True:  # the client hangs up at its limit
                self.wfile.write(chunk)
        self.send_header("Content-Length", str(len(route.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if route.drip_s:
            for byte in route.body:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(route.drip_s)
        else:
            self.wfile.write(route.body)


class LocalServer:
    """``with LocalServer() as site: site.routes["/a"] = Route(body=...); site.url("/a")``."""

    class _Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256
        site: LocalServer

    def __init__(self, tls: tuple[Path, Path] | None = None, host: str = "127.0.0.1"):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, str]] = []
        self._server = self._Server((host, 0), _Handler)
        self._server.site = self
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"local-http-{self.port}",
                                        daemon=True)

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def make_tls_files(folder: Path, name: str = "localhost", self_signed: bool = False) -> tuple[Path, Path, Path]:
    """(certificate, key, CA certificate) for ``name`` and 127.0.0.1; a CA the test trusts, or none."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def subject(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(subject("test CA")).issuer_name(subject("test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    names = x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    issuer, signer = (subject(name), key) if self_signed else (ca.subject, ca_key)
    leaf = (x509.CertificateBuilder().subject_name(subject(name)).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2)).add_extension(names, critical=False)
            .sign(signer, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file, ca_file = folder / f"{name}.crt", folder / f"{name}.key", folder / "ca.crt"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file, ca_file


@contextlib.contextmanager
def serving(tls: tuple[Path, Path] | None = None) -> Iterator[LocalServer]:
    with LocalServer(tls) as site:
        yield site
