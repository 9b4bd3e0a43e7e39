"""The SSRF-guarded URL fetcher: schemes, private addresses (also behind redirects and DNS rebinding),
connections pinned to the checked address with the name kept for Host and TLS, size and time caps."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard import fetch
from modelyard.errors import FetchFailed, PayloadTooLarge, UrlRefused
from modelyard.fetch import check_url, fetch_url, is_permanent, is_public, new_client
from tests.imageserver import ImageServer


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("100.64.0.1", False),
        ("224.0.0.1", False),
    ],
)
def test_only_global_unicast_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize("url", ["ftp://example.org/a", "file:///etc/passwd", "http:///nohost", "gopher://x"])
def test_other_schemes_and_hostless_urls_are_refused(url: str) -> None:
    with pytest.raises(UrlRefused):
        check_url(url, allow_private=True)


def test_a_name_resolving_to_any_private_address_is_refused() -> None:
    def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.7"]

    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7"):
        check_url("https://example.org/x", allow_private=False, resolver=resolver)
    check_url("https://example.org/x", allow_private=True, resolver=resolver)


@pytest.fixture
def loopback_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.1 stands for a public server (the test's own); every other loopback address stays private."""
    real = fetch.is_public
    monkeypatch.setattr(fetch, "is_public", lambda address: address == "127.0.0.1" or real(address))


def test_redirect_to_a_private_address_is_refused(loopback_is_public: None) -> None:
    with ImageServer() as server, new_client() as client:
        port = server.server.server_address[1]

        def resolver(host: str, port: int) -> list[str]:
            return ["127.0.0.1"]

        with pytest.raises(UrlRefused, match=r"169\.254\.169\.254"):
            fetch_url(
                client,
                f"http://public.test:{port}/redirect-private",
                timeout=5,
                max_bytes=10**6,
                allow_private=False,
                resolver=resolver,
            )
        assert server.hits["/redirect-private"] == 1


def test_a_rebinding_name_is_connected_to_at_the_address_that_was_checked(
    monkeypatch: pytest.MonkeyPatch, loopback_is_public: None
) -> None:
    """The name answers a public address to the guard and a private one to any later lookup: the fetch
    reaches the public one, and nothing connects to the private one."""
    with ImageServer() as server, new_client() as client, socket.socket() as private:
        port = server.server.server_address[1]
        private.bind(("127.0.0.2", port))  # the "internal service" the rebinding answer points at
        private.listen()
        private.setblocking(False)
        real, lookups = socket.getaddrinfo, []

        def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
            if host != "rebind.test":
                return real(host, *args, **kwargs)
            lookups.append(host)
            return real("127.0.0.1" if len(lookups) == 1 else "127.0.0.2", *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        got = fetch_url(
            client, f"http://rebind.test:{port}/img/1.png", timeout=3, max_bytes=10**6, allow_private=False
        )
        assert got.data.startswith(b"\x89PNG") and server.hits["/img/1.png"] == 1
        assert server.hosts == [f"rebind.test:{port}"]  # the request still names the host
        assert lookups == ["rebind.test"]  # resolved once, by the guard
        with pytest.raises(BlockingIOError):
            private.accept()  # no connection was ever made to the private address


def test_the_client_refuses_hosts_the_guard_did_not_check() -> None:
    with ImageServer() as server, new_client() as client:
        with pytest.raises(httpx.ConnectError, match="not checked"):
            client.get(f"{server.url}/img/1.png")
        assert server.hits == {}


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (DNS only, no IP) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for ``secure.test`` only; yields its port, the
    certificate (to trust) and the SNI name of every handshake."""
    cert, key = _certificate(tmp_path, "secure.test")
    names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    def record(_sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.headers.get("Host", "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], cert, names
    server.shutdown()
    server.server_close()


def test_https_keeps_the_name_for_sni_and_the_certificate(
    tls_server: tuple[int, Path, list[str | None]], loopback_is_public: None
) -> None:
    port, cert, names = tls_server
    trust = ssl.create_default_context(cafile=str(cert))
    with new_client(verify=trust) as client:
        got = fetch_url(
            client,
            f"https://secure.test:{port}/x",
            timeout=5,
            max_bytes=10**6,
            allow_private=False,
            resolver=lambda host, port: ["127.0.0.1"],
        )
    assert got.data == f"secure.test:{port}".encode()  # the Host header the server saw
    assert names == ["secure.test"]  # SNI named the host; the certificate (for the name only) verified


def test_status_size_and_time_limits() -> None:
    with ImageServer() as server, new_client() as client:
        got = fetch_url(client, f"{server.url}/img/1.png", timeout=5, max_bytes=10**6, allow_private=True)
        assert got.data.startswith(b"\x89PNG") and got.content_type == "image/png"
        with pytest.raises(FetchFailed) as missing:
            fetch_url(client, f"{server.url}/nope", timeout=5, max_bytes=10**6, allow_private=True)
        assert missing.value.extra["upstream_status"] == 404 and is_permanent(missing.value)
        with pytest.raises(PayloadTooLarge):
            fetch_url(client, f"{server.url}/img/1.png", timeout=5, max_bytes=100, allow_private=True)
        server.delay = 0.5
        with pytest.raises(FetchFailed, match="took over") as slow:
            fetch_url(client, f"{server.url}/img/1.png", timeout=0.1, max_bytes=10**6, allow_private=True)
        assert not is_permanent(slow.value)


@pytest.mark.parametrize("host", ["a" * 64 + ".example", "a" * 300])
def test_host_that_is_not_a_dns_name_is_refused_not_a_crash(host: str) -> None:
    with pytest.raises(UrlRefused, match="not a valid DNS name"):
        fetch.resolve(host, 80)
