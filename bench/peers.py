"""Peer servers that the serving benchmark measures modelyard against.

* MLServer 1.7.1 (+ mlserver-sklearn) serving a joblib scikit-learn LogisticRegression trained on the same
  data as the ONNX ``logreg`` test model, in its own virtualenv under ``bench/.envs/mlserver``; as shipped
  (its defaults) or tuned (no parallel worker, metrics server, access log or gzip).
* BentoML 1.4.39 wrapping one onnxruntime session of the same ONNX model, in ``bench/.envs/bentoml``.
* The thin-framework floor (``bench/floor_app.py``): a hand-written FastAPI + uvicorn (uvloop, httptools)
  V2 JSON endpoint with a pydantic request model around one onnxruntime session, run from the main ``.venv``.
* A canned HTTP server (raw asyncio protocol on uvloop) that answers every request with a fixed V2-looking
  JSON body: the load generator's own ceiling.

Virtualenvs are built on demand and idempotently (a stamp file records what was installed)::

    .venv/bin/python bench/peers.py setup            # build both peer envs (minutes the first time)
    .venv/bin/python bench/floor_app.py --model M.onnx --port 9001
    .venv/bin/python bench/peers.py canned --port 9002

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
ENVS = BENCH / ".envs"
HOST = "127.0.0.1"

# The same uvloop/httptools for every uvicorn-based peer, so the HTTP stack is not what differs.
# MLServer's pins are the brief's; scikit-learn is the version mlserver-sklearn 1.7.1 resolves to here.
MLSERVER_REQS = (
    "mlserver==1.7.1",
    "mlserver-sklearn==1.7.1",
    "scikit-learn==1.9.1",
    "uvloop==0.21.0",
    "httptools==0.9.0",
)
MLSERVER_CHECK = "import mlserver, mlserver_sklearn, sklearn, joblib, uvloop, httptools"
BENTOML_REQS = (
    "bentoml==1.4.39",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
    "uvloop==0.23.0",
    "httptools==0.9.0",
)
BENTOML_CHECK = "import bentoml, onnxruntime, numpy, uvloop, httptools"

# The training data of tests/onnx_models.py::logreg (seed 0, 200 rows, 20 features): keep the two in step.
TRAIN_SKLEARN = """
import sys
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
x = rng.normal(size=(200, 20)).astype(np.float32)
y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
joblib.dump(LogisticRegression(max_iter=200).fit(x, y), sys.argv[1])
"""

BENTO_SERVICE = '''"""BentoML peer: one onnxruntime session of the logreg model behind a JSON API."""

import os

import bentoml
import numpy as np
import onnxruntime as ort


@bentoml.service(
    workers=1,
    metrics={"enabled": False},
    logging={"access": {"enabled": False}},
)
class Logreg:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            os.environ["BENCH_ONNX_PATH"], options, providers=["CPUExecutionProvider"]
        )

    @bentoml.api
    async def predict(self, rows: list[list[float]]) -> dict:
        label, probabilities = self.session.run(None, {"X": np.asarray(rows, dtype=np.float32)})
        return {"label": label.tolist(), "probabilities": probabilities.tolist()}
'''


# ------------------------------------------------------------------------------------------ virtualenvs


@dataclass(frozen=True)
class PeerEnv:
    """A peer's virtualenv under bench/.envs."""

    name: str
    requirements: tuple[str, ...]
    check: str

    @property
    def path(self) -> Path:
        return ENVS / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def bin(self, tool: str) -> Path:
        return self.path / "bin" / tool

    @property
    def stamp(self) -> Path:
        return self.path / ".bench-stamp.json"

    def ready(self) -> bool:
        """Whether the env exists with exactly these requirements installed."""
        try:
            return json.loads(self.stamp.read_text()) == list(self.requirements) and self.python.exists()
        except (OSError, ValueError):
            return False


MLSERVER = PeerEnv("mlserver", MLSERVER_REQS, MLSERVER_CHECK)
BENTOML = PeerEnv("bentoml", BENTOML_REQS, BENTOML_CHECK)


def _base_python() -> str:
    """A Python 3.11 to build peer envs from (the main venv's own interpreter underneath)."""
    found = shutil.which("python3.11")
    return found or str(getattr(sys, "_base_executable", sys.executable))


def ensure_env(env: PeerEnv, *, log: Any = print) -> PeerEnv:
    """Create (or rebuild, when its requirements changed) the env; a no-op when it is ready."""
    if env.ready():
        return env
    if env.path.exists():
        shutil.rmtree(env.path)
    ENVS.mkdir(parents=True, exist_ok=True)
    log(f"building {env.path} ({' '.join(env.requirements)}) ...")
    subprocess.run([_base_python(), "-m", "venv", str(env.path)], check=True)
    pip = [str(env.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run([*pip, *env.requirements], capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"pip install into {env.path} failed:\n{result.stderr[-4000:]}")
    subprocess.run([str(env.python), "-c", env.check], check=True, timeout=300)
    env.stamp.write_text(json.dumps(list(env.requirements)))
    log(f"{env.path} ready")
    return env


@dataclass(frozen=True)
class Launch:
    """How to start a peer server: argv (without pinning), environment additions, working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str


def prepare_mlserver(
    workdir: Path, *, http_port: int, grpc_port: int, metrics_port: int, tuned: bool
) -> Launch:
    """Write the MLServer model repository (joblib model, model-settings.json, settings.json).

    ``tuned=False`` is MLServer as a user runs it: its defaults (``parallel_workers: 1``, i.e. inference
    in a separate worker process; the metrics server on its own port; ``debug: true``, i.e. the access
    log; gzip on), only the addresses set so that it listens on 127.0.0.1 on free ports. ``tuned=True``
    switches all of that off: inference in the server process, no metrics server, no access log, no gzip.
    """
    env = ensure_env(MLSERVER)
    model_dir = workdir / "logreg"
    model_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(env.python), "-c", TRAIN_SKLEARN, str(model_dir / "model.joblib")], check=True, timeout=300
    )
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "logreg",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            },
            indent=2,
        )
    )
    settings: dict[str, Any] = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": grpc_port,  # MLServer 1.7 cannot switch gRPC off: park it on a free port
        "metrics_port": metrics_port,
    }
    if tuned:
        settings |= {
            "metrics_endpoint": None,  # no metrics server
            "parallel_workers": 0,  # inference in the server process, as modelyard does
            "debug": False,  # no access log
            "gzip_enabled": False,
            "load_models_at_startup": True,
        }
    (workdir / "settings.json").write_text(json.dumps(settings, indent=2))
    return Launch(
        argv=[str(env.bin("mlserver")), "start", str(workdir)],
        env={"OMP_NUM_THREADS": "1"} if tuned else {},
        cwd=workdir,
        ready_path="/v2/models/logreg/ready",
    )


def mlserver_settings(tuned: bool) -> dict[str, Any]:
    """What a configuration changes from MLServer's defaults (for the report)."""
    if not tuned:
        return {
            "as_shipped": True,
            "set": ["host", "http_port", "grpc_port", "metrics_port"],
            "defaults": {
                "parallel_workers": 1,
                "metrics_endpoint": "/metrics (separate server)",
                "debug": True,
                "gzip_enabled": True,
            },
        }
    return {
        "as_shipped": False,
        "parallel_workers": 0,
        "metrics_endpoint": None,
        "debug": False,
        "gzip_enabled": False,
        "env": {"OMP_NUM_THREADS": "1"},
    }


def prepare_bentoml(workdir: Path, *, onnx_path: Path, port: int) -> Launch:
    """Write the BentoML service.py around ``onnx_path``."""
    env = ensure_env(BENTOML)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "service.py").write_text(BENTO_SERVICE)
    return Launch(
        argv=[
            str(env.bin("bentoml")),
            "serve",
            "service:Logreg",
            "--host",
            HOST,
            "--port",
            str(port),
            "--working-dir",
            str(workdir),
        ],
        env={
            "BENCH_ONNX_PATH": str(onnx_path),
            "BENTOML_HOME": str(workdir / "bentoml-home"),
            "BENTOML_DO_NOT_TRACK": "true",
            "OMP_NUM_THREADS": "1",
        },
        cwd=workdir,
        ready_path="/readyz",
    )


def floor_launch(onnx_path: Path, port: int) -> Launch:
    """The FastAPI floor (bench/floor_app.py), run by the main venv's Python."""
    return Launch(
        argv=[sys.executable, str(BENCH / "floor_app.py"), "--model", str(onnx_path), "--port", str(port)],
        env={},
        cwd=REPO,
        ready_path="/v2/health/ready",
    )


def canned_launch(port: int, *, asgi: bool = False) -> Launch:
    """The canned server (``asgi``: the canned ASGI app under uvicorn), run by the main venv's Python."""
    return Launch(
        argv=[sys.executable, str(Path(__file__).resolve()), "canned", "--port", str(port)]
        + (["--asgi"] if asgi else []),
        env={},
        cwd=REPO,
        ready_path="/v2/health/ready",
    )


# ------------------------------------------------------------------------------------ the canned server

CANNED_BODY = (
    b'{"model_name":"logreg","model_version":"1","outputs":[{"name":"label","datatype":"INT64","shape":[1],'
    b'"data":[1]},{"name":"probabilities","datatype":"FP32","shape":[1,2],"data":[0.027054906,0.9729451]}]}'
)
CANNED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(CANNED_BODY)).encode()
    + b"\r\n\r\n"
    + CANNED_BODY
)


class CannedProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every complete request (headers + Content-Length body) gets the fixed answer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else len(head)].strip() or b"0")
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            assert self.transport is not None
            self.transport.write(CANNED_RESPONSE)


def serve_canned(port: int) -> None:
    """Run the canned server until killed."""
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(CannedProtocol, HOST, port, backlog=1024)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


async def canned_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app with the canned answer: uvicorn's own cost, without any framework."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(CANNED_BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": CANNED_BODY})


def serve_canned_asgi(port: int) -> None:
    """``canned_asgi`` under uvicorn with uvloop and httptools, as modelyard and the floor run."""
    import uvicorn

    uvicorn.run(
        canned_asgi,
        host=HOST,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


# --------------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="build the peer virtualenvs (idempotent)")
    setup.add_argument("--only", choices=["mlserver", "bentoml"], help="build just this one")
    canned = sub.add_parser("canned", help="run the canned server")
    canned.add_argument("--port", type=int, required=True)
    canned.add_argument("--asgi", action="store_true", help="a bare ASGI app under uvicorn instead")
    args = parser.parse_args(argv)
    if args.command == "setup":
        for env in (MLSERVER, BENTOML):
            if args.only in (None, env.name):
                ensure_env(env)
                print(f"{env.name}: {env.python}")
    elif args.command == "canned":
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        if args.asgi:
            serve_canned_asgi(args.port)
        else:
            serve_canned(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
