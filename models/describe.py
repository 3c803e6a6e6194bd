#!/usr/bin/env python3
"""Write a model's declared description (`model.json`, our analogue of Triton's config.pbtxt)
from its ONNX file: name, platform, versions, max_batch_size, and each input and output with its
Open Inference Protocol datatype and shape (-1 for a symbolic dimension); with
--max-queue-delay-us, Triton's `dynamic_batching`, which Spindle's host reads to merge concurrent
computes on the model.

    python models/describe.py models/cifar10/model.onnx --name cifar10 --max-batch-size 32 --max-queue-delay-us 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ONNX_TO_OIP = {1: "FP32", 2: "UINT8", 3: "INT8", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL",
               10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64", 16: "BF16", 8: "BYTES", 4: "UINT16"}


def describe(onnx_path: str | Path, name: str, max_batch_size: int, version: str = "1",
             max_queue_delay_us: int | None = None) -> dict:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def tensors(values):
        out = []
        for v in values:
            if v.name in initializers:
                continue
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            out.append({"name": v.name, "datatype": ONNX_TO_OIP[t.elem_type], "shape": shape})
        return out

    description = {"name": name, "platform": "onnxruntime_onnx", "versions": [version], "max_batch_size": max_batch_size,
                   "inputs": tensors(graph.input), "outputs": tensors(graph.output)}
    if max_queue_delay_us is not None:
        description["dynamic_batching"] = {"max_queue_delay_microseconds": max_queue_delay_us}
    return description


def write(onnx_path: str | Path, name: str, max_batch_size: int, max_queue_delay_us: int | None = None) -> Path:
    target = Path(onnx_path).with_name("model.json")
    description = describe(onnx_path, name, max_batch_size, max_queue_delay_us=max_queue_delay_us)
    target.write_text(json.dumps(description, indent=2) + "\n")
    return target


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx")
    ap.add_argument("--name", required=True)
    ap.add_argument("--max-batch-size", type=int, default=0)
    ap.add_argument("--max-queue-delay-us", type=int, default=None,
                    help="turn on dynamic batching: how long a compute may wait for others to join it")
    args = ap.parse_args()
    print(write(args.onnx, args.name, args.max_batch_size, args.max_queue_delay_us))


if __name__ == "__main__":
    main()
