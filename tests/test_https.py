"""The HTTP client over real TLS on 127.0.0.1: each host's own pool verifies the server's
certificate against the CA bundle the environment names (``REQUESTS_CA_BUNDLE``), keeps the
connection alive between calls, and refuses a server it cannot verify. Every vendor is HTTPS."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connector.core.errors import TransportError
from connector.core.http import HttpClient, RetryPolicy

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not found")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    connections: set[int] = set()

    def do_GET(self) -> None:
        _Handler.connections.add(id(self.connection))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.connections.clear()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_calls_over_tls_verify_the_server_and_keep_the_connection(
        tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = tls_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    client = HttpClient(url, name="tls")
    try:
        first = client.request("GET", "/api/v2/tickets.json", params={"page": 2})
        second = client.request("GET", "/api/v2/users.json")
    finally:
        client.close()
    assert first.status == 200 and first.data == {"path": "/api/v2/tickets.json?page=2"}
    assert second.data == {"path": "/api/v2/users.json"}
    assert len(_Handler.connections) == 1  # one TLS handshake for both calls


def test_a_server_that_cannot_be_verified_is_refused(
        tls_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = tls_server
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    client = HttpClient(url, name="tls", retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(TransportError):
            client.request("GET", "/api/v2/tickets.json")
    finally:
        client.close()
    assert not _Handler.connections  # no request was answered
