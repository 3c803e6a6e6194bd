"""Triton's gRPC client, run in its own virtualenv (.venv-grpc: tritonclient[grpc] pins a
protobuf older than the test suite's), driven by tests/test_grpc.py.

    .venv-grpc/bin/python tests/grpc_client.py HOST:PORT [--ssl CA.pem] [--token TOKEN] < calls.json

Reads a JSON list of calls, makes each with `tritonclient.grpc`, and prints one JSON line per
call: {"ok": answer} or {"error": {"status": "StatusCode.X", "message": "..."}}. A call is
{"call": "get_model_metadata", "args": ["cifar10"]} (answers as JSON) or, to infer,
{"call": "infer", "model": "cifar10", "inputs": [{"name", "datatype", "npy"}], "outputs": [{"name", "npy"}],
 "request_id": "..."}: inputs are read from and outputs written to .npy files.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import tritonclient.grpc as grpc
from tritonclient.utils import InferenceServerException


def infer(client, call, headers):
    inputs = []
    for spec in call["inputs"]:
        x = np.load(spec["npy"])
        tensor = grpc.InferInput(spec["name"], list(spec.get("shape", x.shape)), spec["datatype"])
        tensor.set_data_from_numpy(x)
        inputs.append(tensor)
    outputs = [grpc.InferRequestedOutput(o["name"]) for o in call.get("outputs", [])] or None
    result = client.infer(call["model"], inputs, outputs=outputs, request_id=call.get("request_id", ""), headers=headers)
    for o in call.get("outputs", []):
        np.save(o["npy"], result.as_numpy(o["name"]))
    return result.get_response(as_json=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--ssl", help="the CA certificate to trust (TLS)")
    ap.add_argument("--token")
    args = ap.parse_args()
    client = grpc.InferenceServerClient(args.url, ssl=bool(args.ssl), root_certificates=args.ssl)
    headers = {"authorization": f"Bearer {args.token}"} if args.token else None
    for call in json.load(sys.stdin):
        try:
            if call["call"] == "infer":
                answer = infer(client, call, headers)
            else:
                method = getattr(client, call["call"])
                kwargs = {"headers": headers}
                if call["call"].startswith("get_"):
                    kwargs["as_json"] = True
                answer = method(*call.get("args", []), **kwargs)
            print(json.dumps({"ok": answer}), flush=True)
        except InferenceServerException as e:
            print(json.dumps({"error": {"status": str(e.status()), "message": e.message()}}), flush=True)


if __name__ == "__main__":
    main()
