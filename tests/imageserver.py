"""A local HTTP server of generated images that counts every request (for fetch-once assertions)."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.inferrers.images import encode, noise


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up early (timeouts under test) are expected; stay quiet."""


class ImageServer:
    """Serves ``/img/{i}.png`` (noise images), ``/text`` (not an image), 404 elsewhere; counts every GET."""

    def __init__(self, delay: float = 0.0):
        self.hits: Counter[str] = Counter()
        self.hosts: list[str] = []  # the Host header of every GET
        self.delay = delay
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits[self.path] += 1
                owner.hosts.append(self.headers.get("Host", ""))
                if owner.delay:
                    threading.Event().wait(owner.delay)
                if self.path.startswith("/img/"):
                    body = encode(noise(int(self.path.split("/")[-1].split(".")[0])))
                    self._send(200, body, "image/png")
                elif self.path == "/text":
                    self._send(200, b"definitely not an image", "text/plain")
                elif self.path == "/redirect-private":
                    self.send_response(302)
                    self.send_header("Location", "http://169.254.169.254/latest")
                    self.end_headers()
                else:
                    self._send(404, b"no", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
