"""Running a user's command: a scrubbed environment, its own process group (a kill takes what it started
too), a wall-clock timeout, and resource limits set in the child before it executes (CPU seconds and
address space with ``setrlimit``; captured stdout and stderr capped by the reader, which kills the group
past the cap). The command stage of pipelines and the runs of command models both use ``run``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Never handed to a command: modelyard's settings (database URL, storage credentials, keys) and the
# usual credentials of databases and clouds.
SECRET_PREFIXES = (
    "MODELYARD_",
    "AWS_",
    "PG",
    "DATABASE_URL",
    "DBOS_",
    "S3_",
    "GOOGLE_",
    "AZURE_",
    "REDIS_",
)
READ_CHUNK = 65536
PR_SET_PDEATHSIG = 1  # linux/prctl.h
# after a kill, how long the readers may take to see the pipes close (a process that left the group
# and holds them open is not waited for)
DRAIN_SECONDS = 5.0
# how often a running command's ``stop`` event is looked at
STOP_POLL_SECONDS = 0.2


@dataclass(frozen=True, slots=True)
class Limits:
    """What one command may use: CPU seconds, address space (MiB) and bytes of stdout and of stderr
    each (None: no limit)."""

    cpu_seconds: int | None = None
    memory_mb: int | None = None
    output_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """How a command ended: its exit status (negative: killed by that signal), what it wrote (at most
    the output cap each), how long it ran, and which limit ended it, if one did (``timeout``,
    ``cpu``, ``output``, ``stopped``)."""

    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    limit_hit: str | None = None

    @property
    def ok(self) -> bool:
        """Whether it exited with status 0 on its own."""
        return self.returncode == 0 and self.limit_hit is None

    def reason(self, name: str) -> str:
        """Why it failed, in a sentence naming the command (``name``)."""
        if self.limit_hit == "timeout":
            return f"{name} ran past its timeout and was killed with the processes it started"
        if self.limit_hit == "output":
            return f"{name} wrote more than its output limit and was killed"
        if self.limit_hit == "stopped":
            return f"{name} was stopped (cancelled) and killed with the processes it started"
        if self.limit_hit == "cpu":
            return f"{name} used up its CPU-time limit and was killed"
        tail = self.stderr.decode(errors="replace").strip().splitlines()[-5:]
        return f"{name} exited with status {self.returncode}: {' | '.join(tail)}"


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any secret (``SECRET_PREFIXES``), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
    env.update(extra or {})
    return env


def _die_with_parent() -> Callable[[], None] | None:
    """Linux: a function that makes the calling (child) process get SIGKILL when the thread that started
    it dies, so a worker killed mid-run leaves no command behind; None where ``prctl`` is not found. The
    library is loaded here, in the parent: the child only calls it."""
    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _limiter(limits: Limits) -> Callable[[], None]:
    """The function the child runs before exec: it dies with its parent, and gets its rlimits (the hard
    CPU limit a second past the soft one, so SIGXCPU comes first and SIGKILL ends one that ignores it)."""
    die = _die_with_parent()

    def apply() -> None:
        if die is not None:
            die()
        if limits.cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        if limits.memory_mb is not None:
            size = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    return apply


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and every process it started (they share its process group), and reap it."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class _Reader(threading.Thread):
    """Reads one pipe to its end, keeping at most ``cap`` bytes; ``over`` is called once past the cap."""

    def __init__(self, pipe: IO[bytes], cap: int | None, over: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="sandbox-reader")
        self.pipe, self.cap, self.over = pipe, cap, over
        self.data = bytearray()

    def run(self) -> None:
        while chunk := self.pipe.read1(READ_CHUNK):  # type: ignore[attr-defined]
            room = len(chunk) if self.cap is None else self.cap - len(self.data)
            self.data += chunk[: max(room, 0)]
            if room < len(chunk):
                self.over()
                return


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float,
    limits: Limits = Limits(),
    stop: threading.Event | None = None,
    progress: Callable[[bytes, bytes], None] | None = None,
    progress_seconds: float = 2.0,
) -> Finished:
    """Run ``argv`` in ``cwd`` with exactly ``env``, in its own process group, within ``timeout`` seconds
    and ``limits``; a command past any of them, or still running when ``stop`` is set, is killed with
    what it started. ``progress(stdout, stderr)`` is called every ``progress_seconds`` while it runs with
    what it has written so far."""
    started = time.monotonic()
    hit: list[str] = []
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        process_group=0,
        preexec_fn=_limiter(limits),
    ) as proc:

        def over() -> None:
            hit.append("output")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            _Reader(proc.stdout, limits.output_bytes, over),
            _Reader(proc.stderr, limits.output_bytes, over),
        ]
        for reader in readers:
            reader.start()
        deadline = started + timeout
        # the pipes close when the command and every process still holding them have exited
        reported = time.monotonic()
        while alive := [r for r in readers if r.is_alive()]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if stop is not None and stop.is_set():
                hit.append("stopped")
                break
            if progress is not None and time.monotonic() - reported >= progress_seconds:
                progress(bytes(readers[0].data), bytes(readers[1].data))
                reported = time.monotonic()
            alive[0].join(min(STOP_POLL_SECONDS, left))
        if not hit:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if proc.returncode is None or any(r.is_alive() for r in readers):
            if not hit:
                hit.append("timeout")
            kill_group(proc)
            for reader in readers:
                reader.join(DRAIN_SECONDS)
    if not hit and proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and limits.cpu_seconds is not None:
        hit.append("cpu")
    return Finished(
        returncode=proc.returncode,
        stdout=bytes(readers[0].data),
        stderr=bytes(readers[1].data),
        seconds=time.monotonic() - started,
        limit_hit=hit[0] if hit else None,
    )
