"""The sandbox: scrubbed environment, limits that really stop a command, and what it wrote kept."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from modelyard import sandbox
from modelyard.sandbox import Limits

PY = sys.executable


def test_scrubbed_env_drops_every_secret_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_DATABASE_URL", "postgresql://secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cret")
    monkeypatch.setenv("PGPASSWORD", "pw")
    monkeypatch.setenv("HARMLESS_SETTING", "1")
    env = sandbox.scrubbed_env({"EXTRA": "x"})
    assert "MODELYARD_DATABASE_URL" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "PGPASSWORD" not in env
    assert env["HARMLESS_SETTING"] == "1" and env["EXTRA"] == "x"


def test_a_command_that_burns_cpu_is_stopped_by_its_cpu_limit(tmp_path: Path) -> None:
    done = sandbox.run(
        [PY, "-c", "while True: pass"],
        cwd=tmp_path,
        env=sandbox.scrubbed_env(),
        timeout=30,
        limits=Limits(cpu_seconds=1),
    )
    assert done.limit_hit == "cpu" and not done.ok
    assert done.seconds < 10  # the CPU limit ended it, not the timeout
    assert "CPU-time limit" in done.reason("burner")


def test_a_command_that_allocates_past_its_memory_limit_fails(tmp_path: Path) -> None:
    script = "b = bytearray(1024 * 1024 * 1024); print('allocated')"
    done = sandbox.run(
        [PY, "-c", script], cwd=tmp_path, env=sandbox.scrubbed_env(), timeout=30, limits=Limits(memory_mb=200)
    )
    assert done.returncode != 0 and not done.ok
    assert b"MemoryError" in done.stderr and b"allocated" not in done.stdout
    # and the same script without the limit allocates fine
    done = sandbox.run(
        [PY, "-c", "b = bytearray(64 * 1024 * 1024); print('allocated')"],
        cwd=tmp_path,
        env=sandbox.scrubbed_env(),
        timeout=30,
        limits=Limits(memory_mb=400),
    )
    assert done.ok and done.stdout == b"allocated\n"


def test_a_command_that_floods_stdout_is_cut_at_the_output_cap_and_killed(tmp_path: Path) -> None:
    script = "import sys\nwhile True: sys.stdout.write('x' * 4096)"
    done = sandbox.run(
        [PY, "-c", script],
        cwd=tmp_path,
        env=sandbox.scrubbed_env(),
        timeout=30,
        limits=Limits(output_bytes=100_000),
    )
    assert done.limit_hit == "output" and not done.ok
    assert len(done.stdout) == 100_000 and set(done.stdout) == {ord("x")}
    assert done.seconds < 10


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    marker = tmp_path / "child-alive"
    script = f"(sleep 3; touch {marker}) & echo started; sleep 60"
    done = sandbox.run(["sh", "-c", script], cwd=tmp_path, env=sandbox.scrubbed_env(), timeout=0.5)
    assert done.limit_hit == "timeout" and done.stdout == b"started\n"
    assert done.seconds < 5
    assert "timeout" in done.reason("sh")


def test_a_command_sees_only_the_environment_it_is_given(tmp_path: Path) -> None:
    done = sandbox.run(
        [PY, "-c", "import os, json; print(json.dumps(sorted(os.environ)))"],
        cwd=tmp_path,
        env={"ONLY": "this", "PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert done.ok
    assert "ONLY" in done.stdout.decode() and "MODELYARD" not in done.stdout.decode()


def test_a_failing_command_reports_its_status_and_stderr_tail(tmp_path: Path) -> None:
    done = sandbox.run(
        [PY, "-c", "import sys; sys.stderr.write('broken input\\n'); sys.exit(3)"],
        cwd=tmp_path,
        env=sandbox.scrubbed_env(),
        timeout=30,
    )
    assert done.returncode == 3 and done.limit_hit is None
    assert done.reason("model") == "model exited with status 3: broken input"


def test_a_command_is_killed_when_it_is_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    done = sandbox.run(["sleep", "60"], cwd=tmp_path, env=sandbox.scrubbed_env(), timeout=30, stop=stop)
    assert done.limit_hit == "stopped" and done.seconds < 5
    assert "cancelled" in done.reason("sleep")


def _gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_a_command_dies_with_the_process_that_ran_it(tmp_path: Path) -> None:
    pidfile = tmp_path / "command.pid"
    runner = (
        "import sys; from pathlib import Path; from modelyard import sandbox\n"
        f"sandbox.run(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 60'], cwd=Path({str(tmp_path)!r}),"
        " env=sandbox.scrubbed_env(), timeout=120)\n"
    )
    parent = subprocess.Popen([PY, "-c", runner], env={**os.environ})
    try:
        deadline = time.monotonic() + 30
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline and parent.poll() is None, "the command never started"
            time.sleep(0.05)
        pid = int(pidfile.read_text())
        assert not _gone(pid)
    finally:
        parent.kill()  # SIGKILL: no clean-up of any kind
        parent.wait(10)
    deadline = time.monotonic() + 10
    while not _gone(pid):
        assert time.monotonic() < deadline, "the command outlived the process that ran it"
        time.sleep(0.05)
