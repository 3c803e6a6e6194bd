"""NVIDIA Triton through PyTriton: the ONNX model on onnxruntime's CPU provider (default session
options) inside a PyTriton Python callable, behind Triton's dynamic batcher (max batch 32,
500 µs queue delay). Triton serves `GET /v2/models/{m}/config` itself.

Its statistics endpoint, which perf_analyzer reads, is token-protected by default; this is a
loopback benchmark, so nothing is restricted. Needs a virtualenv made with Debian's python3:
on pyenv's 3.11.7 the Python backend's stub fails ('_thread.RLock' object has no attribute
'_recursion_count').

    python bench/pytriton/server.py --http-port 8000 --grpc-port 8001 --metrics-port 8002
"""

import argparse
import json
import signal
import sys
from pathlib import Path

import numpy as np
import onnxruntime
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = json.loads((ROOT / "models/cifar10/model.json").read_text())


def main():
    ap = argparse.ArgumentParser()
    for name in ("--http-port", "--grpc-port", "--metrics-port"):
        ap.add_argument(name, type=int, required=True)
    args = ap.parse_args()
    # Leave through `with Triton(...)` on SIGTERM too, so Triton stops and its workspace goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    session = onnxruntime.InferenceSession(str(ROOT / "models/cifar10/model.onnx"), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs):
        pixels = inputs[input_name].astype(np.float32, copy=False)
        return dict(zip(output_names, session.run(None, {input_name: pixels})))

    def tensors(ts):  # without the batch dimension, which Triton adds
        return [Tensor(name=t["name"], dtype=np.float32, shape=tuple(t["shape"][1:])) for t in ts]

    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port, grpc_address="127.0.0.1",
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as triton:
        triton.bind(
            model_name=DESCRIPTION["name"],
            infer_func=infer,
            inputs=tensors(DESCRIPTION["inputs"]),
            outputs=tensors(DESCRIPTION["outputs"]),
            config=ModelConfig(max_batch_size=32, batcher=DynamicBatcher(max_queue_delay_microseconds=500)),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
