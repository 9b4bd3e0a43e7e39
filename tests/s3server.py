"""A real moto S3 server in a subprocess, for tests that talk S3 over HTTP (nothing is patched).

    with s3_server(buckets=("modelyard-test",)) as endpoint:   # "http://127.0.0.1:PORT"
        ...

Register it as a fixture with ``s3_endpoint`` (session scope) + ``s3_env`` (function scope, sets
dummy AWS credentials via monkeypatch), as ``tests/test_storage.py`` does.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3

BUCKET = "modelyard-test"
REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_REGION": REGION,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_ALLOW_HTTP": "true",
}
"""Environment for clients of the fake server; apply with ``monkeypatch.setenv``."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def s3_client(endpoint: str) -> Any:
    """A boto3 S3 client for the fake server (explicit dummy credentials, no env needed)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create ``bucket`` (3-63 chars, lower case) on the fake server."""
    s3_client(endpoint).create_bucket(Bucket=bucket)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)  # poll interval only
    raise TimeoutError(f"moto server did not listen on port {port} within {timeout} s")


@contextmanager
def s3_server(buckets: Iterable[str] = (BUCKET,), *, timeout: float = 15.0) -> Iterator[str]:
    """Run ``python -m moto.server`` on a free port, create ``buckets``, yield the endpoint URL.

    The process is terminated (then killed, if need be) on exit. If it fails to start, the
    error carries the server's output.
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            try:
                _wait_listening(proc, port, timeout)
            except (RuntimeError, TimeoutError) as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; output:\n{log.read().decode(errors='replace')}") from None
            endpoint = f"http://127.0.0.1:{port}"
            for bucket in buckets:
                create_bucket(endpoint, bucket)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
