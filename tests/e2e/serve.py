"""A real `modelyard serve --demo` process on a free port, for the tests that need one."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.s3server import free_port

BIN = Path(sys.executable).parent
START_SECONDS = 180
"""How long a server may take to answer ``/readyz`` before the test gives up on it."""


@contextmanager
def modelyard_serve(
    env: dict[str, str],
    log_path: Path,
    *,
    port: int | None = None,
    cwd: Path | None = None,
    pass_port: bool = True,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the server with ``env`` (its stderr to ``log_path``; ``pass_port=False`` lets it find its port
    in the environment or ``.env`` as a user's would), wait until it is ready, yield its URL and process,
    and stop it after."""
    port = port or free_port()
    log = log_path.open("wb")
    args = ["--port", str(port)] if pass_port else []
    proc = subprocess.Popen(
        [str(BIN / "modelyard"), "serve", *args, "--demo"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    # a deadline, not a wait: under a loaded 2-core machine a cold start has taken over 60 s
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            raise RuntimeError(f"server did not start: {log_path.read_text()}")
        time.sleep(0.1)  # polling interval of a readiness probe, not synchronisation of work
    try:
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
