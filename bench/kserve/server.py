"""KServe's Python model server with the ONNX model on onnxruntime's CPU provider, default
session options; binary tensors both ways when the client asks (Triton's extension, which
KServe's v2 REST endpoint implements).

perf_analyzer reads Triton's `GET /v2/models/{m}/config`, which KServe does not serve: the route
is added to KServe's own FastAPI app (`kserve.model_server.app`) before the server registers
its endpoints, beside them; the infer path is KServe's, untouched.

    python bench/kserve/server.py --http_port 8080 --grpc_port 8081 \
        --enable_latency_logging false --configure_logging false

(The last two turn off its log lines per request, as the other servers run.)
"""

import json
import sys
import uuid
from pathlib import Path

import kserve
import numpy as np
import onnxruntime
from kserve import InferOutput, InferRequest, InferResponse
from kserve.model_server import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from triton_config import triton_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DESCRIPTION = json.loads((ROOT / "models/cifar10/model.json").read_text())


class OnnxModel(kserve.Model):
    def __init__(self, name: str):
        super().__init__(name)
        self.load()

    def load(self) -> bool:
        self.session = onnxruntime.InferenceSession(str(ROOT / "models/cifar10/model.onnx"), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.ready = True
        return self.ready

    def get_input_types(self) -> list:
        return [{k: t[k] for k in ("name", "datatype", "shape")} for t in DESCRIPTION["inputs"]]

    def get_output_types(self) -> list:
        return [{k: t[k] for k in ("name", "datatype", "shape")} for t in DESCRIPTION["outputs"]]

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        pixels = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        outputs = []
        for spec, value in zip(self.session.get_outputs(), self.session.run(None, {self.input: pixels})):
            output = InferOutput(name=spec.name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value)
            outputs.append(output)
        # Passing the request's outputs makes KServe answer in the format each asked for.
        return InferResponse(response_id=payload.id or str(uuid.uuid4()), model_name=self.name, infer_outputs=outputs,
                             use_binary_outputs=payload.use_binary_outputs, requested_outputs=payload.request_outputs)


if __name__ == "__main__":
    config = triton_config(DESCRIPTION)
    app.add_api_route(f"/v2/models/{config['name']}/config", lambda: config, methods=["GET"])
    kserve.ModelServer().start([OnnxModel(DESCRIPTION["name"])])
