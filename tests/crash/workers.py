"""Real ``modelyard worker`` processes for crash tests, and a model slow enough to kill mid-chunk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
from onnx import TensorProto, helper

from modelyard.context import AppContext
from modelyard.durable import Worker

BIN = Path(sys.executable).parent / "modelyard"
T = TypeVar("T")


def slow_model(path: Path, hidden: int = 1024, layers: int = 40, seed: int = 0) -> Path:
    """20 features in, 2 scores out, through ``layers`` dense ``hidden``-wide layers that share one weight
    after the first (a small file, ~0.1-0.2 s per 500 rows on two cores: slow enough to kill mid-chunk)."""
    rng = np.random.default_rng(seed)
    first = (rng.normal(size=(20, hidden)) / np.sqrt(20)).astype(np.float32)
    shared = (rng.normal(size=(hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)
    inits = [
        helper.make_tensor("w0", TensorProto.FLOAT, list(first.shape), first.ravel()),
        helper.make_tensor("w", TensorProto.FLOAT, list(shared.shape), shared.ravel()),
    ]
    nodes, prev, width = [], "X", hidden
    for i in range(layers):
        nodes += [
            helper.make_node("MatMul", [prev, "w0" if i == 0 else "w"], [f"m{i}"]),
            helper.make_node("Relu", [f"m{i}"], [f"h{i}"]),
        ]
        prev = f"h{i}"
    out = (rng.normal(size=(width, 2)) / np.sqrt(width)).astype(np.float32)
    inits.append(helper.make_tensor("wo", TensorProto.FLOAT, [width, 2], out.ravel()))
    nodes.append(helper.make_node("MatMul", [prev, "wo"], ["score"]))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 20])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def eventually(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class WorkerProcess:
    """``modelyard worker`` in a subprocess, with its own executor id and short heartbeats."""

    def __init__(self, executor_id: str, data_dir: Path, database_url: str, concurrency: int = 2):
        self.executor_id = executor_id
        self.log = data_dir.parent / f"worker-{executor_id}.log"
        self.env = {
            **os.environ,
            "MODELYARD_DATA_DIR": str(data_dir),
            "MODELYARD_DATABASE_URL": database_url,
            "MODELYARD_HEARTBEAT_SECONDS": "0.5",
            "MODELYARD_HEARTBEAT_TIMEOUT_SECONDS": "2",
            "MODELYARD_LOG_TO_FILE": "false",
            "MODELYARD_LOG_LEVEL": "WARNING",
            "MODELYARD_WORKER_CONCURRENCY": str(concurrency),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ctx: AppContext) -> WorkerProcess:
        """Start the process and wait until its heartbeat row says it is alive."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN), "worker", "--executor-id", self.executor_id],
                env=self.env,
                stdout=log,
                stderr=log,
            )

        def alive() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.executor_id} exited: {self.log.read_text()[-3000:]}")
            with ctx.uow() as session:
                row = session.get(Worker, self.executor_id)
                return row is not None and row.state == "alive" and row.pid == self.proc.pid

        eventually(alive, 60, f"worker {self.executor_id} to start")
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown); kill if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
