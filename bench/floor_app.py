"""The thin-framework floor: the FastAPI endpoint someone would write by hand around one ONNX session.

FastAPI + uvicorn with uvloop and httptools (the same stack modelyard runs on), a pydantic request model
for the Open Inference Protocol V2 JSON body, ``session.run`` on the event loop, a dict returned and
serialised by FastAPI. No auth, no registry, no metrics: what modelyard must beat, not a product.

    .venv/bin/python bench/floor_app.py --model logreg.onnx --port 9001
"""

import argparse
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[float]
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]


def _session(path: str) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


app = FastAPI()
session: ort.InferenceSession | None = None


@app.post("/v2/models/logreg/infer")
async def infer(request: InferenceRequest) -> dict[str, Any]:
    assert session is not None
    tensor = request.inputs[0]
    x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    label, probabilities = session.run(None, {tensor.name: x})
    return {
        "model_name": "logreg",
        "model_version": "1",
        "id": request.id,
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": list(label.shape), "data": label.tolist()},
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": list(probabilities.shape),
                "data": probabilities.ravel().tolist(),
            },
        ],
    }


@app.get("/v2/health/ready")
async def ready() -> dict[str, bool]:
    return {"ready": session is not None}


def main() -> None:
    global session
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--model", default=os.environ.get("BENCH_ONNX_PATH"), required="BENCH_ONNX_PATH" not in os.environ
    )
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    session = _session(str(args.model))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
